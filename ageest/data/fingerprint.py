"""The data fingerprint: what makes two data sets the same for a study (image bytes and names,
and the landmarks the images align with), and the refusal of one photo under two people."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ageest.data.records import Record
from ageest.errors import DataError


def landmarks_digest(points_dir: str | Path | None, records: list[Record] | None = None) -> str | None:
    """SHA-256 (16 hex) of landmark files' names and bytes; None without a points folder (and
    without manifest records, which name their own).

    With `records`: the landmarks each image aligns with (a manifest's inline x/y points, else the
    `.pts` of `landmarks.landmark_file`: a manifest's own, else FG-NET's lower-case name in the
    folder), '-' for an image that has none, so a point or file edited, added or removed for any of
    them changes it. Without: every `.pts` file in the folder (what a checksum list would cover).
    """
    from ageest.data.landmarks import landmark_file

    if points_dir is None and not any(r.from_table for r in records or ()):
        return None  # (a manifest's records name their own landmarks, with or without a folder)
    d = Path(points_dir) if points_dir is not None else None
    if records is None:
        files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() == ".pts") if d.is_dir() else []
        pairs = [(p.name, p) for p in files]
    else:
        pairs = [(r.name, r.keypoints if r.keypoints is not None else landmark_file(r, d)) for r in records]
    h = hashlib.sha256()
    for name, p in pairs:
        if isinstance(p, tuple):  # a manifest's inline points: their values are the landmarks' bytes
            h.update(f"{name}\tinline\t{hashlib.sha256(repr(p).encode()).hexdigest()}\n".encode())
            continue
        h.update(f"{name}\t{p.name if p else '-'}\t{hashlib.sha256(p.read_bytes()).hexdigest() if p else '-'}\n"
                 .encode())
    return h.hexdigest()[:16]


def data_fingerprint(records: list[Record], points_dir: str | Path | None = None, landmarks: str | None = None) -> str:
    """Hash of the images' names and bytes (SHA-256 of each, remembered by ageest.data.hashes), and
    with `points_dir` of the landmark files the images align with (`landmarks_digest`, or
    `landmarks` where the caller has it already): it changes when an image is added, removed,
    renamed or edited in place, whatever its size, or a landmark file is edited. Refuses one photo
    under two people (`check_duplicates`)."""
    from ageest.data.hashes import file_digests

    digests = file_digests(r.path for r in records)
    check_duplicates(records, digests)
    h = hashlib.sha256()
    for r, digest in zip(records, digests):
        h.update(f"{r.name}\t{digest}\n".encode())
    if points_dir is not None:
        h.update(f"landmarks\t{landmarks or landmarks_digest(points_dir, records)}\n".encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Fingerprint:
    """What a fold, a baseline and a cache record of their data, computed once per fold
    (`fold_fingerprint`): `data`, the fingerprint (with the landmarks where the config aligns on
    them: an edited .pts is another data set), and `landmarks`, their own digest then (the cache
    names it apart when it differs), else None."""

    data: str
    landmarks: str | None = None


def fold_fingerprint(records: list[Record], config, points_dir: str | Path | None) -> Fingerprint:
    landmarks = landmarks_digest(points_dir, records) if config.align == "landmarks" else None
    aligned = points_dir if config.align == "landmarks" else None
    return Fingerprint(data_fingerprint(records, aligned, landmarks), landmarks)


def check_duplicates(records: list[Record], digests: list[str]) -> int:
    """Refuse (one line naming both) two images of the same bytes under two people: a copy would
    put one photo in training and in test. Returns how many images repeat another of their person."""
    first: dict[str, Record] = {}
    repeats = 0
    for r, digest in zip(records, digests):
        other = first.setdefault(digest, r)
        if other is r:
            continue
        if other.subject != r.subject:
            raise DataError(f"{r.image or r.path} (subject {r.person or r.subject}) is the same file as "
                            f"{other.image or other.path} (subject {other.person or other.subject}), byte for byte: "
                            "one photo under two people would leak between training and test; remove one")
        repeats += 1
    return repeats
