"""Errors the CLI reports as one line (no traceback) with a non-zero exit."""


class AgeestError(Exception):
    """Base class: anything a user can fix (bad data, bad config, bad paths)."""


class DataError(AgeestError):
    """A file or folder of the data set is missing, unreadable or misnamed."""


class ConfigError(AgeestError):
    """A config key is unknown, mistyped or out of range."""
