"""ageest gather: tables from fold outputs; folds of different data or configs are refused."""

import json
import math

import pandas as pd
import pytest

from ageest.errors import AgeestError
from ageest.study.catalog import columns
from ageest.study.gather import gather

CONFIG = {"epochs": 2, "lr": 0.002, "image_size": 32, "device": "cpu", "threads": 1}

# subject -> [(image, age)]
DATA = {1: [("001A02.JPG", 2), ("001A15.JPG", 15)], 2: [("002A05.JPG", 5), ("002A30.JPG", 30)],
        3: [("003A08.JPG", 8), ("003A12.JPG", 12)]}
# Absolute errors per loss and subject (signs alternate); softmax is the reference.
ERRORS = {"softmax": {1: [2, 4], 2: [1, 3], 3: [5, 5]},
          "mean_variance": {1: [1, 3], 2: [1, 3], 3: [2, 6]}}


def make_fold(root, loss, subject, fingerprint="abc", config=None, errors=None, precision=None, seed=None,
              split=None):
    """A fold folder; with `seed`, under folds/LOSS/seedN/ and trained (config) with that seed."""
    d = root / "folds" / loss / (f"seed{seed}" if seed is not None else "") / f"{subject:03d}"
    d.mkdir(parents=True)
    if seed is not None:
        config = {**(config or CONFIG), "seed": seed}
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
    if split is not None:
        metrics["split_digest"] = split
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
    assert list(folds.columns) == columns("folds")
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


def test_cs_counts_integer_predictions_and_mae_stays_unrounded(tmp_path):
    # mean_variance's unrounded errors 0.4, 1.4 | 0.6, 2.6 | 2.2, 3.4 (years); its integer predictions
    # (predicted_age_rounded) are off by 0, 1 | 1, 3 | 2, 3. The literature's CS(θ) counts those:
    # CS(0) = 1/6, CS(1) = 3/6, CS(2) = 4/6, CS(3) = 1. On the unrounded errors CS(0) would be 0.
    errors = {1: [0.4, 1.4], 2: [0.6, 2.6], 3: [2.2, 3.4]}
    paths = study(tmp_path, {("mean_variance", s): {"errors": e} for s, e in errors.items()})
    s = gather(paths, tmp_path / "out", n_boot=50)["summary"].set_index("loss")
    assert s.loc["mean_variance", ["cs_0", "cs_1", "cs_2", "cs_3"]].tolist() == pytest.approx([1 / 6, 3 / 6, 4 / 6, 1])
    assert s.loc["mean_variance", "mae"] == pytest.approx(10.6 / 6)  # the expectation, unrounded
    assert s.loc["mean_variance", "mae_rounded"] == pytest.approx(10 / 6)
    preds = pd.read_csv(tmp_path / "out" / "predictions.tsv", sep="\t")
    assert preds["abs_error_rounded"].tolist()[:6] == [0, 1, 1, 3, 2, 3]


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


@pytest.mark.parametrize("make_study", [lambda d: study(d), lambda d: seeded_study(d),
                                        lambda d: [make_fold(d, loss, 1) for loss in ("mean_variance", "softmax")]],
                         ids=["one_seed", "seeded", "one_subject"])
@pytest.mark.slow
def test_plots(tmp_path, make_study):
    from ageest.study.catalog import PLOTS
    from ageest.study.plots import make_plots

    gather(make_study(tmp_path), tmp_path / "tables", n_boot=100)
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


# --- training seeds ----------------------------------------------------------------------------

# Absolute errors per (method, seed) and subject. Per seed, LOPO MAE: softmax 20/6 and 18/6,
# mean_variance 16/6 and 12/6; the baseline `mean` is deterministic: one run, config seed 0.
SEEDED = {("softmax", 0): ERRORS["softmax"], ("softmax", 1): {1: [4, 4], 2: [1, 1], 3: [3, 5]},
          ("mean_variance", 0): ERRORS["mean_variance"], ("mean_variance", 1): {1: [3, 3], 2: [1, 1], 3: [2, 2]},
          ("mean", 0): {1: [5, 5], 2: [5, 5], 3: [5, 5]}}


def seeded_study(root, skip=(), split=None):
    """Two seeds of each loss under folds/LOSS/seedN/NNN, the baseline once under folds/mean/NNN."""
    return [make_fold(root, loss, s, errors=errs[s], seed=seed if loss != "mean" else None,
                      config={**CONFIG, "seed": 0} if loss == "mean" else None,
                      split=(split or {}).get((loss, seed, s)))
            for (loss, seed), errs in SEEDED.items() for s in (1, 2, 3) if (loss, seed, s) not in skip]


def test_seeds_tables_by_hand(tmp_path):
    t = gather(seeded_study(tmp_path), tmp_path / "out", reference="softmax", n_boot=2000, seed=0)
    read = {n: pd.read_csv(tmp_path / "out" / f"{n}.tsv", sep="\t") for n in t}
    folds = read["folds"]
    assert list(folds.columns) == columns("folds", seeded=True)  # a seed column after the loss
    assert len(folds) == 2 * 2 * 3 + 3
    assert folds.set_index(["loss", "seed", "subject"]).loc[("softmax", 1, 3), "mae"] == 4.0
    assert "seed" in read["predictions"].columns and "seed" in read["history"].columns

    per_seed = read["seeds"].set_index(["loss", "seed"])["mae"]
    assert list(read["seeds"].columns[:3]) == ["loss", "seed", "n_subjects"]
    assert per_seed.to_dict() == pytest.approx({("mean_variance", 0): 16 / 6, ("mean_variance", 1): 2.0,
                                                ("softmax", 0): 20 / 6, ("softmax", 1): 3.0, ("mean", 0): 5.0})

    s = read["summary"].set_index("loss")
    assert list(s.index) == ["softmax", "mean_variance", "mean"]  # in the order of the folds
    # Mean over seeds, sd over seeds (two values a, b: |a - b| / sqrt 2).
    assert s.loc["mean_variance", "mae"] == pytest.approx(7 / 3)
    assert s.loc["mean_variance", "mae_seed_sd"] == pytest.approx((2 / 3) / math.sqrt(2))
    assert s.loc["softmax", "mae"] == pytest.approx(19 / 6)
    assert s.loc["softmax", "mae_seed_sd"] == pytest.approx((1 / 3) / math.sqrt(2))
    assert s.loc["mean", "n_seeds"] == 1 and math.isnan(s.loc["mean", "mae_seed_sd"])
    assert s.loc["softmax", "n_seeds"] == 2 and s.loc["softmax", "images"] == 6  # images counted once
    # CS(2) per seed, mean_variance: 3/6 and 4/6 -> mean 7/12 (CS of the seed-averaged errors
    # 2 3 1 2 2 4 would be 8/12).
    assert s.loc["mean_variance", "cs_2"] == pytest.approx(7 / 12)
    # CI of the LOPO MAE, seed-averaged errors: mean_variance's subjects sum 5, 3, 6 over 2 images
    # each; a resample of 3 people averages (sum of 3 draws) / 6, in [1.5, 3]; both ends have
    # probability 1/27 > 2.5%: the 95% CI is [1.5, 3].
    assert (s.loc["mean_variance", "mae_ci_low"], s.loc["mean_variance", "mae_ci_high"]) == pytest.approx((1.5, 3.0))

    c = read["comparison"].set_index("loss")
    assert list(c.index) == ["mean_variance", "mean"]  # every method but the reference, baselines too
    mv = c.loc["mean_variance"]
    # Seed-averaged image errors: softmax 3 4 | 1 2 | 4 5, mean_variance 2 3 | 1 2 | 2 4:
    # differences -1 -1 | 0 0 | -2 -1 -> mean -5/6; 4 improved, 2 tied.
    assert mv["image_mae_diff"] == pytest.approx(-5 / 6)
    assert mv["image_mae"] == pytest.approx(7 / 3) and mv["image_mae_reference"] == pytest.approx(19 / 6)
    assert (mv["images_improved"], mv["images_worse"], mv["images_tied"]) == (4, 0, 2)
    # Subjects' difference sums -2, 0, -3: resample means in [-1.5, 0], each end 1/27 likely.
    assert (mv["image_clustered_ci_low"], mv["image_clustered_ci_high"]) == pytest.approx((-1.5, 0.0))
    # Seed-averaged subject MAE: softmax 3.5, 1.5, 4.5; mean_variance 2.5, 1.5, 3 -> -1, 0, -1.5.
    assert mv["subject_mae_diff"] == pytest.approx(-5 / 6)
    assert (mv["subjects_improved"], mv["subjects_worse"], mv["subjects_tied"]) == (2, 0, 1)
    assert mv["subject_wilcoxon_p"] == pytest.approx(0.5)
    assert (mv["n_seeds"], mv["n_seeds_reference"]) == (2, 2)
    base = c.loc["mean"]
    # The baseline's one run against softmax's seed average: 5 - (3 4 | 1 2 | 4 5) -> mean 11/6.
    assert base["image_mae_diff"] == pytest.approx(11 / 6) and (base["n_seeds"], base["n_seeds_reference"]) == (1, 2)


def test_one_seed_per_method_keeps_the_one_seed_tables(tmp_path):
    # Every method one seed, even different ones (a study of `seeds: [3]` beside its baselines'
    # seed 0): no seed columns, the tables of a one-seed study.
    paths = [make_fold(tmp_path, loss, s, seed=3 if loss == "softmax" else 0) for loss in ("mean_variance", "softmax")
             for s in (1, 2, 3)]
    gather(paths, tmp_path / "out", n_boot=100)
    for name in ("folds", "predictions", "history"):
        cols = pd.read_csv(tmp_path / "out" / f"{name}.tsv", sep="\t").columns
        assert "seed" not in cols, name
    assert list(pd.read_csv(tmp_path / "out" / "folds.tsv", sep="\t").columns) == columns("folds")
    s = pd.read_csv(tmp_path / "out" / "summary.tsv", sep="\t")
    assert list(s.columns[:len(columns("summary"))]) == columns("summary")
    assert s["n_seeds"].tolist() == [1, 1] and s["mae_seed_sd"].isna().all()


def test_seeds_must_each_cover_every_subject(tmp_path):
    paths = seeded_study(tmp_path, skip={("mean_variance", 1, 2)})
    with pytest.raises(AgeestError, match="mean_variance seed 1 lacks 002"):
        gather(paths, tmp_path / "out", n_boot=100)
    with pytest.raises(AgeestError, match="mean_variance/seed1/003 given twice"):
        gather(paths + [p for p in paths if "mean_variance/seed1/003" in str(p)], tmp_path / "out", n_boot=100)


def test_seeds_share_each_subjects_split(tmp_path):
    split = {(loss, seed, s): f"split{s}" for (loss, seed) in SEEDED for s in (1, 2, 3)}
    gather(seeded_study(tmp_path / "same", split=split), tmp_path / "out", n_boot=100)
    split[("softmax", 1, 2)] = "another"
    with pytest.raises(AgeestError, match=r"split_digest .*subject 002.*: softmax/seed1/002 differ"):
        gather(seeded_study(tmp_path / "other", split=split), tmp_path / "out", n_boot=100)


def test_seeds_may_differ_but_not_the_rest_of_the_config(tmp_path):
    paths = seeded_study(tmp_path)
    m = json.loads(paths[0].read_text())
    paths[0].write_text(json.dumps({**m, "config": {**m["config"], "lr": 0.1}}))
    with pytest.raises(AgeestError, match="differing key.*: lr$"):
        gather(paths, tmp_path / "out", n_boot=100)


def test_skipped_test_images_are_counted_per_fold_seed_and_method(tmp_path):
    # Folds record the test images the cache skipped (on_no_face: skip); folds from before, none.
    paths = study(tmp_path)
    for p, n in ((paths[0], 2), (paths[2], 1), (paths[4], 3)):  # mean_variance 001, 003; softmax 002
        p.write_text(json.dumps({**json.loads(p.read_text()), "n_test_skipped": n}))
    t = gather(paths, tmp_path / "out", n_boot=100)
    folds = pd.read_csv(tmp_path / "out" / "folds.tsv", sep="\t")
    assert list(folds.columns) == columns("folds") and columns("folds")[-2:] == ["skipped", "protocol"]
    assert folds.set_index(["loss", "subject"])["skipped"].to_dict() == {
        ("mean_variance", 1): 2, ("mean_variance", 2): 0, ("mean_variance", 3): 1,
        ("softmax", 1): 0, ("softmax", 2): 3, ("softmax", 3): 0}
    s = pd.read_csv(tmp_path / "out" / "summary.tsv", sep="\t")
    assert list(s.columns[:len(columns("summary"))]) == columns("summary")
    assert s.set_index("loss")["skipped"].to_dict() == {"mean_variance": 3, "softmax": 3}
    assert t["seeds"].set_index("loss")["skipped"].to_dict() == {"mean_variance": 3, "softmax": 3}
    assert list(t["seeds"].columns[:len(columns("seeds"))]) == columns("seeds")
