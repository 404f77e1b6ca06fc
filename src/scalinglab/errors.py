"""One exception type for user mistakes, and the one way an entry point turns one into exit status 2.

A user mistake (a bad setting, data file or result table) ends a command with one line on stderr,
`error: <field>: <problem>. Fix: <fix>`, and exit status 2, never a traceback: `exit_on_user_error` for a function
(Hydra's task function, the sweeper), `report_user_error` inside a `main(argv) -> int` that returns its status.
"""
from __future__ import annotations

import functools
import sys

USER_ERROR = 2  # the exit status of a user mistake


class ConfigError(ValueError):
    """A bad setting or input file. The message names the field (or file) and says what to change."""

    def __init__(self, field: str, problem: str, fix: str):
        self.field, self.problem, self.fix = field, problem, fix
        super().__init__(f"{field}: {problem}. Fix: {fix}")


def user_error(exc: BaseException) -> ConfigError | None:
    """The user's mistake behind `exc`: itself if a ConfigError, else Hydra's composition or override error as a
    ConfigError (validate.hydra_error); None for anything else (a bug, shown as one)."""
    if isinstance(exc, ConfigError):
        return exc
    from scalinglab.validate import hydra_error

    return hydra_error(exc)


def report_user_error(exc: BaseException) -> int:
    """Print the one line of a user mistake on stderr and return USER_ERROR; re-raise `exc` if it is none."""
    error = user_error(exc)
    if error is None:
        raise exc
    print(f"error: {error}", file=sys.stderr)
    return USER_ERROR


def exit_on_user_error(function):
    """Decorator: a user mistake raised by `function` exits the process with status 2 (see report_user_error)."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            sys.exit(report_user_error(exc))
    return wrapper
