import pytest
from PIL import Image

from ageest.errors import DataError
from ageest.data.fgnet import parse_name, scan_images
from ageest.data.fingerprint import data_fingerprint
from ageest.data.imageio import load_rgb
from ageest.data.reader import manifest_text


@pytest.mark.parametrize("name, expected", [
    ("001A02.JPG", (1, 2, "")),
    ("001A43a.JPG", (1, 43, "a")),
    ("001A43b.JPG", (1, 43, "b")),
    ("082a69.jpg", (82, 69, "")),
    ("010A05B.jpeg", (10, 5, "b")),
    ("some/dir/078A11.JPG", (78, 11, "")),
])
def test_parse_name(name, expected):
    assert parse_name(name) == expected


@pytest.mark.parametrize("name", ["1A02.JPG", "001B02.JPG", "001A2.JPG", "001A02ab.JPG", "001A02.txt",
                                  "README", "001A02.JPG.bak"])
def test_parse_name_rejects(name):
    with pytest.raises(DataError, match="not an FG-NET image name"):
        parse_name(name)


def test_scan_skips_non_images_and_sorts(blobs):
    (blobs / "README.txt").write_text("hello")
    (blobs / "Thumbs.db").write_bytes(b"\0\1")
    recs = scan_images(blobs)
    assert len(recs) == 30
    assert [(r.subject, r.age) for r in recs] == sorted((r.subject, r.age) for r in recs)
    assert manifest_text(recs).splitlines()[0] == "image\tsubject\tage"
    assert len(manifest_text(recs).splitlines()) == 31


def test_greyscale_loads_as_rgb(tmp_path):
    p = tmp_path / "001A02.JPG"
    Image.new("L", (40, 30), 128).save(p)
    arr = load_rgb(p)
    assert arr.shape == (30, 40, 3) and arr.dtype.name == "uint8"


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "001A99.JPG").write_bytes(b""), "empty file"),
    (lambda d: (d / "badname.JPG").write_bytes(b"x"), "not an FG-NET image name"),
    (lambda d: (d / "001a02.jpg").write_bytes(b"x"), "but for case"),
])
def test_scan_refuses(blobs, make, message):
    first = sorted(blobs.iterdir())[0].name  # 001Axx.JPG
    if message == "but for case":
        (blobs / first.lower()).write_bytes((blobs / first).read_bytes())
    else:
        make(blobs)
    with pytest.raises(DataError, match=message):
        scan_images(blobs)


def test_scan_refuses_duplicate_key(blobs):
    first = sorted(blobs.iterdir())[0]
    (blobs / first.name.replace(".JPG", ".jpeg")).write_bytes(first.read_bytes())
    with pytest.raises(DataError, match="duplicates"):
        scan_images(blobs)


def test_scan_refuses_missing_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="image folder not found"):
        scan_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README").write_text("x")
    with pytest.raises(DataError, match="no FG-NET images"):
        scan_images(tmp_path / "empty")


@pytest.mark.parametrize("content", [b"not a jpeg at all", None])
def test_corrupt_image_named(blobs, content):
    victim = sorted(blobs.glob("*.JPG"))[3]
    data = victim.read_bytes()
    victim.write_bytes(content if content is not None else data[: len(data) // 3])
    with pytest.raises(DataError, match=victim.name):
        scan_images(blobs, check_decode=True)


def test_fingerprint_changes_with_data(blobs):
    a = data_fingerprint(scan_images(blobs))
    victim = sorted(blobs.glob("*.JPG"))[0]
    victim.write_bytes(victim.read_bytes() + b"\0")
    assert data_fingerprint(scan_images(blobs)) != a


def _with_points(blobs):
    """The blobs with one 68-point .pts file each, in points/ beside images/ (lower-case names)."""
    from ageest.data.landmarks import write_pts

    points = blobs.parent / "points"
    points.mkdir()
    for i, p in enumerate(sorted(blobs.glob("*.JPG"))):
        write_pts(points / f"{p.stem.lower()}.pts", [(10 + i + k % 7, 20 + k % 11) for k in range(68)])
    return points


def test_fingerprint_covers_landmark_files(blobs):
    points = _with_points(blobs)
    records = scan_images(blobs)
    images_only, aligned = data_fingerprint(records), data_fingerprint(records, points)
    assert images_only != aligned
    victim = sorted(points.iterdir())[4]
    text = victim.read_text()
    victim.write_text(text.replace(".0000 ", ".5000 ", 1))  # half a pixel on one point: same size
    assert victim.read_text() != text and len(victim.read_text()) == len(text)
    assert data_fingerprint(records, points) != aligned  # the edit is seen
    assert data_fingerprint(records) == images_only  # unaligned: landmarks play no part
    victim.unlink()  # a missing landmark file changes it too
    assert data_fingerprint(records, points) not in (aligned, images_only)


def test_landmarks_digest_whole_folder_or_used_files(blobs):
    from ageest.data.fingerprint import landmarks_digest

    points = _with_points(blobs)
    records = scan_images(blobs)
    folder, used = landmarks_digest(points), landmarks_digest(points, records)
    (points / "999a01.pts").write_text(sorted(points.iterdir())[0].read_text())
    assert landmarks_digest(points) != folder  # an extra file counts for the folder (the checksums)
    assert landmarks_digest(points, records) == used  # not for the images' own landmark files
    assert landmarks_digest(None) is None
