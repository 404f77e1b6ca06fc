"""Training FLOPs per token under each convention of docs/DESIGN.md section 2, and a measured count.

All functions return *training* FLOPs per token (forward + backward, backward = 2 x forward) for one sequence
of length n_ctx; multiply by the tokens consumed to get a run's compute.

- `flops_6nd`: 6 * n_params (Chinchilla's frontier convention, Hoffmann et al. 2022 section 3). Counts every
  parameter once, embeddings included, and no attention-score work.
- `flops_kaplan`: 6 * N_nonembed + 6 * n_layer * n_ctx * d_model (Kaplan et al. 2020 Table 1: forward
  C_fwd = 2N + 2 n_layer n_ctx d_attn, training = 3 x forward). No embeddings, no logits, no softmax; the
  attention-score term is the full n_ctx x n_ctx product (no causal halving).
- `flops_chinchilla`: Hoffmann et al. 2022 Appendix F, term by term: embeddings 2 V d, per layer QKV 6 d (h k),
  scores 2 S (h k), softmax 3 h S, score @ values 2 S (h k), out-projection 2 (h k) d, MLP 4 d d_ff, and final
  logits 2 d V; training = 3 x forward. Attention is the full S x S product (no causal halving). The flags
  `embeddings`, `logits` and `softmax` drop those terms: Table A4's ratios are reproduced with embeddings and
  logits left out (see docs/DESIGN.md). Per family: with g key/value heads the K and V projections are 2 d (g k) each
  (grouped-query attention; scores and values still run over all h query heads), and llama's SwiGLU MLP is three
  d x d_ff matmuls, 6 d d_ff. Like Appendix F (which counts no LayerNorm, GELU or bias), the count leaves out every
  elementwise op: norms (LayerNorm, RMSNorm, QK-norm), rotary embeddings, activations and SwiGLU's product,
  residual adds, biases. These are O(d) per token against O(d^2) for the matmuls.
- `flops_measured`: matmul FLOPs of one real forward + backward from torch.utils.flop_counter.FlopCounterMode.
  It counts matmuls only (no embedding lookup, softmax, norms, rotary, activations, bias adds), so it compares like
  with like against Appendix F without the embedding and softmax terms, for both families. CPU fused SDPA kernels
  have no formula (counted as 0), so the count runs attention through the math backend, whose two S x S matmuls
  are counted in full (no causal halving), like Appendix F.

The analytic conventions need no torch (the sweep planner imports them); torch is imported by `flops_measured`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from scalinglab.config import GPTConfig, param_counts

if TYPE_CHECKING:
    from scalinglab.model import GPT


def flops_6nd(n_params: int) -> float:
    """C/D = 6 N with N every parameter (Hoffmann et al. 2022, C = 6ND)."""
    return 6.0 * n_params


def flops_kaplan(n_params_nonembed: int, n_layer: int, n_ctx: int, d_model: int) -> float:
    """C/D = 6 N + 6 n_layer n_ctx d_attn (Kaplan et al. 2020, Table 1, training = 3 x forward)."""
    return 6.0 * n_params_nonembed + 6.0 * n_layer * n_ctx * d_model


def flops_chinchilla(n_layer: int, d_model: int, n_head: int, n_ctx: int, vocab_size: int, d_ff: int | None = None,
                     *, n_kv_head: int | None = None, gated: bool = False, embeddings: bool = True,
                     logits: bool = True, softmax: bool = True) -> float:
    """Training FLOPs per token from Hoffmann et al. 2022 Appendix F (key size = d_model / n_head).

    `n_kv_head` (default n_head) sizes the K and V projections; `gated` counts a SwiGLU MLP (3 matmuls, not 2).
    """
    d_ff = 4 * d_model if d_ff is None else d_ff
    S, d, V, attn = n_ctx, d_model, vocab_size, d_model  # attn = key_size * n_head
    kv = attn * (n_head if n_kv_head is None else n_kv_head) // n_head  # key_size * n_kv_head
    per_layer = (2 * d * (attn + 2 * kv)  # Q, K, V projections
                 + 2 * S * attn  # key @ query logits
                 + (3 * n_head * S if softmax else 0)  # softmax
                 + 2 * S * attn  # softmax @ values
                 + 2 * attn * d  # output projection
                 + 2 * (3 if gated else 2) * d * d_ff)  # MLP (gate,) up and down
    forward = n_layer * per_layer + (2 * V * d if embeddings else 0) + (2 * d * V if logits else 0)
    return 3.0 * forward


def flops_per_token(config: GPTConfig, counts: dict[str, int] | None = None) -> dict[str, float]:
    """Every analytic convention for one model, keyed flops_6nd / flops_kaplan / flops_chinchilla (counts default
    to scalinglab.config.param_counts(config))."""
    counts = param_counts(config) if counts is None else counts
    return {
        "flops_6nd": flops_6nd(counts["n_params"]),
        "flops_kaplan": flops_kaplan(counts["n_params_nonembed"], config.n_layer, config.n_ctx, config.d_model),
        "flops_chinchilla": flops_chinchilla_of(config),
    }


def flops_chinchilla_of(config: GPTConfig, **terms: bool) -> float:
    """flops_chinchilla for one model config (its KV heads, and a gated MLP for llama); `terms` as there."""
    return flops_chinchilla(config.n_layer, config.d_model, config.n_head, config.n_ctx, config.vocab_size,
                            config.ff, n_kv_head=config.kv_heads, gated=config.family == "llama", **terms)


def flops_measured(model: GPT, n_ctx: int | None = None) -> float:
    """Measured training FLOPs per token: FlopCounterMode over one forward + backward of one sequence.

    Runs on a copy-free pass over `model` (its gradients are cleared afterwards). Attention goes through the math
    SDPA backend so the counter sees it (model.SmallHeadAttention, at small head sizes, is plain matmuls already).
    """
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    n_ctx = n_ctx or model.config.n_ctx
    device = next(model.parameters()).device
    idx = torch.zeros(1, n_ctx, dtype=torch.long, device=device)
    was_training = model.training
    model.train()
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        _, loss = model(idx, idx)
        loss.backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return counter.get_total_flops() / n_ctx
