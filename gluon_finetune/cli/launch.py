"""Start an MXNet parameter-server job on this machine: scheduler, servers, workers.

``gluon-finetune launch -n 2 -s 1 -- python train.py --epochs 3`` (or
``python -m gluon_finetune.launch ...``) runs the command once per role on
127.0.0.1 with MXNet's DMLC environment variables. Scheduler and servers run
the same command as the workers: with ``DMLC_ROLE=server`` MXNet's server loop
runs inside ``import mxnet`` and exits the process when the job ends, so the
script must import mxnet before doing anything a server should not do.

MXNet's own ``tools/launch.py`` fails on Python 3.11 (``Thread.isAlive``) and
can leave the scheduler running; this launcher keeps every process it starts
in its own process group and, on any exit path, stops exactly those groups.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO, Dict, List, Mapping, Optional, Sequence

from ..checks import ArgumentParser, InvalidValueError, check_int, is_real

__all__ = ["launch", "free_port", "main"]

HOST = "127.0.0.1"
TIMED_OUT = 124  # as coreutils' timeout
_POLL_S = 0.05  # how often the exit codes are looked at (not a synchronisation)
_GRACE_S = 5.0  # time a process gets after SIGTERM before SIGKILL


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago (the OS picks it: bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _check_args(command, num_workers, num_servers, timeout, port) -> None:
    if isinstance(command, (str, bytes)) or not isinstance(command, Sequence) or not command \
            or not all(isinstance(c, str) for c in command):
        raise InvalidValueError(f"command must be a non-empty list of strings (after '--'), "
                                f"got {command!r}", argument="command")
    check_int("num_workers", num_workers, minimum=1)
    check_int("num_servers", num_servers, minimum=1)
    if timeout is not None and not (is_real(timeout) and timeout > 0):
        raise InvalidValueError(f"timeout must be a positive number of seconds or None, got "
                                f"{timeout!r}", argument="timeout")
    if port is not None:
        check_int("port", port, minimum=1, maximum=65535)


def _role_env(base: Mapping[str, str], role: str, port: int, workers: int,
              servers: int) -> Dict[str, str]:
    env = dict(base)
    env.update(DMLC_ROLE=role, DMLC_PS_ROOT_URI=HOST, DMLC_PS_ROOT_PORT=str(port),
               DMLC_NODE_HOST=HOST, DMLC_NUM_WORKER=str(workers), DMLC_NUM_SERVER=str(servers),
               PYTHONUNBUFFERED="1")  # so that a crash's last lines are not lost in a buffer
    return env


def _stream(proc: subprocess.Popen, label: str, out: IO[str], lock: threading.Lock) -> None:
    for line in iter(proc.stdout.readline, ""):
        with lock:
            out.write(f"[{label}] {line}" if line.endswith("\n") else f"[{label}] {line}\n")
            out.flush()
    proc.stdout.close()


def _stop(procs: Sequence[subprocess.Popen]) -> None:
    """SIGTERM each group we started, then SIGKILL what is left; reap them all."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in procs if p.poll() is None]
        for p in alive:
            try:
                os.killpg(p.pid, sig)  # start_new_session: the group id is the pid
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + _GRACE_S
        for p in alive:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    for p in procs:  # kill stragglers the leader left in its group, if any
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _exit_code(code: int) -> int:
    return 128 - code if code < 0 else code  # killed by signal N -> 128 + N, as shells do


def _supervise(procs: Dict[str, subprocess.Popen], workers: List[str], deadline: Optional[float],
               out: IO[str], lock: threading.Lock) -> int:
    """Wait until every process has exited; the first non-zero status or the deadline ends
    the job. Scheduler and servers end by themselves once all workers have finished."""
    while True:
        for label, proc in procs.items():
            code = proc.poll()
            if code is not None and code != 0:
                _say(out, lock, f"{label} exited with status {_exit_code(code)}; "
                     f"stopping the job")
                return _exit_code(code)
        if all(proc.poll() == 0 for proc in procs.values()):
            return 0
        if deadline is not None and time.monotonic() > deadline:
            running = [label for label, proc in procs.items() if proc.poll() is None]
            _say(out, lock, f"timed out with {', '.join(running)} still running; "
                 f"stopping the job")
            return TIMED_OUT
        time.sleep(_POLL_S)


def _say(out: IO[str], lock: threading.Lock, text: str) -> None:
    with lock:
        out.write(f"[launch] {text}\n")
        out.flush()


def _start(command: Sequence[str], label: str, env: Dict[str, str], out: IO[str],
           lock: threading.Lock, threads: List[threading.Thread]) -> subprocess.Popen:
    proc = subprocess.Popen(list(command), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            errors="replace", start_new_session=True)
    thread = threading.Thread(target=_stream, args=(proc, label, out, lock), daemon=True)
    thread.start()
    threads.append(thread)
    return proc


def launch(command: Sequence[str], num_workers: int = 2, num_servers: int = 1,
           timeout: Optional[float] = 600.0, port: Optional[int] = None,
           env: Optional[Mapping[str, str]] = None, out: Optional[IO[str]] = None) -> int:
    """Run ``command`` as scheduler, servers and workers of one MXNet job on 127.0.0.1.

    Every line a process prints goes to ``out`` prefixed with its role
    (``[worker 1] ...``). The job ends when all processes have exited, when one
    exits with a non-zero status (the others are stopped and that status is
    returned) or at ``timeout`` (status 124). Only the processes started here
    (each in its own process group) are ever signalled.

    Parameters
    ----------
    command : list of str
        The program and its arguments, e.g. ``['python', 'train.py']``.
    num_workers, num_servers : int
        How many workers and servers (at least 1 each).
    timeout : float or None
        Seconds before the whole job is stopped; None: no limit.
    port : int, optional
        The scheduler's port; default: a free one.
    env : mapping, optional
        The environment to start from (default ``os.environ``).
    out : text stream, optional
        Where the prefixed logs go (default ``sys.stdout``).

    Returns
    -------
    int
        0 when every process exited with 0, else the first failure's status.

    Examples
    --------
    Each process runs the command with its role in ``DMLC_ROLE`` (a real job's
    script starts with ``import mxnet``); here each prints its role:

    >>> import io, sys
    >>> log = io.StringIO()
    >>> launch([sys.executable, "-c", "import os; print(os.environ['DMLC_ROLE'])"],
    ...        num_workers=2, num_servers=1, out=log)
    0
    >>> sorted(log.getvalue().splitlines())
    ['[scheduler] scheduler', '[server 0] server', '[worker 0] worker', '[worker 1] worker']
    """
    _check_args(command, num_workers, num_servers, timeout, port)
    out = sys.stdout if out is None else out
    port = free_port() if port is None else port
    base = os.environ if env is None else env
    roles = [("scheduler", "scheduler")] + [(f"server {i}", "server") for i in range(num_servers)]
    roles += [(f"worker {i}", "worker") for i in range(num_workers)]
    lock, threads, procs = threading.Lock(), [], {}
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        for label, role in roles:
            role_env = _role_env(base, role, port, num_workers, num_servers)
            procs[label] = _start(command, label, role_env, out, lock, threads)
        code = _supervise(procs, [label for label, _ in roles[-num_workers:]], deadline,
                          out, lock)
    finally:  # also on KeyboardInterrupt and on a failed start
        _stop(list(procs.values()))
        for thread in threads:
            thread.join(timeout=_GRACE_S)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="gluon-finetune launch", usage="%(prog)s [-n N] [-s S] [--timeout T] -- COMMAND ...",
        description="Run COMMAND as the scheduler, servers and workers of an MXNet "
                    "parameter-server job on 127.0.0.1 (kvstore 'dist_sync' etc.).")
    parser.add_argument("-n", "--num-workers", type=int, default=2, help="workers (default 2)")
    parser.add_argument("-s", "--num-servers", type=int, default=1, help="servers (default 1)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="stop the job after this many seconds (default 600; 0: no limit)")
    parser.add_argument("--port", type=int, help="scheduler port (default: a free one)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """``gluon-finetune launch [options] -- COMMAND ...``; returns the job's exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if "--" not in argv:
        parser.parse_args(argv)  # --help ends here; otherwise the command is missing
        parser.error("put the command after '--', e.g. -n 2 -s 1 -- python train.py")
    split = argv.index("--")
    options, command = parser.parse_args(argv[:split]), argv[split + 1:]
    try:
        return launch(command, options.num_workers, options.num_servers,
                      options.timeout or None, options.port)
    except ValueError as err:
        parser.error(str(err))
    except OSError as err:  # the command could not be started
        print(f"gluon-finetune launch: error: cannot run {command[0]!r}: {err}", file=sys.stderr)
        return 127
    except KeyboardInterrupt:  # launch() has already stopped the job
        return 130


if __name__ == "__main__":
    sys.exit(main())
