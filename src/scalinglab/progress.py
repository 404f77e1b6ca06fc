"""Lightning's rich progress bar, showing tokens done/total next to loss and tokens/s (ETA is the bar's own)."""
from __future__ import annotations

from lightning.pytorch.callbacks import RichProgressBar


def _short(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


class TokenProgressBar(RichProgressBar):
    def __init__(self, total_tokens: int):
        super().__init__(leave=True)
        self.total_tokens = total_tokens

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        metrics["tokens"] = f"{_short(pl_module.tokens_seen)}/{_short(self.total_tokens)}"
        if "tok/s" in metrics:
            metrics["tok/s"] = _short(float(metrics["tok/s"]))
        return metrics
