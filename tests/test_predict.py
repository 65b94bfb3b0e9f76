"""`ageest predict`: faces found, aligned as in training, one age each, drawn on a copy."""

import cv2
import pytest

from ageest.cli import main
from ageest.config import load_config
from ageest.synth import make_photo
from ageest.train import run_fold
from conftest import tiny_overrides


@pytest.fixture(scope="module")
def aligned_model(synth_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    run_fold(synth_small, 1, "mean_variance", out,
             load_config(None, tiny_overrides(epochs=1, freeze_epochs=0, align="landmarks")),
             log=lambda *_: None)
    return out / "model.pt"


def _photo(tmp_path, faces, name):
    rgb, boxes = make_photo(faces, size=(640, 480), seed=len(faces))
    path = tmp_path / name
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path, boxes


@pytest.mark.parametrize("faces", [[(30, 11)], [(8, 12), (55, 13)]])
def test_one_age_per_face(aligned_model, tmp_path, capsys, faces):
    photo, boxes = _photo(tmp_path, faces, "group.jpg")
    out = tmp_path / "annotated.jpg"
    assert main(["predict", str(photo), "--model", str(aligned_model), "--output", str(out)]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if "age" in l]
    assert len(lines) == len(faces)
    assert all("face" in l and "+/-" in l for l in lines)
    drawn = cv2.imread(str(out))
    assert drawn is not None and drawn.shape[:2] == (480, 640)
    assert (drawn.astype(int) - cv2.imread(str(photo)).astype(int)).any()


def test_no_face_is_an_error(aligned_model, tmp_path, capsys):
    photo, _ = _photo(tmp_path, [], "empty.jpg")
    assert main(["predict", str(photo), "--model", str(aligned_model)]) == 2
    err = capsys.readouterr().err
    assert "no face found" in err and "empty.jpg" in err


def test_aligned_crop_without_detection(aligned_model, synth_small, tmp_path, capsys):
    from ageest.align import align_image
    from ageest.landmarks import find_pts

    src = sorted(synth_small.glob("*.JPG"))[0]
    crop = align_image(src, find_pts(synth_small.parent / "points", src), 160)
    path = tmp_path / "crop.png"
    cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    assert main(["predict", str(path), "--model", str(aligned_model), "--no-detect"]) == 0
    assert capsys.readouterr().out.count("age ") == 1
    assert (tmp_path / "crop.age.jpg").exists()


def test_missing_model(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "x.jpg"), "--model", str(tmp_path / "none.pt")]) == 2
    assert "model file not found" in capsys.readouterr().err
