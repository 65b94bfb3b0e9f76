"""What every benchmark shares: A/B rounds with a median ratio, --quick, figures written beside the
console (run as `python benchmarks/NAME.py`, which puts this folder on sys.path). No torch here."""

from __future__ import annotations

import os
import shutil
import tempfile


def add_suite_arguments(ap) -> None:
    """--quick (a smoke run: tiny sizes, one round; tests/test_benchmarks.py runs it) and --out
    FILE (.tsv or .json: the figures printed, as rows)."""
    ap.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes, one round (the tests run it)")
    ap.add_argument("--out", default=None, help="also write the figures here (.tsv or .json)")


def alternate(arms: dict, rounds: int, warmup: bool = False) -> dict[str, list[float]]:
    """Measure each arm (name -> callable returning a figure) once per round, in turns, so a
    machine whose load drifts slows every arm alike. `warmup`: one uncounted round first."""
    figures: dict[str, list[float]] = {name: [] for name in arms}
    for r in range(rounds + int(warmup)):
        for name, measure in arms.items():
            value = measure()
            if r >= int(warmup):
                figures[name].append(value)
    return figures


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """The median over rounds of numerator / denominator, each round's pair measured together."""
    import statistics

    return statistics.median(a / b for a, b in zip(numerator, denominator))


def write_figures(path: str | None, rows: list[dict]) -> None:
    """Write `rows` (one dict per printed line) as TSV or JSON by the file's suffix; None: nothing."""
    if not path:
        return
    import csv
    import json
    from pathlib import Path

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix == ".json":
        p.write_text(json.dumps(rows, indent=2, default=str) + "\n")
        return
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(p, "w", newline="") as f:
        w = csv.DictWriter(f, columns, delimiter="\t", restval="")
        w.writeheader()
        w.writerows(rows)


def quick_images(n_subjects: int = 6) -> str:
    """A small synthetic data set (`ageest synth`), made once per machine, for --quick runs: made
    aside and moved into place whole, so benchmarks started together never read half of it."""
    from ageest.data.synth import make_synthetic

    parent = os.environ.get("TMPDIR", "/tmp")
    root = os.path.join(parent, f"ageest-bench-synth-{n_subjects}")
    if not os.path.isdir(os.path.join(root, "images")):
        aside = tempfile.mkdtemp(prefix=f".ageest-bench-synth-{n_subjects}-", dir=parent)
        make_synthetic(aside, seed=0, n_subjects=n_subjects)
        try:
            os.rename(aside, root)
        except OSError:  # another run's set landed first: the same images (seed 0)
            shutil.rmtree(aside)
    return os.path.join(root, "images")
