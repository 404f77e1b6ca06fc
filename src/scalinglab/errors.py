"""One exception type for user mistakes, so entry points can print a clear message instead of a traceback."""


class ConfigError(ValueError):
    """A bad setting or input file. The message names the field (or file) and says what to change."""

    def __init__(self, field: str, problem: str, fix: str):
        self.field, self.problem, self.fix = field, problem, fix
        super().__init__(f"{field}: {problem}. Fix: {fix}")
