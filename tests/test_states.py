"""states.py through save_states/load_states: what a file carries, stock files both ways,
and files that cannot be loaded (issue: trainer state is never silently wrong)."""
import pickle

import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import bn_chain, ramp, straddle_name_counter, three_layers, train_step
from mxnet import gluon

from gluon_finetune import LayerwiseTrainer, StatesError, explain

SGD = {"learning_rate": 0.1, "momentum": 0.9}


def rules():
    return {"l1": 0.5, "l2": {"learning_rate": 0.03},
            "l3": {"lr_scheduler": mx.lr_scheduler.FactorScheduler(step=2, factor=0.5)}}


def weights(net):
    return [p.data().asnumpy().copy() for p in net.collect_params().values()]


def trainer_view(trainer):
    """Everything a user can see of the trainer's state."""
    states = {i: [a.asnumpy().copy() for a in (s if isinstance(s, tuple) else (s,))]
              for i, s in trainer._updaters[0].states.items()}
    return (trainer.layers, trainer.rates, trainer.current_lrs(), str(explain(trainer)),
            trainer.trainable_blocks, states)


def assert_same_view(a, b):
    assert a[:5] == b[:5]
    assert a[5].keys() == b[5].keys()
    for i in a[5]:
        assert all(np.array_equal(x, y) for x, y in zip(a[5][i], b[5][i]))


# ----------------------------------------------------------------- stock files into ours

def test_a_stock_file_keeps_the_trainers_rules_and_takes_its_momentum(tmp_path):
    net = three_layers()
    stock = gluon.Trainer(net.collect_params(), "sgd", dict(SGD))
    for step in range(3):
        train_step(net, stock, step)
    stock.save_states(str(tmp_path / "stock"))

    ours = LayerwiseTrainer(net, "sgd", dict(SGD), layers=rules())
    before = (ours.layers, ours.rates, ours.current_lrs())
    ours.load_states(str(tmp_path / "stock"))
    assert ours.layers == before[0] and ours.rates.keys() == before[1].keys()
    assert [r.rule for r in ours.rates.values()] == [r.rule for r in before[1].values()]
    table = explain(ours)
    assert table[net.l1.weight.name]["rule"] == "l1"
    assert table[net.l2.weight.name]["lr"] == pytest.approx(0.03)     # the absolute rate
    # the schedule runs on the file's update counts: 3 updates done, FactorScheduler(2, 0.5)
    assert table[net.l3.weight.name]["lr"] == pytest.approx(0.05)
    for i, state in stock._updaters[0].states.items():
        assert np.array_equal(ours._updaters[0].states[i].asnumpy(), state.asnumpy())


def test_a_stock_file_of_another_shape_is_refused_and_changes_nothing(tmp_path):
    bigger = gluon.nn.HybridSequential()
    bigger.add(gluon.nn.Dense(7, in_units=4), gluon.nn.Dense(5, in_units=7),
               gluon.nn.Dense(3, in_units=5))
    bigger.initialize()
    stock = gluon.Trainer(bigger.collect_params(), "sgd", dict(SGD))
    train_step(bigger, stock, 0)
    stock.save_states(str(tmp_path / "stock"))

    net = three_layers()
    ours = LayerwiseTrainer(net, "sgd", dict(SGD), layers=rules())
    train_step(net, ours, 0)
    view, optimizer = trainer_view(ours), ours.optimizer
    with pytest.raises(ValueError, match=r"stock.*do not fit.*\(6, 4\)"):
        ours.load_states(str(tmp_path / "stock"))
    assert ours.optimizer is optimizer
    assert_same_view(trainer_view(ours), view)
    train_step(net, ours, 1)  # and it still trains


# ----------------------------------------------------------------- our files into stock

@pytest.mark.parametrize("layers", [None, {"l1": 0.5, "l3": 0}])
def test_a_stock_trainer_reads_our_file_and_continues_the_run(tmp_path, layers):
    first = three_layers()
    ours = LayerwiseTrainer(first, "sgd", dict(SGD), layers=layers)
    for step in range(3):
        train_step(first, ours, step)
    first.save_parameters(str(tmp_path / "p"))
    ours.save_states(str(tmp_path / "s"))
    for step in range(3, 6):
        train_step(first, ours, step)

    second = three_layers()
    second.load_parameters(str(tmp_path / "p"))
    if layers:  # stock Gluon reads lr_mult and grad_req from the parameters, as always
        second.l1.collect_params().setattr("lr_mult", 0.5)
        second.l3.collect_params().setattr("grad_req", "null")
    stock = gluon.Trainer(second.collect_params(), "sgd", dict(SGD))
    stock.load_states(str(tmp_path / "s"))
    assert set(stock._updaters[0].states) == set(ours._updaters[0].states)
    for step in range(3, 6):
        train_step(second, stock, step)
    for a, b in zip(weights(first), weights(second)):
        assert np.array_equal(a, b)


# ----------------------------------------------------------------- our files: the rules

def test_a_resumed_run_keeps_the_rules_through_later_refreshes(tmp_path):
    """Stock trap of the old format: load_states installed the file's rates, but the next
    refresh (set_trainable_blocks) went back to the constructor's rules."""
    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", dict(SGD), layers={"l1": 0.5, "l2": 2.0})
    train_step(net, trainer, 0)
    trainer.save_states(str(tmp_path / "s"))

    plain = LayerwiseTrainer(three_layers(), "sgd", dict(SGD))  # built without rules
    plain.load_states(str(tmp_path / "s"))
    assert plain.layers == {"l1": 0.5, "l2": 2.0}
    plain.set_trainable_blocks(2)
    plain.set_trainable_blocks(None)
    assert plain.current_lrs() == trainer.current_lrs()
    assert explain(plain)[plain.params[0].name]["rule"] == "l1"


def test_other_rules_than_the_files_are_an_error_that_changes_nothing(tmp_path):
    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", dict(SGD), layers={"l1": 0.5, "l2": 2.0})
    train_step(net, trainer, 0)
    trainer.save_states(str(tmp_path / "s"))

    other = LayerwiseTrainer(three_layers(), "sgd", dict(SGD), layers={"l1": 0.5, "l2": 3.0})
    view = trainer_view(other)
    with pytest.raises(ValueError, match=r"other rules.*lr_mult=2\.0.*lr_mult=3\.0"):
        other.load_states(str(tmp_path / "s"))
    assert_same_view(trainer_view(other), view)


def test_the_same_rules_resume_bit_identically_with_the_limit(tmp_path):
    def build():
        net = three_layers(3)
        return net, LayerwiseTrainer(net, "sgd", dict(SGD), layers=rules())

    straight, trainer = build()
    trainer.set_trainable_blocks(2)
    for step in range(6):
        if step == 4:
            trainer.set_trainable_blocks(3, restart=True)
        train_step(straight, trainer, step)

    first, trainer = build()
    trainer.set_trainable_blocks(2)
    for step in range(3):
        train_step(first, trainer, step)
    first.save_parameters(str(tmp_path / "p"))
    trainer.save_states(str(tmp_path / "s"))

    resumed, again = build()
    resumed.load_parameters(str(tmp_path / "p"))
    again.load_states(str(tmp_path / "s"))
    assert again.trainable_blocks == 2
    for step in range(3, 6):
        if step == 4:
            again.set_trainable_blocks(3, restart=True)
        train_step(resumed, again, step)
    for a, b in zip(weights(straight), weights(resumed)):
        assert np.array_equal(a, b)


# ----------------------------------------------------------------- unreadable files

@pytest.mark.parametrize("content", [
    b"",                                   # empty
    b"\x80\x04\x95",                       # a truncated pickle
    "gewicht: ü\n".encode("latin-1"),      # text, not even UTF-8
    pickle.dumps({"hello": 1})[:-3],       # cut short
    pickle.dumps(({}, "not an optimizer")),
])
def test_a_file_that_is_not_a_states_file_is_named_and_changes_nothing(tmp_path, content):
    path = tmp_path / "broken.states"
    path.write_bytes(content)
    net = bn_chain()
    trainer = LayerwiseTrainer(net, "sgd", dict(SGD), layers={-1: 2.0})
    train_step(net, trainer, 0)
    view = trainer_view(trainer)
    with pytest.raises(ValueError, match=r"broken\.states is not a (readable )?trainer states"):
        trainer.load_states(str(path))
    assert_same_view(trainer_view(trainer), view)


# ----------------------------------------------------------------- resume, and foreign states

def scheduled_rules():
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
    trainer = LayerwiseTrainer(straight, optimizer, dict(args), layers=scheduled_rules())
    for step in range(10):
        train_step(straight, trainer, step)

    first = three_layers(5)
    trainer = LayerwiseTrainer(first, optimizer, dict(args), layers=scheduled_rules())
    for step in range(5):
        train_step(first, trainer, step)
    first.save_parameters(str(tmp_path / "net.params"))
    trainer.save_states(str(tmp_path / "trainer.states"))

    resumed = three_layers(99)  # a new process would build the net afresh
    resumed.load_parameters(str(tmp_path / "net.params"))
    trainer = LayerwiseTrainer(resumed, optimizer, dict(args), layers=scheduled_rules())
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
    def steps(net, trainer, seeds):
        for seed in seeds:
            train_step(net, trainer, seed)

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


def test_a_symbolblock_trainer_resumes_from_its_own_file(tmp_path):
    """A SymbolBlock's parameters keep shape=None after loading: their shapes must come
    from their data, or every state looks like another model's."""
    from finetune_helpers import exported_symbolblock
    from mxnet import autograd, nd
    loaded = exported_symbolblock(tmp_path)
    trainer = LayerwiseTrainer(loaded, "sgd", dict(SGD), layers={-1: 2.0})
    with autograd.record():
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(loaded(nd.ones((2, 3, 8, 8))),
                                                    nd.array([0, 1]))
    loss.backward()
    trainer.step(2)
    trainer.save_states(str(tmp_path / "s"))
    again = LayerwiseTrainer(loaded, "sgd", dict(SGD), layers={-1: 2.0})
    again.load_states(str(tmp_path / "s"))
    assert again.rates == trainer.rates
    assert set(again._updaters[0].states) == set(trainer._updaters[0].states)


# ----------------------------------------------------------------- name-keyed rules, rebuilt

def decay_rules(net):
    """no_weight_decay's rules (biases by full name) and a rule of the user's by full name."""
    from gluon_finetune import no_weight_decay
    return {"*": 0.5, net[0].weight.name: 2.0, **no_weight_decay(net)}


@pytest.mark.parametrize("own_rules", [True, False])
def test_name_keyed_rules_survive_a_rebuild_with_a_new_prefix(tmp_path, own_rules):
    """Issue 21 item 6: a net rebuilt in the same process has new names; its own states file
    was "saved with other rules" and, without layers=, a NoMatchError for a rule the user
    never wrote. Name keys now follow the parameter, as path keys do."""
    args = {"learning_rate": 0.1, "momentum": 0.9, "wd": 0.01}
    straight = bn_chain(4)
    trainer = LayerwiseTrainer(straight, "sgd", dict(args), layers=decay_rules(straight))
    for step in range(4):
        train_step(straight, trainer, step)

    first = bn_chain(4)
    trainer = LayerwiseTrainer(first, "sgd", dict(args), layers=decay_rules(first))
    for step in range(2):
        train_step(first, trainer, step)
    first.save_parameters(str(tmp_path / "p"))
    trainer.save_states(str(tmp_path / "s"))

    rebuilt = bn_chain(99)
    assert rebuilt[0].weight.name != first[0].weight.name  # a new prefix
    rebuilt.load_parameters(str(tmp_path / "p"))
    again = LayerwiseTrainer(rebuilt, "sgd", dict(args),
                             layers=decay_rules(rebuilt) if own_rules else None)
    again.load_states(str(tmp_path / "s"))
    assert dict(again.layers) == decay_rules(rebuilt)
    table = explain(again)
    assert table[rebuilt[0].weight.name]["rule"] == rebuilt[0].weight.name
    assert table[rebuilt[0].bias.name]["wd_rule"] == rebuilt[0].bias.name
    for step in range(2, 4):
        train_step(rebuilt, again, step)
    for a, b in zip(weights(straight), weights(rebuilt)):
        assert np.array_equal(a, b)


def test_a_schedule_that_was_not_saved_is_named_with_what_to_do(tmp_path):
    """Issue 21 item 23: a trainer built without layers= was told to build it "without
    layers=" and never that the schedule was not in the file."""
    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", dict(SGD), layers=scheduled_rules())
    train_step(net, trainer, 0)
    with pytest.warns(UserWarning, match=r"rule 'l3': its schedule \(.*<lambda>\) cannot be "
                                         r"pickled.*not saved"):
        trainer.save_states(str(tmp_path / "s"))
    plain = LayerwiseTrainer(three_layers(), "sgd", dict(SGD))
    view = trainer_view(plain)
    with pytest.raises(StatesError) as err:
        plain.load_states(str(tmp_path / "s"))
    message = str(err.value)
    assert "the schedule of rule 'l3'" in message and "was not saved" in message
    assert "<lambda>" in message and "layers=" in message
    assert "or without layers= to take" not in message  # what the user did already
    assert_same_view(trainer_view(plain), view)
    with_rules = LayerwiseTrainer(three_layers(), "sgd", dict(SGD), layers=scheduled_rules())
    with_rules.load_states(str(tmp_path / "s"))  # the advice works
