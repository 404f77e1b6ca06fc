"""A decoder-only transformer in two families, nanoGPT-style: one file, plain torch, no framework.

- gpt2 (Radford et al. 2019): learned positions, pre-LayerNorm blocks, GELU MLP, biases, final LayerNorm.
- llama (Touvron et al. 2023, arXiv:2302.13971): rotary position embeddings on queries and keys (Su et al. 2021,
  arXiv:2104.09864), pre-RMSNorm blocks, SwiGLU MLP (Shazeer 2020, arXiv:2002.05202), no biases.
Both: causal self-attention through `attention` (F.scaled_dot_product_attention, or `SmallHeadAttention` at
small head sizes on CPU; grouped-query when n_kv_head < n_head), optional QK-norm, and an unembedding tied to the
token embedding unless tie_embeddings=false.
In training the unembedding and the loss run fused, in row chunks (`LinearCrossEntropy`), so the
(tokens x vocab) logits are never written out: same FLOPs, a fraction of the memory traffic. Under autocast its
matmuls run in the autocast dtype and its softmax in fp32.

Parameter counts follow docs/DESIGN.md section 2 (Kaplan et al. 2020, section 2.1), and equal
scalinglab.config.param_counts (computed from the config alone):
- n_params: every trainable parameter, a tied embedding counted once;
- n_params_nonembed: Kaplan's N, without token and position embeddings (and without an untied unembedding);
- n_params_embed: the difference.
Shapes: B batch, T sequence, d d_model, h query heads, g key/value heads, k head_dim = d / h, f d_ff, V vocab.
"""
from __future__ import annotations

import contextlib
import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from scalinglab.config import GPTConfig


def norm(cfg: GPTConfig, dim: int) -> nn.Module:
    """The family's normalisation over the last `dim` channels: LayerNorm (gpt2) or RMSNorm (llama)."""
    if cfg.family == "llama":
        return nn.RMSNorm(dim, eps=cfg.norm_eps)
    return nn.LayerNorm(dim, eps=cfg.norm_eps, bias=cfg.use_bias)


def rotary_tables(head_dim: int, n_ctx: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the angles t * theta^(-2i / k) for t < n_ctx, i < k / 2 (Su et al. 2021, eq. 15): (T, k/2)."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (k/2,)
    angles = torch.outer(torch.arange(n_ctx, dtype=torch.float32), inv_freq)  # (T, k/2)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (x_i, x_{i + k/2}) of x (B, heads, T, k) by position-dependent angles (NeoX layout)."""
    x1, x2 = x.float().chunk(2, dim=-1)  # (B, heads, T, k/2) each
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


SMALL_HEAD_DIM = 8  # CPU attention at head_dim <= this runs as SmallHeadAttention (see `attention`)
SMALL_SCORES = 2**24  # ... while its (B, h, T, T) scores, kept for the backward, hold at most this many floats


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """Causal softmax(q k^T / sqrt(k)) v: q (B, h, T, k), k and v (B, g, T, k) with g | h -> (B, h, T, k).

    The one place attention is computed (swap the kernel here). With g < h each key/value head serves h / g query
    heads (grouped-query attention, Ainslie et al. 2023, arXiv:2305.13245). On CPU it runs in fp32 whatever the
    autocast dtype: the CPU flash kernel's bf16 backward took 7x its fp32 time at head_dim 8, which made bf16-mixed
    training 0.41-0.56x of fp32 at d_model <= 64 (scripts/bench_train.py --levers); the matmuls around it stay
    in bf16. On CPU at head_dim <= SMALL_HEAD_DIM (no dropout, g = h, scores within SMALL_SCORES) it runs as
    `SmallHeadAttention`: 1.3-2.0x the flash kernel's speed forward and backward at (B, h, T, k) = (8, 2, 128, 8)
    in four runs on an AMD EPYC, and slower from head_dim 16 (scripts/bench_train.py --shapes repro --attention).
    """
    if q.device.type == "cpu" and q.dtype != torch.float32:
        with torch.autocast("cpu", enabled=False):
            return attention(q.float(), k.float(), v.float(), dropout_p).to(q.dtype)
    B, h, T, head_dim = q.shape
    if (q.device.type == "cpu" and head_dim <= SMALL_HEAD_DIM and not dropout_p and k.shape[1] == h
            and B * h * T * T <= SMALL_SCORES):
        return SmallHeadAttention.apply(q, k, v)[0]
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p,
                                          enable_gqa=k.shape[1] != q.shape[1])


@functools.lru_cache(maxsize=8)
def _rows(n: int, device: torch.device) -> torch.Tensor:
    """arange(n) on `device`, made once."""
    return torch.arange(n, device=device)


@functools.lru_cache(maxsize=8)
def causal_mask(T: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(T, T): 0 on and below the diagonal, -inf above (key s > query t is masked)."""
    return torch.full((T, T), float("-inf"), device=device, dtype=dtype).triu_(1)


class SmallHeadAttention(torch.autograd.Function):
    """Causal attention with the scores written out, every matmul laid out for a wide output.

    Forward: P = softmax(q k^T / sqrt(k) + mask), O = P v. Backward (Dao et al. 2022, FlashAttention,
    arXiv:2205.14135, appendix B.2): dV = P^T dO, dP = dO V^T, dS = P * (dP - D) with D_t = dO_t . O_t,
    dQ = dS K / sqrt(k), dK = dS^T Q / sqrt(k). At a small head_dim a matmul whose output is (T, k) wide runs
    at a quarter of the speed of the same product written as its transpose, (k, T), on CPU (MKL); so O, dV, dQ and
    dK are formed transposed (O^T = V^T P^T, ...) and handed on as transposed views. The scores (B h T^2 floats)
    are kept for the backward, which the flash kernel recomputes instead.
    """

    generate_vmap_rule = True  # so that torch.func.vmap (stacked training) batches it

    @staticmethod
    def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """(O (B, h, T, k), P (Bh, T, T), O^T (Bh, k, T)); the last two are kept for the backward only."""
        B, h, T, d = q.shape
        q3, k3, v3 = (t.reshape(B * h, T, d) for t in (q, k, v))  # (Bh, T, k)
        p = torch.baddbmm(causal_mask(T, q.device, q.dtype), q3, k3.transpose(1, 2), alpha=d ** -0.5).softmax(-1)
        out_t = torch.bmm(v3.transpose(1, 2), p.transpose(1, 2))  # O^T: (Bh, k, T)
        return out_t.view(B, h, d, T).transpose(2, 3), p, out_t

    @staticmethod
    def setup_context(ctx, inputs, output):
        q, k, v = inputs
        _, p, out_t = output
        ctx.mark_non_differentiable(p, out_t)
        ctx.save_for_backward(q, k, v, p, out_t)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor, *_):
        q, k, v, p, out_t = ctx.saved_tensors
        B, h, T, d = q.shape
        q3, k3, v3, do = (t.reshape(B * h, T, d) for t in (q, k, v, grad_out))  # (Bh, T, k)
        scale = d ** -0.5
        dv_t = torch.bmm(do.transpose(1, 2), p)  # dV^T = dO^T P: (Bh, k, T)
        delta = (do.transpose(1, 2) * out_t).sum(1).unsqueeze(-1)  # D = rowsum(dO * O): (Bh, T, 1)
        ds = torch.bmm(do, v3.transpose(1, 2)).sub_(delta).mul_(p)  # dS = P * (dO V^T - D): (Bh, T, T)
        dq_t = torch.bmm(k3.transpose(1, 2), ds.transpose(1, 2)).mul_(scale)  # dQ^T = K^T dS^T: (Bh, k, T)
        dk_t = torch.bmm(q3.transpose(1, 2), ds).mul_(scale)  # dK^T = Q^T dS: (Bh, k, T)
        return tuple(t.view(B, h, d, T).transpose(2, 3) for t in (dq_t, dk_t, dv_t))


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.kv_heads, cfg.head_dim
        h, g, k = self.n_head, self.n_kv_head, self.head_dim
        self.qkv = nn.Linear(cfg.d_model, (h + 2 * g) * k, bias=cfg.use_bias)
        self.proj = nn.Linear(h * k, cfg.d_model, bias=cfg.use_bias)
        self.q_norm = norm(cfg, k) if cfg.qk_norm else None
        self.k_norm = norm(cfg, k) if cfg.qk_norm else None
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        B, T, _ = x.shape
        h, g, k = self.n_head, self.n_kv_head, self.head_dim
        q, key, v = self.qkv(x).split([h * k, g * k, g * k], dim=2)
        q = q.view(B, T, h, k).transpose(1, 2)  # (B, h, T, k)
        key = key.view(B, T, g, k).transpose(1, 2)  # (B, g, T, k)
        v = v.view(B, T, g, k).transpose(1, 2)  # (B, g, T, k)
        if self.q_norm is not None:
            q, key = self.q_norm(q), self.k_norm(key)
        if rope is not None:
            q, key = apply_rotary(q, *rope), apply_rotary(key, *rope)
        y = attention(q.to(v.dtype), key.to(v.dtype), v, self.dropout if self.training else 0.0)  # (B, h, T, k)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, h * k))


class MLP(nn.Module):
    """gpt2: down(gelu(up x)). llama (SwiGLU): down(silu(gate x) * (up x)), gate and up as one d x 2f matmul."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.gated = cfg.family == "llama"
        self.up = nn.Linear(cfg.d_model, (2 if self.gated else 1) * cfg.ff, bias=cfg.use_bias)
        self.down = nn.Linear(cfg.ff, cfg.d_model, bias=cfg.use_bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            gate, up = self.up(x).chunk(2, dim=-1)  # (B, T, f) each
            hidden = F.silu(gate) * up
        else:
            hidden = F.gelu(self.up(x))  # (B, T, f)
        return self.drop(self.down(hidden))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = norm(cfg, cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = norm(cfg, cfg.d_model)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope)
        return x + self.mlp(self.ln_2(x))


LOG2E, LN2 = 1.0 / math.log(2.0), math.log(2.0)
_NULL = contextlib.nullcontext()


class LinearCrossEntropy(torch.autograd.Function):
    """mean_i [logsumexp(h_i W^T) - (h_i W^T)_{t_i}] and its gradients, one chunk of rows at a time.

    The loss is the last node of the graph, so its gradients are formed in the same pass (dL/dlogits =
    softmax - onehot, then dL/dh = G W and dL/dW = G^T h): 2dV FLOPs forward and 4dV backward per token, as the
    unfused head, but each chunk's logits stay in cache instead of 4 passes over a (tokens x vocab) tensor
    (log_softmax, nll, and both backwards): on CPU that halves the head's time at vocab 4096. The softmax runs in
    base 2 (logits times log2(e), then exp2) and dL/dW is formed as its transpose h^T G, the faster forms on CPU.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int,
                dtype: torch.dtype) -> torch.Tensor:
        """`dtype`: of the matmuls (h's own in fp32 training, bfloat16 under bf16 autocast); the softmax, the
        loss and the gradients' sums are fp32 (h.dtype) whatever it is."""
        grad_h, grad_w_t, total = torch.empty_like(h), None, None  # dL/dh (n, d) and dL/dW^T (d, V), times n
        hm, wm = h.to(dtype), weight.to(dtype)  # no copies when dtype is h's
        # Logits in base 2: torch's exp2 ran at 2.5x the speed of its exp on an AVX-512 CPU (1024 x 512 floats).
        h2 = (h * LOG2E).to(dtype)
        with torch.autocast(h.device.type, enabled=False) if torch.is_autocast_enabled(h.device.type) else _NULL:
            for s in range(0, h.shape[0], chunk):
                tc = targets[s:s + chunk]
                logits = torch.mm(h2[s:s + chunk], wm.t()).to(h.dtype)  # log2(e) times the logits
                target_logit = logits.gather(1, tc[:, None])
                m = logits.amax(1, keepdim=True)
                p = logits.sub_(m).exp2_()  # in place: the chunk's logits become unnormalised probabilities
                z = p.sum(1, keepdim=True)
                part = m.add_(z.log2()).sub_(target_logit).sum()  # log2 of the loss, summed over the chunk's rows
                total = part if total is None else total.add_(part)
                p.div_(z)
                p[_rows(len(tc), h.device), tc] -= 1.0  # G = softmax - onehot(t)
                p = p.to(dtype)
                if dtype == h.dtype:  # G W straight into dL/dh's rows (plain matmuls, which flops.py counts)
                    torch.mm(p, wm, out=grad_h[s:s + chunk])
                else:
                    grad_h[s:s + chunk] = p @ wm
                step = torch.mm(hm[s:s + chunk].t(), p)  # h^T G, a wide (d, V) output: 1.1-1.8x G^T h's speed
                grad_w_t = step.to(h.dtype) if grad_w_t is None else grad_w_t.add_(step)
        ctx.save_for_backward(grad_h, grad_w_t.t())
        ctx.rows = h.shape[0]
        return total * (LN2 / ctx.rows)

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_loss / ctx.rows
        return grad_h * scale, grad_w * scale, None, None, None


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        self.wpe = nn.Embedding(config.n_ctx, config.d_model) if config.family == "gpt2" else None
        if config.family == "llama":  # rotary tables: buffers, not parameters, and not saved in checkpoints
            cos, sin = rotary_tables(config.head_dim, config.n_ctx, config.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = norm(config, config.d_model)
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

        When gradients are wanted (training) the loss comes from the fused `LinearCrossEntropy` and the logits
        are not formed: (None, loss).
        """
        T = idx.shape[1]
        if T > self.config.n_ctx:
            raise ValueError(f"sequence length {T} exceeds model.n_ctx={self.config.n_ctx}")
        x = self.wte(idx)  # (B, T, d)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=idx.device))
        else:
            rope = (self.rope_cos[:T], self.rope_sin[:T])  # (T, k/2) each
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, rope)
        x = self.ln_f(x)
        if targets is not None and torch.is_grad_enabled():
            chunk = max(32, 2**20 // self.config.vocab_size)  # ~4 MB of fp32 logits per chunk
            h = x.reshape(-1, x.size(-1)).float()
            cast = torch.is_autocast_enabled(x.device.type)
            dtype = torch.get_autocast_dtype(x.device.type) if cast else h.dtype
            return None, LinearCrossEntropy.apply(h, self.lm_head.weight, targets.reshape(-1), chunk, dtype)
        logits = self.lm_head(x)
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    def param_counts(self) -> dict[str, int]:
        """n_params / n_params_nonembed / n_params_embed, counted from the real tensors (shared tensors once)."""
        unique = {id(p): p for p in self.parameters()}
        n_params = sum(p.numel() for p in unique.values())
        embed = {id(m.weight) for m in (self.wte, self.wpe, self.lm_head) if m is not None}
        n_embed = sum(p.numel() for i, p in unique.items() if i in embed)
        return {"n_params": n_params, "n_params_nonembed": n_params - n_embed, "n_params_embed": n_embed}
