"""The shared fit loop: results per epoch, hooks, and argument checks."""
import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import three_layers

from gluon_finetune import LayerwiseTrainer
from gluon_finetune.recipes.training import evaluate, fit


def loader(count=12, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.normal(size=(count, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    return mx.gluon.data.DataLoader(mx.gluon.data.ArrayDataset(x, y), batch_size=4)


def test_fit_reports_each_epoch_and_calls_the_hooks():
    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"l1": 0})
    epochs_seen, steps = [], []
    history = fit(net, trainer, loader(), 3, loader(8, 1), on_epoch=epochs_seen.append,
                  on_step=lambda t: steps.append(t.optimizer.num_update), progress=False)
    assert [h["epoch"] for h in history] == [0, 1, 2] == epochs_seen
    assert steps == list(range(1, 10))  # 3 batches x 3 epochs
    assert all(0 <= h["val_acc"] <= 1 and h["train_loss"] > 0 for h in history)
    assert history[-1]["seconds"] >= history[0]["seconds"]


def test_evaluate_counts_correct_predictions():
    net = three_layers()
    data = loader()
    predicted = np.concatenate([net(x).argmax(axis=1).asnumpy() for x, _ in data])
    labels = np.concatenate([y.asnumpy() for _, y in data])
    assert evaluate(net, data) == pytest.approx(float((predicted == labels).mean()))


def test_fit_checks_its_arguments():
    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1})
    with pytest.raises(ValueError, match="epochs must be a positive integer, got 0"):
        fit(net, trainer, loader(), 0)
    with pytest.raises(TypeError, match="train_data must be a gluon.data.DataLoader"):
        fit(net, trainer, [1, 2], 1)
    with pytest.raises(TypeError, match="trainer must be a gluon.Trainer"):
        fit(net, "sgd", loader(), 1)


@pytest.mark.parametrize("make", [
    lambda: mx.gluon.data.DataLoader(mx.gluon.data.ArrayDataset(np.zeros((0, 4), "float32"),
                                                                np.zeros((0,), "float32")),
                                     batch_size=4),
    lambda: mx.gluon.data.DataLoader(mx.gluon.data.ArrayDataset(np.zeros((3, 4), "float32"),
                                                                np.zeros((3,), "float32")),
                                     batch_size=4, last_batch="discard"),
])
def test_an_empty_loader_is_refused_before_anything_trains(make):
    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1})
    before = {k: p.data().asnumpy().copy() for k, p in net.collect_params().items()}
    calls = []
    with pytest.raises(ValueError, match="train_data is empty: its DataLoader gives no "
                                         "batches"):
        fit(net, trainer, make(), 2, on_epoch=calls.append, progress=False)
    with pytest.raises(ValueError, match="val_data is empty"):
        fit(net, trainer, loader(), 2, make(), on_epoch=calls.append, progress=False)
    assert calls == [] and trainer.optimizer.num_update == 0
    assert all(np.array_equal(p.data().asnumpy(), before[k])
               for k, p in net.collect_params().items())


def test_fit_takes_numpy_epochs_and_checks_the_rest():
    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1})
    assert len(fit(net, trainer, loader(), np.int64(2), progress=False)) == 2
    with pytest.raises(TypeError, match="val_data must be a gluon.data.DataLoader"):
        fit(net, trainer, loader(), 1, [1, 2])
    with pytest.raises(TypeError, match="progress must be True or False"):
        fit(net, trainer, loader(), 1, progress="no")
    with pytest.raises(ValueError, match="epochs must be a positive integer, got True"):
        fit(net, trainer, loader(), True)
