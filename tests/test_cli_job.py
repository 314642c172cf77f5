"""The whole job on the command line: train --out, a real kill and --resume, evaluate,
predict, export, and one-line errors with status 2."""
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from image_folder import make_image_folder

from gluon_finetune.cli import main

BIN = os.path.join(os.path.dirname(sys.executable), "gluon-finetune")
CONFIG = """model: mobilenet0.25
pretrained: false
image_size: 32
batch_size: 4
epochs: 3
augment: standard
ema: 0.9
layers:
  "*": 1
  output:
    lr_mult: 2
    lr_scheduler: {type: factor, step: 2, factor: 0.5}
"""


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("job") / "images")


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "run.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def run(images, config, tmp_path_factory):
    """A finished run: three epochs, never interrupted."""
    out = tmp_path_factory.mktemp("job") / "run"
    assert main(["train", str(images), "--config", str(config), "--seed", "4", "--out",
                 str(out), "--no-progress"]) == 0
    return out


def history(run):
    with open(os.path.join(run, "run.json")) as f:
        return json.load(f)["history"]


def test_a_killed_train_resumes_bit_for_bit(images, config, run, tmp_path, capsys):
    """SIGKILL as soon as the first epoch is saved (mid-epoch or later: wherever it lands),
    then train --resume RUN alone: the settings come from the run."""
    out = tmp_path / "run"
    job = subprocess.Popen([BIN, "train", str(images), "--config", str(config), "--seed", "4",
                            "--out", str(out), "--no-progress"], start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and job.poll() is None:
            if (out / "run.json").exists() and history(out):
                break
            time.sleep(0.01)
        os.kill(job.pid, signal.SIGKILL)
    finally:
        job.wait()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert "run folder" in capsys.readouterr().out
    for name in ("last.params", "best.params", "ema.params"):
        assert (out / name).read_bytes() == (run / name).read_bytes(), name
    assert [e["val_acc"] for e in history(out)] == [e["val_acc"] for e in history(run)]


def test_evaluate_predict_and_export_agree(images, run, tmp_path, capsys):
    assert main(["evaluate", str(run), str(images / "val"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("accuracy ") and "precision  recall" in out
    with open(run / "eval" / "report.json") as f:
        report = json.load(f)
    assert (run / "eval" / "confusion_matrix.png").stat().st_size > 1000
    assert main(["predict", str(run), str(images / "val"), "--no-progress"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    classes = ["blue", "red"]
    matrix = [[0, 0], [0, 0]]
    for row in rows:
        matrix[classes.index(row["path"].split(os.sep)[-2])][classes.index(row["class"])] += 1
    assert matrix == report["confusion_matrix"] and len(rows) == 6
    assert main(["export", str(run), "--out", str(tmp_path / "model"), "--onnx"]) == 0
    lines = capsys.readouterr().out.splitlines()
    onnx = float(lines[-1].rsplit(" ", 1)[1])
    assert onnx <= 1e-4 and lines[-2].endswith(" 0")  # SymbolBlock: the same ops, exactly
    assert sorted(os.listdir(tmp_path / "model")) == ["classes.json", "model-0000.params",
                                                      "model-symbol.json", "model.onnx",
                                                      "preprocessing.json"]


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "{tmp}", "{images}/val"], "is not a run folder (it has no run.json)"),
    (["predict", "{run}", "{bad}"], "cannot read image"),
    (["predict", "{run}", "{images}/val", "--top-k", "3"],
     "--top-k 3 is more than the run's 2 classes (blue, red)"),
    (["predict", "{run}", "{images}/val", "--params", "{tmp}/no.params"], "does not exist"),
    (["train", "--resume", "{run}", "--epochs", "9"],
     "--resume continues a run with the settings it was started with; --epochs cannot"),
    (["train", "--resume", "{tmp}/nowhere"], "does not exist"),
    (["train", "--model", "mobilenet0.25"], "no image folder: give DATA"),
    (["train", "{images}", "--model", "mobilenet0.25", "--out", "{run}"],
     "already holds a run"),
    (["train", "{images}", "--model", "mobilenet0.25", "--ema", "1.5"], "ema is a decay"),
    (["export", "{run}"], "export writes into a folder: give --out DIR"),
    (["evaluate", "{run}", "{images}"], "class folders ['train', 'val'] that the run does not"),
])
def test_bad_input_is_one_line_and_status_2(images, run, tmp_path, capsys, argv, message):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"no image")
    argv = [a.format(tmp=tmp_path, images=images, run=run, bad=bad) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("schedule", [["--recipe", "fine_tune", "--freeze-epochs", "1",
                                       "--epochs", "2"],
                                      ["--gradual", "1", "--epochs", "3"]])
def test_interrupted_recipes_resume_bit_for_bit(images, tmp_path, monkeypatch, schedule):
    """fine_tune's phases and gradual unfreezing live in the trainer's states: a run
    stopped in its third epoch (a KeyboardInterrupt at its 8th step) and resumed ends as
    the run that was never stopped."""
    from gluon_finetune.trainer import LayerwiseTrainer
    argv = ["train", str(images), "--model", "mobilenet0.25", "--no-pretrained",
            "--image-size", "32", "--batch-size", "4", "--augment", "light", "--no-progress",
            *schedule]
    assert main(argv + ["--out", str(tmp_path / "whole")]) == 0
    step, calls = LayerwiseTrainer.step, []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 8:
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)
    monkeypatch.setattr(LayerwiseTrainer, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(argv + ["--out", str(tmp_path / "run")])
    monkeypatch.undo()
    assert len(history(tmp_path / "run")) == 2
    assert main(["train", "--resume", str(tmp_path / "run"), "--no-progress"]) == 0
    for name in ("last.params", "best.params"):
        assert (tmp_path / "run" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    phases = [e.get("phase") for e in history(tmp_path / "run")]
    assert phases == ([None] * 3 if "--gradual" in schedule else ["head", "all", "all"])
