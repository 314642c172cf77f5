"""The gluon-finetune command, end to end: train, explain, plot, and its errors."""
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from image_folder import make_image_folder

from gluon_finetune.cli import main

BIN = os.path.join(os.path.dirname(sys.executable), "gluon-finetune")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("cli") / "images")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A local model store holding 'pretrained' resnet18_v1 weights."""
    root = tmp_path_factory.mktemp("weights")
    net = mx.gluon.model_zoo.vision.resnet18_v1()
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 32, 32)))
    net.save_parameters(str(root / "resnet18_v1.params"))
    return root, net


def test_train_one_epoch_from_local_weights_and_save(images, weights, tmp_path):
    root, source = weights
    saved = tmp_path / "model.params"
    cmd = [BIN, "train", str(images), "--model", "resnet18_v1", "--root", str(root),
           "--unfreeze", "2", "--layer-lr", "output=10", "--lr", "0.01", "--epochs", "1",
           "--batch-size", "4", "--image-size", "32", "--save", str(saved)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    final = done.stdout.strip().splitlines()[-1]
    assert final.startswith("final: epochs 1  train_loss ") and " val_acc " in final
    assert "train:" in done.stderr  # the tqdm bar
    trained = mx.gluon.model_zoo.vision.resnet18_v1(classes=2)
    trained.load_parameters(str(saved))
    assert np.array_equal(trained.features[0].weight.data().asnumpy(),  # frozen stem kept
                          source.features[0].weight.data().asnumpy())
    assert not np.array_equal(trained.features[7][1].body[0].weight.data().asnumpy(),
                              source.features[7][1].body[0].weight.data().asnumpy())
    assert (tmp_path / "model.params.states").stat().st_size > 0


def test_train_with_a_config_and_gradual_unfreezing(images, tmp_path, capsys):
    config = tmp_path / "rules.yaml"
    config.write_text("model: resnet18_v1\nepochs: 2\nbatch_size: 6\nimage_size: 32\n"
                      "pretrained: false\nlayers:\n  '*': 0.5\n  output: 2\n"
                      "gradual_unfreezing: {every: 1}\n")
    assert main(["train", str(images), "--config", str(config), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip().startswith("final: epochs 2  train_loss ")


def test_train_errors_exit_2_with_a_message(images, tmp_path, capsys):
    assert main(["train", str(tmp_path / "nowhere"), "--model", "resnet18_v1"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", str(images), "--model", "resnet18_v1", "--classes", "3",
                 "--no-pretrained", "--image-size", "32"]) == 2
    assert "2 class folders" in capsys.readouterr().err
    assert main(["train", str(images), "--model", "resnet18_v1", "--root", str(tmp_path),
                 "--image-size", "32"]) == 2
    assert "resnet18_v1.params" in capsys.readouterr().err  # where to put the weights
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(images), "--model", "resnet18_v1", "--epochs", "0"])
    assert exit_info.value.code == 2 and "positive integer" in capsys.readouterr().err


def test_explain_prints_the_rule_table(capsys):
    assert main(["explain", "--model", "resnet18_v1", "--classes", "2", "--lr", "0.1",
                 "--layer-lr", "output=10", "--layer-lr", "0=0"]) == 0
    out = capsys.readouterr().out
    head = [line for line in out.splitlines() if "10:output" in line]
    assert head and all(" output " in line and " 1 " in line for line in head)  # lr 0.1*10
    stem = [line for line in out.splitlines() if " 0:features.0 " in line]
    assert len(stem) == 1 and "block 0" in stem[0] and stem[0].rstrip().endswith("yes")


def test_explain_with_a_config_and_a_flag_that_overrides_it(tmp_path, capsys):
    config = tmp_path / "rules.yaml"
    config.write_text("model: resnet18_v1\nclasses: 2\nlearning_rate: 0.1\nlayers:\n"
                      "  '*': 0.1\n  0:2: 0\n  output:\n    learning_rate: 0.05\n"
                      "    lr_scheduler: {type: factor, step: 100, factor: 0.5}\n")
    assert main(["explain", "--config", str(config), "--layer-lr", "*=0.2"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    by_block = {row[2]: row for row in rows}
    assert by_block["0:features.0"][3] == "0:2" and by_block["0:features.0"][-1] == "yes"
    assert by_block["2:features.4.0"][4] == "0.2"                      # the flag won
    # columns: parameter shape block rule lr_mult wd_rule wd_mult lr schedule [frozen]
    assert by_block["10:output"][7] == "0.05" and "FactorScheduler" in by_block["10:output"][8]


def test_plot_writes_a_png(tmp_path, capsys):
    config = tmp_path / "rules.json"
    config.write_text('{"model": "resnet18_v1", "classes": 2,\n "layers": {"-1": {'
                      '"lr_scheduler": {"type": "one_cycle", "max_update": 50}}, "0:3": 0}}')
    out = tmp_path / "plots" / "lr.png"
    assert main(["plot", "--config", str(config), "--steps", "60", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(out) in capsys.readouterr().out


@pytest.mark.parametrize("text, message", [
    ("model: resnet18_v1\nlayers:\n  '*': 0.1\n  outptu: 3\n",
     "line 4: layers: rule 'outptu'"),
    ("model: resnet18_v1\nlerning_rate: 0.1\n", "line 2: lerning_rate: unknown key. Did you "
     "mean 'learning_rate'?"),
    ("model: resnet18_v1\nlayers:\n  output:\n    lr_scheduler: {type: factor, stpe: 1}\n",
     "line 4: layers.output.lr_scheduler.stpe: factor scheduler has no argument 'stpe'"),
    ("model: resnet18_v1\nlayers:\n  output: 1\n  output: 2\n",
     "line 4: layers.output: given twice (first at line 3)"),
    ("model: resnet18_v1\nlayers: [1, 2\n", "invalid YAML"),
    ("layers: {output: 2}\n", "no model"),
])
def test_bad_configs_name_the_line_and_key(tmp_path, capsys, text, message):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    assert main(["explain", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gluon-finetune: error: ") and message in err


def test_bad_rules_and_models_exit_non_zero_with_a_message(capsys):
    assert main(["explain", "--model", "resnet18_v1", "--layer-lr", "outptu=2"]) == 2
    assert "Did you mean 'output'" in capsys.readouterr().err
    assert main(["explain", "--model", "resnet18_v11"]) == 2
    assert "unknown model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["explain", "--model", "alexnet", "--layer-lr", "output=fast"])
    assert exit_info.value.code == 2
    assert "'fast'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "explain", "plot"])
def test_console_script_help_for_every_command(command):
    done = subprocess.run([BIN, command, "--help"], capture_output=True, text=True,
                          check=True, timeout=120)
    assert "--model" in done.stdout and "--layer-lr" in done.stdout and "--config" in done.stdout


def test_console_script_without_a_command_exits_non_zero():
    done = subprocess.run([BIN], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "COMMAND" in done.stderr


def test_unfreeze_limits_the_rules_too(capsys):
    assert main(["explain", "--model", "resnet18_v1", "--classes", "2", "--unfreeze", "2",
                 "--layer-lr", "*=0.5"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    training = {row[2] for row in rows if row[-1] != "yes"}
    assert training == {"9:features.7.1", "10:output"}  # "*" does not thaw blocks 0-8


def test_train_on_a_folder_without_a_validation_split(tmp_path, capsys):
    images = make_image_folder(tmp_path / "all", per_class=(4, 0))
    flat = images / "train"  # DATA/<class>/<image> directly
    assert main(["train", str(flat), "--model", "resnet18_v1", "--no-pretrained",
                 "--unfreeze", "1", "--epochs", "1", "--image-size", "32",
                 "--no-progress"]) == 0
    final = capsys.readouterr().out.strip()
    assert final.startswith("final: epochs 1") and "val_acc" not in final
