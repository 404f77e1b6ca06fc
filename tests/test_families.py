"""Model families (gpt2 | llama) and presets: exact torch-free parameter counts, the Llama pieces (rotary
embeddings, grouped-query attention, SwiGLU width), validation of the new fields, and presets as data."""
from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from scalinglab import resolvers  # noqa: F401  (registers ${preset:...}, which the model presets use)
from scalinglab.build import instantiate
from scalinglab.config import CONFIG_DIR, FAMILIES, GPTConfig, param_counts
from scalinglab.errors import ConfigError
from scalinglab.model import GPT, apply_rotary, rotary_tables
from scalinglab.presets import GPT2, LLAMA, PRESETS


def test_tinyllama_1_1b_has_1_100_048_384_parameters():
    """TinyLlama-1.1B (Zhang et al. 2024): 22 layers, d 2048, 32 heads with 4 KV heads, d_ff 5632, vocab 32000,
    untied: the published 1,100,048,384 parameters, from the config alone and from the module (meta device)."""
    cfg = GPTConfig.from_name("llama-1b", vocab_size=32000, n_ctx=2048)
    assert (cfg.n_layer, cfg.d_model, cfg.n_head, cfg.kv_heads, cfg.ff) == (22, 2048, 32, 4, 5632)
    counts = param_counts(cfg)
    assert counts["n_params"] == 1_100_048_384
    assert counts["n_params_embed"] == 2 * 32000 * 2048  # token embedding + untied unembedding, no positions
    with torch.device("meta"):
        assert GPT(cfg).param_counts() == counts


def test_gpt2_small_count_is_torch_free_too():
    counts = param_counts(GPTConfig(n_layer=12, d_model=768, n_head=12, n_ctx=1024, vocab_size=50257))
    assert counts["n_params"] == 124_439_808


GRID = list(itertools.product(FAMILIES, [None, True, False], [True, False], [False, True], [None, 1, 2], [None, 40]))


@pytest.mark.parametrize("family, bias, tie, qk_norm, n_kv_head, d_ff", GRID)
def test_torch_free_counts_equal_the_module(family, bias, tie, qk_norm, n_kv_head, d_ff):
    cfg = GPTConfig(2, 32, 4, 16, 50, d_ff=d_ff, bias=bias, tie_embeddings=tie, family=family, qk_norm=qk_norm,
                    n_kv_head=n_kv_head)
    assert GPT(cfg).param_counts() == param_counts(cfg)


def test_llama_has_no_biases_no_positions_and_a_swiglu_of_8_thirds_d():
    cfg = GPTConfig(2, 96, 4, 32, 100, family="llama")
    model = GPT(cfg)
    assert model.wpe is None and not any(name.endswith(".bias") for name, _ in model.named_parameters())
    assert isinstance(model.ln_f, torch.nn.RMSNorm)
    assert cfg.ff == 256 and model.blocks[0].mlp.up.weight.shape == (2 * 256, 96)  # 8/3 * 96 = 256: gate and up
    assert GPTConfig(2, 100, 2, 32, 100, family="llama").ff == 272  # 266.7 rounded up to a multiple of 16
    assert GPTConfig(2, 2048, 32, 32, 100, family="llama", ff_multiple_of=256).ff == 5632  # TinyLlama's d_ff
    assert GPTConfig(2, 96, 4, 32, 100).ff == 384 and GPTConfig(2, 96, 4, 32, 100).use_bias  # gpt2: 4 d, biases


def test_rotary_scores_depend_only_on_relative_position():
    """<R(m) q, R(n) k> = <R(m + s) q, R(n + s) k> (Su et al. 2021, eq. 16), and R(0) is the identity."""
    torch.manual_seed(0)
    cos, sin = rotary_tables(16, 64, 10000.0)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def rotated(x, t):
        return apply_rotary(x, cos[t:t + 1], sin[t:t + 1])

    assert torch.equal(rotated(q, 0), q)
    score = (rotated(q, 9) * rotated(k, 4)).sum()
    for shift in (1, 17, 50):
        assert torch.allclose((rotated(q, 9 + shift) * rotated(k, 4 + shift)).sum(), score, atol=1e-5)
    assert not torch.allclose((rotated(q, 9) * rotated(k, 5)).sum(), score, atol=1e-3)


def test_grouped_query_attention_equals_repeated_key_value_heads():
    """With g < h KV heads, a model equals the full-head model whose K/V weights repeat each group's h/g times."""
    torch.manual_seed(0)
    gqa = GPT(GPTConfig(1, 32, 4, 16, 50, family="llama", n_kv_head=2)).eval()
    full = GPT(GPTConfig(1, 32, 4, 16, 50, family="llama")).eval()
    state = gqa.state_dict()
    q, k, v = state["blocks.0.attn.qkv.weight"].split([32, 16, 16])
    repeat = [k.view(2, 8, 32).repeat_interleave(2, 0).reshape(32, 32) for k in (k, v)]
    full.load_state_dict({**state, "blocks.0.attn.qkv.weight": torch.cat([q, *repeat])})
    x = torch.randint(0, 50, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(gqa(x), full(x))


@pytest.mark.parametrize("kwargs, field, hint", [
    (dict(family="lama"), "model.family", "did you mean llama"),
    (dict(n_kv_head=3), "model.n_kv_head", "divisor"),
    (dict(n_kv_head=0), "model.n_kv_head", "divisor"),
    (dict(family="llama", d_model=36, n_head=4), "model.n_head", "odd"),
    (dict(ff_multiple_of=0), "model.ff_multiple_of", "whole number > 0"),
    (dict(qk_norm="yes"), "model.qk_norm", "true or false"),
    (dict(bias="no"), "model.bias", "true or false"),
    (dict(rope_theta=0), "model.rope_theta", "> 0"),
    (dict(norm_eps=-1e-5), "model.norm_eps", "> 0"),
])
def test_invalid_family_fields_name_the_field(kwargs, field, hint):
    with pytest.raises(ConfigError) as err:
        GPTConfig(**{**dict(n_layer=2, d_model=32, n_head=4, n_ctx=16, vocab_size=50), **kwargs})
    assert err.value.field == field and hint in str(err.value) and "Fix:" in str(err.value)


def test_from_name_applies_overrides_and_names_unknown_presets():
    cfg = GPTConfig.from_name("tiny", vocab_size=512, n_ctx=64, n_layer=3)
    assert (cfg.family, cfg.n_layer, cfg.d_model, cfg.n_head, cfg.n_ctx) == ("gpt2", 3, 64, 2, 64)
    with pytest.raises(ConfigError, match="did you mean tiny") as err:
        GPTConfig.from_name("tinny", vocab_size=512, n_ctx=64)
    assert err.value.field == "model.name"
    with pytest.raises(ConfigError) as err:
        GPTConfig.from_name("tiny", n_ctx=64)
    assert err.value.field == "model.vocab_size"


def test_preset_tables_span_the_ladders_and_llama_names_state_their_size():
    """Sizes come from the code: each llama-<N> preset's non-embedding N is within 30% of its name."""
    nonembed = {name: param_counts(GPTConfig.from_name(name, vocab_size=512, n_ctx=256))["n_params_nonembed"]
                for name in PRESETS}
    assert min(nonembed[n] for n in GPT2) < 20_000 and max(nonembed[n] for n in GPT2) > 80_000_000
    for name in LLAMA:
        value, unit = re.fullmatch(r"llama-(\d+)([kmb])", name).groups()
        stated = int(value) * {"k": 1e3, "m": 1e6, "b": 1e9}[unit]
        assert abs(nonembed[name] - stated) / stated < 0.3, (name, nonembed[name])
    assert min(nonembed[n] for n in LLAMA) < 20_000 and max(nonembed[n] for n in LLAMA) > 9e8
    ordered = [nonembed[n] for n in LLAMA]
    assert ordered == sorted(ordered)


def test_every_preset_is_a_thin_hydra_option_whose_fields_come_from_the_table(repo):
    files = {p.stem for p in (Path(CONFIG_DIR) / "model").glob("*.yaml") if not p.stem.startswith("_")}
    assert files == set(PRESETS)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for name in ("nano", "gpt2", "llama-100k", "llama-1b"):
            text = (Path(CONFIG_DIR) / "model" / f"{name}.yaml").read_text()
            assert not re.search(r"\d", text.replace(name, "")), text  # no size written in the file
            cfg = compose("config", overrides=[f"model={name}", "data.vocab_size=777"])
            assert instantiate(cfg.model) == GPTConfig.from_name(name, vocab_size=777, n_ctx=256)
        # Field overrides on a preset still work, and switch the family's defaults with it.
        cfg = instantiate(compose("config", overrides=["model=nano", "model.family=llama", "model.n_layer=3"]).model)
        assert (cfg.family, cfg.n_layer, cfg.d_model, cfg.use_bias) == ("llama", 3, 32, False)


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_and_backward_under_bf16_autocast(family):
    """Rotary tables and norms run in fp32; q and k are cast back, so attention sees one dtype."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(2, 32, 4, 16, 50, family=family, qk_norm=True, n_kv_head=2))
    x = torch.randint(0, 50, (2, 17))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x[:, :-1])
        fused, loss = model(x[:, :-1], x[:, 1:])  # training keeps the fused head under autocast (fp32 loss)
    assert logits.dtype == torch.bfloat16 and fused is None and loss.dtype == torch.float32
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_an_unknown_preset_name_is_named_before_anything_runs():
    from scalinglab.validate import validate
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["model.name=tinny"])
    with pytest.raises(ConfigError, match="did you mean tiny") as err:
        validate(cfg)
    assert err.value.field == "model.name"
