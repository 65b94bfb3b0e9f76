"""Atomic file writes: a killed job leaves either the old file or the new one, never half of one.

A failed write is one line naming the file and the OS's reason (a full disk included, whatever
layer noticed it); the file gets the mode a plain `open()` would give it (0666 less the umask),
so results on a shared project folder are as readable as the umask says.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ageest.errors import AgeestError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed onto `path`.

    Any error (a full disk included) removes the temporary file and leaves `path` as it was.
    """
    dest = Path(path)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as e:
        raise AgeestError(f"cannot write to {dest.parent}: {e.strerror or e}") from None
    try:
        os.fchmod(fd, new_file_mode())  # mkstemp's 0600 would hide results from collaborators
    except OSError:
        pass  # a file system without modes (some FUSE, CIFS mounts): nothing to give
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, dest)
    except BaseException as e:
        # Before the unlink: a full disk is still full. Interrupts and ageest's own errors pass.
        failure = write_failure(dest, e) if isinstance(e, Exception) and not isinstance(e, AgeestError) else None
        tmp_path.unlink(missing_ok=True)
        if failure is None:
            raise
        raise failure from None


def new_file_mode() -> int:
    """The mode `open()` gives a new file: 0666 less the process's umask."""
    return 0o666 & ~current_umask()


def current_umask() -> int:
    """The umask, read without changing it (os.umask can only be read by setting it, which would
    let other threads create files with the wrong mode meanwhile)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # no /proc (macOS): set and restore, the strict mask in between
    os.umask(mask)
    return mask


def os_error_in(exc: BaseException | None) -> OSError | None:
    """The OSError behind `exc`: itself, or one it was raised from or while handling (a library
    that catches the OS's error and raises its own, as torch does around a Python file)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ if exc.__cause__ is not None or exc.__suppress_context__ else exc.__context__
    return None


def write_failure(dest: Path, exc: BaseException) -> AgeestError | None:
    """The one-line error for a failed write of `dest`, or None when `exc` is not about the write
    (a bug, an interrupt: re-raised as is)."""
    err = os_error_in(exc)
    if err is not None and err.errno is not None:
        return AgeestError(f"cannot write {dest}: {err.strerror or err}")
    # Short writes that libraries report without the OS's reason: numpy's (OSError "N requested and
    # M written", no errno), torch.save's to a path (RuntimeError "... unexpected pos N vs M"). On a
    # full file system that reason is ENOSPC.
    short = err is not None or (isinstance(exc, RuntimeError) and "unexpected pos" in str(exc))
    if short and _nearly_full(dest.parent):
        return AgeestError(f"cannot write {dest}: {os.strerror(errno.ENOSPC)}")
    return AgeestError(f"cannot write {dest}: {err}") if err is not None else None


def _nearly_full(folder: Path, slack: int = 2**20) -> bool:
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < slack


def remove_temporaries(paths) -> list[Path]:
    """Delete what killed atomic writes of `paths` left beside them (`.NAME.*.tmp`: a killed fold's
    state can leave 180 MB); call it where no other process writes those paths. The removed files."""
    removed = []
    for path in map(Path, paths):
        for tmp in path.parent.glob(f".{path.name}.*.tmp") if path.parent.is_dir() else []:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_torch_atomic(path: str | Path, obj: Any) -> None:
    import torch

    # Through a Python file: a failed write then raises the OS's own error (ENOSPC), where torch's
    # writer to a path raises RuntimeError("unexpected pos") without it.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def open_lock_file(path: Path, what: str = "lock file"):
    """A lock file opened for flock, never through a symbolic link and never truncated, so a link
    planted in its place cannot reach (and empty) another file; one line where it cannot be opened."""
    try:
        return os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600), "r+")
    except OSError as e:
        raise AgeestError(f"{what} {path}: {e.strerror or e} (a symbolic link there is refused); remove it, "
                          "or set AGEEST_LOCK_DIR (GPU locks) or the cache's path to a folder of your own") from None


def check_writable(folder: str | Path) -> Path:
    """Fail early, before hours of training, if results could not be written."""
    d = Path(folder)
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=d, prefix=".write-test.", delete=True)
        probe.close()
    except OSError as e:
        raise AgeestError(f"output folder is not writable: {d} ({e.strerror or e})") from None
    return d
