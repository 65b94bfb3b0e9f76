"""Copy a finished study's results into docs/results/NAME, as the published studies keep them.

    python tools/publish_study.py --name face-age --config config/face-age.yaml \
        --wall-seconds 2900 --command "snakemake --cores 2 --configfile config/face-age.yaml fgnet.yaml"

Copies the tables (folds, summary, seeds, comparison), the plots, every fold's own outputs
(metrics.json, predictions.tsv, history.tsv: predicted ages, file names and true ages, never an
image or a model), the resolved training config, the study config(s), what gather printed, and
writes provenance.json (the code version the folds report, the commit the copy was made at, torch,
wall time, command, machine). `ageest gather docs/results/NAME/folds/*/*/metrics.json --out DIR`
regathers every table from the copy.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("folds", "summary", "seeds", "comparison")
FOLD_FILES = ("metrics.json", "predictions.tsv", "history.tsv")


def publish(results: Path, out: Path, configs: list[Path], wall_seconds: float | None, command: str,
            machine: str) -> dict:
    if not (results / "tables" / "summary.tsv").is_file():
        raise SystemExit(f"{results}: no tables/summary.tsv: the study has not finished")
    if out.exists():
        shutil.rmtree(out)
    (out / "plots").mkdir(parents=True)
    for t in TABLES:
        shutil.copy2(results / "tables" / f"{t}.tsv", out / f"{t}.tsv")
    for png in sorted((results / "plots").glob("*.png")):
        shutil.copy2(png, out / "plots" / png.name)
    metrics = sorted((results / "folds").glob("**/metrics.json"))
    versions, torch, precision = Counter(), Counter(), Counter()
    for m in metrics:
        fold = m.parent
        dest = out / "folds" / fold.relative_to(results / "folds")
        dest.mkdir(parents=True)
        for name in FOLD_FILES:
            if (fold / name).is_file():
                shutil.copy2(fold / name, dest / name)
        j = json.loads(m.read_text())
        versions[j.get("code_version", "?")] += 1
        if "torch_version" in j:
            torch[j["torch_version"]] += 1
            precision[j.get("precision", "?")] += 1
    shutil.copy2(results / "config" / "training.yaml", out / "training.yaml")
    for i, c in enumerate(configs):
        shutil.copy2(c, out / ("study-config.yaml" if i == 0 else f"study-config-{i + 1}.yaml"))
    if (results / "logs" / "gather.log").is_file():
        shutil.copy2(results / "logs" / "gather.log", out / "gather.log")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    provenance = {
        "folds_code_version": dict(versions), "copied_at": commit, "torch_version": dict(torch),
        "trained_folds_precision": dict(precision), "wall_seconds": wall_seconds, "command": command,
        "machine": machine, "fold_outputs_kept": len(metrics),
    }
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True, help="docs/results/NAME")
    ap.add_argument("--results", default="results", help="the study's results folder (default: %(default)s)")
    ap.add_argument("--config", action="append", required=True, help="the study's config file(s), in order")
    ap.add_argument("--wall-seconds", type=float, default=None, help="the study's wall time, as measured")
    ap.add_argument("--command", required=True, help="the command that ran it")
    ap.add_argument("--machine", default=f"{platform.processor() or platform.machine()}, {platform.python_version()}")
    args = ap.parse_args()
    p = publish(Path(args.results), ROOT / "docs" / "results" / args.name, [Path(c) for c in args.config],
                args.wall_seconds, args.command, args.machine)
    print(json.dumps(p, indent=2))


if __name__ == "__main__":
    main()
