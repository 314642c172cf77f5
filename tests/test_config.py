"""YAML/JSON configs: what they load to, and errors that name the file, line and key."""
import mxnet as mx
import pytest

from gluon_finetune import OneCycle
from gluon_finetune.config import ConfigError, load_config


def write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_yaml_rules_keep_ranges_indices_and_build_schedulers(tmp_path):
    config = load_config(write(tmp_path, (
        "learning_rate: 0.1\nlayers:\n  0:2: 0\n  -1: 10\n  3: null\n  '4': 1\n  features.4: 0.5\n"
        "  output:\n    learning_rate: 0.05\n"
        "    lr_scheduler: {type: one_cycle, max_update: 100, div: 10}\n")))
    rules = dict(config.layers)
    assert rules["0:2"] == 0            # YAML 1.1 would read 0:2 as the base-60 number 2
    assert rules[-1] == 10 and rules[3] is None and rules["features.4"] == 0.5
    assert rules["4"] == 1              # quoted: a structural path, as in Python
    schedule = rules["output"]["lr_scheduler"]
    assert isinstance(schedule, OneCycle) and schedule.max_update == 100 and schedule.div == 10
    assert config.get("learning_rate") == 0.1
    assert config.where("layers", "output") == f"{config.path}, line 8"


def test_json_configs_and_integer_keys(tmp_path):
    config = load_config(write(tmp_path, '{"layers": {"-1": 10, "1:3": 0,\n "output": '
                               '{"lr_scheduler": {"type": "factor", "step": 5}}}}',
                               "config.json"))
    rules = dict(config.layers)
    assert rules[-1] == 10 and rules["1:3"] == 0
    assert isinstance(rules["output"]["lr_scheduler"], mx.lr_scheduler.FactorScheduler)
    assert config.where("layers", "output") == f"{config.path}, line 2"


def test_an_empty_file_is_an_empty_config(tmp_path):
    config = load_config(write(tmp_path, ""))
    assert config.settings == {} and config.layers is None


@pytest.mark.parametrize("text, message", [
    ("epochs: 0\n", "line 1: epochs: must be at least 1, got 0"),
    ("epochs: 2.5\n", "line 1: epochs: expected int, got 2.5"),
    ("learning_rate: -1\n", "learning_rate: must be > 0"),
    ("learning_rate: .inf\n", "learning_rate: expected a finite number"),
    ("pretrained: 1\n", "pretrained: expected bool, got 1"),
    ("layers: [1, 2]\n", "layers: expected mapping"),
    ("layers:\n  output: true\n", "line 2: layers.output: true is not a rule value"),
    ("layers:\n  output: fast\n", "layers.output: expected a multiplier"),
    ("layers:\n  output: {lr_scheduler: {type: sawtooth}}\n",
     "layers.output.lr_scheduler.type: unknown scheduler 'sawtooth'"),
    ("layers:\n  output: {lr_scheduler: 3}\n", "expected a mapping with 'type'"),
    ("lr_scheduler: {type: factor, step: 0}\n", "cannot build a factor scheduler"),
    ("gradual_unfreezing: {evry: 1}\n", "gradual_unfreezing.evry: unknown key"),
    ("- 1\n- 2\n", "expected a mapping of settings at the top level"),
    ("a: [\n", "line 2, column 1: invalid YAML"),
])
def test_errors_name_line_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(path) and message in str(err.value)


def test_json_syntax_errors_give_line_and_column(tmp_path):
    path = write(tmp_path, '{"layers": {\n "output": 2,\n}}', "bad.json")
    with pytest.raises(ConfigError, match=r"line 3, column 1: invalid JSON"):
        load_config(path)


def test_a_missing_file_or_a_wrong_path_type(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config"):
        load_config(str(tmp_path / "missing.yaml"))
    with pytest.raises(TypeError, match="file name"):
        load_config(3)


def test_rule_errors_point_at_the_rule_line(tmp_path):
    config = load_config(write(tmp_path, "layers:\n  '*': 1\n  -1: 2\n  outptu: 3\n"))
    located = config.locate(ValueError("rule 'outptu': no block path or parameter is named"))
    assert located.startswith(f"{config.path}, line 4: layers: rule 'outptu'")
    assert config.locate(ValueError("rule 'block -1': out of range")).startswith(
        f"{config.path}, line 3")
