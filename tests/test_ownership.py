"""Who owns a Parameter's lr_mult, wd_mult and grad_req: the user, the rules, the trainer.

The user's own values (before the trainer, and hand edits after) hold across every
refresh; the rules own what they set; what a trainer wrote is never taken for the
user's, not even by a second trainer; set_learning_rate holds across refreshes.
"""
import warnings

import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import bn_chain, four_blocks, sgd_rates, three_layers, train_step, weights

from gluon_finetune import (
    GradualUnfreezing,
    LayerwiseTrainer,
    explain,
    freeze,
    get_model,
    layer_decay,
    spread,
    unfreeze,
)


def rate_of(trainer, param):
    return trainer.current_lrs()[trainer.params.index(param)]


def layer_rates(net, trainer):
    """The rate each of three_layers' layers trained at (its weight, measured)."""
    measured = sgd_rates(net, trainer, 1)[0]
    return [measured.get(layer.weight.name, 0.0) for layer in (net.l1, net.l2, net.l3)]


# ----------------------------------------------------------------- set_learning_rate (21.1)

def _refresh(trainer, how):
    if how == "limit":
        trainer.set_trainable_blocks(4)
    elif how == "gradual":
        GradualUnfreezing(trainer, {0: 4}).on_epoch(0)
    elif how == "limit, then lifted":
        trainer.set_trainable_blocks(1)
        trainer.set_trainable_blocks(None)


@pytest.mark.parametrize("how", ["limit", "gradual", "limit, then lifted"])
@pytest.mark.parametrize("preset", [spread, layer_decay])
def test_set_learning_rate_keeps_absolute_rules_rescaled_across_refreshes(preset, how):
    """Stock trap: the next refresh put the declared rates back (10x off)."""
    net = four_blocks()
    rules = preset(net, 0.001, 0.1) if preset is spread else preset(net, 0.1, 0.5)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers=rules)
    declared = trainer.current_lrs()
    trainer.set_learning_rate(0.01)
    assert trainer.current_lrs() == pytest.approx([lr / 10 for lr in declared], rel=1e-12)
    _refresh(trainer, how)
    assert trainer.current_lrs() == pytest.approx([lr / 10 for lr in declared], rel=1e-12)
    measured = sgd_rates(net, trainer, 1)[0]
    first = declared[trainer.params.index(net[0].weight)]
    assert measured[net[0].weight.name] == pytest.approx(first / 10, rel=1e-3)


def test_set_learning_rate_rescales_a_rules_schedule_across_refreshes():
    net = four_blocks()
    sched = mx.lr_scheduler.FactorScheduler(step=100, factor=0.5)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1},
                               layers={"*": {"learning_rate": 0.02, "lr_scheduler": sched}})
    trainer.set_learning_rate(0.05)
    trainer.set_trainable_blocks(2)
    assert rate_of(trainer, net[3].weight) == pytest.approx(0.01, rel=1e-12)


def test_rules_given_after_set_learning_rate_are_declared_at_the_new_rate():
    net = four_blocks()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1})
    trainer.set_learning_rate(0.01)
    trainer.set_layers({"*": {"learning_rate": 0.003}})
    trainer.set_trainable_blocks(2)
    assert rate_of(trainer, net[3].weight) == pytest.approx(0.003, rel=1e-12)
    assert net[3].weight.lr_mult == pytest.approx(0.3)  # plain Gluon code sees the truth


# ----------------------------------------------------------------- hand edits (21.2)

@pytest.mark.parametrize("layers", [None, {"*": 1}, {"*": 0.5, "3": 2.0}])
def test_hand_edits_of_multipliers_hold_across_refreshes(layers):
    """Stock trap: the next refresh rewrote them from the values at construction."""
    net = four_blocks()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers=layers)
    net[0].weight.lr_mult = 0.3
    net[3].weight.lr_mult = 4.0
    net[1].weight.wd_mult = 0.0
    trainer.set_trainable_blocks(4)
    GradualUnfreezing(trainer, {0: 4}).on_epoch(0)
    trainer.set_trainable_blocks(None)
    assert (net[0].weight.lr_mult, net[3].weight.lr_mult, net[1].weight.wd_mult) == \
        (0.3, 4.0, 0.0)
    measured = sgd_rates(net, trainer, 1)[0]
    assert measured[net[0].weight.name] == pytest.approx(0.03, rel=1e-3)
    assert measured[net[3].weight.name] == pytest.approx(0.4, rel=1e-3)
    assert trainer.optimizer._get_wds([trainer.params.index(net[1].weight)]) == [0.0]


def test_a_hand_edit_beats_a_multiplier_rule_until_the_rules_are_replaced():
    net = four_blocks()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"*": 0.5})
    net[2].weight.lr_mult = 2.0
    trainer.set_trainable_blocks(3)
    assert trainer.rates[trainer.params.index(net[2].weight)].rule == "by hand"
    assert explain(trainer)[net[2].weight.name]["rule"] == "by hand"
    with pytest.warns(UserWarning, match=r"rule '\*' replaces the lr_mult .*: 2\.0"):
        trainer.set_layers({"*": 0.5})  # a new declaration: the rule wins, and says so
    assert net[2].weight.lr_mult == 0.5
    trainer.set_layers({"0": 0.5})  # the edit is the parameter's own value where no rule is
    assert net[2].weight.lr_mult == 2.0


def test_a_hand_edit_that_a_rules_own_rate_fixes_is_an_error_at_the_next_refresh():
    net = four_blocks()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1},
                               layers={"*": 0.5, "3": {"learning_rate": 0.05}})
    rates = trainer.rates
    net[3].weight.lr_mult = 2.0
    with pytest.raises(ValueError, match=rf"{net[3].weight.name}: lr_mult was changed by hand.*"
                                         r"rule '3'.*set_layers"):
        trainer.set_trainable_blocks(2)
    assert trainer.rates == rates and trainer.trainable_blocks is None
    trainer.set_layers({"*": 0.5})  # the way out the message names
    assert net[3].weight.lr_mult == 0.5


def test_a_hand_freeze_holds_across_refreshes():
    net = four_blocks()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"*": 0.5})
    net[1].collect_params().setattr("grad_req", "null")
    before = weights(net)
    trainer.set_trainable_blocks(4)
    trainer.set_trainable_blocks(None)
    assert net[1].weight.grad_req == "null"
    train_step(net, trainer, 0)
    assert np.array_equal(weights(net)[net[1].weight.name], before[net[1].weight.name])
    assert net[1].weight.name in trainer.frozen_before


@pytest.mark.parametrize("frozen_by", ["rule", "limit"])
def test_a_hand_thaw_of_what_a_rule_or_the_limit_freezes_is_an_error(frozen_by):
    """Stock trap: the thawed parameter computed gradients and trained at rate 0."""
    net = four_blocks()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1},
                               layers={"0": 0} if frozen_by == "rule" else None)
    if frozen_by == "limit":
        trainer.set_trainable_blocks(3)
    net[0].weight.grad_req = "write"
    owner = r"rule '0'.*set_layers" if frozen_by == "rule" else \
        r"limit \(trainable_blocks=3\).*set_trainable_blocks"
    with pytest.raises(ValueError, match=rf"{net[0].weight.name}: grad_req was changed by "
                                         rf"hand to 'write'.*{owner}"):
        train_step(net, trainer, 0)
    if frozen_by == "rule":
        trainer.set_layers({})
    else:
        trainer.set_trainable_blocks(None)
    train_step(net, trainer, 0)
    assert net[0].weight.grad_req == "write"


# ----------------------------------------------------------------- a second trainer (21.3)

def test_a_second_trainer_takes_the_parameters_own_values_not_the_first_ones_output():
    """Stock trap: the second trainer took the first one's freezes and multipliers as the
    parameters' own: [0, 0.01, 1.0] where [0.1, 0.1, 1.0] was declared."""
    net = three_layers()
    LayerwiseTrainer(net, "sgd", {"learning_rate": 1.0},
                     layers={"l1": 0, "l2": 0.01, "*": {"wd_mult": 0.0}})
    second = LayerwiseTrainer(net, "sgd", {"learning_rate": 1.0},
                              layers={"trainable:*": 0.1, "l3": 1.0})
    assert second.frozen_before == frozenset()
    assert [p.wd_mult for p in second.params] == [1.0] * 6
    assert layer_rates(net, second) == pytest.approx([0.1, 0.1, 1.0], rel=1e-3)


def test_a_second_trainer_without_rules_starts_from_the_own_values():
    net = three_layers()
    net.l2.weight.lr_mult = 0.5  # the user's own, before any trainer
    LayerwiseTrainer(net, "sgd", {"learning_rate": 1.0}, layers={"l1": 0, "*": 0.01})
    net.l3.weight.wd_mult = 0.0  # a hand edit: the user's own from now on
    second = LayerwiseTrainer(net, "sgd", {"learning_rate": 1.0})
    assert [(p.lr_mult, p.wd_mult, p.grad_req) for p in (net.l1.weight, net.l2.weight,
                                                         net.l3.weight)] == \
        [(1.0, 1.0, "write"), (0.5, 1.0, "write"), (1.0, 0.0, "write")]
    assert second.rates == {}
    assert layer_rates(net, second) == pytest.approx([1.0, 0.5, 1.0], rel=1e-3)


def test_what_get_model_froze_stays_the_parameters_own_for_a_second_trainer():
    net = get_model("resnet18_v1", classes=2, unfreeze=1)
    frozen = {p.name for p in net.collect_params().values()
              if p.grad_req == "null" and p._differentiable}
    first = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"*": 0.1})
    assert first.frozen_before == frozen and net.features[0].weight.grad_req == "write"
    second = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1},
                              layers={"trainable:*": 0.1})
    assert second.frozen_before == frozen
    assert net.features[0].weight.grad_req == "null"
    assert net.features[1]._kwargs["use_global_stats"] is True  # frozen BatchNorm, as before


# ----------------------------------------------------------------- bn='train' (21.8)

def _trains(params):
    return {p.name for p in params if p.grad_req != "null"}


def test_bn_train_keeps_batchnorm_training_in_blocks_the_limit_freezes():
    net = bn_chain()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, bn="train")
    trainer.set_trainable_blocks(1)
    scale_shift = {net[i].gamma.name for i in (1, 4)} | {net[i].beta.name for i in (1, 4)}
    assert _trains(trainer.params) == scale_shift | {net[6].weight.name, net[6].bias.name}
    before = weights(net)
    train_step(net, trainer, 0)
    after = weights(net)
    assert np.array_equal(after[net[0].weight.name], before[net[0].weight.name])
    assert not np.array_equal(after[net[1].gamma.name], before[net[1].gamma.name])
    GradualUnfreezing(trainer, every=1).on_epoch(0)
    assert scale_shift <= _trains(trainer.params)


def test_bn_train_keeps_batchnorm_training_in_blocks_unfreeze_and_freeze_freeze():
    net = bn_chain()
    unfreeze(net, 1, bn="train")
    assert _trains(net.collect_params().values()) == {
        net[1].gamma.name, net[1].beta.name, net[4].gamma.name, net[4].beta.name,
        net[6].weight.name, net[6].bias.name}
    net = bn_chain()
    assert freeze(net, "0:2", bn="train") == sorted([net[0].weight.name, net[0].bias.name])
    assert net[1].gamma.grad_req == "write"


def test_get_model_with_bn_train_leaves_batchnorm_trainable():
    net = get_model("resnet18_v1", classes=2, unfreeze=1, bn="train")
    assert net.features[1].gamma.grad_req == "write"
    assert net.features[0].weight.grad_req == "null"
    assert net.features[1]._kwargs["use_global_stats"] is False


# ----------------------------------------------------------------- a model's own lr_mult (21.12)

def test_a_rule_that_replaces_a_models_own_lr_mult_says_so_and_wins():
    """Stock trap: GluonCV's FCN head sets lr_mult 10 itself; {"*": 0.1} replaced it
    without a word."""
    net = three_layers()
    net.l3.collect_params().setattr("lr_mult", 10)
    with pytest.warns(UserWarning, match=r"rule '\*' replaces the lr_mult that 2 parameters "
                                         r"had of their own .*10.*the rule wins"):
        trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"*": 0.1})
    assert rate_of(trainer, net.l3.weight) == pytest.approx(0.01)
    assert any("replaces the lr_mult" in note for note in explain(trainer).notes)
    preview = explain(three_layers(), {"*": 0.1})
    assert not preview.notes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keeps = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1},
                                 layers={"*": 0.1, "l3": 10})
    assert rate_of(keeps, net.l3.weight) == pytest.approx(1.0)


def test_the_preview_notes_a_replaced_own_lr_mult_too():
    net = three_layers()
    net.l3.weight.lr_mult = 10.0
    notes = explain(net, {"*": 0.1}).notes
    assert len(notes) == 1 and net.l3.weight.name in notes[0]


# ----------------------------------------------------------------- the preview (21.25)

def test_a_preview_marks_running_statistics_frozen_as_the_trainers_table_does():
    net = bn_chain()
    preview = explain(net, {"*": 0.1}, learning_rate=0.1)
    live = explain(LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"*": 0.1}))
    stats = [n for n in net.collect_params() if "running" in n]
    assert len(stats) == 4
    for name in net.collect_params():
        assert preview[name]["frozen"] == live[name]["frozen"] == (name in stats), name
        assert preview[name]["lr"] == pytest.approx(live[name]["lr"]), name


def test_a_preview_of_a_symbolblock_marks_its_auxiliary_states_frozen(tmp_path):
    from finetune_helpers import exported_symbolblock
    net = exported_symbolblock(tmp_path)
    rows = explain(net, {"*": 0.1})
    aux = [n for n in net.collect_params() if "running" in n or "moving" in n]
    assert aux and all(rows[n]["frozen"] for n in aux)
    assert not any(rows[n]["frozen"] for n in net.collect_params() if n not in aux)


def test_explain_notes_no_replacement_where_a_hand_edit_beats_the_rule():
    net = three_layers()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"*": 0.5})
    net.l2.weight.lr_mult = 3.0
    with pytest.warns(UserWarning, match="replaces the lr_mult"):
        trainer.set_layers({"*": 0.5}, trainable_blocks=None)  # the rules again: they win
    net.l2.weight.lr_mult = 3.0
    trainer.set_trainable_blocks(None)  # a refresh: the edit wins
    table = explain(trainer)
    assert table[net.l2.weight.name]["rule"] == "by hand" and not table.notes


def test_the_guide_page_runs():
    """docs/guide/ownership.md: its example runs as written (and warns only where it says)."""
    import pathlib
    import re
    page = pathlib.Path(__file__).resolve().parents[1] / "docs" / "guide" / "ownership.md"
    code = "\n".join(re.findall(r"```python\n(.*?)```", page.read_text(), re.S))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        exec(compile(code, str(page), "exec"), {})


def test_a_parameter_frozen_and_thawed_by_hand_trains_at_its_rules_rate_at_once():
    net = four_blocks()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"*": 0.5})
    net[1].collect_params().setattr("grad_req", "null")
    trainer.set_trainable_blocks(None)  # a refresh: the hand freeze holds
    net[1].collect_params().setattr("grad_req", "write")  # and a thaw by hand is allowed
    measured = sgd_rates(net, trainer, 1)[0]
    assert measured[net[1].weight.name] == pytest.approx(0.05, rel=1e-3)
