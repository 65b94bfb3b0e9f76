"""A failed job's report on the console (ageest/rulelog.py): the rules' own shell text, run with a
failing command in place of theirs; the script rules' wrapper; a real data-rule failure."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import pyproc

from ageest.rulelog import TAIL_LINES, logged_script, on_failure

ROOT = Path(__file__).resolve().parents[1]
FAIL = "sh -c 'echo working; echo \"the error line\" >&2; exit 2'"
KILLED = "sh -c 'echo working; kill -9 $$'"


def _run(shell: str, cwd: Path):
    return subprocess.run(["bash", "-c", shell], cwd=cwd, capture_output=True, text=True, timeout=60)


def _with_command(rule_shell: str, command: str) -> tuple[str, str]:
    """A rule's printed shell command with its program replaced by `command`; and its log."""
    head, tail = rule_shell.split(" > ", 1)
    return f"{command} > {tail}", tail.split()[0]


@pytest.fixture(scope="module")
def rule_commands(tmp_path_factory):
    """{rule: its shell command} of a dry run of the demo, one subject, as Snakemake runs them."""
    work = tmp_path_factory.mktemp("dry")
    r = pyproc.snakemake(["-s", ROOT / "Snakefile", "--directory", work, "--configfile", ROOT / "config" / "demo.yaml",
                          "--config", "subjects=[1]", "-n", "-p"], timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    commands, rule = {}, None
    for line in (r.stdout + r.stderr).splitlines():
        if m := re.match(r"(?:local)?rule (\w+):", line):
            rule = m.group(1)
        elif line.startswith("Shell command: "):
            commands.setdefault(rule, line.removeprefix("Shell command: "))
    return commands


SHELL_RULES = ["synth", "manifest", "prepare", "split", "train", "baseline", "gather", "plots"]


@pytest.mark.parametrize("rule", SHELL_RULES)
def test_every_shell_rule_reports_its_failure(rule_commands, tmp_path, rule):
    shell, log = _with_command(rule_commands[rule], FAIL)
    (tmp_path / log).parent.mkdir(parents=True)
    r = _run(shell, tmp_path)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"ageest {rule} failed (exit 2); the end of {log}:", "working",
                                     "the error line"], r.stderr


@pytest.mark.parametrize("rule", ["train", "manifest", "prepare"])
def test_a_job_killed_by_a_signal_names_it(rule_commands, tmp_path, rule):
    shell, log = _with_command(rule_commands[rule], KILLED)
    (tmp_path / log).parent.mkdir(parents=True)
    r = _run(shell, tmp_path)
    assert r.returncode == 137
    # (bash itself may say "Killed" first)
    assert f"ageest {rule} failed (killed by SIGKILL (signal 9)); the end of {log}:" in r.stderr.splitlines()


def test_success_says_nothing_and_the_tail_is_the_end(tmp_path):
    text = on_failure("ageest x").replace("{{", "{").replace("}}", "}")
    text = text.replace("{log:q}", shlex.quote("my log")).replace("{log}", "my log")
    ok = _run("echo fine > 'my log' 2>&1" + text, tmp_path)
    assert (ok.returncode, ok.stderr) == (0, "")
    odd = _run("sh -c 'exit 255' > 'my log' 2>&1" + text, tmp_path)  # above 128, but no signal's
    assert odd.returncode == 255 and odd.stderr.splitlines()[0] == "ageest x failed (exit 255); the end of my log:"
    long = _run("sh -c 'seq 1 100; exit 3' > 'my log' 2>&1" + text, tmp_path)
    assert long.returncode == 3
    assert long.stderr.splitlines() == ["ageest x failed (exit 3); the end of my log:"] + [
        str(i) for i in range(101 - TAIL_LINES, 101)]


SCRIPT = """
import sys
from ageest.rulelog import logged_script
with logged_script(sys.argv[1], "rule x"):
    print("working")
    {body}
"""


@pytest.mark.parametrize("body, status, last", [
    ("raise ValueError('boom')", 1, "ValueError: boom"),
    ("sys.exit('refused: 3 files differ')", 1, "refused: 3 files differ"),
    ("sys.exit(4)", 4, "working"),
])
def test_a_failed_script_reports_the_end_of_its_log(tmp_path, body, status, last):
    log = tmp_path / "x.log"
    r = subprocess.run([sys.executable, "-c", SCRIPT.format(body=body), str(log)], capture_output=True, text=True)
    assert r.returncode == status
    lines = r.stderr.splitlines()
    assert lines[0] == f"rule x failed (exit {status}); the end of {log}:" and lines[-1] == last, r.stderr
    assert lines[1:] == log.read_text().splitlines()[-TAIL_LINES:]


def test_a_script_that_succeeds_logs_and_says_nothing(tmp_path, capsys):
    log = tmp_path / "ok.log"
    with logged_script(str(log), "rule ok"):
        print("done")
    assert log.read_text() == "done\n" and capsys.readouterr() == ("", "")
