"""Token windows of a cached, tokenized corpus, wrapped in a LightningDataModule (the cache: token_cache.py).

Contract with train.py (configs/data/*.yaml; every yaml has `_target_: scalinglab.data.TokenDataModule`):

    dm = scalinglab.build.build_datamodule(cfg)  # data.* settings, model.n_ctx, TrainConfig, paths.cache
    dm.prepare()            # builds or reuses the token cache (idempotent; also run by prepare_data()/setup())

After prepare():
- `manifest`: the cache's manifest (tokens/bytes/documents per split, hashes, versions) plus `seconds` (this call)
  and `reused`;
- `vocab_size` (= data.vocab_size, the model's embedding size), `tokenizer`, `tokenizer_path`;
- `tokens_per_step` = batch_size * n_ctx; `steps` and `tokens_total` (the exact budget consumed) by the rules of
  runs.py: steps = max(1, round(tokens / tokens_per_step)), tokens_total = steps * tokens_per_step;
- `tokens_per_epoch` = train_windows * n_ctx and `epochs` = tokens_total / tokens_per_epoch (passes over the
  training split; warned about when > 1);
- `batch(step) -> (x, y)`: int64 tensors (batch_size, n_ctx), a pure function of (seed, step). The training split
  is cut into train_windows = tokens_train // (n_ctx + 1) non-overlapping windows of n_ctx + 1 tokens; window
  number g = step * batch_size + b is window perm_e[g mod train_windows] of epoch e = g // train_windows, where
  perm_e is a permutation seeded by (seed, e). x = window[:-1], y = window[1:];
- `train_dataloader()`: batch(s) for s = trainer.global_step (0 without a trainer), ..., steps - 1, so a resumed
  run sees exactly the batches it would have seen (one batch per optimizer step: no gradient accumulation); with
  `steps_per_batch` k > 1, each item is the list of up to k consecutive steps' batches (`step_groups`);
- `val_dataloader()`: val_windows = min(val_tokens, tokens_val - 1) // n_ctx windows in fixed order; window i has
  x = val[i n_ctx : (i+1) n_ctx], y = val[i n_ctx + 1 : (i+1) n_ctx + 1], so every evaluated target token is
  predicted exactly once. Batched at batch_size; the LAST BATCH MAY BE SMALLER (weight the mean by batch size);
- `val_tokens_evaluated` = val_windows * n_ctx; `val_bytes_per_token` = UTF-8 bytes / tokens of exactly those
  targets, so bits per byte = loss / (ln 2 * val_bytes_per_token) (end-of-text counts 0 bytes; see tokenizer.py).
- a corpus with sources (builtin; a table with data.source.source_column): `val_sources` names them (the cache's
  `sources`, sorted); the windows come from each source's block of val.bin, min(its share of val_tokens by bytes,
  block - 1) // n_ctx each, so they sample the training distribution; each validation batch is (x, y, s) with s[i, t] the index in `val_sources` of the document
  target y[i, t] belongs to, and `val_source_tokens` counts the evaluated targets per source. Without sources,
  `val_sources` is [] and batches are (x, y).
- `data.holdout_source`: that source's documents are not trained on (token_cache.py); `holdout_dataloader()` gives
  min(val_tokens, tokens_val_holdout - 1) // n_ctx windows of them, laid out as above from the start of their part
  of val.bin, which the windows of `val_dataloader()` (and so `val_loss`, `bpb`) never reach. None without one.

Command line: `python -m scalinglab.data prepare [Hydra overrides]` builds or reuses the cache and prints the
manifest as one JSON line last.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import warnings
from functools import cached_property
from pathlib import Path

import lightning as L
import numpy as np
import torch

from scalinglab.config import CONFIG_DIR, Number, TrainConfig
from scalinglab.corpus import BUILTIN_SOURCES, check_source
from scalinglab.sources import check_holdout
from scalinglab.errors import ConfigError, report_user_error
from scalinglab.runs import consumed_tokens, steps_for_tokens, tokens_per_epoch, train_windows
from scalinglab import token_cache
from scalinglab.token_stream import stream_budget
from scalinglab.tokenizer import check_vocab_size, load_tokenizer

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------
# Windows over the memmapped splits. Both classes open their memmap lazily, so DataLoader workers receive a
# path, not a copy of the data, when the dataset is pickled.

class _Memmap:
    def __init__(self, path: Path, dtype: str):
        self.path, self.dtype, self._tokens = str(path), dtype, None

    @property
    def tokens(self) -> np.ndarray:
        if self._tokens is None:
            self._tokens = np.memmap(self.path, dtype=self.dtype, mode="r")
        return self._tokens

    def __getstate__(self):
        return {**self.__dict__, "_tokens": None}


class TrainWindows(torch.utils.data.Dataset):
    """Map-style dataset over optimizer steps [first_step, last_step): item i is batch(first_step + i)."""

    def __init__(self, path: Path, dtype: str, n_tokens: int, n_ctx: int, batch_size: int, seed: int,
                 first_step: int = 0, last_step: int = 0):
        self.memmap = _Memmap(path, dtype)
        self.n_ctx, self.batch_size, self.seed = n_ctx, batch_size, seed
        self.n_windows = train_windows(n_tokens, n_ctx)
        self.first_step, self.last_step = first_step, last_step
        self.rank, self.world_size = 0, 1
        self._permutations: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        """Order of the windows in `epoch`: a permutation seeded by (seed, epoch)."""
        if epoch not in self._permutations:
            if len(self._permutations) >= 2:
                self._permutations.pop(min(self._permutations))
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, epoch])))
            self._permutations[epoch] = rng.permutation(self.n_windows)
        return self._permutations[epoch]

    def window_starts(self, step: int) -> np.ndarray:
        """Token offsets of the batch_size windows of optimizer step `step`."""
        g = step * self.batch_size + np.arange(self.batch_size)
        epochs, positions = np.divmod(g, self.n_windows)
        windows = np.empty(self.batch_size, dtype=np.int64)
        for epoch in np.unique(epochs):  # at most two epochs meet in one batch
            here = epochs == epoch
            windows[here] = self.permutation(int(epoch))[positions[here]]
        return windows * (self.n_ctx + 1)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.window_starts(step)[:, None] + np.arange(self.n_ctx + 1)
        windows = torch.from_numpy(self.memmap.tokens[index].astype(np.int64))
        return windows[:, :-1], windows[:, 1:]

    def __len__(self) -> int:
        return max(0, self.last_step - self.first_step)

    def __getitem__(self, i):
        """Item i: the batch of step first_step + i; item (a, b): the list of batches of steps first_step + a, ...,
        first_step + b - 1 (a group, see `step_groups`)."""
        if isinstance(i, tuple):
            return [self[j] for j in range(*i)]
        x, y = self.batch(self.first_step + i)
        # Under DDP each process takes its rows of the step's global batch (train.batch_size sums over devices).
        return x[self.rank::self.world_size], y[self.rank::self.world_size]


def step_groups(start: int, total: int, size: int, cuts=()) -> list[tuple[int, int]]:
    """Optimizer steps start, ..., total - 1 as consecutive groups (first, stop) of at most `size` steps.

    A group ends at every multiple of `size` and after every step count in `cuts` (eval points, kept checkpoints),
    so whatever runs between two groups (Lightning's callbacks) sees exactly those steps; the grouping depends
    only on the step numbers, so a resumed run groups its remaining steps as the uninterrupted run did.
    """
    ends = sorted({s for s in cuts if start < s < total} | set(range((start // size + 1) * size, total, size))
                  | {total})
    return [(a, b) for a, b in zip([start, *ends[:-1]], ends)] if start < total else []


class ResumeSampler(torch.utils.data.Sampler):
    """Steps start, ..., total - 1 (or their groups of `size`, see `step_groups`), with the length of the whole
    run (see TokenDataModule.train_dataloader)."""

    def __init__(self, start: int, total: int, size: int = 1, cuts=()):
        self.start, self.total, self.size, self.cuts = start, total, size, frozenset(cuts)

    def __iter__(self):
        if self.size == 1:
            return iter(range(self.start, self.total))
        return iter(step_groups(self.start, self.total, self.size, self.cuts))

    def __len__(self) -> int:
        return self.total


class ValWindows(torch.utils.data.Dataset):
    """Map-style dataset of validation batches: item i holds windows [i B, (i+1) B) (the last may be short), window
    j starting at token starts[j] (default j n_ctx); with `sources` (val_source.bin) also each target's source."""

    def __init__(self, path: Path, dtype: str, n_windows: int, n_ctx: int, batch_size: int,
                 starts: np.ndarray | None = None, sources: Path | None = None):
        self.memmap = _Memmap(path, dtype)
        self.n_windows, self.n_ctx, self.batch_size = n_windows, n_ctx, batch_size
        self.starts = np.arange(n_windows, dtype=np.int64) * n_ctx if starts is None else np.asarray(starts, np.int64)
        self.sources = None if sources is None else _Memmap(sources, "uint8")

    def __len__(self) -> int:
        return math.ceil(self.n_windows / self.batch_size)

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(i)
        windows = np.arange(i * self.batch_size, min((i + 1) * self.batch_size, self.n_windows))
        index = self.starts[windows][:, None] + np.arange(self.n_ctx + 1)
        tokens = torch.from_numpy(self.memmap.tokens[index].astype(np.int64))
        if self.sources is None:
            return tokens[:, :-1], tokens[:, 1:]
        return tokens[:, :-1], tokens[:, 1:], torch.from_numpy(self.sources.tokens[index[:, 1:]].astype(np.int64))


class TokenDataModule(L.LightningDataModule):
    """Token windows of a cached, tokenized corpus for one training run (see the module docstring)."""

    def __init__(self, source: dict, vocab_size: int = 4096, val_tokens: int = 250_000, tokenizer_file=None,
                 num_workers: int = 0, n_ctx: int = 256, train: TrainConfig | None = None,
                 cache_dir: str = ".cache/scalinglab", progress: bool = True, holdout_source: str | None = None):
        """`train` gives train.tokens, batch_size and seed (default: TrainConfig()); the data.* settings and n_ctx
        are checked here, before anything is read."""
        super().__init__()
        train = TrainConfig() if train is None else train
        if not isinstance(source, dict):  # a DictConfig when instantiated without _convert_="all"
            from omegaconf import OmegaConf

            source = OmegaConf.to_container(source, resolve=True)
        check_source(source)
        self.source = dict(source)
        self.vocab_size = check_vocab_size(vocab_size)
        self.val_tokens = Number(integer=True)(val_tokens, "data.val_tokens", "250000")
        self.n_ctx = Number(integer=True)(n_ctx, "model.n_ctx", "256")
        self.num_workers = Number(integer=True, allow_zero=True)(num_workers, "data.num_workers", "2")
        self.batch_size, self.seed, self.progress = train.batch_size, train.seed, progress
        if tokenizer_file is not None and not os.path.isfile(tokenizer_file):
            raise ConfigError("data.tokenizer_file", f"{tokenizer_file} does not exist",
                              "give an existing tokenizer.json, or null to train a BPE tokenizer")
        self.tokenizer_file = tokenizer_file
        if holdout_source is not None and not (isinstance(holdout_source, str) and holdout_source):
            raise ConfigError("data.holdout_source", f"must be a source name or null, got {holdout_source!r}",
                              f"set e.g. data.holdout_source={BUILTIN_SOURCES[-1]}, or null")
        if holdout_source is not None and not self.source.get("source_column"):  # else known once the text is read
            check_holdout(holdout_source, list(BUILTIN_SOURCES) if self.source["kind"] == "builtin"
                                      else [], self.source)
        self.holdout_source = holdout_source
        self.cache_dir = Path(cache_dir)
        self.tokens_per_step = self.batch_size * self.n_ctx
        self.steps = steps_for_tokens(train.tokens, self.tokens_per_step)
        self.tokens_total = consumed_tokens(train.tokens, self.tokens_per_step)
        if self.source.get("streaming"):  # a streamed cache holds what the run needs (token_stream.py)
            budget = self.source.get("stream_tokens")
            self.source["stream_tokens"] = int(budget) if budget is not None else stream_budget(self.tokens_total,
                                                                                                self.n_ctx)
        self.manifest: dict | None = None
        # Optimizer steps per training batch: 1 (a batch is one step's (x, y)), or up to `steps_per_batch` steps as
        # a list of (x, y), cut after every step count in `step_cuts` (step_groups; train.py sets both).
        self.steps_per_batch, self.step_cuts = 1, frozenset()

    # -- building / loading ---------------------------------------------------------------------------

    def prepare(self) -> dict:
        """Build or reuse the token cache, check n_ctx and batch_size against it; return the manifest."""
        if self.manifest is not None:
            return self.manifest
        start = time.perf_counter()
        reused = token_cache.ensure_token_cache(self.cache_path, self.source, self.vocab_size, self.val_tokens,
                                                self.tokenizer_file, self.cache_dir, self.progress,
                                                self.holdout_source)
        manifest = token_cache.read_manifest(self.cache_path)
        self._load(manifest)
        manifest.update(seconds=round(time.perf_counter() - start, 3), reused=reused)
        self.manifest = manifest
        log.info("token cache %s: %s", "reused" if reused else "built", self.cache_path)
        return manifest

    @cached_property
    def cache_path(self) -> Path:
        """The token cache of these data settings (built or not; see token_cache.py)."""
        return token_cache.cache_path(self.cache_dir, self.source, self.vocab_size, self.val_tokens,
                                      self.tokenizer_file, self.holdout_source)

    def _load(self, manifest: dict) -> None:
        learned = manifest.get("tokenizer_vocab_size", self.vocab_size)
        if self.tokenizer_file is None and learned < self.vocab_size:
            # Refused, not clamped: the run id and the model both hash data.vocab_size, so a clamped vocabulary
            # would be a run other than the one asked for; the message gives the value to ask for instead.
            raise ConfigError("data.vocab_size", f"is {self.vocab_size}, but byte-level BPE learned only {learned} "
                              f"tokens from this corpus ({manifest.get('bytes_train', '?')} bytes of training text): "
                              f"{self.vocab_size - learned} embedding rows would never be used and would inflate N",
                              f"set data.vocab_size={learned} or less, or give more text")
        self.tokenizer_path = self.cache_path / "tokenizer.json"
        self._tokenizer = None
        try:
            token_bytes = np.load(self.cache_path / "token_bytes.npy")
        except (OSError, ValueError) as error:
            raise token_cache.corrupt(self.cache_path, "token_bytes.npy", f"cannot read it ({error})") from None
        n_held = int(manifest.get("tokens_val_holdout", 0))
        n_val = manifest["tokens_val"] - n_held
        val_windows = min(self.val_tokens, n_val - 1) // self.n_ctx
        if val_windows < 1:
            raise ConfigError("model.n_ctx", f"is {self.n_ctx}, but validation evaluates only "
                              f"min(data.val_tokens={self.val_tokens}, validation split {n_val} - 1) tokens and one "
                              f"window needs n_ctx", "lower model.n_ctx or raise data.val_tokens")
        self.train_windows = TrainWindows(self.cache_path / "train.bin", manifest["dtype"], manifest["tokens_train"],
                                          self.n_ctx, self.batch_size, self.seed, 0, self.steps)
        if self.train_windows.n_windows < self.batch_size:
            raise ConfigError("train.batch_size", f"is {self.batch_size}, but the training split has only "
                              f"{self.train_windows.n_windows} windows of model.n_ctx+1={self.n_ctx + 1} tokens",
                              "lower train.batch_size or model.n_ctx, or give more text")
        starts = self._load_sources(manifest, n_val, n_held, val_windows)
        self.val_tokens_evaluated = len(starts) * self.n_ctx
        val = np.memmap(self.cache_path / "val.bin", dtype=manifest["dtype"], mode="r")
        targets = val[(starts[:, None] + 1 + np.arange(self.n_ctx)).reshape(-1)]
        self.val_bytes_per_token = float(token_bytes[targets].sum()) / targets.size
        self.tokens_per_epoch = tokens_per_epoch(manifest["tokens_train"], self.n_ctx)
        self.epochs = self.tokens_total / self.tokens_per_epoch
        if self.epochs > 1:
            message = (f"train.tokens={self.tokens_total} needs {self.epochs:.2f} epochs of the training split "
                       f"({self.tokens_per_epoch} tokens): data repeats")
            warnings.warn(message, stacklevel=3)
            log.warning(message)

    def _load_sources(self, manifest: dict, n_val: int, n_held: int, val_windows: int) -> np.ndarray:
        """The validation windows (and the held-out source's), with each target's source where the corpus has them;
        returns the windows' first tokens. With sources, each source's block of val.bin (manifest `val_blocks`)
        gives min(its share of data.val_tokens by the corpus's bytes, block - 1) // n_ctx windows."""
        self.val_sources = list(manifest.get("sources") or [])
        raw, self.val_source_tokens = None, {}
        starts = np.arange(val_windows, dtype=np.int64) * self.n_ctx
        if self.val_sources:
            raw = self.cache_path / "val_source.bin"
            size = raw.stat().st_size if raw.exists() else None
            if size != manifest["tokens_val"]:
                raise token_cache.corrupt(self.cache_path, raw.name, f"{'missing' if size is None else f'{size} bytes'}"
                                          f", the manifest says {manifest['tokens_val']} validation tokens")
            shares = manifest["bytes_by_source"]
            starts = np.concatenate([np.zeros(0, np.int64)] + [
                first + np.arange(min(round(self.val_tokens * shares[name] / sum(shares.values())), size - 1)
                                  // self.n_ctx, dtype=np.int64) * self.n_ctx for name, first, size in manifest["val_blocks"]])
            if not len(starts):
                raise ConfigError("model.n_ctx", f"is {self.n_ctx}, longer than every source's share of data.val_tokens"
                                  f"={self.val_tokens}", "lower model.n_ctx or raise data.val_tokens")
            owners = np.memmap(raw, dtype=np.uint8, mode="r")[(starts[:, None] + 1 + np.arange(self.n_ctx)).reshape(-1)]
            counts = np.bincount(owners, minlength=len(self.val_sources))
            self.val_source_tokens = {name: int(c) for name, c in zip(self.val_sources, counts) if c}
        self.val_windows = ValWindows(self.cache_path / "val.bin", manifest["dtype"], len(starts), self.n_ctx,
                                      self.batch_size, starts=starts, sources=raw)
        self.holdout_windows = None
        if self.holdout_source is not None:
            windows = min(self.val_tokens, n_held - 1) // self.n_ctx
            if windows < 1:
                raise ConfigError("data.holdout_source", f"{self.holdout_source!r} holds {n_held} tokens, fewer than "
                                  f"one window of model.n_ctx={self.n_ctx} + 1", "hold out a larger source, or null")
            self.holdout_windows = ValWindows(self.cache_path / "val.bin", manifest["dtype"], windows, self.n_ctx,
                                              self.batch_size, starts=n_val + np.arange(windows) * self.n_ctx)
            self.val_source_tokens[self.holdout_source] = windows * self.n_ctx
        return starts

    def holdout_dataloader(self) -> torch.utils.data.DataLoader | None:
        """Windows of the held-out source (data.holdout_source), batched as the validation windows; None without."""
        self.prepare()
        return None if self.holdout_windows is None else self._loader(self.holdout_windows)

    @property
    def tokenizer(self):
        """The HF tokenizers object of this cache (loaded on first use)."""
        self.prepare()
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_path, field=str(self.tokenizer_path),
                                             fix=f"delete {self.cache_path} and run again to rebuild it")
        return self._tokenizer

    # -- batches ----------------------------------------------------------------------------------------

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of optimizer step `step`: int64 (batch_size, n_ctx), a pure function of (seed, step)."""
        self.prepare()
        return self.train_windows.batch(step)

    def prepare_data(self) -> None:
        self.prepare()

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def _loader(self, dataset) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False, num_workers=self.num_workers,
                                           pin_memory=torch.cuda.is_available(),
                                           persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        """Batches of steps start, ..., steps - 1, start = trainer.global_step (0 without a trainer).

        The loader's length stays `steps` (the whole epoch) on a resume: Lightning restores its batch counter to
        the batches done before and stops at trainer.max_steps (= steps) or at the loader's length, whichever comes
        first, so a resumed run ends where it would have; only iteration begins at `start`. With groups
        (`steps_per_batch` > 1) the length is an upper bound: the last group ends the run at max_steps.
        """
        self.prepare()
        trainer = getattr(self, "trainer", None)
        start = int(trainer.global_step) if trainer is not None else 0
        windows = self.train_windows
        dataset = TrainWindows(Path(windows.memmap.path), windows.memmap.dtype, self.manifest["tokens_train"],
                               self.n_ctx, self.batch_size, self.seed, 0, self.steps)
        if trainer is not None and trainer.world_size > 1:
            if self.batch_size % trainer.world_size:
                raise ConfigError("train.batch_size", f"{self.batch_size} does not split over "
                                  f"{trainer.world_size} processes", "use a multiple of the number of devices")
            dataset.rank, dataset.world_size = trainer.global_rank, trainer.world_size
        sampler = ResumeSampler(start, self.steps, self.steps_per_batch, self.step_cuts)
        return torch.utils.data.DataLoader(dataset, batch_size=None, sampler=sampler,
                                           num_workers=self.num_workers, pin_memory=torch.cuda.is_available(),
                                           persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        """Fixed validation windows in fixed order (see the module docstring)."""
        self.prepare()
        return self._loader(self.val_windows)


# ---------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """`python -m scalinglab.data prepare [Hydra overrides]`: build or reuse the cache, print its manifest."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "prepare":
        print("usage: python -m scalinglab.data prepare [Hydra overrides, e.g. data=text_files data.vocab_size=512]",
              file=sys.stderr)
        return 2
    from hydra import compose, initialize_config_dir

    from scalinglab.build import build_datamodule

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    config_dir = Path(os.environ.get("SCALINGLAB_CONFIG_DIR", CONFIG_DIR)).resolve()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = compose("config", overrides=argv[1:])
        from scalinglab.machine import check_directory
        from scalinglab.validate import validate

        validate(cfg)  # every key and setting, before anything is read or written
        check_directory(cfg.paths.cache, "paths.cache")
        dm = build_datamodule(cfg)
        manifest = dm.prepare()
    except Exception as exc:  # a user mistake: one line and status 2 (anything else is re-raised)
        return report_user_error(exc)
    print(json.dumps({**manifest, "steps": dm.steps, "epochs": round(dm.epochs, 4)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
