import dataclasses

import numpy as np
import pytest

from ageest.data.detect import Face, _mtcnn, detect_faces
from conftest import make_photo

# Every check runs on both detectors (mtcnn where its wheel imports: Python < 3.13).
DETECTORS = ["haar"] + (["mtcnn"] if _mtcnn() is not None else [])


def _check(faces, lms):
    for f, lm in zip(faces, lms):
        eyes = np.stack([lm[27:31].mean(0), lm[32:36].mean(0)])
        iod = np.linalg.norm(eyes[1] - eyes[0])
        assert f.keypoints.shape == (3, 2)
        assert np.linalg.norm(f.keypoints[:2] - eyes, axis=1).max() < 0.2 * iod
        mouth = lm[48:60].mean(0)
        assert np.linalg.norm(f.keypoints[2] - mouth) < 0.35 * iod
        x, y, w, h = f.box
        assert x < eyes[:, 0].min() and eyes[:, 0].max() < x + w and y < eyes[:, 1].min() < y + h


@pytest.mark.parametrize("detector", DETECTORS)
@pytest.mark.parametrize("seed", [0, 1])
def test_no_face(seed, detector):
    img, _ = make_photo([], size=(640, 480), seed=seed)
    assert detect_faces(img, detector) == []


@pytest.mark.parametrize("detector", DETECTORS)
@pytest.mark.parametrize("seed, age", [(0, 30), (1, 6), (2, 62)])
def test_one_face(seed, age, detector):
    img, boxes, lms = make_photo([(age, seed)], size=(480, 480), seed=seed, return_landmarks=True)
    faces = detect_faces(img, detector)
    assert len(faces) == 1
    _check(faces, lms)


@pytest.mark.parametrize("detector", DETECTORS)
@pytest.mark.parametrize("seed", [0, 1])
def test_two_faces_left_to_right(seed, detector):
    img, boxes, lms = make_photo([(9, seed), (45, seed + 10)], size=(640, 480), seed=seed,
                                 return_landmarks=True)
    faces = detect_faces(img, detector)
    assert len(faces) == 2
    _check(faces, lms)


def test_auto_is_mtcnn_where_installed_and_unknown_detectors_are_refused():
    img, _, lms = make_photo([(25, 5)], size=(400, 400), seed=5, return_landmarks=True)
    auto, chosen = detect_faces(img), detect_faces(img, DETECTORS[-1])
    assert [f.box for f in auto] == [f.box for f in chosen] and len(auto) == 1
    assert np.array_equal(auto[0].keypoints, chosen[0].keypoints)
    with pytest.raises(ValueError, match="detector must be one of auto, mtcnn, haar"):
        detect_faces(img, "yolo")


@pytest.mark.parametrize("detector", DETECTORS)
def test_greyscale_and_face_is_frozen(detector):
    img, _, lms = make_photo([(25, 5)], size=(400, 400), seed=5, return_landmarks=True)
    faces = detect_faces(img.mean(2).astype(np.uint8), detector)
    assert len(faces) == 1 and isinstance(faces[0], Face)
    _check(faces, lms)
    with pytest.raises(dataclasses.FrozenInstanceError):
        faces[0].score = 1.0


def test_make_photo():
    # The group photo the detection tests draw their faces on (tests/conftest.py).
    img, boxes = make_photo([], size=(320, 240), seed=3)
    assert img.shape == (240, 320, 3) and img.dtype == np.uint8 and boxes == []
    img, boxes, lms = make_photo([(10, 1), (40, 2)], size=(640, 400), seed=3, return_landmarks=True)
    assert img.shape == (400, 640, 3) and len(boxes) == 2 and len(lms) == 2
    assert boxes[0][0] + boxes[0][2] <= boxes[1][0]  # side by side, left to right
    assert all(lm.shape == (68, 2) for lm in lms)
