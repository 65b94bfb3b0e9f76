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


class Protocol:
    """An evaluation protocol: its folds, which images each fold tests on, and how a fold is named.

    `unit`: what one fold is in tables and logs ('subject' under LOPO, where a fold is a person).
    `whole`: every image of the data is in each fold, in one role (false for a split file, whose
    folds use the images they list). `needs_people`: refused on data without people.
    """

    unit = "fold"
    whole = True
    needs_people = False
    table: str | None = None  # a fixed table of (fold, image, role) the folds are read from

    def folds(self, people: Sequence[int], records: Sequence[Record] | None = None) -> list[int]:
        """The folds, in order, of data with these people (and records, where the protocol reads them)."""
        raise NotImplementedError

    def fold_ids(self, records: Sequence[Record]) -> list[int]:
        """The protocol's folds on these records, in order."""
        return self.folds(sorted({r.subject for r in records}), records)

    def test_indices(self, records: Sequence[Record], fold: int, seed: int = 0) -> list[int]:
        """Indices of the images fold `fold` tests on, in the one record order."""
        order = sorted(range(len(records)), key=lambda i: record_order(records[i]))
        test = self._tested(records, order, fold, seed)
        if not test:
            raise DataError(f"{self.unit} {fold} is not in the data")
        return test

    def _tested(self, records, order: list[int], fold: int, seed: int) -> list[int]:
        raise NotImplementedError

    def fixed_roles(self, records: Sequence[Record], fold: int) -> dict[str, list[int]] | None:
        """The fold's train, val and test indices where the protocol fixes them; None where only
        the test images are fixed and validation is drawn from the rest."""
        return None

    def check_test(self, test: Sequence[int], records: Sequence[Record], fold: int, where: str) -> None:
        """Refuse (DataError naming `where`) a split of `fold` whose test images are not the fold's."""

    def fold_name(self, fold: int) -> str:
        """How logs name a fold: 'fold=002 (kfold:5)'; under LOPO 'subject=007'."""
        return f"fold={fold:03d} ({self})"

    def identity(self, fold: int) -> dict:
        """How metrics.json names its fold: `fold` always, `subject` too under LOPO."""
        return {"fold": fold}

    @property
    def folds_of(self) -> str:
        """Where the folds come from, as an error message says it."""
        return f"study ({self})"


@dataclass(frozen=True)
class Lopo(Protocol):
    """Leave one person out: one fold per person, its id the person's."""

    unit = "subject"
    needs_people = True

    def __str__(self) -> str:
        return "lopo"

    def folds(self, people, records=None) -> list[int]:
        return sorted(people)

    def _tested(self, records, order, fold, seed):
        return [i for i in order if records[i].subject == fold]

    def check_test(self, test, records, fold, where) -> None:
        if set(test) != {i for i, r in enumerate(records) if r.subject == fold}:
            raise DataError(f"{where}: the test images are not exactly those of subject {fold}")

    def fold_name(self, fold: int) -> str:
        return f"subject={fold:03d}"

    def identity(self, fold: int) -> dict:
        return {"fold": fold, "subject": fold}

    @property
    def folds_of(self) -> str:
        return "data"


@dataclass(frozen=True)
class KFold(Protocol):
    """K subject-disjoint folds, ids 1..K, balanced in images and age, drawn from the seed."""

    k: int

    def __str__(self) -> str:
        return f"kfold:{self.k}"

    def folds(self, people, records=None) -> list[int]:
        if len(people) < self.k:
            raise DataError(f"kfold: {self.k} folds need at least {self.k} people; the data has {len(people)}")
        return list(range(1, self.k + 1))

    def _tested(self, records, order, fold, seed):
        if not 1 <= fold <= self.k:
            raise DataError(f"fold {fold} is not one of the {self.k} folds of {self}")
        of = kfold_assignment(records, self.k, seed)
        return [i for i in order if of[records[i].subject] == fold]


@dataclass(frozen=True)
class SplitFile(Protocol):
    """A fixed table of (fold, image, role): the folds, and all three roles of each, as it says."""

    path: str
    whole = False

    def __str__(self) -> str:
        return f"split_file:{self.path}"

    @property
    def table(self) -> str:
        return self.path

    def folds(self, people, records=None) -> list[int]:
        return sorted(read_split_table(self.path, records)) if records is not None else split_file_folds(self.path)

    def _tested(self, records, order, fold, seed):
        return list(self.fixed_roles(records, fold)["test"])

    def fixed_roles(self, records, fold):
        table = read_split_table(self.path, records)
        if fold not in table:
            raise DataError(f"{self.path}: no fold {fold} (folds: {', '.join(map(str, sorted(table)))})")
        return table[fold]


def parse_protocol(text: str | Protocol) -> Protocol:
    """'lopo', 'kfold:K' (K >= 2) or 'split_file:PATH' as a Protocol (a Protocol as it is);
    ValueError saying what is wrong."""
    if isinstance(text, Protocol):
        return text
    kind, _, arg = str(text).partition(":")
    if kind == "lopo" and not arg:
        return Lopo()
    if kind == "kfold":
        if not (arg.isascii() and arg.isdigit()) or int(arg) < 2:
            raise ValueError("kfold needs a number of folds K >= 2 (kfold:5)")
        return KFold(int(arg))
    if kind == "split_file" and arg:
        return SplitFile(arg)
    raise ValueError("must be lopo, kfold:K or split_file:PATH")


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
