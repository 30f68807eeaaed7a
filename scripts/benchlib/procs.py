"""Process helpers: spawning servers and clients that die with us
(PR_SET_PDEATHSIG), stopping them, the signal handler that turns SIGTERM
and friends into SystemExit, free loopback ports, and readiness polling.

The processes started by spawn() are kept in this module's _PROCESSES, one
list shared by every caller; stop_all() stops them.
"""

import ctypes
import signal
import socket
import subprocess
import time

_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1
_PROCESSES = []


def set_pdeathsig():
    """A preexec_fn: runs in the child between fork and exec, so that the
    child gets SIGTERM when we die."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(cmd, log_path, env=None, die_with_parent=True):
    """Starts a server whose output goes to log_path; stopped at exit."""
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=set_pdeathsig if die_with_parent else None,
        )
    _PROCESSES.append(proc)
    return proc


def stop(proc, timeout=10.0):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc in _PROCESSES:
        _PROCESSES.remove(proc)


def stop_all():
    for proc in list(reversed(_PROCESSES)):
        stop(proc)


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def free_port(neighbour_too=False):
    """A loopback port free now (and port+1, for bao's cluster listener)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not neighbour_too:
            return port
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue


def ready_once(port):
    """True when GET /health/ready on 127.0.0.1:port answers 200. One
    bare connection, so the poll itself costs little."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            head = s.recv(64)
    except OSError:
        return False
    return head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200")


def wait_until(what, check, proc=None, timeout=60.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}")
        time.sleep(interval)
    raise RuntimeError(f"{what}: not reached in {timeout:.0f} s")
