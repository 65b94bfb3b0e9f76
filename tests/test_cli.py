"""Bad input: one line naming the culprit, exit 2, no traceback, no partial outputs."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ageest.cli import main
from ageest.errors import AgeestError
from ageest.io import write_text_atomic
from conftest import tiny_overrides

SETS = [a for o in tiny_overrides(epochs=1, freeze_epochs=0) for a in ("--set", o)]


def _train(images, out, *extra):
    return ["train", "--images", str(images), "--leave-subject", "1", "--loss", "softmax",
            "--out", str(out), *SETS, *extra]


def _one_line_error(capsys, argv, match):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert match in err, err
    return err


def _first(images: Path) -> Path:
    return sorted(images.glob("*.JPG"))[0]


@pytest.mark.parametrize("case, match", [
    ("corrupt", "cannot decode image"),
    ("zero", "empty file"),
    ("text_as_jpg", "cannot decode image"),
    ("bad_name", "not an FG-NET image name"),
    ("case_twin", "but for case"),
    ("duplicate", "duplicates"),
])
def test_bad_data(blobs, tmp_path, capsys, case, match):
    victim = sorted(blobs.glob("*.JPG"))[2]
    if case == "corrupt":
        victim.write_bytes(victim.read_bytes()[:200])
    elif case == "zero":
        victim.write_bytes(b"")
    elif case == "text_as_jpg":
        victim.write_text("this is not an image\n")
    elif case == "bad_name":
        victim.rename(blobs / "photo_of_bob.JPG")
        victim = blobs / "photo_of_bob.JPG"
    elif case == "case_twin":
        (blobs / victim.name.lower()).write_bytes(victim.read_bytes())
    elif case == "duplicate":
        (blobs / victim.name.replace(".JPG", ".jpeg")).write_bytes(victim.read_bytes())
    out = tmp_path / "out"
    err = _one_line_error(capsys, _train(blobs, out), match)
    assert victim.name.lower() in err.lower() or case in ("case_twin", "duplicate")
    assert not (out / "metrics.json").exists()
    _one_line_error(capsys, ["manifest", "--images", str(blobs), "--out", str(tmp_path / "m.tsv")], match)
    assert not (tmp_path / "m.tsv").exists()


def test_missing_and_empty_folder(tmp_path, capsys):
    _one_line_error(capsys, _train(tmp_path / "nowhere", tmp_path / "o"), "image folder not found")
    (tmp_path / "empty").mkdir()
    _one_line_error(capsys, _train(tmp_path / "empty", tmp_path / "o"), "no FG-NET images")


def test_subject_not_in_data(blobs, tmp_path, capsys):
    argv = _train(blobs, tmp_path / "o")
    argv[argv.index("--leave-subject") + 1] = "77"
    _one_line_error(capsys, argv, "subject 77 is not in the data")


@pytest.mark.parametrize("extra, match", [
    (["--set", "epochs=many"], "'epochs'"),
    (["--set", "colour=blue"], "unknown config key"),
    (["--loss", "huber"], "unknown loss 'huber'"),
])
def test_bad_config(blobs, tmp_path, capsys, extra, match):
    _one_line_error(capsys, _train(blobs, tmp_path / "o", *extra), match)


def test_bad_config_file(blobs, tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text("lambda1: [1, 2]\n")
    _one_line_error(capsys, _train(blobs, tmp_path / "o", "--config", str(f)), "'lambda1'")


def test_unwritable_output(blobs, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    # A path below a regular file cannot be created, even by root.
    _one_line_error(capsys, _train(blobs, blocker / "out"), "not writable")


def test_finished_fold_not_overwritten(blobs, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "metrics.json").write_text('{"kept": true}')
    _one_line_error(capsys, _train(blobs, out), "exists")
    assert json.loads((out / "metrics.json").read_text()) == {"kept": True}


def test_full_disk_leaves_old_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(AgeestError, match="No space left"):
        write_text_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left behind


def test_manifest_and_no_traceback_in_a_real_process(blobs, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "ageest", "manifest", "--images", str(blobs), "--out",
                         str(tmp_path / "m.tsv")], capture_output=True, text=True)
    assert ok.returncode == 0 and "30 images, 6 subjects" in ok.stdout
    assert (tmp_path / "m.tsv").read_text().splitlines()[1].count("\t") == 2
    _first(blobs).write_bytes(b"\xff\xd8\xff garbage")
    bad = subprocess.run([sys.executable, "-m", "ageest", "manifest", "--images", str(blobs), "--out",
                          str(tmp_path / "m2.tsv")], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and _first(blobs).name in bad.stderr
