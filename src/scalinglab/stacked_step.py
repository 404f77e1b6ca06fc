"""K same-shape models trained as one: stacked weights, one AdamW state per member, one step for all.

The weights of all members live in one flat (K, P) tensor; each parameter is a (K, *shape) view of it, so the
forward pass is `torch.func.vmap` of `torch.func.functional_call` over the views (any nn.Module whose
`forward(idx)` returns logits stacks, whatever its family), the backward pass is ordinary autograd, and gradient
clipping and AdamW are a few elementwise operations on (K, P) tensors whatever the number of parameters (on a
GPU, small models are launch-bound: this is where stacking pays). Per member k, exactly as alone:

- loss_k = mean cross-entropy of member k's own batch (the plain loss; the fused head of model.py is an
  autograd.Function without a vmap rule, and equals it within float rounding);
- clipping: g_k *= min(1, c / (||g_k||_2 + 1e-6)) (torch.nn.utils.clip_grad_norm_, as Lightning calls it);
- AdamW (Loshchilov & Hutter 2019, as torch.optim.AdamW): theta *= 1 - lr_k wd on matrices only,
  m = beta1 m + (1 - beta1) g, v = beta2 v + (1 - beta2) g^2,
  theta -= lr_k / (1 - beta1^t_k) * m / (sqrt(v) / sqrt(1 - beta2^t_k) + eps), with t_k member k's own step count.
"""
from __future__ import annotations

import math
import warnings
from contextlib import nullcontext

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, vmap

from scalinglab.optim import decayed

__all__ = ["Stack", "OptimizerSettings"]


class OptimizerSettings:
    """AdamW and clipping settings shared by every member of a stack (configs/train: beta1, beta2, eps,
    weight_decay, grad_clip; 0 or None turns clipping off)."""

    def __init__(self, beta1: float, beta2: float, eps: float, weight_decay: float, grad_clip: float | None):
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.weight_decay, self.grad_clip = float(weight_decay), float(grad_clip or 0.0)

    @classmethod
    def of(cls, train) -> "OptimizerSettings":
        """The settings of a config.TrainConfig."""
        return cls(train.beta1, train.beta2, train.eps, train.weight_decay, train.grad_clip)


class Stack:
    """The trainable state of K members: weights (K, P), AdamW moments (K, P) and each member's step count.

    `models` are K modules of one shape (their current weights are copied in); the first also serves as the
    template the stacked weights are called through. `autocast` is a dtype (e.g. torch.bfloat16) for mixed
    precision, or None for full precision.
    """

    def __init__(self, models: list[nn.Module], settings: OptimizerSettings, autocast: torch.dtype | None = None):
        self.template, self.settings, self.autocast = models[0], settings, autocast
        named = list(models[0].named_parameters())  # a tied weight appears once
        self.names = [name for name, _ in named]
        self.shapes = {name: p.shape for name, p in named}
        self.offsets, total = {}, 0
        for name, p in named:
            self.offsets[name] = (total, total + p.numel())
            total += p.numel()
        device = named[0][1].device
        self.weights = torch.empty(len(models), total, device=device)
        self.exp_avg = torch.zeros_like(self.weights)
        self.exp_avg_sq = torch.zeros_like(self.weights)
        self.steps = [0] * len(models)
        decay, decays = torch.zeros(total, device=device), decayed(models[0])
        for name, p in named:
            if id(p) in decays:  # as LanguageModel's AdamW (optim.decayed)
                decay[slice(*self.offsets[name])] = 1.0
        self.decay = decay
        self.buffers = {name: torch.stack([dict(m.named_buffers())[name] for m in models])
                        for name, _ in models[0].named_buffers()}
        with torch.no_grad():
            for k, model in enumerate(models):
                self.load_weights(k, model)
        self._views()

    @property
    def k(self) -> int:
        return self.weights.shape[0]

    def _views(self) -> None:
        """(K, *shape) leaf views of the flat weights, one per parameter (their .grad is what backward fills)."""
        self.params = {}
        for name in self.names:
            start, end = self.offsets[name]
            view = self.weights[:, start:end].view(self.k, *self.shapes[name])
            self.params[name] = view.requires_grad_()

    # -- one step --------------------------------------------------------------------------------------------
    def _loss(self, params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(self.template, (params, buffers), (x,))
        return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each member's loss on its own batch: x, y (K, B, T) token ids -> (K,)."""
        cast = torch.autocast(x.device.type, dtype=self.autocast) if self.autocast else nullcontext()
        with cast, warnings.catch_warnings():
            # CPU flash attention has no batching rule: vmap loops over the members there (measured faster than
            # the math backend, which does batch; docs/SWEEPS.md).
            warnings.filterwarnings("ignore", message=".*batching rule.*scaled_dot_product")
            return vmap(self._loss, randomness="different")(self.params, self.buffers, x, y)

    def step(self, x: torch.Tensor, y: torch.Tensor, lrs: list[float]) -> torch.Tensor:
        """One optimizer step of every member at its own learning rate; returns the (K,) losses before it
        (on the device: reading them is the caller's choice of when to wait for the device)."""
        losses = self.losses(x, y)
        losses.sum().backward()  # members share no weights: the sum's gradient is each member's own
        with torch.no_grad():
            grad = torch.cat([self.params[name].grad.reshape(self.k, -1) for name in self.names], dim=1)
            for name in self.names:
                self.params[name].grad = None
            self._clip(grad)
            self._adamw(grad, lrs)
        return losses.detach()

    def _clip(self, grad: torch.Tensor) -> None:
        if self.settings.grad_clip > 0:
            norm = torch.linalg.vector_norm(grad, dim=1, keepdim=True)
            grad.mul_(torch.clamp(self.settings.grad_clip / (norm + 1e-6), max=1.0))

    def _adamw(self, grad: torch.Tensor, lrs: list[float]) -> None:
        s = self.settings
        self.steps = [t + 1 for t in self.steps]
        per_member = [lrs, [lr / (1.0 - s.beta1 ** t) for lr, t in zip(lrs, self.steps)],
                      [math.sqrt(1.0 - s.beta2 ** t) for t in self.steps]]
        # One host-to-device copy per step: (3, K, 1) = LR, step size, sqrt of the second bias correction.
        lr, step_size, bias2_sqrt = torch.tensor(per_member, dtype=self.weights.dtype)[..., None].to(
            self.weights.device, non_blocking=True)
        if s.weight_decay:
            self.weights.mul_(1.0 - lr * s.weight_decay * self.decay)
        self.exp_avg.lerp_(grad, 1.0 - s.beta1)
        self.exp_avg_sq.mul_(s.beta2).addcmul_(grad, grad, value=1.0 - s.beta2)
        denom = (self.exp_avg_sq.sqrt() / bias2_sqrt).add_(s.eps)
        self.weights.addcdiv_(self.exp_avg * step_size, denom, value=-1.0)

    # -- members in and out ----------------------------------------------------------------------------------
    def keep(self, members: list[int]) -> None:
        """Go on with these members only (in this order): a finished member leaves the stack."""
        index = torch.tensor(members, device=self.weights.device)
        self.weights = self.weights.index_select(0, index)
        self.exp_avg = self.exp_avg.index_select(0, index)
        self.exp_avg_sq = self.exp_avg_sq.index_select(0, index)
        self.buffers = {name: b.index_select(0, index) for name, b in self.buffers.items()}
        self.steps = [self.steps[i] for i in members]
        self._views()

    def _slice(self, flat: torch.Tensor, k: int, name: str) -> torch.Tensor:
        return flat[k, slice(*self.offsets[name])].view(self.shapes[name])

    @torch.no_grad()
    def load_weights(self, k: int, model: nn.Module) -> None:
        for name, p in model.named_parameters():
            self._slice(self.weights, k, name).copy_(p)

    @torch.no_grad()
    def store_weights(self, k: int, model: nn.Module) -> None:
        """Copy member k's weights into `model` (to evaluate or checkpoint it as a single run would)."""
        for name, p in model.named_parameters():
            p.copy_(self._slice(self.weights, k, name))

    def optimizer_state(self, k: int) -> dict:
        """Member k's AdamW state by parameter name: {"step", "exp_avg": {...}, "exp_avg_sq": {...}}."""
        return {"step": self.steps[k],
                "exp_avg": {n: self._slice(self.exp_avg, k, n).clone().cpu() for n in self.names},
                "exp_avg_sq": {n: self._slice(self.exp_avg_sq, k, n).clone().cpu() for n in self.names}}

    @torch.no_grad()
    def load_optimizer_state(self, k: int, state: dict) -> None:
        self.steps[k] = int(state["step"])
        for key in ("exp_avg", "exp_avg_sq"):
            for name, value in state[key].items():
                self._slice(getattr(self, key), k, name).copy_(value)
