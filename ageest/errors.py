"""Errors the CLI reports as one line (no traceback) with a non-zero exit."""

from __future__ import annotations


def printable(text: str) -> str:
    """`text` safe for any UTF-8 stream: bytes of a file name that are not UTF-8 (which Python
    keeps as lone surrogates, os.fsdecode's way) shown as \\xNN escapes. Unescaped, they make
    logging fail mid-message (Snakemake's logger: UnicodeEncodeError, surrogates not allowed)."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file name makes: escape it as such
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def os_error_line(err: OSError) -> str:
    """An OSError as one printable line: the file it names (both, for a rename) and the OS's reason."""
    files = [f for f in (err.filename, err.filename2) if f is not None]
    where = " -> ".join(map(str, files))
    return printable(f"{where}: {err.strerror}" if where and err.strerror else str(err.strerror or err))


class AgeestError(Exception):
    """Base class: anything a user can fix (bad data, bad config, bad paths)."""

    def __str__(self) -> str:
        # Messages name files: one whose name is not UTF-8 must not break the stream it is shown on.
        return printable(super().__str__())


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
