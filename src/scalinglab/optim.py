"""AdamW with decoupled weight decay on matrices only (Loshchilov & Hutter 2019, arXiv:1711.05101), and its fast
form for one device: every parameter a view into one flat buffer per parameter group, every gradient a view into
one flat gradient buffer.

At the reproduction's smallest shapes (d_model 16-32: a few thousand to 100K parameters in ~17 tensors) the
optimizer step and the gradient-norm clip are per-tensor loops whose cost is dispatch, not arithmetic. Over flat
buffers each is a few kernels per group. At d_model 16 on one CPU thread (scripts/bench_train.py --shapes repro
--parts): AdamW's for-loop 691 us a step, fused per tensor 167 us, fused over the flat buffers 99 us; the clip
186 us (torch, 17 tensors) and 70 us (`clip_grad_norm`, 2 buffers); forward and backward ~7,900 us. The arithmetic
is AdamW's, element for element; only the grouping of the work differs.

The optimizer's state_dict keeps the per-parameter layout of torch.optim.AdamW over the same groups (matrices
first, then vectors, each in `model.parameters()` order), so checkpoints read and write as before: a resume point
of either form loads into the other, and stacked training (stacked.py) reads it by position.
"""
from __future__ import annotations

import torch

from scalinglab.config import TrainConfig

__all__ = ["FlatAdamW", "adamw", "clip_grad_norm", "decay_groups", "decayed"]


def decayed(model: torch.nn.Module) -> set[int]:
    """The ids of the parameters weight decay applies to: the weights of Linear and Embedding modules (matrices and
    embeddings), not biases or norms. Decided by the owning module, not by `p.dim()`: under FSDP (Lightning's
    default use_orig_params=True) every parameter is a flattened 1-D shard by the time the optimizer is built."""
    return {id(m.weight) for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Embedding))}


def decay_groups(model: torch.nn.Module) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """(decayed, the rest), each in `model.parameters()` order (a tied embedding once): AdamW's two groups, and the
    order of a Lightning checkpoint's per-parameter optimizer state."""
    params, decay = list(model.parameters()), decayed(model)
    return [p for p in params if id(p) in decay], [p for p in params if id(p) not in decay]


def adamw(model: torch.nn.Module, train: TrainConfig, lr: float, flat: bool = True) -> torch.optim.AdamW:
    """AdamW (`fused=True`: one kernel per tensor list, fastest or tied on one CPU thread, bench_train --levers)
    with weight decay on the matrices. `flat`: over flat buffers (FlatAdamW; the model's parameters become views
    into them), for a model on one device that nothing else has wrapped; otherwise over the parameters as they
    are (data-parallel strategies bucket and shard the gradients themselves)."""
    decay, no_decay = decay_groups(model)
    kwargs = dict(lr=lr, betas=(train.beta1, train.beta2), eps=train.eps, fused=True)
    groups = [{"params": decay, "weight_decay": train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if flat:
        return FlatAdamW(model, groups, **kwargs)
    return torch.optim.AdamW(groups, **kwargs)


@torch.no_grad()
def clip_grad_norm(optimizer: torch.optim.Optimizer, max_norm: float) -> torch.Tensor:
    """Scale every gradient of `optimizer`'s parameters by min(1, max_norm / (||g||_2 + 1e-6)), ||g|| over all of
    them (Pascanu et al. 2013, arXiv:1211.5063); returns ||g||. torch.nn.utils.clip_grad_norm_'s arithmetic, without
    a host sync and without its grouping by device and dtype: at d_model 16 on one CPU thread 70 us a step over
    FlatAdamW's two buffers, against 186 us for torch's over the model's 17 tensors (bench_train.py --parts)."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norms = [torch.linalg.vector_norm(g, dtype=torch.float32) for g in grads]
    total = torch.linalg.vector_norm(torch.stack([n.to(norms[0].device) for n in norms]))
    coef = (max_norm / (total + 1e-6)).clamp_(max=1.0)
    for g in grads:
        g.mul_(coef.to(g.device, g.dtype))
    return total


class FlatAdamW(torch.optim.AdamW):
    """torch.optim.AdamW over one flat buffer per (group, dtype, device); the model's parameters become views
    into the buffers and their `.grad` views into flat gradient buffers, which backward accumulates into.

    `zero_grad` therefore zeroes the buffers in place (the views must stay); `state_dict`/`load_state_dict`
    speak the per-parameter layout of torch.optim.AdamW over `param_groups` (see the module docstring).
    """

    def __init__(self, model: torch.nn.Module, param_groups: list[dict], **kwargs):
        owners: dict[int, list[tuple[torch.nn.Module, str]]] = {}
        for module in model.modules():
            for name, p in module._parameters.items():
                if p is not None:
                    owners.setdefault(id(p), []).append((module, name))
        self.layout: list[list[tuple[int, int, torch.Size]]] = []  # per group: (flat index, offset, shape) per param
        self.grad_views: list[tuple[torch.nn.Parameter, torch.Tensor]] = []  # (parameter, its slice of a flat grad)
        flat_groups = []
        for group in param_groups:
            params = group["params"]
            sizes: dict[tuple, int] = {}  # (dtype, device) -> elements so far
            slots = []
            for p in params:
                key = (p.dtype, p.device)
                slots.append((key, sizes.get(key, 0)))
                sizes[key] = sizes.get(key, 0) + p.numel()
            buffers = {}  # (dtype, device) -> its flat buffer, in order of first appearance
            for key in sizes:
                members = [p for p in params if (p.dtype, p.device) == key]
                buffers[key] = torch.nn.Parameter(torch.cat([p.detach().reshape(-1) for p in members]),
                                                  requires_grad=any(p.requires_grad for p in members))
                buffers[key].grad = torch.zeros_like(buffers[key])
            index = {key: i for i, key in enumerate(buffers)}
            layout = []
            for p, (key, start) in zip(params, slots):
                flat = buffers[key]
                view = torch.nn.Parameter(flat.data[start:start + p.numel()].view_as(p), requires_grad=p.requires_grad)
                view.grad = flat.grad[start:start + p.numel()].view_as(p)
                self.grad_views.append((view, view.grad))
                for module, name in owners[id(p)]:
                    module._parameters[name] = view
                layout.append((index[key], start, p.shape))
            self.layout.append(layout)
            flat_groups.append({**group, "params": list(buffers.values())})
        super().__init__(flat_groups, **kwargs)

    @torch.no_grad()
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the flat gradient buffers in place, whatever `set_to_none` (the parameters' `.grad` are views into
        them), and give back its view to any parameter whose `.grad` something else set to None or replaced."""
        for group in self.param_groups:
            for flat in group["params"]:
                flat.grad.zero_()
        for p, view in self.grad_views:
            if p.grad is not view:
                p.grad = view

    def state_dict(self) -> dict:
        """torch.optim.AdamW's state_dict over the model's parameters (one entry per parameter, in order)."""
        flat_state = super().state_dict()
        state, groups, index = {}, [], 0
        for group, saved, layout in zip(self.param_groups, flat_state["param_groups"], self.layout):
            ids = []
            for flat_index, start, shape in layout:
                entry = flat_state["state"].get(saved["params"][flat_index])
                if entry is not None:
                    n = shape.numel()
                    state[index] = {key: (value if key == "step" else value[start:start + n].view(shape)).clone()
                                    for key, value in entry.items()}
                ids.append(index)
                index += 1
            groups.append({**saved, "params": ids})
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a per-parameter AdamW state_dict (this class's or torch.optim.AdamW's over the same groups)."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.layout) or any(
                len(g["params"]) != len(layout) for g, layout in zip(saved_groups, self.layout)):
            raise ValueError("the optimizer state holds other parameter groups than this model's")
        flat_state, groups, index = {}, [], 0
        for group, saved, layout in zip(self.param_groups, saved_groups, self.layout):
            entries = [state_dict["state"].get(i) for i in saved["params"]]
            for flat_index, flat in enumerate(group["params"]):
                members = [(entry, start) for entry, (f, start, _) in zip(entries, layout) if f == flat_index]
                if all(entry is None for entry, _ in members):
                    continue
                if any(entry is None for entry, _ in members):
                    raise ValueError("the optimizer state covers only some parameters of a group")
                first, ordered = members[0][0], [entry for entry, _ in sorted(members, key=lambda m: m[1])]
                flat_state[index + flat_index] = {
                    key: (torch.cat([entry[key].reshape(-1) for entry in ordered]) if key != "step" else
                          first[key].clone() if torch.is_tensor(first[key]) else first[key])  # never a live counter
                    for key in first}
            groups.append({**saved, "params": list(range(index, index + len(group["params"])))})
            index += len(group["params"])
        super().load_state_dict({"state": flat_state, "param_groups": groups})
