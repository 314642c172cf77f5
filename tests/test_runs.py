"""Run folders: the record, exact resume after a kill anywhere, EMA, early stopping, errors."""
import json
import os
import pickle
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import tiny_convnet
from image_folder import make_image_folder

from gluon_finetune.errors import FinetuneError
from gluon_finetune.recipes.data import epoch_data
from gluon_finetune.runs import RunFolder, train_run
from gluon_finetune.trainer import LayerwiseTrainer

WORKER = os.path.join(os.path.dirname(__file__), "run_worker.py")
KILLED = 9


def work(images, run, *flags):
    """run_worker.py in its own process: its exit status."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
         os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, WORKER, str(images), str(run), *flags], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, KILLED), done.stderr
    return done.returncode


def record(run):
    with open(os.path.join(run, "run.json")) as f:
        return json.load(f)


def momenta(path):
    """A states file's optimizer state arrays, update counts and clock."""
    with open(path, "rb") as f:
        states, optimizer = pickle.load(f)
    arrays = {i: [a.asnumpy() for a in (s if isinstance(s, (list, tuple)) else [s])]
              for i, s in states.items()}
    return arrays, dict(optimizer._index_update_count), optimizer.num_update


def same_run(a, b):
    """Bit for bit the same weights, the same optimizer state (a pickle may share equal
    objects differently), the same history but for the wall time."""
    for name in ("last.params", "best.params", "ema.params"):
        with open(os.path.join(a, name), "rb") as f, open(os.path.join(b, name), "rb") as g:
            assert f.read() == g.read(), name
    (ours, counts, clock), (theirs, counts2, clock2) = (momenta(os.path.join(run, "last.states"))
                                                        for run in (a, b))
    assert (counts, clock) == (counts2, clock2) and ours.keys() == theirs.keys()
    for i in ours:
        assert all(np.array_equal(x, y) for x, y in zip(ours[i], theirs[i]))
    strip = [{k: v for k, v in e.items() if k != "seconds"} for e in record(a)["history"]]
    assert strip == [{k: v for k, v in e.items() if k != "seconds"}
                     for e in record(b)["history"]]
    assert sorted(os.listdir(a)) == sorted(os.listdir(b))  # nothing staged left over


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("runs") / "images")


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory):
    """The run that was never interrupted."""
    run = tmp_path_factory.mktemp("reference") / "run"
    assert work(images, run) == 0
    return run


def test_a_run_killed_anywhere_resumes_bit_for_bit(images, reference, tmp_path):
    """Killed mid-epoch, then while writing a checkpoint before its record (the epoch is
    repeated), then after its record (its files are moved into place): each time resumed,
    the run ends as the one never interrupted did."""
    run = tmp_path / "run"
    assert work(images, run, "--kill-after-steps", "2") == KILLED  # 3 steps an epoch
    assert record(run)["history"] == [] and "last.params" not in os.listdir(run)
    assert work(images, run, "--resume", "--kill-before", "run.json:2") == KILLED
    assert len(record(run)["history"]) == 1
    assert any(name.startswith(".epoch-1.") for name in os.listdir(run))
    assert work(images, run, "--resume", "--kill-before", "last.params:2") == KILLED
    assert len(record(run)["history"]) == 3 and record(run)["finished"]
    assert any(name.startswith(".epoch-2.") for name in os.listdir(run))
    assert work(images, run, "--resume") == 0
    same_run(reference, run)


# ----------------------------------------------------------------- in one process, a tiny net

def train(images, out, epochs=2, resume=False, seed=0, layers=None, lr=0.1, **kwargs):
    net = tiny_convnet()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": lr, "momentum": 0.9},
                               layers=layers)
    data = epoch_data(images, image_size=16, batch_size=4, augment="light", seed=seed)
    return train_run(net, trainer, data, epochs, out, resume=resume, progress=False,
                     settings={"learning_rate": lr}, **kwargs)


def contents(run):
    return {name: (run / name).read_bytes() for name in os.listdir(run)}


def test_the_run_record_and_its_files(images, tmp_path):
    result = train(images, tmp_path / "run")
    run = tmp_path / "run"
    assert sorted(os.listdir(run)) == ["best.params", "last.params", "last.states", "run.json",
                                       "start.params"]
    saved = record(run)
    assert saved["classes"] == ["blue", "red"] and saved["settings"] == {"learning_rate": 0.1}
    assert saved["preprocessing"]["image_size"] == 16 and saved["preprocessing"]["resize"] == 18
    assert (saved["augment"], saved["seed"], saved["epochs"]) == ("light", 0, 2)
    assert saved["data"]["train_images"] == 12 and saved["data"]["val_images"] == 6
    assert [sorted(e) for e in saved["history"]] == [
        ["epoch", "seconds", "train_acc", "train_loss", "val_acc", "val_loss"]] * 2
    assert saved["history"] == result.history and saved["finished"]
    assert saved["best"]["epoch"] == result.best_epoch


def test_resuming_a_finished_run_changes_nothing(images, tmp_path):
    first = train(images, tmp_path / "run")
    before = contents(tmp_path / "run")
    again = train(images, tmp_path / "run", resume=True)
    assert again.history == first.history and contents(tmp_path / "run") == before


def test_a_parameter_server_kvstore_is_refused_before_anything_is_written(images, tmp_path):
    """Under dist_sync a run would not know its workers: each would train on every image and
    write the same folder. Refused, naming the kvstore and what to use."""
    net = tiny_convnet()
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1},
                               kvstore="dist_sync")  # made at the first step
    data = epoch_data(images, image_size=16, batch_size=4, seed=0)
    before = [p.data().asnumpy() for p in net.collect_params().values()]
    with pytest.raises(FinetuneError, match="the trainer's kvstore is 'dist_sync'.*"
                                            "kvstore='horovod' under horovodrun"):
        train_run(net, trainer, data, 1, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    assert all((a == p.data().asnumpy()).all()
               for a, p in zip(before, net.collect_params().values()))


def test_a_run_that_does_not_match_is_refused(images, tmp_path):
    train(images, tmp_path / "run", epochs=1)
    with pytest.raises(FinetuneError, match="its seed 0, now 5"):
        train(images, tmp_path / "run", epochs=1, resume=True, seed=5)
    other = make_image_folder(tmp_path / "other", per_class=(7, 3))
    with pytest.raises(ValueError, match="12 training and 6 validation images .*, now 14 "
                                         "training and 6 validation images"):
        train(other, tmp_path / "run", epochs=1, resume=True)
    with pytest.raises(ValueError, match="already holds a run: continue it with 'train "
                                         "--resume"):
        train(images, tmp_path / "run", epochs=1)


def test_what_is_not_a_run_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RunFolder.open(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="is not a run folder \\(it has no run.json\\)"):
        RunFolder.open(tmp_path)
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a run folder \\(its run.json cannot be read"):
        RunFolder.open(tmp_path)
    (tmp_path / "run.json").write_text('{"history": []}')
    with pytest.raises(ValueError, match="is not a run record"):
        RunFolder.open(tmp_path)


def test_early_stopping_is_recorded(images, tmp_path):
    """A rate of 0 never improves on the first epoch: patience 2 stops after epoch 2."""
    result = train(images, tmp_path / "run", epochs=10, lr=1e-30, patience=2)
    saved = record(tmp_path / "run")
    assert len(result.history) == 3 and result.stopped_early and result.best_epoch == 0
    assert saved["patience"] == 2 and saved["stopped_early"] and saved["finished"]
    with pytest.raises(ValueError, match="patience \\(early stopping\\) needs a validation"):
        train(make_image_folder(tmp_path / "flat", per_class=(3, 0)) / "train",
              tmp_path / "run2", patience=2)


def test_without_validation_the_best_is_the_last_epoch(tmp_path):
    flat = make_image_folder(tmp_path / "images", per_class=(4, 0)) / "train"
    result = train(flat, tmp_path / "run")
    run = tmp_path / "run"
    assert (run / "best.params").read_bytes() == (run / "last.params").read_bytes()
    assert result.best_epoch == 1 and "val_acc" not in result.history[-1]


def test_an_ema_run_never_changes_a_frozen_parameter(tmp_path):
    """The stem (conv, BatchNorm) frozen by a rule: bit for bit the same in every file; the
    averages are the best parameters (without validation: the last epoch's), the trained
    weights the last ones."""
    flat = make_image_folder(tmp_path / "images", per_class=(4, 0)) / "train"
    train(flat, tmp_path / "run", layers={0: 0, 1: 0}, ema=0.5)
    run = tmp_path / "run"
    files = {name: mx.nd.load(str(run / f"{name}.params")) for name in
             ("start", "last", "best", "ema")}
    frozen = [k for k in files["start"] if k.startswith(("0.", "1."))]
    assert len(frozen) == 6  # weight, bias, gamma, beta, running mean and variance
    for name in ("last", "best"):
        for key in frozen:
            assert np.array_equal(files[name][key].asnumpy(), files["start"][key].asnumpy())
    assert sorted(files["ema"]) == ["4.bias", "4.weight"]  # only what trains is averaged
    assert np.array_equal(files["best"]["4.weight"].asnumpy(), files["ema"]["4.weight"].asnumpy())
    assert not np.array_equal(files["best"]["4.weight"].asnumpy(),
                              files["last"]["4.weight"].asnumpy())


def test_reading_a_run_changes_nothing_and_resuming_repairs_it(images, tmp_path):
    """A kill after epoch 0's record, before its files moved, and a later epoch's staged
    file: evaluate/predict/export read the committed file and leave the folder as it is
    (a run can be read while it trains); resuming moves and deletes."""
    train(images, tmp_path / "run", epochs=1)
    run = tmp_path / "run"
    (run / ".epoch-0.last.params").write_bytes((run / "start.params").read_bytes())
    (run / ".epoch-1.last.params").write_bytes(b"half")
    before = contents(run)
    assert RunFolder.open(run).params_file("last") == str(run / ".epoch-0.last.params")
    assert contents(run) == before
    RunFolder.open(run, repair=True)
    assert (run / "last.params").read_bytes() == (run / "start.params").read_bytes()
    assert not [name for name in os.listdir(run) if name.startswith(".")]
