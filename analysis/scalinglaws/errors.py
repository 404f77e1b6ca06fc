"""One exception type for bad analysis input, so the CLI can print a clear message instead of a traceback.

`InputError(field, problem, fix)`: `field` names the column, row or file at fault, `problem` says what is wrong,
`fix` says what to change. It subclasses ValueError.
"""
from __future__ import annotations


class InputError(ValueError):
    """A bad table, file or fit request. The message names the field (column, row or file) and the fix."""

    def __init__(self, field: str, problem: str, fix: str = ""):
        self.field, self.problem, self.fix = field, problem, fix
        super().__init__(f"{field}: {problem}." + (f" Fix: {fix}" if fix else ""))
