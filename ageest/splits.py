"""One LOPO fold's split: a pure function of (files, left-out subject, seed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import DataError
from .fgnet import Record


@dataclass(frozen=True)
class Split:
    """Indices into the record list. Test = every image of the left-out subject."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]


def split_fold(records: Sequence[Record], subject: int, seed: int = 0, val_rate: float = 0.1,
               by: str = "subject") -> Split:
    """Split for the fold that leaves `subject` out.

    by='subject': validation is whole people (never also in training), drawn in a seeded order
    until they hold about `val_rate` of the non-test images. by='image': the seed project's split,
    a seeded `val_rate` share of the non-test images, people shared with training.
    The result depends only on the records' (name, subject), `subject` and `seed`.
    """
    if by not in ("subject", "image"):
        raise ValueError(f"by must be 'subject' or 'image', got {by!r}")
    # Sort by name so the split does not depend on the order the folder was listed in.
    order = sorted(range(len(records)), key=lambda i: records[i].name)
    test = [i for i in order if records[i].subject == subject]
    if not test:
        raise DataError(f"subject {subject} is not in the data")
    rest = [i for i in order if records[i].subject != subject]
    # One stream per (seed, subject): folds are independent of each other and of run order.
    rng = np.random.default_rng([seed, subject])
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
        val_idx.sort(key=lambda i: records[i].name)
    val_set = set(val_idx)
    train = [i for i in rest if i not in val_set]
    if not train or not val_idx:
        raise DataError(f"fold {subject}: too few images to split ({len(rest)} outside the test subject)")
    return Split(tuple(train), tuple(val_idx), tuple(test))
