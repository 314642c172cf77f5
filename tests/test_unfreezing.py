"""Gradual unfreezing, discriminative rates and the schedules MXNet lacks."""
import numpy as np
import pytest
from finetune_helpers import (
    four_blocks,
    sgd_rates,
    straddle_name_counter,
    three_layers,
    train_step,
    trainable_names,
)
from mxnet import autograd, gluon

from gluon_finetune import (
    GradualUnfreezing,
    LayerwiseTrainer,
    OneCycle,
    SlantedTriangular,
    blocks,
    layer_decay,
)


def block_names_of(net, indices):
    listed = blocks(net)
    return {p.name for i in indices for p in listed[i][1].collect_params().values()}


def test_every_epoch_one_more_block_and_frozen_ones_stay_put():
    net = four_blocks()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.9},
                               layers=layer_decay(net, 0.1))
    unfreezer = GradualUnfreezing(trainer, every=1)
    initial = {k: p.data().asnumpy().copy() for k, p in net.collect_params().items()}
    for epoch in range(4):
        assert unfreezer.on_epoch(epoch) == epoch + 1
        assert trainable_names(net) == block_names_of(net, range(3 - epoch, 4))
        for step in range(2):
            train_step(net, trainer, 10 * epoch + step)
        for k, p in net.collect_params().items():
            moved = not np.array_equal(p.data().asnumpy(), initial[k])
            assert moved == (k in trainable_names(net)), (epoch, k)


def test_schedule_dict_can_freeze_again():
    net = four_blocks()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1})
    unfreezer = GradualUnfreezing(trainer, {0: 1, 2: 4, 3: 2})
    counts = [unfreezer.on_epoch(e) for e in range(5)]
    assert counts == [1, 1, 4, 2, 2]
    assert trainable_names(net) == block_names_of(net, [2, 3])


def test_rules_still_apply_inside_the_thawed_blocks():
    net = four_blocks()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"1": 0, "*": 0.5})
    GradualUnfreezing(trainer, {0: 4}).on_epoch(0)
    # block 1 stays frozen by its rule
    assert trainable_names(net) == block_names_of(net, [0, 2, 3])
    assert net[3].weight.lr_mult == 0.5


def warm(t):
    """Warm-up over 4 updates then flat: restarts are visible in the rates."""
    return 0.1 * min(t, 4) / 4


def test_thawed_layer_restarts_its_schedule():
    net = four_blocks()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1},
                               layers={"*": {"lr_scheduler": warm}})
    unfreezer = GradualUnfreezing(trainer, {0: 1, 1: 2}, restart="schedule")
    unfreezer.on_epoch(0)
    steps_before = 3
    rates = sgd_rates(net, trainer, steps_before)
    assert [r[net[3].weight.name] for r in rates] == pytest.approx(
        [warm(t) for t in (1, 2, 3)], rel=1e-3)
    unfreezer.on_epoch(1)
    rates = sgd_rates(net, trainer, 3)
    thawed = [r[net[2].weight.name] for r in rates]
    running = [r[net[3].weight.name] for r in rates]
    s = steps_before
    assert thawed == pytest.approx([warm(t - s) for t in (4, 5, 6)], rel=1e-3)
    assert running == pytest.approx([warm(t) for t in (4, 5, 6)], rel=1e-3)


def test_without_restart_a_thawed_layer_joins_the_running_schedule():
    net = four_blocks()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1},
                               layers={"*": {"lr_scheduler": warm}})
    unfreezer = GradualUnfreezing(trainer, {0: 1, 1: 2})
    unfreezer.on_epoch(0)
    sgd_rates(net, trainer, 2)
    unfreezer.on_epoch(1)
    rates = sgd_rates(net, trainer, 1)
    assert rates[0][net[2].weight.name] == pytest.approx(warm(3), rel=1e-3)


def run_with_unfreezing(net, trainer, unfreezer, epochs, steps=2):
    for epoch in epochs:
        unfreezer.on_epoch(epoch)
        for step in range(steps):
            train_step(net, trainer, 10 * epoch + step)


def make(seed=4):
    net = four_blocks(seed)
    sched = SlantedTriangular(max_update=8)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.9},
                               layers={"*": {"lr_scheduler": sched}, -1: {"learning_rate": 0.2}})
    return net, trainer, GradualUnfreezing(trainer, every=1, restart="schedule")


@pytest.mark.parametrize("straddle", ["none", "saved", "loading"])
def test_resume_in_the_middle_of_gradual_unfreezing_is_bit_identical(tmp_path, straddle):
    """Also when either network's names sort differently from its layers (unscoped
    layers carry global counters: dense98, dense99, dense100)."""
    straight, trainer, unfreezer = make()
    run_with_unfreezing(straight, trainer, unfreezer, range(4))

    if straddle == "saved":
        straddle_name_counter()
    first, trainer, unfreezer = make()
    run_with_unfreezing(first, trainer, unfreezer, range(2))
    first.save_parameters(str(tmp_path / "p"))
    trainer.save_states(str(tmp_path / "s"))

    if straddle == "loading":
        straddle_name_counter()
    resumed, trainer, unfreezer = make(seed=9)
    resumed.load_parameters(str(tmp_path / "p"))
    trainer.load_states(str(tmp_path / "s"))
    assert trainer.trainable_blocks == 2
    run_with_unfreezing(resumed, trainer, unfreezer, range(2, 4))
    for a, b in zip(straight.collect_params().values(), resumed.collect_params().values()):
        assert np.array_equal(a.data().asnumpy(), b.data().asnumpy()), a.name


def test_estimator_handler_does_what_the_hand_written_loop_does():
    from mxnet.gluon.contrib.estimator import Estimator
    rng = np.random.RandomState(0)
    data = gluon.data.ArrayDataset(rng.randn(16, 4).astype("float32"),
                                   rng.randint(0, 3, 16).astype("float32"))
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

    by_hand, trainer, unfreezer = make()
    for epoch in range(3):
        unfreezer.on_epoch(epoch)
        for x, y in gluon.data.DataLoader(data, batch_size=8):
            with autograd.record():
                loss = loss_fn(by_hand(x), y)
            loss.backward()
            trainer.step(8)

    estimated, trainer, unfreezer = make()
    est = Estimator(estimated, loss_fn, trainer=trainer)
    est.logger.disabled = True
    est.fit(gluon.data.DataLoader(data, batch_size=8), epochs=3, event_handlers=[unfreezer])
    assert trainer.trainable_blocks == 3
    for a, b in zip(by_hand.collect_params().values(), estimated.collect_params().values()):
        np.testing.assert_allclose(a.data().asnumpy(), b.data().asnumpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kwargs,error,message", [
    ({}, ValueError, "exactly one"),
    ({"every": 1, "schedule": {0: 1}}, ValueError, "exactly one"),
    ({"every": 0}, ValueError, "every"),
    ({"schedule": {1: 2}}, ValueError, "epoch 0"),
    ({"schedule": {0: -1}}, ValueError, "-1"),
    ({"schedule": "linear"}, TypeError, "linear"),
    ({"every": 1, "restart": "warmup"}, ValueError, "warmup"),
])
def test_bad_unfreezing_arguments(kwargs, error, message):
    net = four_blocks()
    trainer = LayerwiseTrainer(net, "sgd")
    with pytest.raises(error, match=message):
        GradualUnfreezing(trainer, **kwargs)


def test_unfreezing_errors_leave_the_trainer_alone():
    net = four_blocks()
    trainer = LayerwiseTrainer(net, "sgd")
    unfreezer = GradualUnfreezing(trainer, lambda epoch: 7)
    before = trainer.rates
    with pytest.raises(ValueError, match=r"schedule\(0\) returned 7, .* the network has 4 "
                                         r"blocks \(0:0, 1:1, 2:2, 3:3\)"):
        unfreezer.on_epoch(0)
    assert trainer.rates == before and trainer.trainable_blocks is None
    with pytest.raises(ValueError, match="net="):
        GradualUnfreezing(LayerwiseTrainer(three_layers().collect_params(), "sgd"), every=1)
    with pytest.raises(TypeError, match="LayerwiseTrainer"):
        GradualUnfreezing(gluon.Trainer(net.collect_params(), "sgd"), every=1)


@pytest.mark.parametrize("schedule, message", [
    ({0: 7}, r"schedule\[0\] = 7 trainable blocks, but the network has only 4 blocks "
             r"\(0:0, 1:1, 2:2, 3:3\)"),
    ({0: 1, 3: 5}, r"schedule\[3\] = 5 trainable blocks, but the network has only 4 blocks"),
])
def test_a_schedule_beyond_the_networks_blocks_is_refused_when_built(schedule, message):
    trainer = LayerwiseTrainer(four_blocks(), "sgd")
    with pytest.raises(ValueError, match=message):
        GradualUnfreezing(trainer, schedule)
    assert trainer.trainable_blocks is None
    GradualUnfreezing(trainer, {0: 4})  # all four: the most there is


def test_a_callable_schedule_is_checked_in_its_own_words_at_each_epoch():
    trainer = LayerwiseTrainer(four_blocks(), "sgd")
    unfreezer = GradualUnfreezing(trainer, lambda epoch: 2 if epoch == 0 else -1)
    assert unfreezer.on_epoch(0) == 2
    with pytest.raises(ValueError, match=r"schedule\(1\) returned -1"):
        unfreezer.on_epoch(1)
    with pytest.raises(ValueError, match=r"schedule\(0\) returned 2.0"):
        GradualUnfreezing(trainer, lambda epoch: 2.0).on_epoch(0)
    assert trainer.trainable_blocks == 2


def test_numpy_integers_work_wherever_gradual_unfreezing_takes_an_int():
    net = four_blocks()
    trainer = LayerwiseTrainer(net, "sgd")
    unfreezer = GradualUnfreezing(trainer, {np.int64(0): np.int64(1), np.int32(2): np.int64(3)})
    assert [unfreezer.on_epoch(np.int64(e)) for e in range(3)] == [1, 1, 3]
    assert type(unfreezer.blocks_at(2)) is int and trainer.trainable_blocks == 3
    every = GradualUnfreezing(trainer, every=np.int64(2))
    assert every.blocks_at(np.int64(3)) == 2
    with pytest.raises(TypeError, match="every must be an int >= 1, got bool True"):
        GradualUnfreezing(trainer, every=True)
    with pytest.raises(ValueError, match="schedule keys must be epochs"):
        GradualUnfreezing(trainer, {0: 1, True: 2})
    assert SlantedTriangular(np.int64(10)).max_update == 10
    assert OneCycle(np.int64(10), pct_start=np.float32(0.5)).pct_start == 0.5


@pytest.mark.parametrize("start", ["limit", "model"])
def test_the_first_epoch_says_when_it_freezes_blocks_that_were_trainable(start):
    """Issue 21 item 9, the Python variant: set_trainable_blocks(2) (what --unfreeze 2 does)
    or a model built with unfreeze=2, then GradualUnfreezing(every=1), silently started from
    the head alone and ended with more blocks than either said; the command line refuses
    the pair. Here the first epoch warns, naming both counts and the schedule to give."""
    import warnings

    from gluon_finetune import unfreeze

    def trainer_for(start):
        net = four_blocks()
        if start == "model":
            unfreeze(net, 2)  # as get_model(..., unfreeze=2) leaves it
        trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1})
        if start == "limit":
            trainer.set_trainable_blocks(2)
        return trainer

    with pytest.warns(UserWarning, match=r"GradualUnfreezing: epoch 0 trains 1 block, but 2 "
                                         r"were trainable \(.*\): it freezes 1 of them \(blocks "
                                         r"2:3\); to start from 2, give schedule=\{0: 2, "):
        assert GradualUnfreezing(trainer_for(start), every=1).on_epoch(0) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a start that agrees, or a fully trainable model
        GradualUnfreezing(trainer_for(start), {0: 2, 1: 3}).on_epoch(0)
        GradualUnfreezing(trainer_for(None), every=1).on_epoch(0)
