"""A decoder-only transformer (GPT-2 shape), nanoGPT-style: one file, plain torch, no framework.

Learned positions, pre-LayerNorm blocks, causal self-attention through F.scaled_dot_product_attention, GELU MLP,
final LayerNorm, and an unembedding tied to the token embedding by default (Radford et al. 2019).
In fp32 training the unembedding and the loss run fused, in row chunks (`LinearCrossEntropy`), so the
(tokens x vocab) logits are never written out: same FLOPs, a fraction of the memory traffic.

Parameter counts follow DESIGN.md section 2 (Kaplan et al. 2020, section 2.1):
- n_params: every trainable parameter, a tied embedding counted once;
- n_params_nonembed: Kaplan's N, without token and position embeddings (and without an untied unembedding);
- n_params_embed: the difference.
"""
from __future__ import annotations

import math
import torch
import torch.nn as nn
import torch.nn.functional as F

from scalinglab.config import GPTConfig


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.ff, bias=cfg.bias)
        self.down = nn.Linear(cfg.ff, cfg.d_model, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.down(F.gelu(self.up(x))))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class LinearCrossEntropy(torch.autograd.Function):
    """mean_i [logsumexp(h_i W^T) - (h_i W^T)_{t_i}] and its gradients, one chunk of rows at a time.

    The loss is the last node of the graph, so its gradients are formed in the same pass (dL/dlogits =
    softmax - onehot, then dL/dh = G W and dL/dW = G^T h): 2dV FLOPs forward and 4dV backward per token, as the
    unfused head, but each chunk's logits stay in cache instead of 4 passes over a (tokens x vocab) tensor
    (log_softmax, nll, and both backwards): on CPU that halves the head's time at vocab 4096.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
        grad_h, grad_w = torch.empty_like(h), torch.zeros_like(weight)
        loss = h.new_zeros(())
        for s in range(0, h.shape[0], chunk):
            hc, tc = h[s:s + chunk], targets[s:s + chunk]
            logits = hc @ weight.t()
            target_logit = logits.gather(1, tc[:, None])
            m = logits.amax(1, keepdim=True)
            p = logits.sub_(m).exp_()  # in place: the chunk's logits become unnormalised probabilities
            z = p.sum(1, keepdim=True)
            loss += (m + z.log() - target_logit).sum()
            p.div_(z)
            p[torch.arange(len(tc), device=p.device), tc] -= 1.0
            grad_h[s:s + chunk] = p @ weight  # plain matmuls, so FlopCounterMode (flops.py) sees them
            grad_w += p.t() @ hc
        ctx.save_for_backward(grad_h, grad_w)
        ctx.rows = h.shape[0]
        return loss / ctx.rows

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_loss / ctx.rows
        return grad_h * scale, grad_w * scale, None, None


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        self.wpe = nn.Embedding(config.n_ctx, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model, bias=config.bias)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        # GPT-2: scale residual projections by 1/sqrt(2 n_layer).
        for name, p in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """Logits (B, T, vocab); with targets, (logits, mean next-token cross-entropy in nats).

        When gradients are wanted in full precision (fp32 training) the loss comes from the fused
        `LinearCrossEntropy` and the logits are not formed: (None, loss).
        """
        T = idx.shape[1]
        if T > self.config.n_ctx:
            raise ValueError(f"sequence length {T} exceeds model.n_ctx={self.config.n_ctx}")
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        if targets is not None and torch.is_grad_enabled() and not torch.is_autocast_enabled(x.device.type):
            chunk = max(32, 2**20 // self.config.vocab_size)  # ~4 MB of fp32 logits per chunk
            h = x.reshape(-1, x.size(-1))
            return None, LinearCrossEntropy.apply(h, self.lm_head.weight, targets.reshape(-1), chunk)
        logits = self.lm_head(x)
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    def param_counts(self) -> dict[str, int]:
        """n_params / n_params_nonembed / n_params_embed, counted from the real tensors (shared tensors once)."""
        unique = {id(p): p for p in self.parameters()}
        n_params = sum(p.numel() for p in unique.values())
        embed = {id(self.wte.weight), id(self.wpe.weight), id(self.lm_head.weight)}
        n_embed = sum(p.numel() for i, p in unique.items() if i in embed)
        return {"n_params": n_params, "n_params_nonembed": n_params - n_embed, "n_params_embed": n_embed}
