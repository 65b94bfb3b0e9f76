"""Files and folders the package reads are hostile: no code runs from a model or state file, and no
other user can plant or take the GPU lock files."""

import pytest
import torch
from pathlib import Path


class _Plant:
    """A pickle that would create a file when unpickled."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_crafted_model_file_is_refused_unread(tmp_path):
    from ageest.errors import AgeestError
    from ageest.predict import load_model

    planted = tmp_path / "planted"
    torch.save({"model": {}, "config": _Plant(planted), "loss": "softmax"}, tmp_path / "evil.pt")
    with pytest.raises(AgeestError, match=r"evil.pt holds more than tensors and plain data: refused unread"):
        load_model(tmp_path / "evil.pt", torch.device("cpu"))
    assert not planted.exists()


def test_a_crafted_or_foreign_state_file_is_refused_unread(tmp_path):
    from ageest.errors import AgeestError
    from ageest.train.checkpoint import load_state

    planted = tmp_path / "planted"
    torch.save({"identity": _Plant(planted)}, tmp_path / "state.pt")
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(net.parameters())
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [2])
    with pytest.raises(AgeestError, match=r"state.pt is not a state file ageest wrote \(it holds more than tensors"):
        load_state(tmp_path / "state.pt", {}, net, opt, sched, torch.device("cpu"))
    assert not planted.exists()
    torch.save([1, 2, 3], tmp_path / "state.pt")
    with pytest.raises(AgeestError, match=r"state.pt is not a state file ageest wrote \(no fold state in it\)"):
        load_state(tmp_path / "state.pt", {}, net, opt, sched, torch.device("cpu"))


# --- GPU lock files no other user can touch -----------------------------------------------------


def test_a_planted_symlink_in_the_lock_folder_truncates_nothing(tmp_path):
    import socket

    from ageest.errors import AgeestError
    from ageest.train.devices import claim_gpu

    folder = tmp_path / "locks"
    folder.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    visible = __import__("os").environ.get("CUDA_VISIBLE_DEVICES", "")
    (folder / f"{socket.gethostname()}-{visible}-gpu0-slot0.lock").symlink_to(victim)
    with pytest.raises(AgeestError, match=r"GPU lock file .*gpu0-slot0.lock: .*a symbolic link there is refused"):
        claim_gpu(1, folder=folder, log=lambda *_: None)
    assert victim.read_text() == "precious\n"


def test_a_lock_folder_someone_else_owns_is_refused_in_one_line(tmp_path):
    import os

    from ageest.errors import AgeestError
    from ageest.train.devices import claim_gpu

    if os.getuid() != 0:
        pytest.skip("needs root, to give a folder to another user")
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o755)
    os.chown(folder, 65534, 65534)
    with pytest.raises(AgeestError, match=r"theirs belongs to another user \(uid 65534\): refused; set AGEEST_LOCK_DIR"):
        claim_gpu(1, folder=folder, log=lambda *_: None)
    mine = tmp_path / "open"
    mine.mkdir()
    mine.chmod(0o777)
    with pytest.raises(AgeestError, match=r"open may be written by other users: refused"):
        claim_gpu(1, folder=mine, log=lambda *_: None)


def test_another_users_lock_folder_does_not_stop_this_users_folds(tmp_path, monkeypatch):
    # A second user (uid 65534, by setpriv) makes the old fixed-name folder, 0755, first: this
    # user's folds still lock a GPU slot, in a 0700 folder of their own. Where that user squats
    # this user's own name instead, the fold stops with one line naming AGEEST_LOCK_DIR.
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    from ageest.train import devices

    if os.getuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to act as a second user")
    tmp = Path(tempfile.mkdtemp(prefix="ageest-uid-"))
    tmp.chmod(0o777)
    as_other = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", sys.executable, "-c"]
    try:
        r = subprocess.run([*as_other, f"import os; os.makedirs({str(tmp / 'ageest-gpu-locks')!r}, 0o755)"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert (tmp / "ageest-gpu-locks").stat().st_uid == 65534
        monkeypatch.delenv("AGEEST_LOCK_DIR", raising=False)
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
        monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp))
        assert devices.claim_gpu(1, log=lambda *_: None) == 0
        mine = tmp / f"ageest-gpu-locks-{os.getuid()}"
        assert mine.stat().st_mode & 0o777 == 0o700 and mine.stat().st_uid == os.getuid()
        for f in devices._held:
            f.close()
        devices._held.clear()
        shutil.rmtree(mine)
        r = subprocess.run([*as_other, f"import os; os.makedirs({str(mine)!r}, 0o755)"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        with pytest.raises(devices.AgeestError, match=r"belongs to another user \(uid 65534\): refused; set AGEEST_LOCK_DIR"):
            devices.claim_gpu(1, log=lambda *_: None)
    finally:
        for f in devices._held:
            f.close()
        devices._held.clear()
        shutil.rmtree(tmp, ignore_errors=True)


# --- one line where a traceback was ----------------------------------------------------------------


@pytest.mark.parametrize("device", ["cudafoo", "cuda:-1", "cuda:x", "gpu"])
def test_a_device_that_is_no_device_is_named_by_the_config_check(device):
    from ageest.config import Config
    from ageest.errors import ConfigError

    with pytest.raises(ConfigError, match=r"config key 'device': must be auto, cpu, cuda, cuda:N"):
        Config(device=device)


def test_a_device_this_machine_lacks_is_one_line(monkeypatch):
    from ageest.errors import ConfigError
    from ageest.train.devices import resolve_device

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"config key 'device': mps asked for but Apple's MPS is not available"):
        resolve_device("mps")


def test_a_config_file_that_gives_a_key_twice_or_is_not_utf8_is_refused(tmp_path):
    from ageest.config import load_config
    from ageest.errors import ConfigError

    twice = tmp_path / "twice.yaml"
    twice.write_text("epochs: 5\nlr: 0.1\nepochs: 7\n")
    with pytest.raises(ConfigError, match=r"twice.yaml: key 'epochs' is given twice \(line 3\); give it once"):
        load_config(twice)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("arch: resnet18  # r\xe9seau\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin.yaml is not UTF-8 text \(byte 19\); save it as UTF-8"):
        load_config(latin)


def test_keys_that_size_memory_or_work_have_a_stated_upper_bound():
    from ageest.config import Config
    from ageest.errors import ConfigError

    with pytest.raises(ConfigError, match=r"config key 'max_age': must be <= 150 \(got 100000000\)"):
        Config(max_age=100000000)
    with pytest.raises(ConfigError, match=r"config key 'epochs': must be in \[1, 10000\]"):
        Config(epochs=10**9)
    with pytest.raises(ConfigError, match=r"config key 'batch_size': must be in \[2, 65536\]"):
        Config(batch_size=10**9)


def test_gather_refuses_a_bootstrap_past_its_bound(capsys):
    from ageest.cli import main

    with pytest.raises(SystemExit) as e:
        main(["gather", "nothing.json", "--out", "x", "--bootstrap", "1000000000000"])
    assert e.value.code == 2
    assert "must be between 1 and 1,000,000 resamples" in capsys.readouterr().err


def test_synth_refuses_a_folder_that_holds_a_data_set(tmp_path, capsys):
    from ageest.cli import main

    real = tmp_path / "data" / "images"
    real.mkdir(parents=True)
    (real / "001A02.JPG").write_bytes(b"a real photo")
    assert main(["synth", str(tmp_path / "data"), "--subjects", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("images already holds files: ageest synth writes a data set of its own; give an empty "
                        "or new folder, or --overwrite to write over it") and len(err.splitlines()) == 1
    assert (real / "001A02.JPG").read_bytes() == b"a real photo"
    assert main(["synth", str(tmp_path / "data"), "--subjects", "1", "--overwrite"]) == 0


# --- predict never destroys a file ------------------------------------------------------------------


def _model(tmp_path, align="none"):
    """A fold's model.pt of a small untrained network, as `ageest train` saves it."""
    from ageest.config import Config
    from ageest.nn.model import build_model
    from ageest.train.fold import save_model

    config = Config(arch="resnet18", pretrained="none", image_size=32, align=align)
    save_model(tmp_path / "model.pt", build_model("resnet18", config.num_classes, "none"), config,
               {"loss": "softmax", "subject": 1})
    return tmp_path / "model.pt"


def _photo(path):
    import numpy as np
    from PIL import Image

    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(path)
    return path


@pytest.mark.parametrize("names, output, message", [
    (["photo.png"], "photo.png", r"the annotated copy of .*photo.png would overwrite the photo .*photo.png"),
    (["a.jpg", "a.png"], None, r"a.jpg and .*a.png would both write their annotated copy to .*a.age.jpg"),
    (["a.jpg", "a.age.jpg"], None, r"the annotated copy of .*a.jpg would overwrite the photo .*a.age.jpg"),
])
def test_predict_never_overwrites_a_photo_or_another_photos_copy(tmp_path, capsys, names, output, message):
    import re

    from ageest.cli import main

    photos = [_photo(tmp_path / n) for n in names]
    before = [p.read_bytes() for p in photos]
    args = ["predict", *map(str, photos), "--model", str(_model(tmp_path)), "--device", "cpu"]
    assert main(args + (["--output", str(tmp_path / output)] if output else [])) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(message, err) and len(err.splitlines()) == 1, err
    assert [p.read_bytes() for p in photos] == before


def test_predict_refuses_what_is_not_a_regular_file(tmp_path, capsys):
    from ageest.cli import main

    (tmp_path / "folder.jpg").mkdir()
    assert main(["predict", str(tmp_path / "folder.jpg"), "--model", str(_model(tmp_path)), "--device", "cpu"]) == 2
    assert "folder.jpg: not a regular file" in capsys.readouterr().err


def test_gather_and_plots_clear_a_killed_runs_temporaries(tmp_path):
    from ageest.study.catalog import PLOTS, TABLES
    from ageest.study.gather import gather
    from ageest.study.plots import make_plots
    from ageest.train.baselines import run_baselines
    from ageest.config import Config
    from conftest import write_blobs

    images = write_blobs(tmp_path / "blobs")
    out = tmp_path / "folds"
    run_baselines(images, ["mean", "ridge"], [1, 2, 3], out, Config(image_size=32, align="none", pretrained="none"),
                  log=lambda *_: None)
    tables, plots = tmp_path / "tables", tmp_path / "plots"
    tables.mkdir()
    plots.mkdir()
    left = [tables / ".summary.tsv.x1y2.tmp", plots / ".ranking.png.x1y2.tmp"]  # what a SIGKILL leaves
    for f in left:
        f.write_text("half")
    gather([out / m / f"{s:03d}" for m in ("mean", "ridge") for s in (1, 2, 3)], tables, reference="mean")
    make_plots(tables, plots, reference="mean")
    assert not any(f.exists() for f in left)
    assert sorted(p.name for p in tables.iterdir()) == sorted(f"{t}.tsv" for t in TABLES)
    assert sorted(p.name for p in plots.iterdir()) == sorted(f"{p}.png" for p in PLOTS)


def test_a_superscript_digit_is_a_name_not_a_number():
    from ageest.data.records import subject_ids
    from ageest.data.protocols import parse_protocol

    assert subject_ids(["²", "7"]) == {"7": 1, "²": 2}  # names, numbered in sorted order
    with pytest.raises(ValueError, match="kfold needs a number of folds K >= 2"):
        parse_protocol("kfold:²")


@pytest.mark.slow
def test_keep_checkpoint_keeps_the_finished_folds_state_even_after_one_epoch(synth_small, tmp_path):
    from ageest.config import load_config
    from ageest.train.fold import STATE_FILE, run_fold
    from conftest import tiny_overrides

    config = load_config(None, tiny_overrides(epochs=1, freeze_epochs=0, keep_checkpoint="true", save_model="false"))
    run_fold(synth_small, 2, "softmax", tmp_path / "fold", config, log=lambda *_: None)
    state = torch.load(tmp_path / "fold" / STATE_FILE, weights_only=True)
    assert state["epoch"] == 1 and len(state["history"]) == 1


def test_a_failed_train_leaves_no_empty_folder(tmp_path, capsys):
    from ageest.cli import main
    from conftest import write_blobs

    images = write_blobs(tmp_path / "blobs")
    out = tmp_path / "runs" / "fold"
    # Ages past max_age fail the fold after its folder was made (its data are read there).
    args = ["train", "--images", str(images), "--fold", "1", "--loss", "softmax", "--out", str(out),
            "--set", "max_age=10", "--set", "pretrained=none", "--set", "image_size=32"]
    assert main(args) == 2
    assert "lie outside min_age..max_age" in capsys.readouterr().err
    assert not out.exists() and (tmp_path / "runs").is_dir()


@pytest.mark.parametrize("content, message", [
    ("", r"predictions.tsv: not a readable table \(EmptyDataError"),
    ("image\tsubject\tage\tpredicted_age\n", r"predictions.tsv: no test images"),
    ("image\tsubject\tage\tpredicted_age\n001A02.JPG\t1\t2\tforty\n", r"predictions.tsv, row 2, column predicted_age: 'forty' is not a finite number"),
    (b"\xff\xfe\x00garbage\x00\n", r"predictions.tsv: (not a readable table|missing column)"),
])
def test_gather_names_an_empty_or_garbled_predictions_file(tmp_path, content, message):
    from ageest.config import Config
    from ageest.errors import AgeestError
    from ageest.study.gather import gather
    from ageest.train.baselines import run_baselines
    from conftest import write_blobs

    images = write_blobs(tmp_path / "blobs")
    run_baselines(images, ["mean"], [1, 2], tmp_path / "folds", Config(image_size=32, align="none", pretrained="none"),
                  log=lambda *_: None)
    victim = tmp_path / "folds" / "mean" / "002" / "predictions.tsv"
    victim.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(AgeestError, match=message) as e:
        gather([tmp_path / "folds" / "mean" / f"{s:03d}" for s in (1, 2)], tmp_path / "tables", reference="mean")
    assert "\n" not in str(e.value)


# --- the data root is a boundary ----------------------------------------------------------------------


def test_a_landmark_file_or_image_that_links_out_of_the_data_is_refused(tmp_path):
    from ageest.data.fgnet import scan_images
    from ageest.data.landmarks import find_pts
    from ageest.errors import DataError
    from conftest import write_blobs

    images = write_blobs(tmp_path / "data", subjects=2, per_subject=2)
    points = tmp_path / "data" / "points"
    points.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0\n")
    first = sorted(images.iterdir())[0]
    (points / f"{first.stem.lower()}.pts").symlink_to(secret)
    with pytest.raises(DataError, match=r"landmark file: .*\.pts leads outside .*points \(a symbolic link to .*secret.txt\): refused"):
        find_pts(points, first)
    outside = tmp_path / "elsewhere.JPG"
    outside.write_bytes(first.read_bytes())
    (images / "009A09.JPG").symlink_to(outside)
    with pytest.raises(DataError, match=r"image: .*009A09.JPG leads outside .*images"):
        scan_images(images)


def test_a_manifest_row_whose_file_links_out_of_its_root_or_holds_a_tab_is_refused(tmp_path):
    from ageest.data.manifest import read_manifest
    from ageest.errors import DataError
    from conftest import write_blobs

    images = write_blobs(tmp_path / "data", subjects=2, per_subject=2)
    first = sorted(images.iterdir())[0]
    outside = tmp_path / "outside.JPG"
    outside.write_bytes(first.read_bytes())
    (images / "linked.JPG").symlink_to(outside)
    table = tmp_path / "data" / "faces.tsv"
    table.write_text(f"image\tage\tsubject\nimages/{first.name}\t3\ta\nimages/linked.JPG\t4\tb\n")
    with pytest.raises(DataError, match=r"row 3, column image: .*linked.JPG leads outside .*data"):
        read_manifest(table)
    csv = tmp_path / "data" / "faces.csv"
    csv.write_text(f'image,age,subject\nimages/{first.name},3,a\n"images/a\tb.JPG",4,b\n')
    with pytest.raises(DataError, match=r"row 3, column image: 'images/a\\tb.JPG' holds a control character"):
        read_manifest(csv)


# --- content decides what is stale; no photo under two people --------------------------------------


def test_an_image_edited_in_place_changes_the_fingerprint_and_the_cache(synth_small, tmp_path):
    import os
    import shutil

    from ageest.config import Config
    from ageest.data.fgnet import scan_images
    from ageest.data.fingerprint import data_fingerprint
    from ageest.pipeline.cache import default_cache_path

    images = shutil.copytree(synth_small.parent, tmp_path / "synth") / "images"
    records = scan_images(images)
    config = Config(image_size=32, align="landmarks", pretrained="none")
    before, cache = data_fingerprint(records), default_cache_path(records, config)
    victim = records[3].path
    data, st = bytearray(victim.read_bytes()), victim.stat()
    data[-3] ^= 0xFF  # same size, and the old time stamp put back
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert victim.stat().st_size == st.st_size
    assert data_fingerprint(records) != before and default_cache_path(records, config) != cache


def test_one_photo_under_two_people_is_refused_naming_both(tmp_path, capsys):
    import shutil

    from ageest.data.fgnet import scan_images
    from ageest.data.fingerprint import data_fingerprint
    from ageest.errors import DataError
    from conftest import write_blobs

    images = write_blobs(tmp_path / "blobs", subjects=3, per_subject=2)
    first = sorted(images.iterdir())[0]
    free = lambda s: next(f"{s:03d}A{a:02d}.JPG" for a in range(70) if not (images / f"{s:03d}A{a:02d}.JPG").exists())  # noqa: E731
    copy = free(3)
    shutil.copy2(first, images / copy)
    with pytest.raises(DataError, match=rf"{copy} \(subject 3\) is the same file as .*{first.name} \(subject 1\)"):
        data_fingerprint(scan_images(images))
    # Within one person a repeat is no leak: the manifest says how many there are.
    (images / copy).unlink()
    shutil.copy2(first, images / free(1))
    from ageest.cli import main

    assert main(["manifest", "--images", str(images), "--out", str(tmp_path / "m.tsv")]) == 0
    assert "1 image(s) repeat another of the same person byte for byte" in capsys.readouterr().out


@pytest.mark.parametrize("align, detect", [("detector", True), ("landmarks", True), ("none", False)])
def test_predict_aligns_as_the_model_was_trained(tmp_path, monkeypatch, align, detect):
    import ageest.predict as predict
    from ageest.cli import main

    _model(tmp_path, align)
    seen = []
    monkeypatch.setattr(predict, "predict_image", lambda fold, rgb, device, d: seen.append(d) or [])
    assert main(["predict", str(_photo(tmp_path / "p.png")), "--model", str(tmp_path / "model.pt"),
                 "--device", "cpu"]) == 2  # no face found: the stand-in scorer found none
    assert seen == [detect]
