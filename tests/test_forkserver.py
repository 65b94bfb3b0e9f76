"""`ageest train` through the fork server: the same fold as in its own process, signals reach it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from conftest import tiny_overrides


def _cmd(images, out, **extra):
    return [sys.executable, "-m", "ageest", "train", "--images", str(images), "--leave-subject", "4",
            "--loss", "mean_variance", "--out", str(out)] + [
        a for o in tiny_overrides(**{"epochs": 2, **extra}) for a in ("--set", o)]


def _env(tmp_path, on: bool) -> dict:
    # A private server (its socket lives in TMPDIR) that exits soon after the test's last fold.
    return {**os.environ, "AGEEST_FORK_SERVER": "1" if on else "0", "TMPDIR": str(tmp_path),
            "AGEEST_FORK_SERVER_IDLE_S": "2"}


def test_forked_fold_equals_a_fold_in_its_own_process(synth_small, tmp_path):
    for name, on in (("own", False), ("forked", True), ("forked_again", True)):
        r = subprocess.run(_cmd(synth_small, tmp_path / name), env=_env(tmp_path, on), capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "first training step" in r.stdout and "fork server unreachable" not in r.stderr
    own, forked, again = (json.loads((tmp_path / n / "metrics.json").read_text())
                          for n in ("own", "forked", "forked_again"))
    for key in ("test_mae", "val_loss", "best_epoch", "best_val_mae"):
        assert own[key] == forked[key] == again[key], key
    assert (tmp_path / "own" / "predictions.tsv").read_text() == (tmp_path / "forked" / "predictions.tsv").read_text()
    assert all(m["startup_seconds"] > 0 for m in (own, forked, again))


def test_sigterm_to_the_command_stops_the_forked_fold_with_its_state_saved(synth_small, tmp_path):
    out = tmp_path / "f"
    proc = subprocess.Popen(_cmd(synth_small, out, epochs=200, batch_size=4, keep_checkpoint="true"),
                            env=_env(tmp_path, True), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # the fold's own output, written by the forked child
        if line.startswith("epoch 1/200"):
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 2, err
    assert "stopped by signal 15" in err and "state saved" in err, err
    assert (out / "state.pt").exists() and not (out / "metrics.json").exists()
