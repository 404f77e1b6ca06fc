"""Lightning's rich progress bar, showing tokens done/total next to loss and tokens/s (ETA is the bar's own)."""
from __future__ import annotations

from lightning.pytorch.callbacks import RichProgressBar

from scalinglab.units import si


class TokenProgressBar(RichProgressBar):
    def __init__(self, total_tokens: int):
        super().__init__(leave=True)
        self.total_tokens = total_tokens

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        metrics["tokens"] = f"{si(pl_module.tokens_seen)}/{si(self.total_tokens)}"
        if "tok/s" in metrics:
            metrics["tok/s"] = si(float(metrics["tok/s"]))
        return metrics
