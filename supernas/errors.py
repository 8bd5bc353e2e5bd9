"""Errors that reach the user as one clear line (the CLI prints them and exits with code 2)."""
from __future__ import annotations


class SupernasError(Exception):
    """Base class of every error supernas reports to a user as one line."""


class ConfigError(SupernasError, ValueError):
    """A Config, a YAML run file or an argument is invalid (unknown key, value out of range, ...)."""


class DataError(SupernasError):
    """A dataset is missing, empty or malformed."""


class CheckpointError(SupernasError):
    """A checkpoint is truncated, corrupt or belongs to another supernet."""


class StoreError(SupernasError):
    """A result store is corrupt or is not a supernas store."""
