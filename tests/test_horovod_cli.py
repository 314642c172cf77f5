"""``gluon-finetune train --kvstore horovod`` under real ``horovodrun -np 2`` (Gloo, loopback).

Each worker trains on its half of every epoch's images, rank 0 alone writes the run folder
and prints, and a job killed mid-epoch resumes under horovodrun bit for bit.
"""
import json
import os
import re
import subprocess

import pytest
from image_folder import make_image_folder
from test_horovod import _env, _horovodrun_command

from gluon_finetune.cli.main import main

pytest.importorskip("horovod.mxnet")
HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "hvd_cli_worker.py")
EPOCHS, STEPS_PER_EPOCH = 3, 2  # 14 training images, 7 a worker, batches of 4


def _job(*args, kill=None, timeout=240):
    extra = [] if kill is None else ["--kill-after-steps", str(kill)]
    command = _horovodrun_command(WORKER, *extra, "--", *args)
    return subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=timeout)


def _train_args(images, out):
    return ["train", str(images), "--model", "mobilenet0.25", "--image-size", "32",
            "--batch-size", "4", "--epochs", str(EPOCHS), "--augment", "light",
            "--kvstore", "horovod", "--seed", "3", "--ema", "0.9", "--out", str(out),
            "--no-pretrained", "--no-progress"]


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hvd_cli")
    images = make_image_folder(root / "images", per_class=(7, 3), size=24)
    whole = _job(*_train_args(images, root / "whole"), "--save", str(root / "saved.params"))
    assert whole.returncode == 0, whole.stdout[-3000:] + whole.stderr[-3000:]
    killed = _job(*_train_args(images, root / "resumed"), kill=STEPS_PER_EPOCH + 1)
    assert killed.returncode != 0
    resumed = _job("train", "--resume", str(root / "resumed"), "--no-progress")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    return root, whole, resumed


def test_each_worker_trains_on_its_half_of_the_images(jobs):
    _, whole, _ = jobs
    counts = dict(re.findall(r"rank (\d): (\d+) steps", whole.stdout))
    assert counts == {"0": str(EPOCHS * STEPS_PER_EPOCH), "1": str(EPOCHS * STEPS_PER_EPOCH)}


def test_rank_zero_alone_prints_and_writes_one_run_folder(jobs):
    root, whole, _ = jobs
    finals = [line for line in whole.stdout.splitlines() if "final: epochs 3" in line]
    assert len(finals) == 1 and finals[0].startswith("[0]"), whole.stdout[-2000:]
    assert sorted(os.listdir(root / "whole")) == [
        "best.params", "ema.params", "last.params", "last.states", "run.json", "start.params"]
    record = json.loads((root / "whole" / "run.json").read_text())
    assert record["workers"] == 2 and record["settings"]["flags"]["kvstore"] == "horovod"
    assert [entry["epoch"] for entry in record["history"]] == [0, 1, 2]
    assert all(0 <= entry["val_acc"] <= 1 for entry in record["history"])
    # --save: rank 0's weights, and the states file every rank waited for
    assert (root / "saved.params").read_bytes() == (root / "whole" / "last.params").read_bytes()
    assert (root / "saved.params.states").is_file()


def test_a_killed_job_resumes_under_horovodrun_bit_for_bit(jobs):
    root, _, resumed = jobs
    for name in ("last.params", "ema.params", "best.params"):
        assert (root / "resumed" / name).read_bytes() == (root / "whole" / name).read_bytes()
    ours = json.loads((root / "resumed" / "run.json").read_text())["history"]
    theirs = json.loads((root / "whole" / "run.json").read_text())["history"]
    drop = ("seconds",)
    assert [{k: v for k, v in e.items() if k not in drop} for e in ours] == \
        [{k: v for k, v in e.items() if k not in drop} for e in theirs]


def test_fine_tune_plans_its_one_cycle_over_each_workers_steps(tmp_path):
    """The recipe's schedules count each worker's batches: the last phase's one-cycle
    schedules end after its 2 epochs of 2 steps (counted over all the images' batches,
    8: the rates would stop at mid-fall)."""
    images = make_image_folder(tmp_path / "images", per_class=(7, 3), size=24)
    args = _train_args(images, tmp_path / "run")
    args[args.index("--epochs") + 1] = "2"
    job = _job(*args, "--recipe", "fine_tune", "--freeze-epochs", "1")
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    counts = dict(re.findall(r"rank (\d): (\d+) steps", job.stdout))
    assert counts == {"0": str(3 * STEPS_PER_EPOCH), "1": str(3 * STEPS_PER_EPOCH)}
    lengths = re.findall(r"rank \d: schedule lengths (.*)", job.stdout)
    assert lengths == [f"[{2 * STEPS_PER_EPOCH}]"] * 2, job.stdout[-2000:]


def test_resuming_with_another_number_of_workers_is_refused(jobs, capsys):
    root, _, _ = jobs
    assert main(["train", "--resume", str(root / "whole"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "trained by 2 worker(s) and would resume with 1" in err
    assert "horovodrun -np 2" in err


@pytest.mark.parametrize("variable", ["HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE"])
def test_a_launched_worker_without_kvstore_horovod_is_refused(tmp_path, monkeypatch, capsys,
                                                             variable):
    """Under horovodrun without --kvstore horovod every process would train alone on every
    image and write the same run folder: one line, status 2, before anything is built."""
    monkeypatch.setenv(variable, "2")
    images = make_image_folder(tmp_path / "images", per_class=(2, 0), size=8)
    args = _train_args(images, tmp_path / "run")
    args.remove("horovod")
    args.remove("--kvstore")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "one of 2 processes started by horovodrun" in err and "--kvstore horovod" in err
    assert err.count("\n") == 1 and not (tmp_path / "run").exists()
