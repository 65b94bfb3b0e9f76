import numpy as np
import pytest

from ageest.errors import DataError
from ageest.data.landmarks import find_pts, read_pts, write_pts

PTS = np.arange(136, dtype=float).reshape(68, 2) * 1.5 + 0.25


def _text(rows, head="version: 1\nn_points: 68\n{\n", tail="}\n"):
    return head + "".join(f"{r}\n" for r in rows) + tail


def test_roundtrip(tmp_path):
    write_pts(tmp_path / "a.pts", PTS)
    got = read_pts(tmp_path / "a.pts")
    assert got.shape == (68, 2) and got.dtype == np.float64
    np.testing.assert_allclose(got, PTS, atol=1e-4)


def test_crlf_and_blank_lines(tmp_path):
    rows = [f"{x} {y}" for x, y in PTS]
    text = _text(rows).replace("\n", "\r\n").replace("{\r\n", "{\r\n\r\n") + "\r\n\r\n"
    (tmp_path / "c.pts").write_bytes(text.encode())
    np.testing.assert_allclose(read_pts(tmp_path / "c.pts"), PTS)


@pytest.mark.parametrize("text, message", [
    ("", r"bad\.pts: empty"),
    ("\n \r\n", r"bad\.pts: empty"),
    (_text(["1 2"] * 67), r"bad\.pts: expected 68 points, found 67"),
    (_text(["1 2"] * 69), r"bad\.pts: expected 68 points, found 69"),
    (_text(["1 2"] * 68, tail=""), r"bad\.pts: .*enclosed"),
    (_text(["1 2"] * 68, head="version: 1\nn_points: 68\n"), r"bad\.pts: .*enclosed"),
    (_text(["1 2"] * 67 + ["1 abc"]), r"bad\.pts: non-numeric"),
    (_text(["1 2"] * 67 + ["1"]), r"bad\.pts: .*two finite numbers"),
    (_text(["1 2"] * 67 + ["1 nan"]), r"bad\.pts: .*two finite numbers"),
    (_text(["1 2"] * 68, head="version: 1\nn_points: 5\n{\n"), r"bad\.pts: expected 'n_points: 68'"),
    (_text(["1 2"] * 68, head="{\n"), r"bad\.pts: expected 'n_points: 68'"),
])
def test_malformed(tmp_path, text, message):
    (tmp_path / "bad.pts").write_text(text)
    with pytest.raises(DataError, match=message):
        read_pts(tmp_path / "bad.pts")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.pts: cannot read"):
        read_pts(tmp_path / "nope.pts")


def test_write_rejects_wrong_shape(tmp_path):
    with pytest.raises(ValueError):
        write_pts(tmp_path / "x.pts", np.zeros((5, 2)))


def test_find_pts_case_insensitive(tmp_path):
    write_pts(tmp_path / "001a43a.pts", PTS)
    write_pts(tmp_path / "002A05.PTS", PTS)
    assert find_pts(tmp_path, "/some/images/001A43a.JPG") == tmp_path / "001a43a.pts"
    assert find_pts(tmp_path, "002a05.jpg") == tmp_path / "002A05.PTS"
    assert find_pts(tmp_path, "001A43b.JPG") is None
    assert find_pts(tmp_path / "missing", "001A43a.JPG") is None
