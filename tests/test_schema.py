"""The one settings schema: the parser, the config loader and the docs come from it."""
import inspect
import os

import pytest

from gluon_finetune.cli.config import load_config
from gluon_finetune.cli.declarations import config_options, flag_of, options
from gluon_finetune.cli.main import build_parser
from gluon_finetune.cli.reference import BEGIN, END, reference
from gluon_finetune.cli.schema import COMMANDS, Settings
from gluon_finetune.recipes.fine_tuning import fine_tune

PAGE = os.path.join(os.path.dirname(__file__), "..", "docs", "guide", "cli.md")


def test_the_docs_table_is_the_schemas():
    with open(PAGE, encoding="utf-8") as f:
        text = f.read()
    table = text.split(BEGIN)[1].split(END)[0].strip("\n")
    assert table == reference().strip("\n"), \
        "run: python -m gluon_finetune.cli.reference docs/guide/cli.md"


def test_every_declared_flag_is_parsed_by_each_of_its_commands():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse keeps them here
    assert set(COMMANDS) <= set(commands)
    for option in options():
        for command in option.commands:
            spelled = {s for a in commands[command]._actions for s in a.option_strings}
            dests = {a.dest for a in commands[command]._actions}
            if flag_of(option):
                assert flag_of(option) in spelled and option.name in dests, (option, command)


def test_every_config_key_is_a_setting_with_its_kind(tmp_path):
    keys = set(config_options())
    assert {"model", "layers", "gradual_unfreezing", "freeze_epochs"} <= keys
    assert not keys & {"config", "seed", "save", "out", "data"}  # flags only
    path = tmp_path / "c.yaml"
    path.write_text("".join(f"{key}: []\n" for key in sorted(keys)))
    with pytest.raises(ValueError, match=r"line \d+: \w+: expected"):
        load_config(str(path))  # the first key is checked by its own kind


def test_defaults_come_from_the_schema_and_the_recipe_from_fine_tune():
    plain = Settings(command="explain", model="resnet18_v1")
    assert (plain.learning_rate, plain.optimizer, plain.bn, plain.epochs) == (0.01, "sgd",
                                                                              "frozen", 5)
    recipe = Settings(command="train", model="resnet18_v1", data="x", recipe="fine_tune")
    defaults = inspect.signature(fine_tune).parameters
    assert recipe.learning_rate == defaults["base_lr"].default
    assert recipe.freeze_epochs == defaults["freeze_epochs"].default
    shown = next(o for o in options() if o.name == "learning_rate").shown
    assert f"({defaults['base_lr'].default:g})" in shown  # what --help says is fine_tune's


def test_settings_checked_together_name_the_setting():
    with pytest.raises(ValueError, match="no model") as err:
        Settings(command="plot")
    assert err.value.setting == "model"
    with pytest.raises(ValueError, match="freeze_epochs is for recipe fine_tune"):
        Settings(command="train", model="m", data="x", freeze_epochs=2)
