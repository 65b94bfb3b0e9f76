"""`ageest predict`: faces found, aligned as in training, one age each, drawn on a copy."""

import re

import cv2
import numpy as np
import pytest

from ageest.cli import main
from ageest.config import load_config
from conftest import make_photo
from ageest.train.fold import run_fold
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


LINE = re.compile(r"^(?P<src>.+) face (?P<i>\d+) at \((?P<box>[\d, ]+)\): age (?P<age>[\d.]+) \(\+/- (?P<std>[\d.]+)\)$")


def _overlap(a, b):
    """Intersection over the smaller of two (x, y, w, h) boxes."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(w, 0) * max(h, 0) / min(a[2] * a[3], b[2] * b[3])


@pytest.mark.parametrize("faces", [[(30, 11)], [(8, 12), (55, 13)]])
def test_one_age_per_face(aligned_model, tmp_path, capsys, faces):
    import torch

    from ageest.data.imageio import load_rgb
    from ageest.predict import load_model, predict_image

    photo, boxes = _photo(tmp_path, faces, "group.jpg")
    out = tmp_path / "annotated.jpg"
    assert main(["predict", str(photo), "--model", str(aligned_model), "--output", str(out)]) == 0
    printed = [LINE.match(l) for l in capsys.readouterr().out.splitlines()]
    assert len(printed) == len(faces) and all(printed), printed
    # The printed ages are the model's estimates for the faces found, one per face, in order.
    fold = load_model(aligned_model, torch.device("cpu"))
    config = fold.config
    estimates = predict_image(fold, load_rgb(photo), torch.device("cpu"))
    assert [int(m["i"]) for m in printed] == list(range(1, len(faces) + 1))
    for m, e in zip(printed, estimates):
        assert tuple(int(v) for v in m["box"].split(",")) == e.box
        assert (m["age"], m["std"]) == (f"{e.age:.1f}", f"{e.std:.1f}")
        assert config.min_age <= e.age <= config.max_age
    # Each detected box is on a face of the photo.
    assert all(max(_overlap(e.box, b) for b in boxes) > 0.5 for e in estimates), ([e.box for e in estimates], boxes)
    # What is drawn: the box in its colour (BGR (0, 220, 0)) along each face box's left and right
    # edges, where the photo had no such green, and yellow label text just above or inside the box.
    drawn = cv2.imread(str(out)).astype(int)
    original = cv2.imread(str(photo)).astype(int)
    assert drawn.shape == original.shape == (480, 640, 3)

    def green(img, x, y0, y1):
        col = img[y0:y1, x]
        return np.median(col[:, 1]) > 170 and np.median(col[:, 0]) < 80 and np.median(col[:, 2]) < 80

    def yellow_pixels(img, x0, x1, y0, y1):
        region = img[max(y0, 0):y1, max(x0, 0):x1]
        return int(((region[..., 2] > 180) & (region[..., 1] > 180) & (region[..., 0] < 100)).sum())

    for e in estimates:
        x, y, w, h = e.box
        for edge in (x, x + w):
            assert green(drawn, edge, y + h // 4, y + 3 * h // 4), (e.box, edge)
            assert not green(original, edge, y + h // 4, y + 3 * h // 4), (e.box, edge)
        label = (x, x + w, y - 30, y + 30)
        assert yellow_pixels(drawn, *label) > 20 and yellow_pixels(original, *label) == 0, e.box


def test_no_face_is_an_error(aligned_model, tmp_path, capsys):
    photo, _ = _photo(tmp_path, [], "empty.jpg")
    assert main(["predict", str(photo), "--model", str(aligned_model)]) == 2
    err = capsys.readouterr().err
    assert "no face found" in err and "empty.jpg" in err


def test_aligned_crop_without_detection(aligned_model, synth_small, tmp_path, capsys):
    from ageest.data.align import align_face, keypoints_from_landmarks
    from ageest.data.imageio import load_rgb
    from ageest.data.landmarks import find_pts, read_pts

    src = sorted(synth_small.glob("*.JPG"))[0]
    crop = align_face(load_rgb(src), keypoints_from_landmarks(read_pts(find_pts(synth_small.parent / "points", src))), 160)
    path = tmp_path / "crop.png"
    cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    assert main(["predict", str(path), "--model", str(aligned_model), "--no-detect"]) == 0
    assert capsys.readouterr().out.count("age ") == 1
    assert (tmp_path / "crop.age.jpg").exists()


def test_missing_model(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "x.jpg"), "--model", str(tmp_path / "none.pt")]) == 2
    assert "model file not found" in capsys.readouterr().err


def _ages(out):
    return [float(m["age"]) for m in map(LINE.match, out.splitlines()) if m]


def test_phone_photo_stored_rotated_gives_two_ages(aligned_model, tmp_path, capsys):
    """A phone held upright stores the pixels rotated and says so in EXIF (Orientation 6)."""
    from PIL import Image

    upright, _ = make_photo([(8, 12), (55, 13)], size=(640, 480), seed=2)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to show
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))).save(tmp_path / "phone.jpg", quality=95,
                                                                      exif=exif)
    assert main(["predict", str(tmp_path / "phone.jpg"), "--model", str(aligned_model)]) == 0
    assert len(_ages(capsys.readouterr().out)) == 2


def test_16_bit_png_ages_like_its_8_bit_twin(aligned_model, tmp_path, capsys):
    from PIL import Image

    grey = make_photo([(8, 12), (55, 13)], size=(640, 480), seed=2)[0].mean(2).round().astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "8bit.png")
    Image.frombytes("I;16", grey.shape[::-1], (grey.astype("<u2") * 257).tobytes()).save(tmp_path / "16bit.png")
    ages = []
    for name in ("8bit.png", "16bit.png"):
        assert main(["predict", str(tmp_path / name), "--model", str(aligned_model)]) == 0, name
        ages.append(_ages(capsys.readouterr().out))
    assert len(ages[0]) == 2 and len(ages[1]) == 2
    assert np.abs(np.subtract(*ages)).max() <= 0.5, ages


def _one_line(capsys, argv, match):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and re.search(match, err), err


def test_damaged_model_file_is_one_line(aligned_model, tmp_path, capsys):
    import torch

    ck = torch.load(aligned_model, weights_only=False)
    photo, _ = _photo(tmp_path, [(30, 11)], "one.jpg")
    torch.save({**ck, "model": {k: v[:1] if v.dim() else v for k, v in ck["model"].items()}}, tmp_path / "shapes.pt")
    _one_line(capsys, ["predict", str(photo), "--model", str(tmp_path / "shapes.pt")],
              r"shapes\.pt is not an ageest model file \(RuntimeError: Error\(s\) in loading state_dict")
    (tmp_path / "cut.pt").write_bytes(aligned_model.read_bytes()[:5000])
    _one_line(capsys, ["predict", str(photo), "--model", str(tmp_path / "cut.pt")],
              r"cut\.pt is not an ageest model file \(\w+Error: ")


def test_huge_photo_is_refused_in_one_line(aligned_model, tmp_path, capsys):
    from PIL import Image

    Image.new("1", (14000, 14000)).save(tmp_path / "huge.png")
    _one_line(capsys, ["predict", str(tmp_path / "huge.png"), "--model", str(aligned_model)],
              r"ageest predict: error: .*huge\.png: 14000 x 14000 pixels is more than the limit of 64 megapixels")


def test_unwritable_annotated_copy_names_the_reason(aligned_model, tmp_path, capsys):
    photo, _ = _photo(tmp_path, [(30, 11)], "one.jpg")
    (tmp_path / "file").write_text("x")
    _one_line(capsys, ["predict", str(photo), "--model", str(aligned_model), "--output", str(tmp_path / "file" / "a.jpg")],
              r"ageest predict: error: cannot write to \S*/file: File exists$")
