"""schedules.py: layer_decay and spread (rule makers) and the schedules MXNet lacks."""
import re

import numpy as np
import pytest
from finetune_helpers import four_blocks
from mxnet.gluon import nn

from gluon_finetune import OneCycle, SlantedTriangular, blocks, explain, layer_decay, spread


def block_rates(net, rules, base=None):
    table = explain(net, rules, learning_rate=base)
    return [table[b.weight.name]["lr"] for _, b in blocks(net)]


def test_layer_decay_follows_the_formula():
    net = four_blocks()
    rules = layer_decay(net, 0.1, decay=0.5)
    assert rules == {i: {"learning_rate": 0.1 * 0.5 ** (3 - i)} for i in range(4)}
    assert block_rates(net, rules, base=0.1) == pytest.approx([0.0125, 0.025, 0.05, 0.1])


def test_spread_is_geometric_from_lo_to_hi():
    net = four_blocks()
    rates = block_rates(net, spread(net, 1e-4, 1e-1), base=0.1)
    assert rates == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])
    one = nn.HybridSequential()
    one.add(nn.Dense(2, in_units=2))
    assert spread(one, 1e-3, 1e-2) == {0: {"learning_rate": 1e-2}}


@pytest.mark.parametrize("call,message", [
    (lambda n: layer_decay(n, 0.1, decay=0), "decay"),
    (lambda n: layer_decay(n, float("nan")), "base_lr"),
    (lambda n: spread(n, -1e-3, 1e-2), "lo"),
    (lambda n: spread(n, 1e-3, float("inf")), "hi"),
])
def test_rate_spreads_reject_bad_numbers(call, message):
    with pytest.raises(ValueError, match=message):
        call(four_blocks())


def test_slanted_triangular_and_one_cycle_shapes():
    stlr = SlantedTriangular(max_update=100, cut_frac=0.1, ratio=32, base_lr=0.32)
    assert stlr(0) == pytest.approx(0.01) and stlr(10) == pytest.approx(0.32)
    assert stlr(100) == pytest.approx(0.01) and stlr(55) == pytest.approx(0.165)
    cycle = OneCycle(max_update=100, pct_start=0.3, div=25, final_div=1e4, base_lr=1.0)
    assert cycle(0) == pytest.approx(0.04) and cycle(30) == pytest.approx(1.0)
    assert cycle(100) == pytest.approx(1e-4) and cycle(65) < cycle(31)
    with pytest.raises(ValueError, match="cut_frac"):
        SlantedTriangular(10, cut_frac=1.5)
    with pytest.raises(ValueError, match="max_update"):
        OneCycle(0)


def test_rate_spreads_take_numpy_numbers_and_refuse_strings():
    net = four_blocks()
    assert spread(net, np.float32(0.25), np.float64(0.5)) == spread(net, 0.25, 0.5)
    assert layer_decay(net, np.float32(0.5), np.int64(1)) == layer_decay(net, 0.5, 1)
    with pytest.raises(TypeError, match="hi must be a finite number > 0, got str '0.1'"):
        spread(net, 1e-3, "0.1")


# ----------------------------------------------------------------- schedules inside rules

def _all_schedulers():
    """Every scheduler class of MXNet 1.9.1 and ours, with every absolute rate nonzero."""
    import mxnet as mx
    warm = {"warmup_steps": 4, "warmup_begin_lr": 0.002}
    return {
        "factor": mx.lr_scheduler.FactorScheduler(step=3, factor=0.5, stop_factor_lr=0.004,
                                                  base_lr=0.01, **warm),
        "multifactor": mx.lr_scheduler.MultiFactorScheduler(step=[6, 12], factor=0.5,
                                                            base_lr=0.01, **warm),
        "poly": mx.lr_scheduler.PolyScheduler(max_update=20, base_lr=0.01, pwr=2,
                                              final_lr=0.005, **warm),
        "cosine": mx.lr_scheduler.CosineScheduler(max_update=20, base_lr=0.01, final_lr=0.005,
                                                  **warm),
        "one_cycle": OneCycle(20, base_lr=0.01),
        "slanted": SlantedTriangular(20, base_lr=0.01),
    }


@pytest.mark.parametrize("name", sorted(_all_schedulers()))
def test_a_rules_copy_of_a_scheduler_is_the_whole_curve_scaled_to_its_rate(name):
    """Issue 21 item 14: a rule's copy rebased base_lr alone; final_lr, warmup_begin_lr and
    stop_factor_lr stayed absolute, so a block at a tenth of the rate rose to 5x its rate
    (PolyScheduler toward final_lr=0.005 from 0.001)."""
    import copy

    from finetune_helpers import three_layers

    from gluon_finetune import LayerwiseTrainer
    declared = _all_schedulers()[name]
    reference = copy.deepcopy(declared)
    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1},
                               layers={"l1": {"learning_rate": 0.001, "lr_scheduler": declared}})
    index = [p.name for p in trainer.params].index(net.l1.weight.name)
    got = [lrs[index] for lrs in trainer.preview_lrs(24)]
    expected = [0.1 * reference(t) for t in range(1, 25)]
    assert got == pytest.approx(expected, rel=1e-9)
    assert max(got) <= 0.001 * (1 + 1e-9)


def test_a_scheduler_with_base_lr_0_and_other_rates_cannot_be_scaled():
    import mxnet as mx
    from finetune_helpers import three_layers

    from gluon_finetune import LayerwiseTrainer
    sched = mx.lr_scheduler.PolyScheduler(max_update=10, base_lr=0.0, final_lr=0.0)
    sched.final_lr = 0.001
    with pytest.raises(ValueError, match=r"rule 'l1': its lr_scheduler has base_lr=0, so its "
                                         r"other rates \(final_lr=0.001\) cannot be scaled"):
        LayerwiseTrainer(three_layers(), "sgd", {"learning_rate": 0.1},
                         layers={"l1": {"learning_rate": 0.001, "lr_scheduler": sched}})


@pytest.mark.parametrize("returned,error,shown", [
    (None, TypeError, "None (NoneType)"),
    (float("nan"), ValueError, "nan (float)"),
    ("0.01", TypeError, "'0.01' (str)"),
])
def test_a_schedule_that_returns_no_rate_is_refused_naming_the_rule_and_the_step(
        returned, error, shown):
    """Issue 21 items 13 and 15: None fell back to the trainer's rate (100x here); NaN or a
    string failed inside MXNet ("Invalid Parameter format for lrs"), naming no rule. The
    step fails before any weight changes."""
    from finetune_helpers import snapshot, three_layers, train_step

    from gluon_finetune import FinetuneError, LayerwiseTrainer

    def schedule(t):
        return 0.001 if t < 3 else returned

    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1},
                               layers={"l2": {"lr_scheduler": schedule}})
    train_step(net, trainer, 0)
    train_step(net, trainer, 1)
    before = snapshot(net)
    with pytest.raises(error, match=rf"rule 'l2': its lr_scheduler returned {re.escape(shown)} "
                                    r"at step 3; a schedule must return a finite") as err:
        train_step(net, trainer, 2)
    assert isinstance(err.value, FinetuneError)
    assert all(np.array_equal(a, b) for a, b in zip(before, snapshot(net)))
    with pytest.raises(error, match="rule 'l2'"):
        trainer.preview_lrs(3)


@pytest.mark.parametrize("cls", [OneCycle, SlantedTriangular])
def test_a_schedule_class_instead_of_an_instance_is_refused_at_construction(cls):
    """Issue 21 item 15: the class was taken for a callable schedule."""
    from finetune_helpers import three_layers

    from gluon_finetune import LayerwiseTrainer
    with pytest.raises(TypeError, match=rf"rule 'l2': lr_scheduler is the class "
                                        rf"{cls.__name__}, not a schedule; give an instance"):
        LayerwiseTrainer(three_layers(), "sgd", {"learning_rate": 0.1},
                         layers={"l2": {"lr_scheduler": cls}})
