"""`python ARGS` for the tests, in a fresh process forked from one that has already imported the
heavy modules: Snakemake (a dry run costs about 1 s instead of 2 s on the 2-core machine) and torch
with torchvision (3.5 s per `ageest train`). The suite starts some ninety such processes.

The fork server is multiprocessing's: it is started once per session, imports PRELOAD and nothing
else (no test's state), and forks a child per call. The child takes the caller's environment,
working directory and umask as they are at the call, runs ARGS as the interpreter would (`-m
module`, `-c code` or a script, with the same sys.argv and sys.path[0]), writes stdout and stderr to
files of its own and exits with the status Python would give. A real run's jobs are still
subprocesses of the Snakemake child, as they are of a `python -m snakemake`. A test that needs a
process whose imports are its own (tests/test_plan.py: parsing imports no torch), one whose output
it reads while it runs, or a command that imports neither (cheaper than starting the server: the
quick loop starts none) starts it with subprocess instead.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import runpy
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

from ageest.io import current_umask

PRELOAD = ["snakemake.cli", "snakemake.report", "smart_open", "jsonschema", "yaml", "torch", "torchvision",
           "ageest.cli", "ageest.plan", "ageest.data.synth", "ageest.train.fold", "pyproc"]

_server = multiprocessing.get_context("forkserver")
_server.set_forkserver_preload(PRELOAD)


def _main(argv: list[str]) -> None:
    """What `python *argv` runs, in this process."""
    if argv[0] == "-m":
        sys.argv, sys.path[0] = [argv[1], *argv[2:]], os.getcwd()
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    elif argv[0] == "-c":
        sys.argv, sys.path[0] = ["-c", *argv[2:]], ""
        exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    else:
        sys.argv, sys.path[0] = list(argv), str(Path(argv[0]).resolve().parent)
        runpy.run_path(argv[0], run_name="__main__")


def _child(argv: list[str], env: dict[str, str], cwd: str, umask: int, out: str, err: str) -> None:
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None  # read again from TMPDIR
    os.chdir(cwd)
    os.umask(umask)
    for fd, path in ((1, out), (2, err)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    try:
        _main(argv)
    except SystemExit:
        raise  # multiprocessing turns it into the exit status as the interpreter does
    except BaseException:
        traceback.print_exc()
        raise SystemExit(1)
    finally:
        atexit._run_exitfuncs()  # a forked child leaves through os._exit, which skips them


def run(argv: list, *, timeout: float = 600, env: dict[str, str] | None = None, cwd: str | Path | None = None,
        text: bool = True) -> subprocess.CompletedProcess:
    """subprocess.run([sys.executable, *argv], capture_output=True, text=text, ...), forked."""
    argv = [os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in argv]
    umask = current_umask()
    with tempfile.TemporaryDirectory(prefix="pyproc-") as tmp:
        out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
        p = _server.Process(target=_child, args=(argv, dict(os.environ if env is None else env),
                                                  str(cwd or os.getcwd()), umask, str(out), str(err)))
        p.start()
        p.join(timeout)
        if p.is_alive():
            p.kill()
            p.join()
            raise subprocess.TimeoutExpired([sys.executable, *argv], timeout)
        read = (lambda f: f.read_text()) if text else (lambda f: f.read_bytes())
        return subprocess.CompletedProcess([sys.executable, *argv], p.exitcode, read(out), read(err))


def snakemake(argv: list, **kwargs) -> subprocess.CompletedProcess:
    """`python -m snakemake *argv`."""
    return run(["-m", "snakemake", *argv], **kwargs)
