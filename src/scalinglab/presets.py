"""Named model sizes as data: one table per family, looked up by `GPTConfig.from_name` (litgpt's `Config.from_name`).

An entry gives only the shape (family, n_layer, d_model, n_head and whatever differs from GPTConfig's defaults);
n_ctx and vocab_size are run settings (`model.n_ctx`, `data.vocab_size`). Parameter counts are never written here:
`scalinglab.config.param_counts` computes them, and `python -m scalinglab.sweep presets` prints them.

- gpt2: the ladder nano ... gpt2 (GPT-2 small's shape: 12 layers, d_model 768, 12 heads; Radford et al. 2019).
- llama: llama-10k ... llama-1b, named by their non-embedding N (Kaplan's N; a test keeps each name within 30% of
  its count). Width / depth ~ 32-100 and head_dim 16-64 as the size grows; llama-1b is TinyLlama-1.1B's shape
  (22 layers, d_model 2048, 32 heads with 4 KV heads, d_ff 5632, untied; Zhang et al. 2024, arXiv:2401.02385).
"""
from __future__ import annotations

GPT2 = {
    "nano": dict(n_layer=1, d_model=32, n_head=2),
    "micro": dict(n_layer=2, d_model=48, n_head=2),
    "tiny": dict(n_layer=2, d_model=64, n_head=2),
    "mini": dict(n_layer=3, d_model=96, n_head=3),
    "small": dict(n_layer=4, d_model=128, n_head=4),
    "medium": dict(n_layer=6, d_model=192, n_head=6),
    "base": dict(n_layer=6, d_model=256, n_head=4),
    "large": dict(n_layer=8, d_model=384, n_head=6),
    "xl": dict(n_layer=12, d_model=512, n_head=8),
    "gpt2": dict(n_layer=12, d_model=768, n_head=12),
}

LLAMA = {
    "llama-10k": dict(n_layer=1, d_model=28, n_head=2),
    "llama-30k": dict(n_layer=2, d_model=32, n_head=2),
    "llama-100k": dict(n_layer=2, d_model=64, n_head=4),
    "llama-300k": dict(n_layer=3, d_model=96, n_head=4),
    "llama-1m": dict(n_layer=4, d_model=144, n_head=6),
    "llama-3m": dict(n_layer=6, d_model=192, n_head=6),
    "llama-10m": dict(n_layer=8, d_model=320, n_head=10),
    "llama-30m": dict(n_layer=10, d_model=512, n_head=8),
    "llama-100m": dict(n_layer=14, d_model=768, n_head=12),
    "llama-300m": dict(n_layer=20, d_model=1152, n_head=18, ff_multiple_of=256),
    "llama-1b": dict(n_layer=22, d_model=2048, n_head=32, n_kv_head=4, d_ff=5632, tie_embeddings=False),
}

PRESETS: dict[str, dict] = {**{k: {"family": "gpt2", **v} for k, v in GPT2.items()},
                            **{k: {"family": "llama", **v} for k, v in LLAMA.items()}}
