"""Atomic writes on shared and hostile machines: the umask's mode, one line for any failed write
(a real full disk on a small tmpfs, torch's own writer included), non-UTF-8 names, no litter."""

import contextlib
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from ageest.errors import AgeestError, DataError, os_error_line, printable
from ageest.io import (atomic_path, current_umask, remove_temporaries, save_torch_atomic, write_failure,
                       write_json_atomic, write_text_atomic)
import pyproc
from conftest import tiny_overrides


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path):
    return stat.S_IMODE(Path(path).stat().st_mode)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_get_the_mode_open_would(tmp_path, mask, mode):
    with umask(mask):
        assert current_umask() == mask
        write_text_atomic(tmp_path / "t.tsv", "a\n")
        write_json_atomic(tmp_path / "m.json", {"a": 1})
        save_torch_atomic(tmp_path / "s.pt", {"w": torch.zeros(3)})
        with atomic_path(tmp_path / "c.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, np.zeros(3))
        with open(tmp_path / "plain", "w"):
            pass
    assert {p.name: _mode(p) for p in tmp_path.iterdir()} == dict.fromkeys(
        ["t.tsv", "m.json", "s.pt", "c.npy", "plain"], mode)


def test_a_file_system_without_modes_still_gets_the_file(tmp_path, monkeypatch):
    def no_modes(fd, mode):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchmod", no_modes)
    write_text_atomic(tmp_path / "t.tsv", "a\n")
    assert (tmp_path / "t.tsv").read_text() == "a\n"


def _train_cmd(images, out, *extra, state=None):
    return ["-m", "ageest", "train", "--images", str(images), "--leave-subject", "2",
            "--loss", "softmax", "--out", str(out), *(["--state-dir", str(state)] if state else []),
            *[a for o in tiny_overrides(**{"epochs": 1, "freeze_epochs": 0, **dict(e.split("=") for e in extra)})
              for a in ("--set", o)]]


@pytest.mark.slow  # a fold in its own `ageest train` process
@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_a_folds_files_follow_the_umask(synth_small, tmp_path, monkeypatch, mask, mode):
    out, state = tmp_path / "fold", tmp_path / "state"
    monkeypatch.setenv("AGEEST_CACHE_DIR", str(tmp_path / "cache"))  # this fold builds its own
    # One epoch: the state is saved at its end, then again over it as the finished fold's (keep_checkpoint).
    with umask(mask):
        r = pyproc.run(_train_cmd(synth_small, out, "keep_checkpoint=true", state=state))
    assert r.returncode == 0, r.stderr
    cache = tmp_path / "cache"
    files = [*out.iterdir(), state / "state.pt", *cache.glob("*.npy"), *cache.glob("*.npy.json")]
    assert len(files) >= 7  # 4 outputs, the state, a cache and its metadata
    assert {p.name: _mode(p) for p in files} == {p.name: mode for p in files}


@pytest.mark.slow  # a fold in its own `ageest train` process
def test_a_killed_runs_temporaries_are_removed_by_the_next_run(synth_small, tmp_path):
    out, state = tmp_path / "fold", tmp_path / "state"
    litter = [state / ".state.pt.k1ll3d.tmp", out / ".model.pt.x7_a9q.tmp", out / ".metrics.json.abc.tmp"]
    keep = [out / "notes.txt", state / ".other.tmp"]  # not ours: left alone
    for p in litter + keep:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"\0" * 1000)
    r = pyproc.run(_train_cmd(synth_small, out, state=state))
    assert r.returncode == 0, r.stderr
    assert [p for p in litter if p.exists()] == [] and all(p.exists() for p in keep)


def test_a_killed_cache_builds_temporary_is_removed(blobs, tmp_path):
    from ageest.pipeline.cache import open_cache
    from ageest.config import Config
    from ageest.data.fgnet import scan_images

    path = tmp_path / "c" / "cache.npy"
    path.parent.mkdir()
    (path.parent / ".cache.npy.dead01.tmp").write_bytes(b"\0" * 1000)
    open_cache(path, scan_images(blobs), Config(image_size=32, pretrained="none"), None)
    assert sorted(p.name for p in path.parent.iterdir()) == ["cache.npy", "cache.npy.json", "cache.npy.lock"]


def test_remove_temporaries_takes_only_the_named_files(tmp_path):
    for name in (".state.pt.a1.tmp", ".state.pt.b2.tmp", ".state.ptx.c.tmp", "state.pt", ".state.pt.tmp.keep"):
        (tmp_path / name).write_text("x")
    assert sorted(p.name for p in remove_temporaries([tmp_path / "state.pt", tmp_path / "none" / "x"])) == [
        ".state.pt.a1.tmp", ".state.pt.b2.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".state.pt.tmp.keep", ".state.ptx.c.tmp", "state.pt"]


# --- a full disk: a real one, a small tmpfs (root only) -----------------------------------------


@contextlib.contextmanager
def _tmpfs(where: Path, size: str):
    where.mkdir(parents=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    with _tmpfs(tmp_path / f"disk-{uuid.uuid4().hex[:6]}", "1m") as d:
        yield d


BIG = {"w": torch.zeros(2**19)}  # 2 MB: more than the 1 MB disk


def test_torch_save_on_a_full_disk_is_one_line(small_disk):
    with pytest.raises(AgeestError, match=rf"^cannot write {small_disk}/state\.pt: No space left on device$"):
        save_torch_atomic(small_disk / "state.pt", BIG)
    assert list(small_disk.iterdir()) == []  # no temporary left behind


def test_torchs_own_writer_on_a_full_disk_is_one_line(small_disk):
    # torch.save to a path: C++ writes, and says only RuntimeError("... unexpected pos ...").
    with pytest.raises(AgeestError, match=r"state\.pt: No space left on device$"):
        with atomic_path(small_disk / "state.pt") as tmp:
            torch.save(BIG, tmp)
    assert list(small_disk.iterdir()) == []


def test_text_and_numpy_on_a_full_disk(small_disk):
    with pytest.raises(AgeestError, match=r"t\.tsv: No space left on device$"):
        write_text_atomic(small_disk / "t.tsv", "x" * 2**21)
    with pytest.raises(AgeestError, match=r"c\.npy: No space left on device$"):
        with atomic_path(small_disk / "c.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, np.zeros(2**18))


@pytest.mark.slow  # a fold in its own `ageest train` process
def test_a_fold_on_a_6_mb_disk_ends_with_one_line_saying_it_is_full(synth_small, tmp_path):
    """Done when: the fold's state (and model) do not fit: one line, the OS's reason, exit 2."""
    with _tmpfs(tmp_path / "disk", "6m") as disk:
        r = pyproc.run(_train_cmd(synth_small, disk / "fold"))
        # A fold that wrote nothing leaves no folder (ageest train removes the one it made).
        left = sorted(p.name for p in (disk / "fold").iterdir()) if (disk / "fold").exists() else []
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith(f"ageest train: error: cannot write {disk}/fold/") and lines[0].endswith(
        ": No space left on device"), lines[0]
    assert not [n for n in left if n.endswith(".tmp")], left


def test_a_write_error_that_is_not_the_disks_passes_through(tmp_path):
    assert write_failure(tmp_path / "x", RuntimeError("unexpected pos 5 vs 3")) is None  # disk not full
    assert write_failure(tmp_path / "x", ValueError("a bug")) is None
    with pytest.raises(ValueError, match="a bug"):
        with atomic_path(tmp_path / "x"):
            raise ValueError("a bug")
    assert list(tmp_path.iterdir()) == []


def test_an_os_error_under_another_is_found(tmp_path):
    try:
        try:
            raise OSError(122, "Disk quota exceeded")
        except OSError:
            raise RuntimeError("writer failed")
    except RuntimeError as e:
        assert str(write_failure(tmp_path / "m.pt", e)) == f"cannot write {tmp_path}/m.pt: Disk quota exceeded"


# --- file names that are not UTF-8 ------------------------------------------------------------


def test_non_utf8_names_are_escaped_in_every_message(tmp_path):
    name = os.fsdecode(b"00\xff1A03.JPG")
    assert printable(name) == "00\\xff1A03.JPG"
    err = DataError(f"{tmp_path / name}: not an FG-NET image name")
    assert str(err).encode("utf-8").decode() == f"{tmp_path}/00\\xff1A03.JPG: not an FG-NET image name"
    assert os_error_line(FileNotFoundError(2, "No such file or directory", name)) == \
        "00\\xff1A03.JPG: No such file or directory"


def test_non_utf8_file_in_a_real_process(tmp_path):
    from PIL import Image

    folder = Path(os.fsdecode(bytes(tmp_path) + b"/d\xe9j\xe0/images"))
    folder.mkdir(parents=True)
    Image.new("RGB", (20, 20)).save(folder / "001A02.JPG")
    (folder / "001A03.JPG").write_bytes(b"\xff\xd8\xff broken")
    # A real subprocess, not pyproc: this command imports no torch, and the quick loop starts no fork server.
    r = subprocess.run([sys.executable, "-m", "ageest", "manifest", "--images", os.fsencode(folder), "--out",
                        str(tmp_path / "m.tsv")], capture_output=True)
    assert r.returncode == 2
    line = r.stderr.decode("utf-8")  # strict: valid UTF-8, the bytes shown as escapes
    assert line.count("\n") == 1 and "d\\xe9j\\xe0/images/001A03.JPG: cannot decode image" in line, line


def test_an_os_error_no_layer_caught_is_one_line_in_the_cli(monkeypatch, capsys):
    import ageest.data.splits
    from ageest.cli import main

    def unreadable(args):
        raise PermissionError(13, "Permission denied", os.fsdecode(b"/data/caf\xe9/001A02.JPG"))

    monkeypatch.setattr(ageest.data.splits, "run", unreadable)
    assert main(["split", "--images", "x", "--leave-subject", "1", "--out", "y"]) == 2
    assert capsys.readouterr().err == "ageest split: error: /data/caf\\xe9/001A02.JPG: Permission denied\n"
