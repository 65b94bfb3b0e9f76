"""Errors the CLI reports as one line (no traceback) with a non-zero exit."""

from __future__ import annotations


class AgeestError(Exception):
    """Base class: anything a user can fix (bad data, bad config, bad paths)."""


class DataError(AgeestError):
    """A file or folder of the data set is missing, unreadable or misnamed."""


class ConfigError(AgeestError):
    """A config key is unknown, mistyped or out of range; `keys` names it (them), `key` the first."""

    def __init__(self, message: str, *keys: str):
        super().__init__(message)
        self.keys = keys

    @property
    def key(self) -> str | None:
        return self.keys[0] if self.keys else None
