"""Every benchmark runs: `--quick` (tiny sizes, one round) writes its figures, so a broken
benchmark fails the suite. The figures themselves are not checked: they are timings."""

import csv
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import pyproc

ROOT = Path(__file__).resolve().parents[1]
# detect_compare.py scores detectors on a landmarked folder: tests/test_detect_compare.py runs its
# --quick on synthetic faces and checks its figures' columns.
BENCHMARKS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")
                    if p.name not in ("fastpath.py", "suite.py", "detect_compare.py"))


def test_every_script_in_benchmarks_is_listed():
    assert BENCHMARKS == ["batch_prep.py", "demo_walltime.py", "fold_threads.py", "hash_cost.py", "precision_step.py",
                          "profile_fold.py", "study_estimate.py", "study_walltime.py", "train_throughput.py"]


@pytest.fixture(scope="module")
def bench_tmp(tmp_path_factory):
    """TMPDIR of every --quick run: the small synthetic set of suite.quick_images is made there once
    and read by the benchmarks after the first (each run's own folders are mkdtemp's, apart)."""
    return tmp_path_factory.mktemp("bench-tmp")


def _quick_run(name, work, bench_tmp):
    out = work / "figures.tsv"
    extra = ["--directory", str(work / "study")] if name == "study_walltime.py" else []
    r = pyproc.run([ROOT / "benchmarks" / name, "--quick", "--out", out, *extra], timeout=900, cwd=work,
                   env={**os.environ, "TMPDIR": str(bench_tmp)})
    return r, out


@pytest.fixture(scope="module")
def quick_runs(request, bench_tmp, tmp_path_factory):
    """The selected benchmarks' --quick runs, two at a time, the two Snakemake studies first: most
    are one process on one core (Snakemake's chain of jobs, one training thread), and their timings
    are not checked. {name: future of (completed process, figures file)}."""
    selected = [item.callspec.params["name"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_quick_run_writes_its_figures"]
    first = [n for n in ("demo_walltime.py", "study_walltime.py") if n in selected]
    with ThreadPoolExecutor(2) as pool:
        yield {name: pool.submit(_quick_run, name, tmp_path_factory.mktemp(name), bench_tmp)
               for name in first + [n for n in selected if n not in first]}


@pytest.mark.slow
@pytest.mark.parametrize("name", BENCHMARKS)
def test_quick_run_writes_its_figures(quick_runs, name):
    r, out = quick_runs[name].result()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = list(csv.DictReader(out.open(), delimiter="\t"))
    assert rows, r.stdout


def test_alternate_takes_turns_and_the_ratio_is_per_round():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from suite import alternate, median_ratio

    calls = []
    figures = alternate({"a": lambda: calls.append("a") or 2.0, "b": lambda: calls.append("b") or 6.0}, 3,
                        warmup=True)
    assert calls == ["a", "b"] * 4 and figures == {"a": [2.0] * 3, "b": [6.0] * 3}
    assert median_ratio([6, 9, 30], [2, 3, 5]) == 3.0


def test_the_benchmarks_cache_is_named_by_its_data_and_settings(blobs, tmp_path, monkeypatch):
    # A fixed name per size once served a cache of other images or an older format: "differs in: version".
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from fastpath import cache_path

    from ageest.config import Config
    from ageest.data.fgnet import scan_images
    from ageest.pipeline.cache import CACHE_VERSION
    from conftest import write_blobs

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    a, b = scan_images(blobs), scan_images(write_blobs(tmp_path / "other", seed=1))
    c = Config(image_size=32, align="none", pretrained="none")
    path = cache_path(a, c)
    assert path == cache_path(a, c) and Path(path).parent.parent == tmp_path
    assert Path(path).name.startswith(f"v{CACHE_VERSION}-")
    assert len({path, cache_path(b, c), cache_path(a, Config(image_size=64, align="none", pretrained="none"))}) == 3
