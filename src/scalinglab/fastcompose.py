"""The resolved configs of a sweep's many runs without one Hydra composition per run.

A plan of 10,000 runs needs 10,000 configs (their run ids hash the resolved settings), and one Hydra composition
costs ~0.5 s. `Composer(compose)` calls `compose(overrides)` (the sweeper's Hydra config loader) once per
distinct set of *structural* overrides and sets the other overrides on a copy of its resolved container:

- a *value* override is `key=value` or `++key=value` whose value is a plain number, true/false, null, a name or
  a flat list of those (parsed as Hydra parses them), whose key exists in the composed config (or is added with
  `++`) and holds no mapping, and that no `${...}` interpolation of the config reads (so resolving first and
  setting after gives what Hydra gives);
- everything else (a group choice such as `model=tiny`, `+key=`, `~key`, a key an interpolation reads such as
  `data.vocab_size` or `sweep`, an unknown key, quoted or nested values) is structural: part of the composition's
  cache key, so Hydra composes (or refuses) it.

tests/test_fastcompose.py checks that the runs of every shipped sweep get the same resolved config either way.
"""
from __future__ import annotations

import copy
import re
from typing import Callable

_INT = re.compile(r"[+-]?(0|[1-9](_?[0-9])*)")
_FLOAT = re.compile(r"[+-]?((([0-9](_?[0-9])*)?\.[0-9](_?[0-9])*|[0-9](_?[0-9])*\.?)([eE][+-]?[0-9](_?[0-9])*)?"
                    r"|inf|nan)", re.IGNORECASE)
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]*")  # after int and float: Hydra reads 3f17a2 as a string
_KEY = re.compile(r"(\+\+)?([A-Za-z_][\w\-]*(\.[A-Za-z_][\w\-]*)+)=(.*)")
_REFERENCE = re.compile(r"\$\{(\.*)([A-Za-z_][\w.]*)\}")
_MISSING = object()


def parse_value(text: str):
    """A plain override value as Hydra's grammar reads it, or _MISSING when it is not plain."""
    low = text.lower()
    if low == "null":
        return None
    if low in ("true", "false"):
        return low == "true"
    if _INT.fullmatch(text):
        return int(text.replace("_", ""))
    if _FLOAT.fullmatch(text) and any(c in low for c in ".ein"):
        return float(text.replace("_", ""))
    if _NAME.fullmatch(text):
        return text
    if text.startswith("[") and text.endswith("]") and "[" not in text[1:-1] and "]" not in text[1:-1]:
        inner = text[1:-1].strip()
        items = [parse_value(item.strip()) for item in inner.split(",")] if inner else []
        return _MISSING if any(item is _MISSING for item in items) else items
    return _MISSING


def references(node, path: tuple[str, ...] = ()) -> set[str]:
    """The absolute keys the ${...} interpolations of an unresolved container read (relative ones included)."""
    if isinstance(node, dict):
        return set().union(*(references(v, (*path, str(k))) for k, v in node.items()))
    if isinstance(node, list):
        return set().union(*(references(v, path) for v in node))
    if not isinstance(node, str):
        return set()
    out = set()
    for dots, key in _REFERENCE.findall(node):
        parent = path[:-1]  # ${.x} is relative to the node holding the string
        if dots:
            parent = parent[:len(parent) - (len(dots) - 1)] if len(dots) > 1 else parent
            out.add(".".join((*parent, key)))
        else:
            out.add(key)
    return out


class Composer:
    """`composer(overrides)`: the resolved container Hydra's `compose(overrides)` would give (see the module)."""

    def __init__(self, compose: Callable[[list[str]], object]):
        self.compose = compose
        self.bases: dict[tuple[str, ...], tuple[dict, set[str]]] = {}
        self.parsed: dict[str, tuple] = {}

    def _base(self, structural: tuple[str, ...], cfg=None) -> tuple[dict, set[str]]:
        """The resolved container of `structural` and the keys its interpolations read (`cfg`: it, composed)."""
        if structural not in self.bases:
            from omegaconf import OmegaConf

            cfg = self.compose(list(structural)) if cfg is None else cfg
            self.bases[structural] = (OmegaConf.to_container(cfg, resolve=True),
                                      references(OmegaConf.to_container(cfg, resolve=False)))
        return self.bases[structural]

    def add(self, overrides: list[str], cfg) -> None:
        """Keep `cfg`, composed from `overrides` (all structural) by the caller, instead of composing it again."""
        if all(self._parse(o) is None for o in overrides):
            self._base(tuple(overrides), cfg)

    def _parse(self, override: str) -> tuple:
        """(force_add, key path, value) of a value override, or None for a structural one."""
        if override not in self.parsed:
            match = _KEY.fullmatch(override)
            value = parse_value(match.group(4)) if match else _MISSING
            self.parsed[override] = None if value is _MISSING else (bool(match.group(1)), match.group(2), value)
        return self.parsed[override]

    def __call__(self, overrides: list[str]) -> dict:
        values, structural = [], []
        for override in overrides:
            (structural if self._parse(override) is None else values).append(override)
        while True:
            base, refs = self._base(tuple(structural))
            settable = [v for v in values if self._settable(base, refs, *self._parse(v))]
            if len(settable) == len(values):
                break
            structural += [v for v in values if v not in settable]  # Hydra decides (or refuses) these
            values = settable
        out = dict(base)
        copied: set[tuple[str, ...]] = set()
        for override in values:
            _, key, value = self._parse(override)
            parts = key.split(".")
            node = out
            for depth in range(1, len(parts)):
                prefix = tuple(parts[:depth])
                if prefix not in copied:
                    node[parts[depth - 1]] = dict(node[parts[depth - 1]])
                    copied.add(prefix)
                node = node[parts[depth - 1]]
            node[parts[-1]] = copy.copy(value)
        return out

    @staticmethod
    def _settable(base: dict, refs: set[str], force: bool, key: str, value) -> bool:
        if any(ref == key or ref.startswith(key + ".") or key.startswith(ref + ".") for ref in refs):
            return False
        node = base
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
            if not isinstance(node, dict):
                return False
        current = node.get(parts[-1], _MISSING)
        return not isinstance(current, dict) and (current is not _MISSING or force)
