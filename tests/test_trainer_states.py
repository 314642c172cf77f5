"""save_states/load_states: bit-identical resume, and no silent loading of foreign states."""
import pickle

import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import bn_chain, straddle_name_counter, three_layers, train_step
from mxnet import gluon

from gluon_finetune import LayerwiseTrainer


def ramp(t):
    """A plain (module-level, picklable) schedule."""
    return 0.01 * min(t, 5)


def rules():
    return {"l1": {"learning_rate": 0.05,
                   "lr_scheduler": mx.lr_scheduler.FactorScheduler(step=2, factor=0.5)},
            "l2": {"lr_scheduler": ramp},
            "l3": {"lr_scheduler": lambda t: 0.02 / t}}  # not picklable: taken back on load


@pytest.mark.parametrize("optimizer,args", [
    ("sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-3}),
    ("adam", {"learning_rate": 0.01}),
])
def test_resume_is_bit_identical(tmp_path, optimizer, args):
    straight = three_layers(5)
    trainer = LayerwiseTrainer(straight, optimizer, dict(args), layers=rules())
    for step in range(10):
        train_step(straight, trainer, step)

    first = three_layers(5)
    trainer = LayerwiseTrainer(first, optimizer, dict(args), layers=rules())
    for step in range(5):
        train_step(first, trainer, step)
    first.save_parameters(str(tmp_path / "net.params"))
    trainer.save_states(str(tmp_path / "trainer.states"))

    resumed = three_layers(99)  # a new process would build the net afresh
    resumed.load_parameters(str(tmp_path / "net.params"))
    trainer = LayerwiseTrainer(resumed, optimizer, dict(args), layers=rules())
    trainer.load_states(str(tmp_path / "trainer.states"))
    for step in range(5, 10):
        train_step(resumed, trainer, step)

    for a, b in zip(straight.collect_params().values(), resumed.collect_params().values()):
        assert np.array_equal(a.data().asnumpy(), b.data().asnumpy()), a.name


def test_states_carry_multipliers_stock_gluon_forgets(tmp_path):
    """Stock trap: save_states drops Parameter.lr_mult, so a resumed run changes rates."""
    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"l3": 0.1, "l1": 0})
    train_step(net, trainer, 0)
    trainer.save_states(str(tmp_path / "s"))
    fresh = three_layers()
    plain = LayerwiseTrainer(fresh, "sgd", {"learning_rate": 0.1})
    plain.load_states(str(tmp_path / "s"))
    assert fresh.l3.weight.lr_mult == 0.1 and fresh.l1.weight.grad_req == "null"
    assert plain.current_lrs() == trainer.current_lrs()


def test_loading_another_models_states_fails_and_changes_nothing(tmp_path):
    """Stock trap: gluon.Trainer.load_states accepts another model's states silently."""
    other = bn_chain()
    other_trainer = LayerwiseTrainer(other, "sgd", {"learning_rate": 0.1, "momentum": 0.9})
    train_step(other, other_trainer, 0)
    other_trainer.save_states(str(tmp_path / "other"))

    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.2, "momentum": 0.9},
                               layers={"l1": 0.5})
    train_step(net, trainer, 0)
    optimizer, states = trainer.optimizer, dict(trainer._updaters[0].states)
    rates = trainer.rates
    with pytest.raises(ValueError, match="another model"):
        trainer.load_states(str(tmp_path / "other"))
    assert trainer.optimizer is optimizer and trainer.rates == rates
    assert trainer._updaters[0].states == states


def test_same_shapes_but_other_structure_is_detected(tmp_path):
    a = three_layers()
    trainer = LayerwiseTrainer(a, "sgd", {"learning_rate": 0.1})
    train_step(a, trainer, 0)
    trainer.save_states(str(tmp_path / "s"))

    class Renamed(gluon.Block):
        def __init__(self):
            super().__init__()
            with self.name_scope():
                self.first = gluon.nn.Dense(6, in_units=4)
                self.second = gluon.nn.Dense(5, in_units=6, prefix="other_")
                self.third = gluon.nn.Dense(3, in_units=5)

    b = Renamed()
    b.initialize()
    with pytest.raises(ValueError, match="another model"):
        LayerwiseTrainer(b, "sgd", {"learning_rate": 0.1}).load_states(str(tmp_path / "s"))


def test_stock_trainer_states_load_into_layerwise(tmp_path):
    net = three_layers()
    stock = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9})
    train_step(net, stock, 0)
    stock.save_states(str(tmp_path / "stock"))
    ours = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.9})
    ours.load_states(str(tmp_path / "stock"))
    assert set(ours._updaters[0].states) == set(stock._updaters[0].states)


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / "junk"
    path.write_bytes(pickle.dumps({"hello": 1}))
    trainer = LayerwiseTrainer(three_layers(), "sgd")
    with pytest.raises(ValueError, match="not a trainer states file"):
        trainer.load_states(str(path))
    with pytest.raises(TypeError, match="path"):
        trainer.save_states(42)


def test_optimizer_pickles_with_its_rate_table():
    net = three_layers()
    trainer = LayerwiseTrainer(net, "nag", {"learning_rate": 0.1, "momentum": 0.9},
                               layers={"l1": 0, "l2": {"lr_scheduler": ramp}, "l3": 3.0})
    clone = pickle.loads(pickle.dumps(trainer.optimizer))
    assert type(clone).__name__ == "LayerwiseNAG" and isinstance(clone, mx.optimizer.NAG)
    assert clone.layerwise.rates == trainer.optimizer.layerwise.rates
    assert clone.param_dict == {}  # MXNet drops it; our table does not need it
    assert clone._get_lrs(list(range(6))) == trainer.optimizer._get_lrs(list(range(6)))


def unscoped_chain(straddle):
    """Layers built outside any name scope: their names carry global counters."""
    if straddle:
        straddle_name_counter()
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(5, in_units=4), gluon.nn.Dense(4, in_units=5),
            gluon.nn.Dense(3, in_units=4))
    mx.random.seed(7)
    net.initialize(mx.init.Xavier())
    return net


def test_resume_into_a_rebuilt_net_whose_names_sort_differently(tmp_path):
    """dense98/99/100 sort as 100, 98, 99; the rebuilt net's names sort in layer order:
    states must follow the layers, not the sorted positions (stock Gluon would mix
    them up silently)."""
    first = unscoped_chain(straddle=True)
    names = [p.name for p in first.collect_params().values()]
    assert sorted(names) != names  # the trap is really set
    rules = {"0": {"lr_scheduler": mx.lr_scheduler.FactorScheduler(1, 0.9)}, "2": 2.0}
    trainer = LayerwiseTrainer(first, "sgd", {"learning_rate": 0.1, "momentum": 0.9},
                               layers=rules)
    from finetune_helpers import batch
    from mxnet import autograd

    def steps(net, trainer, seeds):
        for seed in seeds:
            x, y = batch(seed, 8)
            with autograd.record():
                loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(x), y)
            loss.backward()
            trainer.step(8)

    steps(first, trainer, range(3))
    first.save_parameters(str(tmp_path / "p"))
    trainer.save_states(str(tmp_path / "s"))
    steps(first, trainer, range(3, 6))

    rebuilt = unscoped_chain(straddle=False)
    assert sorted(p.name for p in rebuilt.collect_params().values()) != sorted(names)
    rebuilt.load_parameters(str(tmp_path / "p"))
    again = LayerwiseTrainer(rebuilt, "sgd", {"learning_rate": 0.1, "momentum": 0.9},
                             layers=rules)
    again.load_states(str(tmp_path / "s"))
    steps(rebuilt, again, range(3, 6))
    for a, b in zip(first.collect_params().values(), rebuilt.collect_params().values()):
        assert np.array_equal(a.data().asnumpy(), b.data().asnumpy()), a.name
