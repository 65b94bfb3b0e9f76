"""Evaluation protocols: which folds a study has, and which images each fold tests on.

A protocol is the training key `protocol` (one string, so it is frozen with every fold's config):

- `lopo`: leave one person out; one fold per person, its id the person's (FG-NET's 3-digit number).
- `kfold:K`: K subject-disjoint folds, ids 1..K, balanced in images and in age, assigned from
  `training.seed`. On data without people (a manifest without a subject column) each image is
  its own person, so the folds are image-level (`image_level`; every table says so).
- `split_file:PATH`: a fixed assignment of images to folds and roles, as published benchmarks ship
  them: a table (`.tsv`, or `.csv`) with columns `fold`, `image`, `role` (`train`, `val`, `test`),
  one row per image and fold; images a fold does not list are not used in it. Fold ids: the
  `fold` cell's number when every cell is a whole number, else 1..N in the cells' sorted order.

Under `lopo` and `kfold` every image is tested exactly once; under `split_file` once per fold that
lists it as test. Validation never shares people with test (lopo and kfold draw it from the other
people; a split file that breaks this is refused).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ageest.data.records import Record, record_order, subject_ids
from ageest.errors import DataError

ROLES = ("train", "val", "test")


@dataclass(frozen=True)
class Protocol:
    kind: str
    k: int = 0  # kfold: the number of folds
    path: str = ""  # split_file: the table

    def __str__(self) -> str:
        return {"lopo": "lopo", "kfold": f"kfold:{self.k}", "split_file": f"split_file:{self.path}"}[self.kind]


def parse_protocol(text: str | Protocol) -> Protocol:
    """'lopo', 'kfold:K' (K >= 2) or 'split_file:PATH' as a Protocol (a Protocol as it is);
    ValueError saying what is wrong."""
    if isinstance(text, Protocol):
        return text
    kind, _, arg = str(text).partition(":")
    if kind == "lopo" and not arg:
        return Protocol("lopo")
    if kind == "kfold":
        if not (arg.isascii() and arg.isdigit()) or int(arg) < 2:
            raise ValueError("kfold needs a number of folds K >= 2 (kfold:5)")
        return Protocol("kfold", k=int(arg))
    if kind == "split_file" and arg:
        return Protocol("split_file", path=arg)
    raise ValueError("must be lopo, kfold:K or split_file:PATH")


def fold_ids(protocol: Protocol, records: Sequence[Record]) -> list[int]:
    """The protocol's folds on these records, in order."""
    if protocol.kind == "lopo":
        return sorted({r.subject for r in records})
    if protocol.kind == "kfold":
        kfold_assignment(records, protocol.k, 0)  # too few people is an error for any seed
        return list(range(1, protocol.k + 1))
    return sorted(read_split_table(protocol.path, records))


def test_indices(protocol: Protocol, records: Sequence[Record], fold: int, seed: int = 0) -> list[int]:
    """Indices of the images fold `fold` tests on, in the one record order."""
    order = sorted(range(len(records)), key=lambda i: record_order(records[i]))
    if protocol.kind == "lopo":
        test = [i for i in order if records[i].subject == fold]
    elif protocol.kind == "kfold":
        if not 1 <= fold <= protocol.k:
            raise DataError(f"fold {fold} is not one of the {protocol.k} folds of {protocol}")
        of = kfold_assignment(records, protocol.k, seed)
        test = [i for i in order if of[records[i].subject] == fold]
    else:
        table = read_split_table(protocol.path, records)
        if fold not in table:
            raise DataError(f"{protocol.path}: no fold {fold} (folds: {', '.join(map(str, sorted(table)))})")
        test = list(table[fold]["test"])
    if not test:
        raise DataError(f"{'subject' if protocol.kind == 'lopo' else 'fold'} {fold} is not in the data")
    return test


def kfold_assignment(records: Sequence[Record], k: int, seed: int) -> dict[int, int]:
    """{subject: fold 1..k}: every person in one fold, the folds balanced in age and in images.

    People are ranked by mean age, jittered by up to ±2.5 years from the seed (so the seed draws
    other folds), and taken k at a time, an age stratum each: each fold holds one person of every
    stratum (ages balanced). Within a stratum the people with more images go first, each to the
    fold with the fewest images so far among those the stratum has not filled yet (image counts
    balanced). A pure function of the records' (subject, age, name), k and seed, not of their
    listing order.
    """
    groups: dict[int, list[int]] = {}
    for r in sorted(records, key=record_order):
        groups.setdefault(r.subject, []).append(r.age)
    if len(groups) < k:
        raise DataError(f"kfold:{k} needs at least {k} people; the data has {len(groups)}")
    people = sorted(groups)
    rng = np.random.default_rng([seed, k])
    jitter = rng.uniform(-2.5, 2.5, len(people))
    ranked = sorted(range(len(people)), key=lambda j: (float(np.mean(groups[people[j]])) + jitter[j], j))
    size = dict.fromkeys(range(1, k + 1), 0)
    of: dict[int, int] = {}
    for start in range(0, len(ranked), k):
        stratum = sorted(ranked[start:start + k], key=lambda j: (-len(groups[people[j]]), jitter[j]))
        free = [int(f) + 1 for f in rng.permutation(k)]  # ties between folds: a seeded order
        for j in stratum:
            fold = min(free, key=lambda f: size[f])
            free.remove(fold)
            of[people[j]] = fold
            size[fold] += len(groups[people[j]])
    return of


def split_file_folds(path: str | Path) -> list[int]:
    """A split file's fold ids alone (its `fold` column), before the data exists to check the rest."""
    header, rows = _table(Path(path))
    return sorted(set(subject_ids([r[header.index("fold")].strip() for r in rows[1:]]).values()))


def _table(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise DataError(f"{path}: cannot read the split file ({e.strerror or e})") from None
    rows = [r for r in csv.reader(text.splitlines(), delimiter="," if path.suffix.lower() == ".csv" else "\t")
            if any(c.strip() for c in r)]
    header = [c.strip() for c in rows[0]] if rows else []
    missing = [c for c in ("fold", "image", "role") if c not in header]
    if missing:
        raise DataError(f"{path}, row 1 (header): no '{missing[0]}' column (needed: fold, image, role)")
    return header, rows


def read_split_table(path: str | Path, records: Sequence[Record]) -> dict[int, dict[str, list[int]]]:
    """A split file as {fold id: {role: record indices in record order}}, every problem one
    DataError naming the row and column; refused where validation shares people with test."""
    path = Path(path)
    header, rows = _table(path)
    col = {c: header.index(c) for c in ("fold", "image", "role")}
    index = {r.name: i for i, r in enumerate(records)}
    cells: list[tuple[str, int, str, int]] = []
    for n, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise DataError(f"{path}, row {n}: {len(row)} cells where the header has {len(header)}")
        fold, image, role = (row[col[c]].strip() for c in ("fold", "image", "role"))
        if not fold:
            raise DataError(f"{path}, row {n}, column fold: empty")
        if image not in index:
            raise DataError(f"{path}, row {n}, column image: '{image}' is not an image of the data")
        if role not in ROLES:
            raise DataError(f"{path}, row {n}, column role: '{role}' is not train, val or test")
        cells.append((fold, index[image], role, n))
    if not cells:
        raise DataError(f"{path}: no rows under the header")
    ids = subject_ids([c[0] for c in cells])
    table: dict[int, dict[str, list[int]]] = {}
    seen: dict[tuple[int, int], int] = {}
    for fold, i, role, n in cells:
        fid = ids[fold]
        if (fid, i) in seen:
            raise DataError(f"{path}, row {n}, column image: {records[i].name} is also row {seen[fid, i]} of fold {fold}")
        seen[fid, i] = n
        table.setdefault(fid, {r: [] for r in ROLES})[role].append(i)
    for fid, roles in table.items():
        for role in ROLES:
            if not roles[role]:
                raise DataError(f"{path}: fold {fid} has no {role} images")
            roles[role].sort(key=lambda i: record_order(records[i]))
        shared = {records[i].subject for i in roles["val"]} & {records[i].subject for i in roles["test"]}
        if shared:
            raise DataError(f"{path}: fold {fid} validates on {len(shared)} person(s) it also tests on "
                            f"(e.g. subject {min(shared)}); validation must not share people with test")
        # A person trained on is no longer unseen in test, nor in the validation that picks the epoch.
        who = {role: {records[i].subject: i for i in roles[role]} for role in ROLES}
        for a, b in (("train", "test"), ("train", "val")):
            both = sorted(set(who[a]) & set(who[b]))
            if both:
                s = both[0]
                raise DataError(f"{path}, row {seen[fid, who[b][s]]}: fold {fid} has subject {s} in {b} and in {a} "
                                f"(row {seen[fid, who[a][s]]}; {len(both)} such person(s)); a person must be in one "
                                "role of a fold")
    return table
