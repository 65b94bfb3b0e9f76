"""ageest gather: tables from fold outputs; folds of different data or configs are refused."""

import json
import math

import pandas as pd
import pytest

from ageest.errors import AgeestError
from ageest.gather import gather, main_columns

CONFIG = {"epochs": 2, "lr": 0.002, "image_size": 32, "device": "cpu", "threads": 1}

# subject -> [(image, age)]
DATA = {1: [("001A02.JPG", 2), ("001A15.JPG", 15)], 2: [("002A05.JPG", 5), ("002A30.JPG", 30)],
        3: [("003A08.JPG", 8), ("003A12.JPG", 12)]}
# Absolute errors per loss and subject (signs alternate); softmax is the reference.
ERRORS = {"softmax": {1: [2, 4], 2: [1, 3], 3: [5, 5]},
          "mean_variance": {1: [1, 3], 2: [1, 3], 3: [2, 6]}}


def make_fold(root, loss, subject, fingerprint="abc", config=None, errors=None, precision=None):
    d = root / "folds" / loss / f"{subject:03d}"
    d.mkdir(parents=True)
    errs = errors or ERRORS[loss][subject]
    rows = [{"image": img, "subject": subject, "age": age, "predicted_age": age + (e if i % 2 else -e),
             "predicted_std": 1.0, "predicted_age_rounded": round(age + (e if i % 2 else -e))}
            for i, ((img, age), e) in enumerate(zip(DATA[subject], errs))]
    pd.DataFrame(rows).to_csv(d / "predictions.tsv", sep="\t", index=False)
    pd.DataFrame({"epoch": [1, 2], "train_loss": [3.0, 2.0], "val_mae": [9.0, 7.0]}).to_csv(
        d / "history.tsv", sep="\t", index=False)
    metrics = {"subject": subject, "loss": loss, "n_test": len(rows), "best_epoch": 2, "val_mae": 7.0,
               "test_mae": sum(errs) / len(errs), "seconds": 1.5, "data_fingerprint": fingerprint,
               "config": dict(config or CONFIG)}
    if precision is not None:
        metrics["precision"] = precision
    (d / "metrics.json").write_text(json.dumps(metrics))
    return d / "metrics.json"


def study(root, overrides=None):
    overrides = overrides or {}
    paths = []
    for loss in ("mean_variance", "softmax"):
        for s in (1, 2, 3):
            kw = overrides.get((loss, s), {})
            paths.append(make_fold(root, loss, s, **kw))
    return paths


def test_tables(tmp_path):
    tables = gather(study(tmp_path), tmp_path / "out", reference="softmax", n_boot=200, seed=0)
    for name in ("folds", "summary", "comparison", "predictions", "history"):
        assert (tmp_path / "out" / f"{name}.tsv").is_file()
    folds = pd.read_csv(tmp_path / "out" / "folds.tsv", sep="\t")
    assert list(folds.columns) == main_columns("folds")
    assert folds.set_index(["loss", "subject"]).loc[("softmax", 3), "mae"] == 5.0

    s = pd.read_csv(tmp_path / "out" / "summary.tsv", sep="\t").set_index("loss")
    assert list(s.index) == ["mean_variance", "softmax"]  # losses come from the data, in order
    assert s.loc["softmax", "images"] == 6
    assert s.loc["softmax", "mae"] == pytest.approx(20 / 6)
    assert s.loc["mean_variance", "mae"] == pytest.approx(16 / 6)
    # Per-subject MAE of mean_variance: 2, 2, 4 -> mean 8/3, sd sqrt(4/3).
    assert s.loc["mean_variance", "subject_mae_mean"] == pytest.approx(8 / 3)
    assert s.loc["mean_variance", "subject_mae_sd"] == pytest.approx(math.sqrt(4 / 3))
    # mean_variance abs errors 1, 3, 1, 3, 2, 6: CS(0) = 0, CS(1) = 2/6, CS(3) = 5/6, CS(6) = 1.
    assert s.loc["mean_variance", ["cs_0", "cs_1", "cs_3", "cs_6", "cs_10"]].tolist() == pytest.approx(
        [0, 2 / 6, 5 / 6, 1, 1])
    # Ages 2, 5, 8 (band 00_09), 12, 15 (10_19), 30 (30_39); softmax errors there 2, 1, 5 / 5, 4 / 3.
    assert s.loc["softmax", ["mae_00_09", "mae_10_19", "mae_30_39"]].tolist() == pytest.approx([8 / 3, 4.5, 3])
    assert s.loc["softmax", ["n_00_09", "n_10_19", "n_30_39"]].tolist() == [3, 2, 1]
    assert "mae_20_29" not in s.columns  # no test image in that band

    c = pd.read_csv(tmp_path / "out" / "comparison.tsv", sep="\t")
    assert len(c) == 1
    r = c.iloc[0]
    assert (r["loss"], r["reference"]) == ("mean_variance", "softmax")
    # Per image: differences -1, -1, 0, 0, -3, +1 -> mean -4/6; 3 better, 1 worse, 2 tied.
    assert r["image_mae"] == pytest.approx(16 / 6) and r["image_mae_reference"] == pytest.approx(20 / 6)
    assert r["image_mae_diff"] == pytest.approx(-4 / 6)
    assert (r["images_improved"], r["images_worse"], r["images_tied"]) == (3, 1, 2)
    # Subject-clustered: the subjects' image differences sum to -2, 0, -2 over 2 images each, so a
    # resample of 3 people has mean (sum of 3 draws) / 6 in [-1, 0]: -1 when subject 2 is not drawn
    # (8/27), 0 only when it is drawn 3 times (1/27 > 2.5%): the 95% CI is [-1, 0].
    assert (r["image_clustered_ci_low"], r["image_clustered_ci_high"]) == pytest.approx((-1.0, 0.0))
    assert 0 < r["image_clustered_p"] < 1
    assert "image_wilcoxon_p" not in c.columns  # images are not independent: no per-image test
    # Per subject: MAE 2 vs 3, 2 vs 2, 4 vs 5 -> differences -1, 0, -1.
    assert r["subject_mae_diff"] == pytest.approx(-2 / 3)
    assert (r["subjects_improved"], r["subjects_worse"], r["subjects_tied"]) == (2, 0, 1)
    assert r["subject_wilcoxon_p"] == pytest.approx(0.5)  # two non-zero, same sign: 2 / 2^2
    assert r["subject_ci_low"] == pytest.approx(-1.0) and r["subject_ci_high"] == pytest.approx(0.0)

    preds = pd.read_csv(tmp_path / "out" / "predictions.tsv", sep="\t")
    assert len(preds) == 12 and {"loss", "subject", "image", "age", "error", "abs_error"} <= set(preds.columns)
    hist = pd.read_csv(tmp_path / "out" / "history.tsv", sep="\t")
    assert len(hist) == 12 and {"loss", "subject", "epoch", "val_mae"} <= set(hist.columns)
    assert tables["summary"].shape[0] == 2


def test_refuses_mixed_fingerprints(tmp_path):
    paths = study(tmp_path, {("softmax", 2): {"fingerprint": "other"}})
    with pytest.raises(AgeestError) as e:
        gather(paths, tmp_path / "out", n_boot=100)
    msg = str(e.value)
    assert "data_fingerprint" in msg and "softmax/002" in msg and "\n" not in msg
    assert not (tmp_path / "out" / "summary.tsv").exists()


def test_refuses_mixed_configs(tmp_path):
    paths = study(tmp_path, {("mean_variance", 1): {"config": {**CONFIG, "epochs": 3}},
                               ("mean_variance", 3): {"config": {**CONFIG, "epochs": 3}}})
    with pytest.raises(AgeestError) as e:
        gather(paths, tmp_path / "out", n_boot=100)
    msg = str(e.value)
    assert "config" in msg and "mean_variance/001" in msg and "mean_variance/003" in msg
    assert "epochs" in msg and "\n" not in msg


def test_placement_keys_may_differ(tmp_path):
    # Folds that ran on different GPUs or thread counts are one study.
    paths = study(tmp_path, {("softmax", 1): {"config": {**CONFIG, "device": "cuda:1", "threads": 8}}})
    gather(paths, tmp_path / "out", n_boot=100)


def test_refuses_incomplete_or_duplicate(tmp_path):
    paths = study(tmp_path)
    with pytest.raises(AgeestError, match="mean_variance lacks 002"):
        gather([p for p in paths if "mean_variance/002" not in str(p)], tmp_path / "out", n_boot=100)
    with pytest.raises(AgeestError, match="given twice"):
        gather(paths + paths[:1], tmp_path / "out", n_boot=100)
    with pytest.raises(AgeestError, match="reference loss 'ce'"):
        gather(paths, tmp_path / "out", reference="ce", n_boot=100)


def test_cli_one_line_error(tmp_path, capsys):
    from ageest.cli import main

    paths = study(tmp_path, {("softmax", 3): {"fingerprint": "zzz"}})
    assert main(["gather", *map(str, paths), "--out", str(tmp_path / "out"), "--bootstrap", "100"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ageest gather: error:") and "softmax/003" in err and "\n" not in err


def test_plots(tmp_path):
    from ageest.plots import PLOTS, make_plots

    gather(study(tmp_path), tmp_path / "tables", n_boot=100)
    made = make_plots(tmp_path / "tables", tmp_path / "plots", reference="softmax")
    assert sorted(p.name for p in made) == sorted(f"{p}.png" for p in PLOTS)
    for p in made:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_refuses_mixed_precision(tmp_path):
    both = {(loss, s): {"precision": "bf16"} for loss in ("mean_variance", "softmax") for s in (1, 2, 3)}
    paths = study(tmp_path, {**both, ("softmax", 2): {"precision": "fp32"}})
    with pytest.raises(AgeestError, match=r"different precision .*: softmax/002 differ from the other 5 fold"):
        gather(paths, tmp_path / "out", n_boot=100)
    assert not (tmp_path / "out" / "summary.tsv").exists()


def test_older_folds_are_checked_by_their_bf16_flag(tmp_path):
    paths = study(tmp_path, {("mean_variance", s): {"precision": "fp32"} for s in (1, 2, 3)})
    m = json.loads(paths[-1].read_text())  # softmax/003, written before `precision` existed
    paths[-1].write_text(json.dumps({**m, "bf16": True}))
    with pytest.raises(AgeestError, match=r"different precision .*: softmax/003 differ from the other 3"):
        gather(paths, tmp_path / "out", n_boot=100)


def test_folds_without_precision_are_exempt(tmp_path):
    # Baselines record no precision (they train no network): they mix with bf16 or fp32 folds.
    paths = study(tmp_path, {("mean_variance", s): {"precision": "bf16"} for s in (1, 2, 3)})
    gather(paths, tmp_path / "out", reference="softmax", n_boot=100)
    assert (tmp_path / "out" / "summary.tsv").exists()
