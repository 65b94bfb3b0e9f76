"""A failed workflow job's own message on the console, not only in its log file.

Every rule sends its output to its log (`> {log} 2>&1`, or a script's redirected streams); when it
fails, Snakemake itself says only "Error in rule manifest". One report, the same for every rule,
goes where the user looks first (Snakemake's output; on SLURM, the job's log):

    ageest manifest failed (exit 2); the end of results/logs/data/manifest.log:
    <the last TAIL_LINES lines of the log>

A job killed by a signal (an OOM kill, say) says so: "failed (killed by SIGKILL (signal 9))".
Shell rules wrap their command in `reported(...)`; script rules run inside `logged_script`.
"""

from __future__ import annotations

import re
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TAIL_LINES = 20  # enough for a traceback's end or a run of refused files; short enough to read


def header(what: str, how: str, log: str) -> str:
    """The first line of the report."""
    return f"{what} failed ({how}); the end of {log}:"


def on_failure(what: str) -> str:
    """Shell text to append to a rule's `COMMAND > {log} 2>&1`: on failure, the report on stderr
    and the command's own status kept. Written for Snakemake's formatting ({log}, doubled braces)."""
    how = ('if [ $status -gt 128 ] && [ $status -le 192 ]; then how="killed by SIG$(kill -l $((status - 128))) '
           '(signal $((status - 128)))"; else how="exit $status"; fi')
    return (f" || {{{{ status=$?; {how}; echo \"{header(what, '$how', '{log}')}\" >&2; "
            f"tail -n {TAIL_LINES} {{log:q}} >&2; exit $status; }}}}")


def reported(command: str) -> str:
    """A rule's shell `command` (`... ageest NAME ... > {log} 2>&1`) with `on_failure` appended,
    the report naming `ageest NAME`. A call, not `+`: Snakemake's linter takes `+` for paths."""
    return command + on_failure(re.search(r"\bageest [\w-]+", command).group(0))


def tail(path: str | Path, n: int = TAIL_LINES) -> str:
    """The last `n` lines of a text file ('' when it cannot be read)."""
    try:
        lines = Path(path).read_text(errors="backslashreplace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


@contextmanager
def logged_script(log: str, what: str) -> Iterator[None]:
    """Run a Snakemake script's body with stdout and stderr going to `log`; if it fails (an
    exception, or sys.exit with a message or non-zero status), its error goes to the log and the
    report to the real stderr, and the script exits with status 1 (or its own)."""
    console = sys.__stderr__
    with open(log, "w") as f:
        sys.stdout = sys.stderr = f
        try:
            yield
            status = 0
        except SystemExit as e:
            status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, int) and e.code is not None:
                print(e.code, file=f)
        except Exception:  # noqa: BLE001 (any failure of a script: its traceback is for the log)
            traceback.print_exc(file=f)
            status = 1
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    if status:
        print(header(what, f"exit {status}", log), file=console)
        print(tail(log), file=console, flush=True)
        sys.exit(status)
