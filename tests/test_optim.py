"""optim.FlatAdamW: the same AdamW as torch.optim.AdamW over the parameters, in the same state_dict layout."""
import pytest
import torch

from scalinglab.config import GPTConfig, TrainConfig
from scalinglab.model import GPT
from scalinglab.optim import FlatAdamW, adamw, clip_grad_norm, decay_groups

TRAIN = TrainConfig(weight_decay=0.1, beta1=0.9, beta2=0.95, eps=1e-8)


def batches(n, vocab=64, seed=0):
    """Sequences that count up from a random start (learnable in a few steps)."""
    g = torch.Generator().manual_seed(seed)
    data = (torch.randint(0, vocab, (n, 4, 1), generator=g) + torch.arange(17)) % vocab
    return [(d[:, :-1], d[:, 1:]) for d in data]


def train(cfg, flat, steps=8, clip=0.5):
    torch.manual_seed(0)
    model = GPT(cfg)
    opt = adamw(model, TRAIN, 1e-2, flat=flat)
    losses = []
    for x, y in batches(steps, cfg.vocab_size):
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return model, opt, losses


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_flat_adamw_trains_as_torch_adamw_and_saves_the_same_state(family):
    cfg = GPTConfig(n_layer=2, d_model=16, n_head=2, n_ctx=16, vocab_size=64, family=family)
    ref_model, ref_opt, ref_losses = train(cfg, flat=False)
    model, opt, losses = train(cfg, flat=True)
    assert isinstance(opt, FlatAdamW) and len([p for g in opt.param_groups for p in g["params"]]) == 2
    assert losses[-1] < losses[0] and max(abs(a - b) for a, b in zip(losses, ref_losses)) <= 1e-6
    for (name, a), b in zip(ref_model.state_dict().items(), model.state_dict().values()):
        # atol: the key bias has a zero gradient in exact arithmetic, so its rounding noise (x a clip factor that
        # differs in the last bit: the norm is summed in another order) moves it by up to ~lr * g / eps
        assert torch.allclose(a, b, atol=1e-4), name
    assert model.lm_head.weight is model.wte.weight  # the tie survives flattening
    ref_state, state = ref_opt.state_dict(), opt.state_dict()
    assert state["param_groups"] == ref_state["param_groups"] and state["state"].keys() == ref_state["state"].keys()
    for i, entry in ref_state["state"].items():
        for key, value in entry.items():
            assert state["state"][i][key].shape == value.shape
            assert torch.allclose(state["state"][i][key], value, atol=1e-6), (i, key)


def test_state_dicts_cross_load_and_training_continues_alike():
    """A resume point written by either optimizer loads into the other and the next steps agree."""
    cfg = GPTConfig(n_layer=1, d_model=16, n_head=2, n_ctx=16, vocab_size=64)
    ref_model, ref_opt, _ = train(cfg, flat=False)
    model = GPT(cfg)
    model.load_state_dict(ref_model.state_dict())
    opt = adamw(model, TRAIN, 3e-3, flat=True)
    opt.load_state_dict(ref_opt.state_dict())
    back = torch.optim.AdamW([{"params": g["params"]} for g in ref_opt.param_groups], fused=True)
    back.load_state_dict(opt.state_dict())  # and the flat form into torch's
    for (x, y) in batches(3, seed=1):
        for m, o in ((ref_model, ref_opt), (model, opt)):
            m(x, y)[1].backward()
            o.step()
            o.zero_grad()
    for a, b in zip(ref_model.parameters(), model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="other parameter groups"):
        opt.load_state_dict({"state": {}, "param_groups": ref_opt.state_dict()["param_groups"][:1]})


def test_gradients_detached_from_the_flat_buffer_are_given_back():
    """Lightning zeroes a module's gradients with set_to_none=True; the next zero_grad of the optimizer puts each
    parameter's view of the flat gradient back, so the following backward lands where AdamW reads."""
    cfg = GPTConfig(n_layer=1, d_model=16, n_head=2, n_ctx=16, vocab_size=64)
    model = GPT(cfg)
    opt = adamw(model, TRAIN, 1e-2, flat=True)
    model.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in model.parameters())
    opt.zero_grad()
    (x, y), = batches(1)
    model(x, y)[1].backward()
    flat_grads = torch.cat([f.grad for g in opt.param_groups for f in g["params"]])
    assert flat_grads.abs().sum() > 0
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()) if p.grad.abs().sum() > 0)


@pytest.mark.parametrize("max_norm", [1e-3, 1e3])
def test_clip_grad_norm_equals_torch_clip_grad_norm(max_norm):
    """Clipped (max_norm below the norm) and untouched (above it) alike, over flat buffers and plain parameters."""
    cfg = GPTConfig(n_layer=1, d_model=16, n_head=2, n_ctx=16, vocab_size=64)
    (x, y), = batches(1)
    results = []
    for flat in (False, True):
        torch.manual_seed(0)
        model = GPT(cfg)
        opt = adamw(model, TRAIN, 1e-3, flat=flat)
        model(x, y)[1].backward()
        reference = [p.grad.clone() for p in model.parameters()]
        copies = [torch.nn.Parameter(p.detach().clone()) for p in model.parameters()]
        for c, g in zip(copies, reference):
            c.grad = g.clone()
        expected = torch.nn.utils.clip_grad_norm_(copies, max_norm)
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in reference]))
        total = clip_grad_norm(opt, max_norm)
        assert torch.allclose(total, norm, rtol=1e-6) and torch.allclose(total, expected, rtol=1e-6)
        scale = min(1.0, max_norm / (norm.item() + 1e-6))
        for p, g, c in zip(model.parameters(), reference, copies):
            assert torch.allclose(p.grad, g * scale, rtol=1e-5, atol=1e-12)
            assert torch.allclose(p.grad, c.grad, rtol=1e-5, atol=1e-12)
        results.append(total)
    assert torch.allclose(results[0], results[1], rtol=1e-6)


@pytest.mark.parametrize("options", [dict(family="gpt2"), dict(family="llama", qk_norm=True, tie_embeddings=False)])
def test_weight_decay_goes_to_matrices_and_embeddings_even_when_a_sharding_flattens_them(options):
    cfg = GPTConfig(n_layer=2, d_model=16, n_head=2, n_ctx=16, vocab_size=64, **options)
    model = GPT(cfg)
    decay, rest = decay_groups(model)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in decay} == {n for n, p in model.named_parameters() if p.dim() >= 2}
    assert rest and all(p.dim() == 1 for p in rest)
    # FSDP with use_orig_params=True (Lightning's default) leaves each parameter a flat 1-D shard before
    # configure_optimizers runs: the groups must not change.
    for p in model.parameters():
        p.data = p.data.reshape(-1)
    flat_decay, flat_rest = decay_groups(model)
    assert [id(p) for p in flat_decay] == [id(p) for p in decay] and [id(p) for p in flat_rest] == [id(p) for p in rest]
