"""One fold's split: a pure function of (records, fold, seed) under the config's protocol."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ageest.config import Config, add_config_arguments
from ageest.errors import DataError
from ageest.data.records import Record, record_order
from ageest.data.protocols import Protocol, ROLES, parse_protocol


@dataclass(frozen=True)
class Split:
    """Indices into the record list. Test = the fold's images (under LOPO: the left-out person's)."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]


def split_fold(records: Sequence[Record], fold: int, seed: int = 0, val_rate: float = 0.1,
               by: str = "subject", protocol: Protocol | str = "lopo") -> Split:
    """Split for fold `fold` of `protocol` (default LOPO: the fold that leaves person `fold` out).

    Test: the fold's images (`Protocol.test_indices`). by='subject': validation is whole people
    (never also in training), drawn in a seeded order until they hold about `val_rate` of the
    non-test images. by='image': the reference recipe's split, a seeded `val_rate` share of the
    non-test images, people shared with training. A split_file protocol gives all three roles.
    The result depends only on the records' (subject, age, name) (`record_order`), `fold` and
    `seed`: not on the order they are listed in, nor on file names across people or ages.
    """
    if by not in ("subject", "image"):
        raise ValueError(f"by must be 'subject' or 'image', got {by!r}")
    protocol = parse_protocol(protocol)
    fixed = protocol.fixed_roles(records, fold)
    if fixed is not None:
        return Split(*(tuple(fixed[r]) for r in ROLES))
    test = protocol.test_indices(records, fold, seed)
    # One order, not the listing's: the split does not depend on how the folder or table was listed.
    order = sorted(range(len(records)), key=lambda i: record_order(records[i]))
    tested = set(test)
    rest = [i for i in order if i not in tested]
    # One stream per (seed, fold): folds are independent of each other and of run order.
    rng = np.random.default_rng([seed, fold])
    target = int(round(val_rate * len(rest)))
    if by == "image":
        val = set(rng.permutation(len(rest))[:target].tolist())
        val_idx = [rest[k] for k in sorted(val)]
    else:
        people = sorted({records[i].subject for i in rest})
        by_person: dict[int, list[int]] = {s: [] for s in people}
        for i in rest:
            by_person[records[i].subject].append(i)
        val_idx = []
        for s in rng.permutation(people).tolist():
            if len(val_idx) >= target:
                break
            val_idx.extend(by_person[s])
        val_idx.sort(key=lambda i: record_order(records[i]))
    val_set = set(val_idx)
    train = [i for i in rest if i not in val_set]
    if not train or not val_idx:
        raise DataError(f"fold {fold}: too few images to split ({len(rest)} outside the test set)")
    return Split(tuple(train), tuple(val_idx), tuple(test))


def fold_split_tsv(records: Sequence[Record], split: Split) -> str:
    """A fold's split as TSV (image, subject, age, role): the per-fold file the workflow tracks
    (a "fold split"; not the `split_file:` protocol's table, which holds every fold)."""
    role = {i: name for name, idx in zip(ROLES, (split.train, split.val, split.test)) for i in idx}
    lines = ["image\tsubject\tage\trole"]
    lines += [f"{records[i].name}\t{records[i].subject}\t{records[i].age}\t{role[i]}"
              for i in sorted(role, key=lambda i: record_order(records[i]))]
    return "\n".join(lines) + "\n"


def read_fold_split(path: str | Path, records: Sequence[Record], fold: int, protocol: Protocol | str = "lopo") -> Split:
    """A fold split (the TSV `fold_split_tsv` writes, `ageest split`) back into indices, refusing any that is not a split of `fold` under `protocol`:
    under LOPO its test images must be exactly those of person `fold`; under every protocol no
    image twice, test people not in validation, and (lopo, kfold) every image listed, test people
    not in training. (Which people a kfold fold tests on is checked by gather over all folds.)"""
    path = Path(path)
    protocol = parse_protocol(protocol)
    try:
        rows = [line.split("\t") for line in path.read_text().splitlines()[1:] if line.strip()]
    except OSError as e:
        raise DataError(f"fold split {path}: {e.strerror or e}") from None
    index = {r.name: i for i, r in enumerate(records)}
    by_role: dict[str, list[int]] = {role: [] for role in ROLES}
    for n, row in enumerate(rows, 2):
        if len(row) != 4 or row[3] not in by_role or row[0] not in index:
            raise DataError(f"fold split {path}, line {n}: expected image, subject, age, role "
                            f"(train/val/test) of an image in the data")
        by_role[row[3]].append(index[row[0]])
    listed = [i for idx in by_role.values() for i in idx]
    whole = protocol.whole
    if len(listed) != len(set(listed)) or (whole and len(listed) != len(records)):
        raise DataError(f"fold split {path} does not list every image of the data exactly once")
    protocol.check_test(by_role["test"], records, fold, f"fold split {path}")
    tested = {records[i].subject for i in by_role["test"]}
    if not by_role["test"] or not by_role["train"] or not by_role["val"]:
        raise DataError(f"fold split {path}: no test, no training or no validation images")
    for role in ("val", "train") if whole else ("val",):
        if tested & {records[i].subject for i in by_role[role]}:
            raise DataError(f"fold split {path}: people of the test images are also in {role}")
    return Split(*(tuple(sorted(by_role[r], key=lambda i: record_order(records[i]))) for r in ROLES))


def fold_split(records: Sequence[Record], fold: int, config: Config,
               split_file: str | Path | None = None) -> tuple[Split, str]:
    """The fold's split under the config's protocol (from `split_file` if given, else drawn from the
    config's seed) and its short digest."""
    split = (read_fold_split(split_file, records, fold, config.protocol) if split_file
             else split_fold(records, fold, config.seed, config.val_rate, config.val_split, config.protocol))
    return split, hashlib.sha256(fold_split_tsv(records, split).encode()).hexdigest()[:16]


def drop_skipped(split: Split, records: Sequence[Record], skipped: Sequence[str],
                 fold: int) -> tuple[Split, dict[str, int]]:
    """The split without the images the cache skipped (`on_no_face: skip`: no face found, no
    landmarks), and how many each part lost (`n_train_skipped`, `n_val_skipped`, `n_test_skipped`,
    as metrics.json records them). The split's digest stays the one of the split drawn: skipping
    is the cache's, recorded beside it. A part left empty stops the fold (DataError): a fold
    without test images has no MAE to gather, one without training or validation images no model.
    """
    gone = set(skipped)
    parts = {k: tuple(i for i in getattr(split, k) if records[i].name not in gone) for k in ("train", "val", "test")}
    counts = {f"n_{k}_skipped": len(getattr(split, k)) - len(v) for k, v in parts.items()}
    empty = [k for k, v in parts.items() if not v and getattr(split, k)]
    if empty:
        raise DataError(f"fold {fold:03d}: all its {' and '.join(empty)} images were skipped (on_no_face: skip, "
                        "no points to align on); leave the fold out of `subjects`, or set align_fallback: true")
    return dataclasses.replace(split, **parts), counts


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ageest.data.reader import add_data_arguments

    add_data_arguments(p)
    p.add_argument("--fold", "--leave-subject", dest="fold", type=int, required=True, metavar="N",
                   help="the fold (under lopo: the subject left out)")
    p.add_argument("--out", required=True, help="split TSV to write (image, subject, age, role)")
    add_config_arguments(p, "training config YAML (seed, val_rate, val_split)")


def run(args: argparse.Namespace) -> int:
    """Write one fold's split (train / val / test per image)."""
    from ageest.config import load_config
    from ageest.data.reader import read_records
    from ageest.io import write_text_atomic

    config = load_config(args.config, args.overrides)
    records = read_records(args.images, args.root)
    split = split_fold(records, args.fold, config.seed, config.val_rate, config.val_split, config.protocol)
    write_text_atomic(args.out, fold_split_tsv(records, split))
    print(f"fold {args.fold:03d} ({config.protocol}): {len(split.train)} train, {len(split.val)} val, "
          f"{len(split.test)} test -> {args.out}")
    return 0
