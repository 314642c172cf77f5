"""explain(): the table's columns, and notes on rules that thaw what was frozen before."""
import pytest
from finetune_helpers import three_layers, trainable_names

from gluon_finetune import LayerwiseTrainer, explain, get_model
from gluon_finetune.rules.resolution import RuleError


@pytest.fixture(scope="module")
def frozen_by_get_model():
    def build():
        return get_model("resnet18_v1", classes=3, unfreeze=1)
    return build


def test_explain_flags_a_rule_that_thaws_what_get_model_froze(frozen_by_get_model):
    """Stock trap: get_model(unfreeze=1) then {"*": 0.1, "output": 1} thawed 60 parameters
    and nothing said so."""
    net = frozen_by_get_model()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1},
                               layers={"*": 0.1, "output": 1})
    table = explain(trainer)
    thawed = [row["parameter"] for row in table if row["thawed"]]
    assert len(thawed) == 60 and len(table.notes) == 1
    assert "rule '*' thaws 60 parameters" in table.notes[0]
    assert "'trainable:*'" in table.notes[0] and "set_trainable_blocks" in table.notes[0]
    assert str(table).endswith(table.notes[0])
    preview = explain(frozen_by_get_model(), {"*": 0.1, "output": 1})
    assert {row["parameter"].split("_", 1)[1] for row in preview if row["thawed"]} == \
        {name.split("_", 1)[1] for name in thawed}


def test_a_trainable_key_only_rates_what_is_trainable(frozen_by_get_model):
    net = frozen_by_get_model()
    head = set(net.output.collect_params().keys())
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1},
                               layers={"trainable:*": 0.1, net.output.weight.name: 2.0})
    assert trainable_names(net) == head
    table = explain(trainer)
    assert table.notes == []
    assert table[net.output.bias.name]["rule"] == "trainable:*"
    assert table[net.output.bias.name]["lr"] == pytest.approx(0.01)
    with pytest.raises(RuleError, match="'trainable:features.0' matches no parameter"):
        LayerwiseTrainer(frozen_by_get_model(), "sgd", layers={"trainable:features.0": 0.5})


def test_no_note_when_nothing_was_frozen_before():
    table = explain(three_layers(), {"*": 0.1})
    assert table.notes == [] and not any(row["thawed"] for row in table)


def test_a_parameter_frozen_by_the_limit_names_the_limit():
    """Stock trap: it showed the rule it would have had ('block 0'), not what froze it."""
    from finetune_helpers import four_blocks
    net = four_blocks()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={0: 0.5, "*": 1.0})
    trainer.set_trainable_blocks(2)
    table = explain(trainer)
    first, last = table[net[0].weight.name], table[net[3].weight.name]
    assert (first["rule"], first["frozen"], first["lr"]) == ("trainable_blocks=2", True, 0.0)
    assert (last["rule"], last["frozen"]) == ("*", False)
    trainer.set_trainable_blocks(None)
    assert explain(trainer)[net[0].weight.name]["rule"] == "block 0"
