"""What every fold, trained or baseline, writes: how it names itself, its predictions file, its provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ageest import __version__, code_version
from ageest.config import Config
from ageest.data.protocols import parse_protocol
from ageest.data.records import Record, image_level

PREDICTION_HEADER = ("image", "subject", "age", "predicted_age", "predicted_std", "predicted_age_rounded")


def fold_identity(fold: int, config: Config, records: Sequence[Record]) -> dict:
    """How metrics.json names its fold: the protocol's names (`fold`; `subject` too under LOPO, the
    person left out) and `image_level` where the data has no people (each image its own person)."""
    ident = parse_protocol(config.protocol).identity(fold)
    return {**ident, "image_level": True} if image_level(records) else ident


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
