from ageest.checksums import read_sums, sha256_file, verify_images


def test_missing_extra_altered_named(blobs, tmp_path):
    files = sorted(blobs.glob("*.JPG"))
    sums = tmp_path / "SUMS"
    lines = [f"{sha256_file(p)}  {p.name}" for p in files[1:]] + [f"{'0' * 64} *999A01.JPG"]
    sums.write_text("\n".join(lines) + "\n\n")
    assert read_sums(sums)["999A01.JPG"] == "0" * 64 and len(read_sums(sums)) == len(files)
    (blobs / "README.txt").write_text("not data")
    files[2].write_bytes(files[2].read_bytes() + b"\0")
    found, n = verify_images(blobs, sums)
    assert n == len(files)
    assert found == ["missing (1): 999A01.JPG", f"extra (1): {files[0].name}", f"altered (1): {files[2].name}"]


def test_a_match_has_no_problems(blobs, tmp_path):
    sums = tmp_path / "SUMS"
    sums.write_text("".join(f"{sha256_file(p)}  {p.name}\n" for p in sorted(blobs.glob("*.JPG"))))
    assert verify_images(blobs, sums) == ([], 30)
