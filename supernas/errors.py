"""Errors that reach the user as one clear line (the CLI prints them and exits with code 2)."""
from __future__ import annotations

from typing import Any


class SupernasError(Exception):
    """Base class of every error supernas reports to a user as one line."""


class ConfigError(SupernasError, ValueError):
    """A Config, a YAML run file or an argument is invalid (unknown key, value out of range, ...)."""


class DataError(SupernasError):
    """A dataset is missing, empty or malformed (an unreadable image names its file)."""

    def __init__(self, message: Any = "", *args: Any) -> None:
        # raised in a DataLoader worker, torch re-raises it with the worker's whole traceback as the
        # message: keep the worker's own line
        if isinstance(message, str) and message.startswith("Caught ") and "\nOriginal Traceback" in message:
            message = message.rstrip().splitlines()[-1].partition(": ")[2] or message
        super().__init__(message, *args)


class CheckpointError(SupernasError):
    """A checkpoint is truncated, corrupt or belongs to another supernet."""


class StoreError(SupernasError):
    """A result store is corrupt or is not a supernas store."""


class PreflightError(SupernasError):
    """Problems found before any work started; ``problems`` holds one line each (the CLI prints every one)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class SupernasWarning(UserWarning):
    """Something a user should know that does not stop the work (the CLI prints it as one ``warning:`` line)."""


def warn(message: str) -> None:
    """Issue a :class:`SupernasWarning` (shown once per message)."""
    import warnings

    warnings.warn(message, SupernasWarning, stacklevel=2)


def validation_problem(err: Any, top: str = "top level") -> tuple[str, str]:
    """``(where, what)`` of a pydantic ValidationError's first problem, for a one-line message:
    ``where`` is the dotted key path (``top`` when empty), ``what`` the reason without pydantic's
    "Value error, " prefix ("unknown key" for a forbidden extra key), plus how many more problems there are."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or top
    what = "unknown key" if first["type"] == "extra_forbidden" else first["msg"].removeprefix("Value error, ")
    if err.error_count() > 1:
        what += f" (and {err.error_count() - 1} more)"
    return where, what
