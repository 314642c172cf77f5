"""The job launcher: roles and environment, log prefixes, failures, time limit, clean-up."""
import io
import os
import subprocess
import sys

import pytest

from gluon_finetune import cli
from gluon_finetune.cli.launch import TIMED_OUT, free_port, launch, main

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(os.path.dirname(sys.executable), "gluon-finetune")

# Each process records its pid, then behaves by role: BEHAVIOUR maps a role to Python code.
RECORDING = ("import os, sys, time; open(os.path.join({dir!r}, os.environ['DMLC_ROLE'] + '-' "
             "+ str(os.getpid())), 'w').close(); role = os.environ['DMLC_ROLE']; ")


def recorded_pids(pid_dir):
    return [int(name.rsplit("-", 1)[1]) for name in os.listdir(pid_dir)]


def assert_all_ended(pids):
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_each_role_gets_the_dmlc_environment_and_prefixed_logs():
    port, out = free_port(), io.StringIO()
    code = ("import os; e = os.environ; print(e['DMLC_ROLE'], e['DMLC_NUM_WORKER'], "
            "e['DMLC_NUM_SERVER'], e['DMLC_PS_ROOT_URI'], e['DMLC_PS_ROOT_PORT'])")
    assert launch([sys.executable, "-c", code], num_workers=2, num_servers=2, port=port,
                  out=out) == 0
    lines = set(out.getvalue().splitlines())
    tail = f"2 2 127.0.0.1 {port}"
    assert {f"[scheduler] scheduler {tail}", f"[server 0] server {tail}",
            f"[server 1] server {tail}", f"[worker 0] worker {tail}",
            f"[worker 1] worker {tail}"} <= lines


def test_a_worker_exit_status_stops_the_job_and_is_returned(tmp_path):
    # scheduler and servers would wait forever, as MXNet's do when a worker is gone
    code = RECORDING.format(dir=str(tmp_path)) + (
        "print('bad input', file=sys.stderr) or sys.exit(5) if role == 'worker' "
        "else time.sleep(120)")
    out = io.StringIO()
    assert launch([sys.executable, "-c", code], num_workers=1, num_servers=1, out=out) == 5
    assert "[worker 0] bad input" in out.getvalue()
    assert "worker 0 exited with status 5" in out.getvalue()
    pids = recorded_pids(tmp_path)
    assert len(pids) == 3
    assert_all_ended(pids)


def test_the_time_limit_stops_every_process(tmp_path):
    code = RECORDING.format(dir=str(tmp_path)) + "time.sleep(120)"
    out = io.StringIO()
    assert launch([sys.executable, "-c", code], num_workers=2, num_servers=1, timeout=1,
                  out=out) == TIMED_OUT
    assert "timed out with scheduler, server 0, worker 0, worker 1 still running" \
        in out.getvalue()
    assert_all_ended(recorded_pids(tmp_path))


def test_a_failing_mxnet_worker_fails_the_launch_and_leaves_no_process(tmp_path):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    env = dict(os.environ, DIST_TEST_PID_DIR=str(pid_dir))
    command = [sys.executable, "-m", "gluon_finetune.cli.launch", "-n", "2", "-s", "1",
               "--timeout", "120", "--", sys.executable, os.path.join(HERE, "dist_worker.py"),
               str(tmp_path), "dist_sync", "true", "fail"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = [line for line in proc.stdout.splitlines() if "fails on purpose" in line]
    assert failed and failed[0].startswith("[worker "), proc.stdout
    assert "exited with status 1; stopping the job" in proc.stdout
    pids = recorded_pids(pid_dir)
    assert len(pids) == 4  # scheduler, server, two workers
    assert_all_ended(pids)


@pytest.mark.parametrize("argv, message", [
    (["-n", "0", "--", "python"], "num_workers must be an int >= 1, got 0"),
    (["-s", "-1", "--", "python"], "num_servers must be an int >= 1, got -1"),
    (["-n", "2"], "put the command after '--'"),
    (["-n", "2", "--"], "command must be a non-empty list"),
    (["--port", "70000", "--", "python"], "port must be an int in 1..65535"),
])
def test_bad_arguments_exit_2_with_a_message(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_calls_raise_before_starting_anything():
    with pytest.raises(ValueError, match="non-empty list of strings"):
        launch("python train.py")
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        launch(["python"], timeout=0)


def test_a_command_that_cannot_start_exits_127(capsys):
    assert main(["-n", "1", "-s", "1", "--", "no-such-program-gluon-finetune"]) == 127
    assert "cannot run 'no-such-program-gluon-finetune'" in capsys.readouterr().err


def test_the_launch_subcommand_of_the_console_script(capsys):
    assert cli.main(["launch", "-n", "1", "-s", "1", "--", sys.executable, "-c", "pass"]) == 0
    out = subprocess.run([BIN, "launch", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "-- COMMAND" in out


def test_numpy_numbers_are_accepted_and_bools_refused():
    import numpy as np
    out = io.StringIO()
    assert launch([sys.executable, "-c", "pass"], num_workers=np.int64(1),
                  num_servers=np.int32(1), timeout=np.float64(60), port=np.int64(free_port()),
                  out=out) == 0
    with pytest.raises(TypeError, match="num_workers must be an int >= 1, got bool True"):
        launch(["python"], num_workers=True)
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        launch(["python"], timeout=float("nan"))
