"""FLOP conventions: Chinchilla Table A4 ratios, analytic vs measured, and the 6ND / Kaplan formulas."""
from __future__ import annotations

import pytest
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from scalinglab.config import param_counts
from scalinglab.flops import (flops_6nd, flops_chinchilla, flops_chinchilla_of, flops_kaplan, flops_measured,
                              flops_per_token)
from scalinglab.model import GPT, GPTConfig

# Hoffmann et al. 2022 Table A4 (n_layer, d_model, d_ff, n_head) -> FLOPs / 6ND, seq 2048, vocab 32000.
TABLE_A4 = [((10, 640, 2560, 10), 1.025), ((20, 1024, 4096, 16), 1.101), ((24, 1280, 5120, 10), 1.083),
            ((26, 1792, 7168, 14), 1.044), ((28, 2048, 8192, 16), 1.033), ((40, 3584, 14336, 28), 0.994)]


@pytest.mark.parametrize("shape, ratio", TABLE_A4)
def test_chinchilla_table_a4_ratios(shape, ratio):
    """Convention of docs/DESIGN.md: no embeddings or final logits in the FLOPs; N = every weight but the input
    embedding (so the unembedding V d counts), plus relative-position weights d^2 + 2d per layer."""
    n_layer, d, d_ff, n_head = shape
    seq, vocab = 2048, 32000
    n = n_layer * (4 * d * d + 2 * d * d_ff + d * d + 2 * d) + vocab * d
    flops = flops_chinchilla(n_layer, d, n_head, seq, vocab, d_ff, embeddings=False, logits=False)
    assert flops / flops_6nd(n) == pytest.approx(ratio, rel=0.005)


CONFIGS = [GPTConfig(2, 64, 2, 32, 256), GPTConfig(3, 96, 4, 48, 300, d_ff=200),
           GPTConfig(4, 128, 4, 64, 512, bias=False, tie_embeddings=False),
           GPTConfig(2, 64, 4, 32, 256, family="llama"),
           GPTConfig(3, 96, 4, 48, 300, family="llama", d_ff=200, n_kv_head=2, qk_norm=True, tie_embeddings=False),
           GPTConfig(2, 64, 4, 32, 256, n_kv_head=1, qk_norm=True)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["tied", "d_ff", "untied-nobias", "llama", "llama-gqa-qknorm-untied",
                                              "gpt2-gqa-qknorm"])
def test_chinchilla_count_matches_flop_counter(cfg):
    """FlopCounterMode counts matmuls only, so it sees neither the embedding lookup (2 V d per token forward,
    an index, not a matmul) nor the softmax (3 h S). Without those two terms the Appendix F count is all matmuls,
    attention in full (math SDPA backend, no causal halving on either side): the two must agree within 2%."""
    model = GPT(cfg)
    measured = flops_measured(model)
    matmuls_only = flops_chinchilla_of(cfg, embeddings=False, softmax=False)
    assert measured == pytest.approx(matmuls_only, rel=0.02)
    # The full count exceeds the measurement by exactly the embedding and softmax terms (training = 3x).
    full = flops_chinchilla_of(cfg)
    expected_gap = 3 * (2 * cfg.vocab_size * cfg.d_model + cfg.n_layer * 3 * cfg.n_head * cfg.n_ctx)
    assert full - measured == pytest.approx(expected_gap, rel=0.02)


def test_flop_counter_misses_fused_cpu_attention():
    """The trap from docs/DESIGN.md: with the default CPU SDPA kernel the counter sees no attention FLOPs at all,
    which is why flops_measured forces the math backend."""
    cfg = GPTConfig(2, 64, 2, 128, 256)
    model = GPT(cfg)
    idx = model.wte.weight.new_zeros(1, cfg.n_ctx).long()
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION), counter:
        model(idx, idx)[1].backward()
    fused = counter.get_total_flops() / cfg.n_ctx
    attention_scores = 3 * cfg.n_layer * 4 * cfg.n_ctx * cfg.d_model  # QK^T and AV, forward + backward
    assert flops_measured(model) - fused == pytest.approx(attention_scores, rel=1e-6)


def test_kaplan_and_6nd_formulas():
    cfg = GPTConfig(4, 128, 4, 256, 1024)
    counts = GPT(cfg).param_counts()
    per_token = flops_per_token(cfg, counts)
    assert per_token["flops_6nd"] == 6 * counts["n_params"]
    assert per_token["flops_kaplan"] == 6 * counts["n_params_nonembed"] + 6 * 4 * 256 * 128
    assert flops_kaplan(10, 1, 1, 1) == 66
    # Kaplan's count ~ 6N per token when d_model >> n_ctx / 12 (Kaplan 2020 section 2.1).
    big = GPTConfig(12, 4096, 32, 256, 1024)
    c_big = {"n_params": 0, "n_params_nonembed": 12 * 12 * 4096 ** 2}
    assert flops_per_token(big, c_big)["flops_kaplan"] / (6 * c_big["n_params_nonembed"]) < 1.01


@pytest.mark.parametrize("cfg", CONFIGS[3:], ids=["llama", "llama-gqa-qknorm-untied", "gpt2-gqa-qknorm"])
def test_matmul_count_is_exact_for_llama_and_grouped_query_attention(cfg):
    """Norms, rotary embeddings, SwiGLU's product and QK-norm are elementwise: neither side counts them, so the
    matmul-only Appendix F count (K/V projections over n_kv_head heads, 3 MLP matmuls for SwiGLU) is exact."""
    assert flops_measured(GPT(cfg)) == flops_chinchilla_of(cfg, embeddings=False, softmax=False)


def test_llama_mlp_and_kv_terms_of_appendix_f():
    """Against gpt2's count at the same shape: SwiGLU adds one d x d_ff matmul (2 d f forward), and g < h KV heads
    remove 2 x 2 d (h - g) k from the K and V projections; per layer (2 layers), training = 3 x forward."""
    gpt2 = GPTConfig(2, 64, 4, 32, 256, d_ff=96)
    llama = GPTConfig(2, 64, 4, 32, 256, d_ff=96, family="llama")
    gqa = GPTConfig(2, 64, 4, 32, 256, d_ff=96, family="llama", n_kv_head=1)
    n_layer, d, f, h, g, k = 2, 64, 96, 4, 1, 16
    assert flops_chinchilla_of(llama) - flops_chinchilla_of(gpt2) == 3 * n_layer * (2 * d * f)
    assert flops_chinchilla_of(llama) - flops_chinchilla_of(gqa) == 3 * n_layer * (2 * 2 * d * (h - g) * k)
    per_token = flops_per_token(gqa)  # counts default to the torch-free param_counts
    assert per_token["flops_6nd"] == 6 * param_counts(gqa)["n_params"]
    assert per_token["flops_kaplan"] == 6 * param_counts(gqa)["n_params_nonembed"] + 6 * 2 * 32 * 64
