"""The SHA-256 of each data file's bytes, remembered by (path, size, mtime_ns, ctime_ns, inode).

Content, not names and sizes, decides what is stale: a photo re-saved or retouched in place keeps
its name and often its size. Hashing every byte on each run would cost a read of the whole data
set per fold job, so digests are kept in `$AGEEST_CACHE_DIR/file-hashes.json` (default
~/.cache/ageest) under the file's identity as the file system reports it: a file written again gets
a new mtime (and usually a new inode) and is hashed anew; the others cost one stat each.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable

from ageest.errors import DataError

CHUNK = 1 << 20


def hash_store() -> Path:
    return Path(os.environ.get("AGEEST_CACHE_DIR") or Path.home() / ".cache" / "ageest") / "file-hashes.json"


def _key(path: Path) -> str:
    st = path.stat()
    # ctime too: it moves with every write and every utime, so an edit whose old mtime was put back
    # is still seen (no user can set ctime).
    return f"{path.resolve()}\t{st.st_size}\t{st.st_mtime_ns}\t{st.st_ctime_ns}\t{st.st_ino}"


def file_digests(paths: Iterable[str | Path]) -> list[str]:
    """The SHA-256 (hex) of each file's bytes, in order; from the store where the file's identity
    is unchanged, else read (and stored). A file that cannot be read is one line naming it."""
    from ageest.io import write_json_atomic

    store = hash_store()
    known = _known(store)
    out, new = [], {}
    for p in map(Path, paths):
        try:
            key = _key(p)
            digest = known.get(key)
            if not isinstance(digest, str):
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for block in iter(lambda: f.read(CHUNK), b""):
                        h.update(block)
                digest = new[key] = h.hexdigest()
        except OSError as e:
            raise DataError(f"{p}: cannot read it to hash its content ({e.strerror or e})") from None
        out.append(digest)
    if new:
        known.update(new)
        try:
            # Entries of files that have since changed stay until the store is rebuilt: harmless.
            write_json_atomic(store, known)
        except Exception:
            pass  # a read-only cache folder: hash again next time
    return out


_LOADED: dict[Path, dict] = {}


def _known(store: Path) -> dict:
    """The store's digests, read once per process: a fold computes its fingerprint several times,
    and the entries are keyed by file identity, so one loaded earlier never gives a stale digest."""
    if store not in _LOADED:
        try:
            known = json.loads(store.read_text())
        except (OSError, ValueError):
            known = {}  # none yet, or damaged: hash again
        _LOADED[store] = known if isinstance(known, dict) else {}
    return _LOADED[store]
