"""GPU slot locks (`device: auto`), on CPU: processes that claim from a fake count of GPUs."""

import os
import selectors
import subprocess
import sys
import textwrap
import time

import pytest

from ageest.train.devices import claim_gpu

# Claims a GPU out of n_gpus x slots, prints it, then holds the lock until stdin closes.
CLAIM = textwrap.dedent("""
    import sys
    from ageest.train.devices import claim_gpu
    gpu = claim_gpu(int(sys.argv[1]), int(sys.argv[2]), poll_s=0.05)
    print(gpu, flush=True)
    sys.stdin.read()
""")


def _claimer(n_gpus, slots, lock_dir):
    env = {**os.environ, "AGEEST_LOCK_DIR": str(lock_dir)}
    return subprocess.Popen([sys.executable, "-c", CLAIM, str(n_gpus), str(slots)], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _line(stream, timeout):
    """The next line of a claimer's stdout or stderr, or None if none came within `timeout` s."""
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    return stream.readline() if sel.select(timeout) else None


def _claimed(proc, timeout=60):
    """The GPU a claimer printed, or None if it printed nothing within `timeout` seconds."""
    line = _line(proc.stdout, timeout)
    if line is None:
        return None
    assert line, f"claimer died: {proc.stderr.read()}"
    return int(line)


def _waiting(proc, timeout=20):
    """True once a claimer says that every slot is taken (it then polls for a free one)."""
    line = _line(proc.stderr, timeout)
    return line is not None and "waiting for one to be released" in line


def _release(proc):
    proc.stdin.close()
    proc.wait(timeout=60)


@pytest.fixture
def procs():
    started = []
    yield started
    for p in started:  # never leave a claimer behind, whatever the test did
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)


def test_two_processes_get_different_gpus_and_a_third_waits(tmp_path, procs):
    a = _claimer(2, 1, tmp_path)
    procs.append(a)
    first = _claimed(a)
    b = _claimer(2, 1, tmp_path)
    procs.append(b)
    second = _claimed(b)
    assert {first, second} == {0, 1}
    c = _claimer(2, 1, tmp_path)
    procs.append(c)
    assert _waiting(c)  # both slots held: it waits instead of sharing a GPU
    assert _claimed(c, timeout=1) is None and c.poll() is None
    _release(a)  # a's lock goes with it
    assert _claimed(c) == first
    assert f"GPU {first} slot 0 free" in _line(c.stderr, 10)
    _release(b)
    _release(c)


def test_slots_per_gpu_fill_every_gpu_before_doubling_up(tmp_path, procs):
    got = []
    for _ in range(4):
        p = _claimer(2, 2, tmp_path)
        procs.append(p)
        got.append(_claimed(p))
    assert got == [0, 1, 0, 1]
    extra = _claimer(2, 2, tmp_path)
    procs.append(extra)
    assert _waiting(extra) and _claimed(extra, timeout=1) is None


def test_claims_in_one_process_take_distinct_slots(tmp_path):
    lines = []
    assert [claim_gpu(3, 1, tmp_path, log=lines.append) for _ in range(3)] == [0, 1, 2]
    assert lines == []  # no waiting, no message


def test_wait_is_logged_once_and_ends_when_a_lock_is_released(tmp_path, procs):
    a = _claimer(1, 1, tmp_path)
    procs.append(a)
    assert _claimed(a) == 0
    lines = []
    t0 = time.monotonic()

    def log(msg):
        lines.append(msg)
        if len(lines) == 1:
            _release(a)  # released while we wait

    assert claim_gpu(1, 1, tmp_path, poll_s=0.05, log=log) == 0
    assert time.monotonic() - t0 < 30
    assert len(lines) == 2 and "waiting" in lines[0] and "GPU 0 slot 0 free" in lines[1]

