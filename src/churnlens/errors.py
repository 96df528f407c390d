"""Errors the CLI turns into a one-line message and exit code 1 (no traceback)."""


class ChurnlensError(Exception):
    """A problem the user can fix (bad input, missing output of an earlier stage, bad params)."""


class InputFileError(ChurnlensError):
    """An input file is unusable: names the file, the column and what was expected."""

    def __init__(self, file: str, column: str | None, expected: str) -> None:
        where = f"{file}" + (f", column '{column}'" if column else "")
        super().__init__(f"{where}: {expected}")
        self.file, self.column, self.expected = file, column, expected


class NotEnoughHistoryError(ChurnlensError):
    """The data window is too short for the horizon and a training window."""


class ParamsError(ChurnlensError):
    """The params file has bad values: one line naming every bad key and what it expects."""

    def __init__(self, source: str, problems: list[str], message: str | None = None) -> None:
        self.source, self.problems = source, list(problems)
        count = f"{len(problems)} bad value{'s' if len(problems) != 1 else ''}"
        super().__init__(message or f"{source}: {count}: " + "; ".join(self.problems))


class BusyError(ChurnlensError):
    """Another process holds the lock this one needs (e.g. two `churnlens train` at once)."""
