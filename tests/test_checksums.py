from ageest.data.checksums import LANDMARKS, read_sums, sha256_file, verify_images


def test_missing_extra_altered_named(blobs, tmp_path):
    files = sorted(blobs.glob("*.JPG"))
    sums = tmp_path / "SUMS"
    lines = [f"{sha256_file(p)}  {p.name}" for p in files[1:]] + [f"{'0' * 64} *999A01.JPG"]
    sums.write_text("\n".join(lines) + "\n\n")
    assert read_sums(sums)["999A01.JPG"] == "0" * 64 and len(read_sums(sums)) == len(files)
    (blobs / "README.txt").write_text("not data")
    files[2].write_bytes(files[2].read_bytes() + b"\0")
    found, n, n_landmarks = verify_images(blobs, sums)
    assert (n, n_landmarks) == (len(files), 0)  # a list without landmark entries checks images only
    assert found == ["missing (1): 999A01.JPG", f"extra (1): {files[0].name}", f"altered (1): {files[2].name}"]


def test_a_match_has_no_problems(blobs, tmp_path):
    sums = tmp_path / "SUMS"
    sums.write_text("".join(f"{sha256_file(p)}  {p.name}\n" for p in sorted(blobs.glob("*.JPG"))))
    assert verify_images(blobs, sums) == ([], 30, 0)


def _points(blobs):
    points = blobs.parent / "points"
    points.mkdir()
    for p in sorted(blobs.glob("*.JPG")):
        (points / f"{p.stem.lower()}.pts").write_text(f"version: 1\nn_points: 68\n{{\n{p.stem}\n}}\n")
    return points


def _sums_with_landmarks(blobs, points, path):
    """As the project ships it: images by name, then landmark files as ../points/NAME (the list is
    relative to the image folder, so `cd images && sha256sum -c LIST` reads it too)."""
    lines = [f"{sha256_file(p)}  {p.name}" for p in sorted(blobs.glob("*.JPG"))]
    lines += [f"{sha256_file(p)}  ../points/{p.name}" for p in sorted(points.glob("*.pts"))]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_landmark_files_verified_too(blobs, tmp_path):
    points = _points(blobs)
    sums = _sums_with_landmarks(blobs, points, tmp_path / "SUMS")
    assert verify_images(blobs, sums) == ([], 30, 30)
    # The images' entries alone: what the subject list is read from before a download.
    assert len(read_sums(sums)) == 30 and all(n.endswith(".JPG") for n in read_sums(sums))
    assert len(read_sums(sums, LANDMARKS)) == 30
    pts = sorted(points.glob("*.pts"))
    pts[3].write_text(pts[3].read_text().replace("\n}", "\n }"))  # altered
    pts[7].unlink()  # missing
    (points / "099a01.pts").write_text("x")  # extra
    (points / "notes.txt").write_text("not a landmark file")  # not data: ignored
    found, n, n_landmarks = verify_images(blobs, sums)
    assert (n, n_landmarks) == (30, 30)
    assert found == [f"missing (1): ../points/{pts[7].name}", "extra (1): ../points/099a01.pts",
                     f"altered (1): ../points/{pts[3].name}"]


def test_images_and_landmarks_named_together(blobs, tmp_path):
    points = _points(blobs)
    sums = _sums_with_landmarks(blobs, points, tmp_path / "SUMS")
    img = sorted(blobs.glob("*.JPG"))[0]
    img.write_bytes(img.read_bytes() + b"\0")
    pts = sorted(points.glob("*.pts"))[0]
    pts.write_text(pts.read_text() + "\n")
    found, _, _ = verify_images(blobs, sums)
    assert found == [f"altered (2): {img.name}, ../points/{pts.name}"]
    import shutil

    shutil.rmtree(points)  # the whole points folder gone: every landmark file missing
    found, _, _ = verify_images(blobs, sums)
    assert found[0].startswith("missing (30): ../points/")
