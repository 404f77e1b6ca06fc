"""GPT: exact parameter counts, causality, config errors, and that it can learn (overfit one batch)."""
from __future__ import annotations

import pytest
import torch

from scalinglab.errors import ConfigError
from scalinglab.model import GPT, GPTConfig


def gpt2_small() -> GPTConfig:
    return GPTConfig(n_layer=12, d_model=768, n_head=12, n_ctx=1024, vocab_size=50257, bias=True,
                     tie_embeddings=True)


def test_gpt2_small_has_124_439_808_parameters():
    counts = GPT(gpt2_small()).param_counts()
    assert counts["n_params"] == 124_439_808  # docs/DESIGN.md section 2 (the published GPT-2 small count)
    # Kaplan's N: 12 n_layer d^2 (QKV 3d^2 + out d^2 + MLP 8d^2) plus what else is not embedding:
    # per layer 9d biases (QKV 3d, out d, MLP up 4d, down d) and two LayerNorms (4d); the final LayerNorm (2d).
    L, d = 12, 768
    assert counts["n_params_nonembed"] == 12 * L * d * d + L * (9 * d + 4 * d) + 2 * d
    assert counts["n_params_embed"] == 50257 * 768 + 1024 * 768  # wte (tied with the head) + wpe
    assert counts["n_params"] == counts["n_params_nonembed"] + counts["n_params_embed"]


def test_untied_head_counts_as_embedding():
    tied = GPT(GPTConfig(2, 32, 2, 16, 100)).param_counts()
    untied = GPT(GPTConfig(2, 32, 2, 16, 100, tie_embeddings=False)).param_counts()
    assert untied["n_params"] - tied["n_params"] == 100 * 32
    assert untied["n_params_nonembed"] == tied["n_params_nonembed"]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_causality_future_tokens_never_change_past_logits(family):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, d_model=32, n_head=4, n_ctx=16, vocab_size=50, family=family)).eval()
    x = torch.randint(0, 50, (2, 16))
    for t in (0, 5, 14):
        y = x.clone()
        y[:, t + 1:] = torch.randint(0, 50, (2, 15 - t))
        assert not torch.equal(x[:, t + 1:], y[:, t + 1:])
        with torch.no_grad():
            a, b = model(x), model(y)
        torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=1e-6)
        assert not torch.allclose(a[:, t + 1:], b[:, t + 1:])


@pytest.mark.parametrize("kwargs, field", [
    (dict(d_model=30, n_head=4), "model.n_head"),
    (dict(n_layer=0), "model.n_layer"),
    (dict(d_model=-8), "model.d_model"),
    (dict(vocab_size=0), "model.vocab_size"),
    (dict(n_ctx=0), "model.n_ctx"),
    (dict(d_ff=0), "model.d_ff"),
    (dict(dropout=1.5), "model.dropout"),
])
def test_invalid_config_names_the_field(kwargs, field):
    base = dict(n_layer=2, d_model=32, n_head=4, n_ctx=16, vocab_size=50)
    with pytest.raises(ConfigError) as err:
        GPTConfig(**{**base, **kwargs})
    assert err.value.field == field
    assert "Fix:" in str(err.value)


def test_sequence_longer_than_n_ctx_is_refused():
    model = GPT(GPTConfig(1, 16, 2, 8, 20))
    with pytest.raises(ValueError, match="n_ctx"):
        model(torch.zeros(1, 9, dtype=torch.long))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_tiny_model_overfits_one_batch(family):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, d_model=64, n_head=4, n_ctx=32, vocab_size=64, family=family))
    x = torch.randint(0, 64, (4, 33))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        _, loss = model(x[:, :-1], x[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05  # from ln(64) = 4.16 nats at init


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("tie", [True, False])
def test_fused_head_and_loss_match_the_unfused_ones(tie, family):
    """LinearCrossEntropy (training path) gives the loss and gradients of lm_head + F.cross_entropy."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, d_model=32, n_head=2, n_ctx=16, vocab_size=3000, tie_embeddings=tie,
                          family=family))
    x = torch.randint(0, 3000, (5, 17))
    logits_free, loss = model(x[:, :-1], x[:, 1:])  # 80 rows, one chunk of 349; many chunks below
    assert logits_free is None
    loss.backward()
    fused = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    logits = model(x[:, :-1])  # no targets: the logits, then the unfused loss
    assert logits.shape == (5, 16, 3000)
    reference = torch.nn.functional.cross_entropy(logits.view(-1, 3000), x[:, 1:].reshape(-1))
    reference.backward()
    assert torch.allclose(loss, reference, atol=1e-6, rtol=0)
    for n, p in model.named_parameters():
        assert torch.allclose(fused[n], p.grad, atol=1e-6, rtol=1e-4), n
    # Many chunks (vocab 2**16 -> 32 rows a chunk) give the same loss as one pass.
    big = GPT(GPTConfig(n_layer=1, d_model=16, n_head=2, n_ctx=16, vocab_size=2**16))
    y = torch.randint(0, 2**16, (4, 17))
    _, chunked = big(y[:, :-1], y[:, 1:])
    with torch.no_grad():
        _, whole = big(y[:, :-1], y[:, 1:])
    assert torch.allclose(chunked, whole, atol=1e-5, rtol=0)


def test_fused_head_under_bf16_autocast_matches_the_unfused_bf16_head():
    """Under CPU bf16 autocast training keeps the fused head (matmuls in bf16, softmax in fp32): its loss and
    gradients are the unfused bf16 head's within bf16 rounding, and the loss is fp32."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, d_model=64, n_head=2, n_ctx=32, vocab_size=512))
    x = torch.randint(0, 512, (4, 33))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits_free, loss = model(x[:, :-1], x[:, 1:])
    assert logits_free is None and loss.dtype == torch.float32
    loss.backward()
    fused = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x[:, :-1])
        reference = torch.nn.functional.cross_entropy(logits.float().view(-1, 512), x[:, 1:].reshape(-1))
    reference.backward()
    assert abs(loss.item() - reference.item()) < 1e-3
    for n, p in model.named_parameters():
        assert (fused[n] - p.grad).norm() <= 2e-2 * p.grad.norm() + 1e-8, n


def test_attention_on_cpu_runs_in_fp32_under_bf16_autocast():
    """bf16 q, k, v give the fp32 kernel's result rounded to bf16 (not the bf16 kernel's), with bf16 gradients."""
    from scalinglab.model import attention
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 32, 8).bfloat16().requires_grad_() for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention(q, k, v)
    expected = attention(q.float(), k.float(), v.float())  # the fp32 kernel, outside autocast
    assert out.dtype == torch.bfloat16 and torch.equal(out, expected.bfloat16())
    out.float().sum().backward()
    assert q.grad.dtype == torch.bfloat16 and torch.isfinite(q.grad.float()).all()


@pytest.mark.parametrize("shape", [(2, 2, 16, 8), (1, 3, 33, 4)])
def test_small_head_attention_has_the_exact_gradients_of_causal_softmax_attention(shape):
    """gradcheck in float64 (finite differences against the hand-written backward), and the same output as SDPA."""
    from scalinglab.model import SmallHeadAttention
    torch.manual_seed(0)
    q, k, v = (torch.randn(*shape, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda *qkv: SmallHeadAttention.apply(*qkv)[0], (q, k, v))
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(SmallHeadAttention.apply(q, k, v)[0], expected, atol=1e-12)


@pytest.mark.parametrize("head_dim, kv_heads, dropout, small", [(8, 4, 0.0, True), (16, 4, 0.0, False),
                                                                 (8, 2, 0.0, False), (8, 4, 0.1, False)])
def test_attention_takes_the_small_head_kernel_only_where_it_applies(monkeypatch, head_dim, kv_heads, dropout,
                                                                     small):
    """At head_dim <= SMALL_HEAD_DIM, one key/value head per query head and no dropout: SmallHeadAttention, with
    SDPA's output and gradients (fp32, within 1e-5); otherwise SDPA itself."""
    import scalinglab.model as model
    calls = []
    monkeypatch.setattr(model.SmallHeadAttention, "apply",
                        lambda *a, f=model.SmallHeadAttention.apply: calls.append(1) or f(*a))
    torch.manual_seed(0)
    q = torch.randn(2, 4, 64, head_dim, requires_grad=True)
    k, v = (torch.randn(2, kv_heads, 64, head_dim, requires_grad=True) for _ in range(2))
    torch.manual_seed(1)
    out = model.attention(q, k, v, dropout)
    assert bool(calls) is small
    if small:
        grads = torch.autograd.grad(out.square().sum(), (q, k, v))
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        assert torch.allclose(out, expected, atol=1e-5)
        for g, e in zip(grads, torch.autograd.grad(expected.square().sum(), (q, k, v))):
            assert torch.allclose(g, e, atol=1e-5)
