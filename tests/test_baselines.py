"""The mean and ridge baselines: values by hand, the closed form, and fold outputs gather reads."""

import json

import numpy as np
import pandas as pd
import pytest

from ageest.train.baselines import grey_features, mean_predictor, ridge_path, ridge_select, run_baselines
from ageest.config import Config
from ageest.methods import BASELINES
from ageest.errors import ConfigError
from ageest.data.fgnet import scan_images
from ageest.data.splits import fold_split
from ageest.study.gather import gather


def test_mean_predictor_by_hand():
    assert mean_predictor([2, 4, 9]) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="at least one"):
        mean_predictor([])


def test_ridge_matches_closed_form_on_tiny_array():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
    y = np.array([1.0, 2.0, 2.0, 4.0])
    for alpha in (0.1, 1.0, 10.0):
        (w, b), = ridge_path(X, y, [alpha])
        Xc, yc = X - X.mean(0), y - y.mean()  # the intercept is not penalised
        w_ref = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(2), Xc.T @ yc)
        np.testing.assert_allclose(w, w_ref, rtol=1e-10)
        assert b == pytest.approx(y.mean() - X.mean(0) @ w_ref)
    # By hand, one feature x = [0, 1, 2], y = [0, 1, 2], alpha = 2: w = Sxy / (Sxx + alpha) = 2 / 4.
    (w, b), = ridge_path(np.array([[0.0], [1.0], [2.0]]), np.array([0.0, 1.0, 2.0]), [2.0])
    assert w[0] == pytest.approx(0.5) and b == pytest.approx(0.5)


def test_ridge_select_picks_lowest_validation_mae():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 10
    alpha, w, b, mae = ridge_select(X[:30], y[:30], X[30:], y[30:], alphas=[1e-3, 1e3, 1e6])
    assert alpha == 1e-3 and mae < 0.01  # noiseless data: the weakest penalty wins
    alpha, *_ = ridge_select(X[:30], y[:30], X[30:], np.full(10, y[:30].mean()), alphas=[1e-3, 1e6])
    assert alpha == 1e6  # targets that ignore X: shrink everything to the mean


def test_ridge_rejects_bad_input():
    with pytest.raises(ValueError, match=r"X \(n, d\) and y \(n,\)"):
        ridge_path(np.zeros((3, 2)), np.zeros(4), [1.0])
    with pytest.raises(ValueError, match="positive"):
        ridge_path(np.zeros((3, 2)), np.zeros(3), [0.0])


def test_grey_features_center_crop_and_size():
    img = np.zeros((1, 10, 10, 3), np.uint8)
    img[0, 3:7, 3:7] = 255  # a white 4x4 square in the middle: the crop is all white
    f = grey_features(img, crop=4, size=2)
    np.testing.assert_allclose(f, np.ones((1, 4)))


def test_baseline_folds_have_a_trained_folds_shape(blobs, tmp_path):
    config = Config(image_size=32, align="none", pretrained="none")
    out = tmp_path / "folds"
    res = run_baselines(blobs, ["mean", "ridge"], [1, 2], out, config, log=lambda *_: None)
    assert len(res) == 4
    records = scan_images(blobs)
    split, digest = fold_split(records, 1, config)
    m = json.loads((out / "mean" / "001" / "metrics.json").read_text())
    train_mean = np.mean([records[i].age for i in split.train])
    pred = pd.read_csv(out / "mean" / "001" / "predictions.tsv", sep="\t")
    assert list(pred["image"]) == [records[i].name for i in split.test]
    np.testing.assert_allclose(pred["predicted_age"], train_mean, atol=1e-4)
    assert m["test_mae"] == pytest.approx(np.abs(pred["age"] - train_mean).mean(), abs=1e-4)
    assert m["split_digest"] == digest and m["loss"] == "mean" and m["n_test"] == len(split.test)
    r = json.loads((out / "ridge" / "001" / "metrics.json").read_text())
    assert r["alpha"] > 0 and r["config"] == m["config"]
    # Brightness grows with age in these images: ridge on pixels must beat the mean.
    all_ = gather([out / meth / f"{s:03d}" for meth in ("mean", "ridge") for s in (1, 2)],
                  tmp_path / "tables", reference="mean")
    s = all_["summary"].set_index("loss")
    assert s.loc["ridge", "mae"] < s.loc["mean", "mae"]


def test_unknown_baseline_is_refused(blobs, tmp_path):
    with pytest.raises(ConfigError, match="unknown baseline"):
        run_baselines(blobs, ["median"], [1], tmp_path, Config(), log=lambda *_: None)


@pytest.mark.parametrize("method", list(BASELINES))
def test_every_registered_baseline_writes_a_fold_of_a_trained_folds_shape(method, blobs, tmp_path):
    config = Config(image_size=32, align="none", pretrained="none")
    (m,) = run_baselines(blobs, [method], [2], tmp_path, config, log=lambda *_: None)
    records = scan_images(blobs)
    split, digest = fold_split(records, 2, config)
    pred = pd.read_csv(tmp_path / method / "002" / "predictions.tsv", sep="\t")
    assert list(pred["image"]) == [records[i].name for i in split.test]
    assert pred["predicted_age"].between(config.min_age, config.max_age).all()
    assert m == json.loads((tmp_path / method / "002" / "metrics.json").read_text())
    assert m["loss"] == method and m["method"] == "baseline" and m["split_digest"] == digest
    assert m["test_mae"] == pytest.approx(np.abs(pred["predicted_age"] - pred["age"]).mean(), abs=1e-3)
