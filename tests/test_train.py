"""A tiny fold end to end on synthetic faces: outputs, reproducibility, resume, refusals."""

import csv
import json
import math
import signal

import pytest
import torch

from ageest.config import load_config
from ageest.errors import AgeestError
from ageest.train.fold import STATE_FILE, run_fold
import pyproc
from conftest import tiny_overrides


def _cfg(**extra):
    return load_config(None, tiny_overrides(**extra))


@pytest.fixture(scope="module")
def tiny_fold(synth_small, tmp_path_factory):
    """One fold (subject 2, mean-variance, the tiny config), trained once: its folder and metrics."""
    out = tmp_path_factory.mktemp("tiny-fold") / "fold"
    return out, run_fold(synth_small, 2, "mean_variance", out, _cfg(), log=lambda *_: None)


@pytest.mark.slow
def test_fold_end_to_end(tiny_fold):
    out, m = tiny_fold
    assert sorted(p.name for p in out.iterdir()) == ["history.tsv", "metrics.json", "model.pt",
                                                      "predictions.tsv"]
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("subject", "loss", "n_train", "n_val", "n_test", "best_epoch", "val_mae", "test_mae",
                "seconds", "device", "config", "ageest_version", "torch_version", "data_fingerprint",
                "precision"):
        assert key in saved
    assert saved["precision"] == ("bf16" if saved["bf16"] else "fp32")
    assert saved["subject"] == 2 and saved["loss"] == "mean_variance" and saved["device"] == "cpu"
    assert all(math.isfinite(saved[k]) for k in ("val_mae", "test_mae", "seconds"))
    assert saved["config"]["epochs"] == 2 and 1 <= saved["best_epoch"] <= 2
    pred = (out / "predictions.tsv").read_text().splitlines()
    assert pred[0].split("\t") == ["image", "subject", "age", "predicted_age", "predicted_std",
                                   "predicted_age_rounded"]
    assert len(pred) - 1 == saved["n_test"] and all(r.split("\t")[1] == "2" for r in pred[1:])
    mae = sum(abs(float(r.split("\t")[3]) - int(r.split("\t")[2])) for r in pred[1:]) / (len(pred) - 1)
    assert mae == pytest.approx(saved["test_mae"], abs=1e-3)
    hist = (out / "history.tsv").read_text().splitlines()
    assert hist[0].split("\t")[:6] == ["epoch", "train_loss", "train_ce", "train_mean", "train_var", "val_loss"]
    assert len(hist) == 3
    ck = torch.load(out / "model.pt", weights_only=False)
    assert ck["config"]["image_size"] == 32 and (ck["min_age"], ck["max_age"]) == (0, 69)
    assert m == saved


@pytest.mark.slow
def test_same_command_twice_same_result(synth_small, tiny_fold, tmp_path):
    # The second run of tiny_fold's command (the first is the fixture's).
    first, a = tiny_fold
    b = run_fold(synth_small, 2, "mean_variance", tmp_path / "b", _cfg(), log=lambda *_: None)
    for k in ("test_mae", "val_mae", "best_epoch", "n_train", "n_val"):
        assert a[k] == b[k]
    assert (first / "predictions.tsv").read_text() == (tmp_path / "b" / "predictions.tsv").read_text()


@pytest.mark.slow
def test_plain_pipeline_runs(synth_small, tmp_path):
    m = run_fold(synth_small, 1, "softmax", tmp_path / "p", _cfg(pipeline="plain", epochs=1,
                                                                   freeze_epochs=0), log=lambda *_: None)
    assert math.isfinite(m["test_mae"])


def _backbone_after_head_only_epoch(images, tmp_path, freeze_bn: bool):
    """The starting backbone (a state-dict file) and the backbone after one head-only epoch."""
    import torchvision

    torch.manual_seed(1)
    start = torchvision.models.resnet18(weights=None).state_dict()
    f = tmp_path / "start.pth"
    torch.save(start, f)
    out = tmp_path / f"freeze_bn_{freeze_bn}"
    run_fold(images, 2, "softmax", out, _cfg(epochs=1, freeze_epochs=1, pretrained=str(f),
                                             freeze_bn=freeze_bn), log=lambda *_: None)
    model = torch.load(out / "model.pt", weights_only=False)["model"]
    return ({k: v for k, v in start.items() if not k.startswith("fc.")},
            {k: v for k, v in model.items() if not k.startswith("fc.")}, model)


def test_head_only_epoch_leaves_every_backbone_tensor_bit_identical(synth_small, tmp_path):
    start, after, model = _backbone_after_head_only_epoch(synth_small, tmp_path, freeze_bn=True)
    assert start.keys() == after.keys() and any(k.endswith("running_var") for k in after)
    assert [k for k in start if not torch.equal(start[k], after[k])] == []  # parameters and buffers
    assert model["fc.0.num_batches_tracked"].item() > 0  # the head's BatchNorm1d did train


@pytest.mark.slow
def test_freeze_bn_false_lets_the_running_stats_move(synth_small, tmp_path):
    # The reference recipe's behaviour: frozen weights, but model.train() moves the backbone's BatchNorm statistics.
    start, after, _ = _backbone_after_head_only_epoch(synth_small, tmp_path, freeze_bn=False)
    assert torch.equal(start["conv1.weight"], after["conv1.weight"])
    assert torch.equal(start["bn1.weight"], after["bn1.weight"])
    assert not torch.equal(start["bn1.running_mean"], after["bn1.running_mean"])
    assert after["bn1.num_batches_tracked"].item() > 0


def _train_cmd(images, out, *extra):
    return ["-m", "ageest", "train", "--images", str(images), "--leave-subject", "4",
            "--loss", "mean_variance", "--out", str(out)] + [
        a for o in tiny_overrides(**{"epochs": 4, **dict(e.split("=") for e in extra)}) for a in ("--set", o)]


# The fold the resume tests compare with: run whole, once (`ageest train`, 3 epochs of 5 batches of 16).
RESUMED = ("epochs=3",)


@pytest.fixture(scope="module")
def uninterrupted(synth_small, tmp_path_factory):
    ref = tmp_path_factory.mktemp("uninterrupted") / "ref"
    assert pyproc.run(_train_cmd(synth_small, ref, *RESUMED)).returncode == 0
    return ref


# `ageest train`, whose process kills itself with SIGKILL (no handler runs) as soon as the state of
# its second epoch is written: no race with the test, no sleeping.
SIGKILL_AFTER_TWO_EPOCHS = """
import os, signal, sys
import ageest.train.fold as fold
from ageest.cli import main
save = fold.save_state
def save_then_die(path, identity, state, *rest):
    save(path, identity, state, *rest)
    if state.epoch == 2:
        os.kill(os.getpid(), signal.SIGKILL)
fold.save_state = save_then_die
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_killed_fold_resumes_to_the_same_result(synth_small, uninterrupted, tmp_path):
    out = tmp_path / "killed"
    cmd = _train_cmd(synth_small, out, *RESUMED, "keep_checkpoint=true")
    r = pyproc.run(["-c", SIGKILL_AFTER_TWO_EPOCHS] + cmd[2:])
    assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr
    assert not (out / "metrics.json").exists()
    assert (out / STATE_FILE).exists()
    r = pyproc.run(cmd)
    assert r.returncode == 0, r.stderr
    assert "resuming from" in r.stdout and "epoch 3" in r.stdout, r.stdout
    a = json.loads((uninterrupted / "metrics.json").read_text())
    b = json.loads((out / "metrics.json").read_text())
    assert (a["test_mae"], a["val_mae"], a["best_epoch"]) == (b["test_mae"], b["val_mae"], b["best_epoch"])
    assert (uninterrupted / "predictions.tsv").read_text() == (out / "predictions.tsv").read_text()
    # Every epoch as the uninterrupted fold trained it, not only the model selected (which an epoch
    # trained twice may leave as it was): the history but for its timings.
    assert _history(uninterrupted) == _history(out)


def _history(fold):
    timings = {"seconds", "images_per_second", "val_seconds"}
    with open(fold / "history.tsv") as f:
        return [{k: v for k, v in row.items() if k not in timings} for row in csv.DictReader(f, delimiter="\t")]


# `ageest train`, whose process sends itself SIGTERM (as SLURM does before a time limit) while the
# batch stream of epoch EPOCH (0-based) hands out batch BATCH: no race with the test, no sleeping.
SIGTERM_MID_EPOCH = """
import os, signal, sys
from ageest.pipeline import sources as data
from ageest.cli import main
EPOCH, BATCH = 1, 3
inner = data.TensorSource.train_batches
def train_batches(self, epoch, start=0):
    for b, batch in enumerate(inner(self, epoch, start), start):
        if (epoch, b) == (EPOCH, BATCH):
            os.kill(os.getpid(), signal.SIGTERM)
        yield batch
data.TensorSource.train_batches = train_batches
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_sigterm_saves_state_mid_epoch_and_resumes(synth_small, uninterrupted, tmp_path):
    out = tmp_path / "term"
    cmd = _train_cmd(synth_small, out, *RESUMED)
    r = pyproc.run(["-c", SIGTERM_MID_EPOCH] + cmd[2:])
    assert r.returncode == 2, r.stdout + r.stderr
    assert "stopped by signal" in r.stderr and "in epoch 2" in r.stderr and "state saved" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "epoch 1/3" in r.stdout and "epoch 2/3" not in r.stdout
    assert (out / STATE_FILE).exists() and not (out / "metrics.json").exists()
    r = pyproc.run(cmd)
    assert r.returncode == 0 and "resuming" in r.stdout, r.stdout + r.stderr
    assert (uninterrupted / "predictions.tsv").read_text() == (out / "predictions.tsv").read_text()
    assert not (out / STATE_FILE).exists()  # removed once the fold is done (keep_checkpoint false)


@pytest.mark.slow
def test_state_from_another_config_is_refused(synth_small, tmp_path):
    out = tmp_path / "f"
    run_fold(synth_small, 2, "softmax", out, _cfg(epochs=1, freeze_epochs=0, keep_checkpoint=True),
             log=lambda *_: None)
    # Fake an unfinished run: drop the outputs, keep a state written under epochs=1 ...
    (out / "metrics.json").unlink()
    run_fold(synth_small, 2, "softmax", tmp_path / "g", _cfg(epochs=2, keep_checkpoint=True),
             log=lambda *_: None)
    (out / STATE_FILE).unlink(missing_ok=True)
    (tmp_path / "g" / STATE_FILE).rename(out / STATE_FILE)
    with pytest.raises(AgeestError, match="belongs to another run.*config"):
        run_fold(synth_small, 2, "softmax", out, _cfg(epochs=3, keep_checkpoint=True), log=lambda *_: None)


def test_divergence_is_named(synth_small, tmp_path):
    with pytest.raises(AgeestError, match="diverged at epoch 1.*train_loss=nan"):
        run_fold(synth_small, 2, "mean_variance", tmp_path / "d", _cfg(lr=1e30, freeze_epochs=0),
                 log=lambda *_: None)
    assert not (tmp_path / "d" / "metrics.json").exists()


def test_fold_follows_a_split_file(synth_small, tmp_path):
    from ageest.data.fgnet import scan_images
    from ageest.data.splits import split_fold, fold_split_tsv

    records = scan_images(synth_small)
    sp = split_fold(records, 5, seed=7)  # not the config's seed: the file decides
    f = tmp_path / "split.tsv"
    f.write_text(fold_split_tsv(records, sp))
    m = run_fold(synth_small, 5, "softmax", tmp_path / "o", _cfg(epochs=1, freeze_epochs=0), split_file=f,
                 log=lambda *_: None)
    assert (m["n_train"], m["n_val"], m["n_test"]) == (len(sp.train), len(sp.val), len(sp.test))


@pytest.mark.slow
def test_several_folds_in_one_process_equal_folds_in_their_own(synth_small, tmp_path):
    one = [a for o in tiny_overrides(epochs=1, freeze_epochs=0) for a in ("--set", o)]
    base = ["-m", "ageest", "train", "--images", str(synth_small), "--loss", "softmax"]
    # The second fold is the one a shared process could change (the first is any fold's start).
    assert pyproc.run(base + ["--leave-subject", "3", "--out", str(tmp_path / "own" / "003")] + one).returncode == 0
    r = pyproc.run(base + ["--leave-subject", "2", "3", "--out", str(tmp_path / "shared" / "{subject}")] + one)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "own" / "003" / "predictions.tsv").read_text() == \
        (tmp_path / "shared" / "003" / "predictions.tsv").read_text()
    for s in ("002", "003"):
        m = json.loads((tmp_path / "shared" / s / "metrics.json").read_text())
        assert m["cpu_seconds"] > 0 and m["peak_rss_mb"] > 0 and m["peak_rss_scope"] in ("fold", "process")
    r = pyproc.run(base + ["--leave-subject", "2", "3", "--out", str(tmp_path / "shared" / "{subject}")] + one)
    assert r.returncode == 0 and r.stdout.count("skipped") == 2, r.stdout + r.stderr


# SIGTERM in the second of two folds trained by one process: the first is finished, the second saved.
SIGTERM_SECOND_FOLD = SIGTERM_MID_EPOCH.replace("EPOCH, BATCH = 1, 3", "EPOCH, BATCH = 0, 2\nseen = []").replace(
    "        if (epoch, b) == (EPOCH, BATCH):\n",
    "        if (epoch, b) == (EPOCH, BATCH) and seen.append(1) is None and len(seen) == 2:\n")


@pytest.mark.slow
def test_sigterm_in_a_later_fold_saves_it_and_a_rerun_skips_the_finished_one(synth_small, tmp_path):
    pattern = str(tmp_path / "f" / "{subject}")
    args = ["--images", str(synth_small), "--loss", "mean_variance", "--leave-subject", "2", "3",
            "--out", pattern] + [a for o in tiny_overrides(epochs=1, freeze_epochs=0) for a in ("--set", o)]
    r = pyproc.run(["-c", SIGTERM_SECOND_FOLD, "train"] + args)
    assert r.returncode == 2 and "fold 003 mean_variance: stopped by signal" in r.stderr, r.stdout + r.stderr
    assert (tmp_path / "f" / "002" / "metrics.json").exists() and not (tmp_path / "f" / "003" / "metrics.json").exists()
    assert (tmp_path / "f" / "003" / STATE_FILE).exists()
    r = pyproc.run(["-m", "ageest", "train"] + args)
    assert r.returncode == 0 and "subject=002 loss=mean_variance: finished" in r.stdout and "resuming" in r.stdout, r.stdout
    ref = tmp_path / "ref"
    assert pyproc.run(["-m", "ageest", "train"] + args[:5] + ["3", "--out", str(ref)] + args[9:]).returncode == 0
    assert (ref / "predictions.tsv").read_text() == (tmp_path / "f" / "003" / "predictions.tsv").read_text()
