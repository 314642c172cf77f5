"""rates.py: the rate arithmetic on plain data, the owner object, and schedule clocks
as training sees them (per-clock schedule state, begin_num_update counted once)."""
import copy
import pickle

import mxnet as mx
import pytest
from finetune_helpers import four_blocks, sgd_rates

from gluon_finetune import GradualUnfreezing, LayerwiseTrainer
from gluon_finetune.optim.rates import (
    Clock,
    LayerwiseState,
    Own,
    Rate,
    Unsaved,
    declarations,
    keep_clocks,
    limit_to,
    rates_from,
)
from gluon_finetune.rules.resolution import Setting

OWN = [Own(1.0, 1.0, "write", True), Own(0.5, 2.0, "null", True), Own(1.0, 1.0, "null", False)]


def factor():
    return mx.lr_scheduler.FactorScheduler(step=2, factor=0.5)


def declared(schedule, steps):
    """What a schedule gives at 1..steps when nothing else ever called it."""
    fresh = copy.deepcopy(schedule)
    return [fresh(t) for t in range(1, steps + 1)]


# ----------------------------------------------------------------- pure arithmetic

def test_a_parameter_no_rule_matches_keeps_its_own_settings():
    table = [Setting("a"), Setting("b", wd_mult=0.0, wd_rule="*_bias"), Setting("c")]
    rates = rates_from(table, OWN, 0.1, 0.1)
    assert rates[0] == Rate(None, 1.0, 1.0)
    assert rates[1] == Rate(None, 0.5, 0.0, frozen=True, wd_rule="*_bias")
    assert rates[2] == Rate(None, 1.0, 1.0, frozen=False)  # running statistics: not "frozen"


def test_rule_rates_absolute_rates_and_bn_train():
    table = [Setting("a", "l1", 0.5), Setting("b", "l2", 0.3, 0.03), Setting("c", "l3", 0.0,
                                                                             frozen=True)]
    rates = rates_from(table, OWN, 0.1, 0.1, bn_train={"c"})
    assert (rates[0].lr_mult, rates[0].governed) == (0.5, False)
    assert (rates[1].fixed_lr, rates[1].governed) == (0.03, True)
    assert rates[2] == Rate("bn='train'", 1.0, 1.0)


def test_one_declared_schedule_per_rule_peaking_at_the_rules_rate():
    sched = factor()
    table = [Setting("a", "*", 0.5, lr_scheduler=sched), Setting("b", "*", 0.5,
                                                                 lr_scheduler=sched)]
    rates = rates_from(table, OWN[:1] * 2, 0.1, 0.1)
    assert rates[0].lr_scheduler.declared is rates[1].lr_scheduler.declared
    assert rates[0].lr_scheduler.declared.base_lr == pytest.approx(0.05)
    assert sched.base_lr == 0.01  # the user's object is never changed


def test_the_limit_freezes_what_lies_outside_and_names_itself():
    table = [Setting("a", "*", 0.5, lr_scheduler=factor()), Setting("b", "*", 0.5)]
    fresh = rates_from(table, OWN[:1] * 2, 0.1, 0.1)
    rates = limit_to(fresh, [False, True], 1)
    assert rates[0] == fresh[0]._replace(rule="trainable_blocks=1", lr_mult=0.0, frozen=True)
    assert not rates[0].governed  # frozen: rate 0, the schedule waits for the thaw
    assert rates[1].rule == "*" and not rates[1].frozen


def test_clocks_keep_their_start_join_or_restart_when_thawing():
    sched = factor()
    old = {0: Rate("*", 0.0, 1.0, frozen=True, start=100), 1: Rate("*", 1.0, 1.0, start=100)}
    new = rates_from([Setting("a", "*", 1.0, lr_scheduler=sched)] * 3, OWN[:1] * 3, 0.1, 0.1)
    joined = keep_clocks(old, new, now=111, begin=100, restart=False)
    assert [joined[i].start for i in range(3)] == [111, 100, 100]
    restarted = keep_clocks(old, new, now=111, begin=100, restart=True)
    assert restarted[0].start == 0
    # one Clock per (rule, start): clocks that can differ never share schedule state
    assert joined[1].lr_scheduler is joined[2].lr_scheduler
    assert joined[0].lr_scheduler is not joined[1].lr_scheduler


def test_a_clock_gives_the_declared_schedule_even_when_asked_out_of_order():
    sched = factor()
    clock = Clock(copy.deepcopy(sched))
    seen = [clock(t) for t in (1, 2, 3, 9, 2, 3, 4)]
    want = declared(sched, 9)
    assert seen == [want[t - 1] for t in (1, 2, 3, 9, 2, 3, 4)]


def test_declarations_say_what_each_rule_gives():
    table = [Setting("a", "l1", 0.5, wd_mult=0.0, wd_rule="*_bias"), Setting("b"),
             Setting("c", "l3", 0.2, 0.02, lr_scheduler=factor())]
    text = declarations(table, "frozen")
    assert text[0] == "rule 'l1', lr_mult=0.5, wd rule '*_bias': wd_mult=0.0"
    assert text[1] == "no rule"
    assert text[2].startswith("rule 'l3', learning_rate=0.02, lr_scheduler=FactorScheduler(")
    assert declarations(table, "frozen") == text  # a fresh scheduler declares the same


def test_the_owner_pickles_with_markers_for_what_cannot_be_pickled():
    state = LayerwiseState()
    state.set_rates({0: Rate("l3", 1.0, 1.0, Clock(lambda t: 0.1)), 1: Rate("l2", 2.0, 1.0)})
    state.rules = {"l3": {"lr_scheduler": lambda t: 0.1}, "l2": 2.0}
    clone = pickle.loads(pickle.dumps(state))
    assert isinstance(clone.rates[0].lr_scheduler, Unsaved)
    assert clone.rates[1] == state.rates[1]
    assert dict(clone.rules)["l2"] == 2.0
    assert isinstance(dict(clone.rules)["l3"]["lr_scheduler"], Unsaved)
    with pytest.raises(ValueError, match="rule 'l3'"):
        clone.restore_unsaved({})
    clone.restore_unsaved(state.rates)
    assert clone.rates[0].lr_scheduler is state.rates[0].lr_scheduler
    twin = copy.deepcopy(state)  # a deep copy keeps what pickling cannot
    assert twin.rates[0].lr_scheduler(5) == 0.1


# ----------------------------------------------------------------- clocks in training

def test_a_block_that_thaws_later_gets_its_own_schedule_state():
    """Stock trap: one FactorScheduler copy for the whole rule; the block thawing later got
    the decayed state, [0.1, 0.0125, 0.0125, 0.00625] instead of schedule(1..4)."""
    net = four_blocks()
    sched = mx.lr_scheduler.FactorScheduler(step=2, factor=0.5)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1},
                               layers={"*": {"learning_rate": 0.1, "lr_scheduler": sched}})
    unfreezer = GradualUnfreezing(trainer, every=1, restart="schedule")
    unfreezer.on_epoch(0)
    head = [r[net[3].weight.name] for r in sgd_rates(net, trainer, 5)]
    unfreezer.on_epoch(1)
    rates = sgd_rates(net, trainer, 4)
    expected = declared(mx.lr_scheduler.FactorScheduler(step=2, factor=0.5, base_lr=0.1), 9)
    assert head == pytest.approx(expected[:5], rel=1e-3)
    assert [r[net[2].weight.name] for r in rates] == pytest.approx(expected[:4], rel=1e-3)
    assert [r[net[3].weight.name] for r in rates] == pytest.approx(expected[5:9], rel=1e-3)


def linear(t):
    return 1e-3 * t


@pytest.mark.parametrize("restart,expected", [(None, 0.112), ("schedule", 0.001)])
def test_begin_num_update_is_counted_once_for_a_block_that_thaws(restart, expected):
    """Stock trap: with begin_num_update=100 a block thawed at update 111 got sched(212)
    (join) or sched(101) (restart) at its first update."""
    net = four_blocks()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "begin_num_update": 100},
                               layers={"*": {"lr_scheduler": linear}})
    unfreezer = GradualUnfreezing(trainer, every=1, restart=restart)
    unfreezer.on_epoch(0)
    first = sgd_rates(net, trainer, 11)
    assert first[0][net[3].weight.name] == pytest.approx(0.101, rel=1e-3)  # MXNet's num_update
    unfreezer.on_epoch(1)
    rates = sgd_rates(net, trainer, 1)[0]
    assert rates[net[2].weight.name] == pytest.approx(expected, rel=1e-3)
    assert rates[net[3].weight.name] == pytest.approx(0.112, rel=1e-3)
