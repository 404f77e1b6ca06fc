"""The explicit Arrow schemas of a run's summary.parquet and metrics.parquet (every column: docs/SCHEMA.md).

A column has one type in every run, also where it is null (a run that did not fail has `error` null, typed
string), so pyarrow.dataset, polars or DuckDB read a whole runs tree as one table. `to_table` builds a file's
table from rows; `conform` casts one written by an older scalinglab (null-typed columns, no `run_id` in metrics)
to the schema. A column the schema does not know is kept after the known ones, with the type Arrow infers, except
the documented extra columns (`EXTRA_PREFIXES`: `val_loss/<source>`), which are float64 in every file, also where
null, so the runs of a tree that have them read as one column.
"""
from __future__ import annotations

import pyarrow as pa

_S, _I, _F = pa.string(), pa.int64(), pa.float64()
FLOPS = ("flops_6nd", "flops_kaplan", "flops_chinchilla", "flops_measured")  # flops.py's conventions

SUMMARY = pa.schema([
    ("run_id", _S), ("sweep", _S), ("status", _S), ("error", _S), ("family", _S),
    ("n_layer", _I), ("d_model", _I), ("n_head", _I), ("n_kv_head", _I), ("n_ctx", _I), ("d_ff", _I), ("vocab_size", _I),
    ("n_params", _I), ("n_params_nonembed", _I), ("n_params_embed", _I),
    ("tokens_budget", _I), ("tokens", _I), ("steps", _I), ("batch_size", _I),
    ("lr", _F), ("lr_rule", _S), ("schedule", _S), ("seed", _I),
    ("device", _S), ("precision", _S), ("branch_from", _S), ("branch_step", _I),
    ("epochs", _F), *((name, _F) for name in FLOPS), ("flops_per_token_measured", _F),
    ("loss", _F), ("loss_best", _F), ("bpb", _F), ("holdout_source", _S), ("grad_noise_scale", _F),
    ("wall_time", _F), ("finished_at", _F), ("elapsed", _F),
    ("data", _S), ("python", _S), ("torch", _S), ("lightning", _S), ("scalinglab", _S), ("schema_version", _I),
])

# Summary columns added after files were first written: a file from before lacks them (conform: null).
ADDED_LATER = ("device", "precision")

METRICS = pa.schema([
    ("run_id", _S), ("step", _I), ("tokens", _I), *((name, _F) for name in FLOPS),
    ("train_loss", _F), ("val_loss", _F), ("bpb", _F), ("lr", _F), ("epochs", _F), ("wall_time", _F),
    ("tokens_per_sec", _F), ("grad_noise_scale", _F),
])
EXTRA_PREFIXES = {"val_loss/": _F}  # per-source validation loss (docs/SCHEMA.md, "Extra columns")


def extra_type(name: str) -> pa.DataType | None:
    """The type of a documented extra column (`val_loss/<source>`: float64), None for any other name."""
    return next((t for prefix, t in EXTRA_PREFIXES.items() if name.startswith(prefix)), None)


def _column(values: list, type_: pa.DataType) -> pa.Array:
    # NaN stays NaN in a float column (a diverged run's loss); elsewhere pandas' NaN placeholder means null.
    return pa.array(values, type=type_, from_pandas=not pa.types.is_floating(type_))


def to_table(records: list[dict], schema: pa.Schema) -> pa.Table:
    """A table of `records` with `schema`'s columns (null where a record lacks one) and then any others."""
    names = list(schema.names) + [k for k in dict.fromkeys(k for r in records for k in r) if k not in schema.names]
    arrays = [_column([r.get(name) for r in records], schema.field(name).type) if name in schema.names
              else _column([r.get(name) for r in records], extra_type(name)) if extra_type(name) is not None
              else pa.array([r.get(name) for r in records], from_pandas=True) for name in names]
    return pa.Table.from_arrays(arrays, names=names)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns first, cast to its types (null where absent), then its other columns."""
    arrays = [table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
              for f in schema]
    extra = [name for name in table.column_names if name not in schema.names]
    arrays += [table[name].cast(extra_type(name)) if extra_type(name) is not None else table[name] for name in extra]
    return pa.Table.from_arrays(arrays, names=list(schema.names) + extra)
