"""YAML/JSON configs: what they load to, and errors that name the file, line and key."""
import mxnet as mx
import pytest

from gluon_finetune import OneCycle
from gluon_finetune.cli.config import ConfigError, load_config
from gluon_finetune.rules.resolution import resolve


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


def rule_error(rules, names=("output_weight",), block_list=()):
    """The error rules.resolve raises for ``rules`` (it carries the rules at fault)."""
    with pytest.raises((TypeError, ValueError)) as err:
        resolve(rules, list(names), paths={}, block_list=list(block_list))
    return err.value


def test_rule_errors_point_at_the_rule_line(tmp_path):
    config = load_config(write(tmp_path, "layers:\n  '*': 1\n  -1: 2\n  outptu: 3\n"))
    located = config.locate(rule_error([("outptu", 3)]))
    assert located.startswith(f"{config.path}, line 4: layers: rule 'outptu'")
    assert config.locate(rule_error([(-1, 2)])).startswith(f"{config.path}, line 3")
    assert "out of range" in config.locate(rule_error([(-1, 2)]))


# ----------------------------------------------------------------- YAML numbers and keys

def test_numbers_with_an_exponent_are_numbers_as_in_yaml_1_2_and_json(tmp_path):
    config = load_config(write(tmp_path, (
        "learning_rate: 1e-3\noptimizer_params: {wd: 5E-4, momentum: +9e-1, rescale_grad: 1.e0}"
        "\nlayers:\n  '*': 1e-1\n  output: {learning_rate: 2.5e-2, wd_mult: 0e0}\n"
        "  -1: .5e1\nlr_scheduler: {type: factor, step: 10, factor: 5e-1}\n")))
    assert config.get("learning_rate") == 1e-3 and type(config.get("learning_rate")) is float
    assert config.get("optimizer_params") == {"wd": 5e-4, "momentum": 0.9, "rescale_grad": 1.0}
    rules = dict(config.layers)
    assert rules["*"] == 0.1 and rules["output"] == {"learning_rate": 0.025, "wd_mult": 0.0}
    assert rules[-1] == 5.0 and config.get("lr_scheduler").factor == 0.5
    quoted = write(tmp_path, "learning_rate: '1e-3'\n", "quoted.yaml")
    with pytest.raises(ConfigError, match="learning_rate: expected int or float, got '1e-3'"):
        load_config(quoted)  # quoted, it is the string it looks like


def test_an_index_and_a_path_of_the_same_digits_are_two_keys(tmp_path):
    config = load_config(write(tmp_path, "layers:\n  3: 0.5\n  '3': 2\n  \"4\": 1\n  4: 0\n"))
    assert dict(config.layers) == {3: 0.5, "3": 2, "4": 1, 4: 0}
    assert config.where("layers", 3) == f"{config.path}, line 2"
    assert config.where("layers", "3") == f"{config.path}, line 3"
    for text, line, first in [("layers:\n  3: 1\n  3: 2\n", 3, 2),
                              ("layers:\n  '3': 1\n  \"3\": 2\n", 3, 2),
                              ("layers:\n  3: 1\n  0x3: 2\n", 3, 2)]:
        with pytest.raises(ConfigError, match=rf"line {line}: layers.3: given twice \(first "
                                              rf"at line {first}\)"):
            load_config(write(tmp_path, text, "twice.yaml"))


# ----------------------------------------------------------------- gradual unfreezing

@pytest.mark.parametrize("name, text", [
    ("config.json", '{"gradual_unfreezing": {"schedule": {"0": 1, "2": 3}, '
                    '"restart": "schedule"}}'),
    ("config.yaml", "gradual_unfreezing:\n  schedule: {0: 1, '2': 3}\n  restart: schedule\n"),
])
def test_an_unfreezing_schedule_in_json_or_yaml(tmp_path, name, text):
    from finetune_helpers import three_layers

    from gluon_finetune import GradualUnfreezing, LayerwiseTrainer
    spec = load_config(write(tmp_path, text, name)).get("gradual_unfreezing")
    assert spec == {"schedule": {0: 1, 2: 3}, "restart": "schedule"}
    unfreezer = GradualUnfreezing(LayerwiseTrainer(three_layers(), "sgd"), **spec)
    assert [unfreezer.blocks_at(e) for e in range(4)] == [1, 1, 3, 3]


@pytest.mark.parametrize("name, text, message", [
    ("c.json", '{"gradual_unfreezing":\n {"schedule": {"1": 2}}}',
     "line 2: gradual_unfreezing.schedule: must say how many blocks train at epoch 0"),
    ("c.json", '{"gradual_unfreezing": {"schedule":\n {"0": 1,\n "x": 2}}}',
     "line 3: gradual_unfreezing.schedule.x: expected an int >= 0, got 'x'"),
    ("c.yaml", "gradual_unfreezing:\n  schedule: {0: -1}\n",
     "gradual_unfreezing.schedule.0: expected an int >= 0, got -1"),
    ("c.yaml", "gradual_unfreezing:\n  schedule: {0: 1.5}\n", "got 1.5"),
    ("c.json", '{"gradual_unfreezing": {"schedule": {"0": 1, "1": 2, "01": 3}}}',
     "gradual_unfreezing.schedule.01: epoch 1 is given twice"),
    ("c.yaml", "gradual_unfreezing: {every: 0}\n",
     "line 1: gradual_unfreezing.every: expected an int >= 1, got 0"),
    ("c.yaml", "gradual_unfreezing: {every: true}\n", "expected an int >= 1, got True"),
    ("c.yaml", "gradual_unfreezing: {every: 1, schedule: {0: 1}}\n", "exactly one of every"),
    ("c.yaml", "gradual_unfreezing: {restart: schedule}\n", "exactly one of every"),
    ("c.yaml", "gradual_unfreezing: {every: 1, restart: warmup}\n",
     "gradual_unfreezing.restart: expected schedule or null, got 'warmup'"),
    ("c.yaml", "gradual_unfreezing: {schedule: [1, 2]}\n", "expected a mapping epoch"),
])
def test_unfreezing_errors_come_when_the_file_is_loaded(tmp_path, name, text, message):
    path = write(tmp_path, text, name)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(path) and message in str(err.value)


# ----------------------------------------------------------------- files that are not text

@pytest.mark.parametrize("name", ["config.yaml", "config.json"])
@pytest.mark.parametrize("data, message", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not UTF-8"),
    ("model: r\xe9snet\n".encode("latin-1"), "byte 0xe9 at offset 8 is not UTF-8"),
    (b"model: resnet\x00\x01\n", "not a text file"),
])
def test_a_binary_or_non_utf8_file_is_a_config_error(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    text = str(err.value)
    assert text.startswith(str(path)) and "\n" not in text
    if not (name.endswith(".json") and b"\x00\x01" in data):  # JSON reports it as invalid JSON
        assert message in text


def test_a_utf8_file_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes("\ufeffmodel: resnet18_v1\n".encode("utf-8"))
    assert load_config(str(path)).get("model") == "resnet18_v1"
    path = tmp_path / "bom.json"
    path.write_bytes('\ufeff{"model": "resnet18_v1"}'.encode("utf-8"))
    assert load_config(str(path)).get("model") == "resnet18_v1"


# ----------------------------------------------------------------- more checks at load time

@pytest.mark.parametrize("text, message", [
    ("bn: fixed\n", "line 1: bn: expected one of frozen, stats, train, got 'fixed'"),
    ("granularity: layer\n", "granularity: expected one of unit, stage"),
    ("optimizer: sgdd\n", "line 1: optimizer: unknown optimizer 'sgdd'. Did you mean 'sgd'?"),
    ("optimizer_params: {wd: .nan}\n", "optimizer_params.wd: expected a finite number"),
    ("optimizer_params:\n  output: {lr_mult: 2}\n",
     "line 2: optimizer_params.output: expected a number, true/false or a string; rules go "
     "under 'layers:'"),
    ("layers:\n  1.5: 2\n", "line 2: layers.1.5: a rule key is a block path"),
    ("layers:\n  true: 2\n", "a rule key is a block path"),
    ("layers:\n  output: false\n", "layers.output: false is not a rule value"),
    ("layers:\n  output: {learning_rte: 0.1}\n",
     "layers.output.learning_rte: unknown key. Did you mean 'learning_rate'?"),
    ("layers:\n  output:\n    frozen: 1\n", "line 3: layers.output.frozen: expected true or"),
    ("layers:\n  output: {wd_mult: .inf}\n", "layers.output.wd_mult: expected a finite number"),
    ("layers:\n  output: {learning_rate: '0.1'}\n", "expected a finite number, got '0.1'"),
])
def test_more_errors_come_when_the_file_is_loaded(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(path) and message in str(err.value)


def test_locate_names_a_rule_only_when_the_error_is_about_one(tmp_path):
    config = load_config(write(tmp_path, "layers:\n  '*': 1\n  0:2: 0\n"))
    err = rule_error([("0:2", 0)], block_list=[("a", frozenset(["output_weight"]))] * 0)
    assert config.locate(err).startswith(f"{config.path}, line 3: layers: ")
    assert config.locate(ValueError("image folder 'x' does not exist")) == \
        "image folder 'x' does not exist"
    assert config.locate(err, keys=["*"]) == str(err)
    # a message that only looks like one about a rule is not placed at that rule
    assert config.locate(ValueError("rule '*': x")) == "rule '*': x"


# ----------------------------------------------------------------- YAML 1.2 (ruamel.yaml)

def test_yes_and_no_are_strings_in_yaml_1_2_and_the_error_says_so(tmp_path):
    path = write(tmp_path, "pretrained: yes\n")
    with pytest.raises(ConfigError, match=r"line 1: pretrained: expected bool, got 'yes' "
                                          r"\(YAML 1.2: write true or false\)"):
        load_config(path)
    assert load_config(write(tmp_path, "model: no\n", "no.yaml")).get("model") == "no"


def test_a_json_key_given_twice_is_an_error_with_both_lines(tmp_path):
    path = write(tmp_path, '{"layers": {"output": 1,\n "output": 2}}', "twice.json")
    with pytest.raises(ConfigError, match=r"line 2: layers.output: given twice \(first at "
                                          r"line 1\)"):
        load_config(path)
