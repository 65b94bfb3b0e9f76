"""A fork server for `ageest train`: torch is imported once per machine, not once per fold.

Importing torch, torchvision and torch._dynamo (which torch.optim pulls in) takes about 3.5 s of
CPU per process: half of a demo fold's wall time. With AGEEST_FORK_SERVER=1, `ageest train` sends
its arguments, working folder, environment and stdin/stdout/stderr to a server that has imported
everything once; the server forks a child that runs the fold exactly as the command would, and the
command waits for it and exits with its status. SIGTERM/SIGINT to the command reach the fold (it
saves its state and stops as usual); a command killed outright takes its fold with it.

The first command starts the server (the same Python, the same sys.path: one server per code
version and environment); it exits after IDLE_S seconds without a fold. Never used under SLURM
(SLURM_JOB_ID set): a server living in one job's allocation would take other jobs' folds with it
when that job ends. Any failure to reach a server runs the fold in the command's own process.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ENV = "AGEEST_FORK_SERVER"
START_ENV = "AGEEST_PROCESS_START"  # the command's own start (unix time), for start-up figures
IDLE_S = float(os.environ.get("AGEEST_FORK_SERVER_IDLE_S", 30))  # a server's life without folds
CONNECT_S = 120.0  # how long a command waits for a server it started to finish its imports


def enabled() -> bool:
    # START_ENV is set in a forked fold: it runs there, never through the server again.
    return (os.environ.get(ENV, "") not in ("", "0") and "SLURM_JOB_ID" not in os.environ
            and START_ENV not in os.environ)


def socket_path() -> str:
    """One server per Python, search path and ageest code: an edited module starts a new one."""
    here = os.path.dirname(os.path.abspath(__file__))
    code = max(os.stat(os.path.join(here, f)).st_mtime_ns for f in os.listdir(here) if f.endswith(".py"))
    key = hashlib.sha256(json.dumps([sys.executable, sys.path, here, code]).encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"ageest-fork-{os.getuid()}-{key}.sock")


def process_start() -> float:
    """Unix time this command started: passed on to a forked fold, else read from /proc."""
    if START_ENV in os.environ:
        return float(os.environ[START_ENV])
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            up = float(f.read().split()[0])
        return time.time() - up + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.time()


# --- the command's side ---------------------------------------------------------------------------

def run(argv: list[str]) -> int | None:
    """Run `ageest ARGV` in a forked child of the server; its exit status, or None if no server
    could be reached (the caller then runs it in this process)."""
    path = socket_path()
    sock = _connect(path) or _connect(path, _start_server(path))
    if not sock:
        print("ageest: fork server unreachable, running in this process", file=sys.stderr, flush=True)
        return None
    env = {**os.environ, START_ENV: repr(process_start())}
    request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": env}).encode()
    socket.send_fds(sock, [struct.pack("!I", len(request)) + request], [0, 1, 2])
    # Signals go to the fold as one byte each; the fold answers with its exit status (4 bytes).
    previous = {s: signal.signal(s, lambda signum, _f: sock.send(bytes([signum])))
                for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        status = _recv_exactly(sock, 4)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if status is None:
        print("ageest: the forked fold died without an exit status", file=sys.stderr, flush=True)
        return 1
    return struct.unpack("!i", status)[0]


def _connect(path: str, starting: subprocess.Popen | None = None) -> socket.socket | None:
    """A connection to the server; while one is starting (ours, or another command's: it holds
    the lock), wait for it to finish its imports, up to CONNECT_S."""
    deadline = time.monotonic() + CONNECT_S
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except OSError:
            s.close()
        ours = starting is not None and starting.poll() is None
        if not (ours or (starting is not None and _locked(path))) or time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def _locked(path: str) -> bool:
    """Whether a server holds the lock of `path` (it is importing, or serving)."""
    try:
        with open(path + ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
    except OSError:
        return True


# The server searches the command's own sys.path (not `python -m`'s, which starts with its working
# folder), so it imports the very ageest and torch the command would.
_SERVER = "import json, sys; sys.path[:] = json.loads(sys.argv[2]); from ageest.forkserver import serve; serve(sys.argv[1])"


def _start_server(path: str) -> subprocess.Popen | None:
    try:
        return subprocess.Popen([sys.executable, "-c", _SERVER, path, json.dumps(sys.path)], cwd="/",
                                start_new_session=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)
    except OSError:
        return None


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


# --- the server's side ----------------------------------------------------------------------------

def serve(path: str) -> None:
    lock = open(path + ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another server for this path is starting or running
    # Everything a fold imports, once (torch._dynamo: torch.optim imports it on first use).
    import torch._dynamo  # noqa: F401

    import ageest.train  # noqa: F401
    from ageest import cli

    if os.path.exists(path):
        os.unlink(path)  # left by a server that died: we hold the lock, so nobody serves it
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    children: set[int] = set()
    idle_since = time.monotonic()
    try:
        while children or time.monotonic() - idle_since < IDLE_S:
            if sel.select(timeout=1.0):
                conn, _ = listener.accept()
                pid = _fork_fold(conn, listener, cli.main)
                if pid:
                    children.add(pid)
            for pid in list(children):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    children.discard(pid)
                    idle_since = time.monotonic()
    finally:
        os.unlink(path)
        lock.close()


def _fork_fold(conn: socket.socket, listener: socket.socket, main) -> int | None:
    try:
        head, fds, _, _ = socket.recv_fds(conn, 4, 3)
        request = json.loads(_recv_exactly(conn, struct.unpack("!I", head)[0]))
    except (OSError, ValueError, struct.error, TypeError):
        conn.close()
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        conn.close()
        for fd in fds:
            os.close(fd)
        return pid
    # The child: become the command, run it, report its status, exit.
    status = 1
    try:
        listener.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, signal.SIG_DFL)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])  # with START_ENV: the fold runs here (see enabled())
        sys.argv = ["ageest", *request["argv"]]
        threading.Thread(target=_relay_signals, args=(conn,), daemon=True).start()
        status = main(request["argv"])
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            conn.sendall(struct.pack("!i", status))
        finally:
            os._exit(status)


def _relay_signals(conn: socket.socket) -> None:
    """In the fold: a byte from the command is a signal it received; its end (the command was
    killed) is SIGTERM, so the fold saves its state and stops as it would have with the command."""
    while True:
        try:
            b = conn.recv(1)
        except OSError:
            b = b""
        os.kill(os.getpid(), b[0] if b else signal.SIGTERM)
        if not b:
            return


