"""What every fold, trained or baseline, shares: its split, its predictions file, its provenance."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from ageest import __version__, code_version
from ageest.config import Config
from ageest.data.records import Record
from ageest.errors import DataError
from ageest.data.splits import Split, read_split, split_fold, split_table

PREDICTION_HEADER = ("image", "subject", "age", "predicted_age", "predicted_std", "predicted_age_rounded")


def fold_identity(fold: int, config: Config, records: Sequence[Record]) -> dict:
    """How metrics.json names its fold: `fold` always; `subject` too under LOPO (the person left
    out); `image_level` where the data has no people (each image counted as its own person)."""
    from ageest.data.records import image_level

    ident = {"fold": fold, **({"subject": fold} if config.protocol == "lopo" else {})}
    return {**ident, "image_level": True} if image_level(records) else ident


def fold_split(records: Sequence[Record], fold: int, config: Config,
               split_file: str | Path | None = None) -> tuple[Split, str]:
    """The fold's split under the config's protocol (from `split_file` if given, else drawn from the
    config's seed) and its short digest."""
    split = (read_split(split_file, records, fold, config.protocol) if split_file
             else split_fold(records, fold, config.seed, config.val_rate, config.val_split, config.protocol))
    return split, hashlib.sha256(split_table(records, split).encode()).hexdigest()[:16]


def predictions_tsv(records: Sequence[Record], predicted: np.ndarray, std: np.ndarray) -> str:
    """predictions.tsv: one row per test image (ages in years; std NaN where a method has none), and
    a `person` column with the manifest's own subject strings where it has them."""
    person = any(r.person for r in records)
    lines = ["\t".join(PREDICTION_HEADER + (("person",) if person else ()))]
    for r, m, s in zip(records, predicted, std):
        lines.append(f"{r.name}\t{r.subject}\t{r.age}\t{m:.4f}\t{s:.4f}\t{int(np.rint(m))}"
                     + (f"\t{r.person}" if person else ""))
    return "\n".join(lines) + "\n"


def provenance(config: Config, fingerprint: str, split_digest: str, images: str | Path) -> dict:
    """The keys gather checks (one config, one data set) and what reproduces the fold."""
    return {"config": config.to_dict(), "data_fingerprint": fingerprint, "split_digest": split_digest,
            "images": str(images), "ageest_version": __version__, "code_version": code_version()}


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
