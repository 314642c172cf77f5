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


def run_on_images(command, images, root, *flags):
    """The console script on the image folder with the local resnet18_v1 weights, 32x32
    images, batches of 4; it must succeed."""
    cmd = [BIN, command, str(images), "--model", "resnet18_v1", "--root", str(root),
           "--image-size", "32", "--batch-size", "4", *flags]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def test_train_one_epoch_from_local_weights_and_save(images, weights, tmp_path):
    root, source = weights
    saved = tmp_path / "model.params"
    done = run_on_images("train", images, root, "--unfreeze", "2", "--layer-lr", "output=10",
                         "--lr", "0.01", "--epochs", "1", "--save", str(saved))
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
    lines = capsys.readouterr().out.splitlines()[2:]
    by_block = {line.split()[2]: line.split() for line in lines}
    stem = next(line for line in lines if line.split()[2] == "0:features.0")
    assert " blocks 0:2 " in stem and stem.rstrip().endswith("yes")  # as slice(0, 2) shows
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


# ----------------------------------------------------------------- errors: one line, status 2

def error_line(capsys):
    """The one line a failed command wrote to stderr (no traceback, no usage block)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("train")]
    assert len(lines) == 1, err
    assert lines[0].startswith("gluon-finetune") and "Traceback" not in err
    return lines[0]


def one_class_folder(root):
    source = make_image_folder(root.parent / f"{root.name}_source", per_class=(3, 0))
    (root / "red").mkdir(parents=True)
    for image in (source / "train" / "red").iterdir():
        (root / "red" / image.name).write_bytes(image.read_bytes())
    return root


def test_a_one_class_folder_is_refused_naming_the_folder_and_the_count(tmp_path, capsys):
    folder = one_class_folder(tmp_path / "one")
    assert main(["train", str(folder), "--model", "resnet18_v1", "--no-pretrained",
                 "--image-size", "32", "--no-progress"]) == 2
    line = error_line(capsys)
    assert f"{str(folder)!r} has 1 class folder ['red']" in line and "at least 2" in line


def test_a_corrupt_image_is_named_and_refused_before_training(tmp_path, capsys):
    images = make_image_folder(tmp_path / "images")
    bad = images / "train" / "blue" / "broken.jpg"
    bad.write_bytes(np.random.RandomState(0).bytes(400))
    assert main(["train", str(images), "--model", "resnet18_v1", "--no-pretrained",
                 "--image-size", "32", "--epochs", "1"]) == 2
    out = capsys.readouterr()
    assert "final:" not in out.out and "train:" not in out.err  # no training started
    assert f"{bad} (" in out.err and "cannot be decoded" in out.err
    assert len(out.err.strip().splitlines()) == 1


@pytest.mark.parametrize("size", ["32", "150"])
def test_an_image_size_the_model_cannot_take_says_what_it_needs(images, capsys, size):
    assert main(["train", str(images), "--model", "squeezenet1.1", "--no-pretrained",
                 "--image-size", size, "--no-progress"]) == 2
    line = error_line(capsys)
    assert f"squeezenet1.1 cannot take {size}x{size} images (" in line
    assert line.endswith("the smallest size above " + size + " that works is 209")


def test_an_image_size_from_the_config_is_named_at_its_line(images, tmp_path, capsys):
    config = tmp_path / "small.yaml"
    config.write_text("model: squeezenet1.1\npretrained: false\nimage_size: 32\n")
    assert main(["train", str(images), "--config", str(config), "--no-progress"]) == 2
    assert error_line(capsys).startswith(
        f"gluon-finetune: error: {config}, line 3: image_size: squeezenet1.1 cannot take 32x32")


@pytest.mark.parametrize("flags", [["--layer-lr", "-1=10"], ["--layer-lr=-1=10"],
                                   ["--layer-lr", "-1=10", "--layer-lr", "-3:-1=0"]])
def test_negative_block_indices_in_both_spellings(capsys, flags):
    assert main(["explain", "--model", "resnet18_v1", "--classes", "2", "--lr", "0.1"]
                + flags) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    head = [row for row in rows if " 10:output " in row]
    assert head and all(" block -1 " in row and " 10 " in row for row in head)
    if len(flags) == 4:
        frozen = [row for row in rows if " 8:features.7.0 " in row]
        assert frozen and all(" blocks -3:-1 " in row and row.endswith("yes") for row in frozen)


@pytest.mark.parametrize("argv, message", [
    (["--layer-lr", "-1"], "expected KEY=MULTIPLIER (e.g. output=10 or -1=10), got '-1'"),
    (["--layer-lr", "output=nan"], "must be a finite number or 'frozen', got 'nan'"),
    (["--layer-lr", "re:(=2"], "invalid regular expression in 're:(=2'"),
    (["--layer-lr", " =2"], "expected KEY=MULTIPLIER"),
    (["--lr", "inf"], "argument --lr: expected a finite number > 0, got 'inf'"),
    (["--wd", "nan"], "argument --wd: expected a finite number, got 'nan'"),
    (["--unfreeze", "-2"], "argument --unfreeze: expected an integer >= 0, got '-2'"),
    (["--optimizer", "sgdd"], "unknown optimizer 'sgdd'. Did you mean 'sgd'?"),
])
def test_bad_flags_are_one_line_and_status_2(capsys, argv, message):
    try:
        code = main(["explain", "--model", "resnet18_v1"] + argv)
    except SystemExit as exit_info:
        code = exit_info.code
    assert code == 2
    assert message in error_line(capsys)


def test_errors_unrelated_to_the_config_do_not_name_it(tmp_path, capsys):
    config = tmp_path / "rules.yaml"
    config.write_text("model: resnet18_v1\nclasses: 2\nlayers:\n  output: 2\n")
    assert main(["train", str(tmp_path / "nowhere"), "--config", str(config)]) == 2
    line = error_line(capsys)
    assert "nowhere' does not exist" in line and str(config) not in line
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(["plot", "--config", str(config), "--out", str(blocker / "lr.png")]) == 2
    line = error_line(capsys)
    assert "--out" in line and "is a file, not a folder" in line and str(config) not in line
    assert main(["plot", "--config", str(config), "--out", str(tmp_path / "lr.xyz")]) == 2
    assert "cannot write .xyz files" in error_line(capsys)
    assert main(["explain", "--config", str(config), "--layer-lr", "outptu=3"]) == 2
    line = error_line(capsys)  # the flag's rule, not the config's
    assert "rule 'outptu'" in line and str(config) not in line


@pytest.mark.parametrize("text, flags, where, message", [
    ("model: resnet18_v11\n", [], "line 1: model: ", "unknown model 'resnet18_v11'"),
    ("model: resnet18_v1\nunfreeze: 20\n", [], "line 2: unfreeze: ", "unfreeze=20 is out of"),
    ("model: resnet18_v1\nlayers:\n  '*': 1\n  outptu: 3\n", [], "line 4: layers: ",
     "rule 'outptu'"),
    ("model: resnet18_v1\nunfreeze: 2\n", ["--model", "resnet18_v11"], None, "unknown model"),
])
def test_errors_about_the_config_name_its_line(tmp_path, capsys, text, flags, where, message):
    config = tmp_path / "rules.yaml"
    config.write_text(text)
    assert main(["explain", "--config", str(config)] + flags) == 2
    line = error_line(capsys)
    assert message in line
    if where is None:  # the value came from a flag
        assert str(config) not in line
    else:
        assert line.startswith(f"gluon-finetune: error: {config}, {where}")


def test_a_schedule_beyond_the_blocks_is_refused_at_its_line_before_training(images, tmp_path,
                                                                             capsys):
    config = tmp_path / "rules.json"
    config.write_text('{"model": "resnet18_v1", "pretrained": false, "image_size": 32,\n'
                      ' "gradual_unfreezing": {"schedule": {"0": 1, "1": 20}}}')
    assert main(["train", str(images), "--config", str(config)]) == 2
    out = capsys.readouterr()
    assert "train:" not in out.err
    assert out.err.startswith(f"gluon-finetune: error: {config}, line 2: "
                              f"gradual_unfreezing.schedule: schedule[1] = 20 trainable blocks, "
                              f"but the network has only 11 blocks")


def test_train_with_a_json_unfreezing_schedule(images, tmp_path, capsys):
    config = tmp_path / "rules.json"
    config.write_text('{"model": "resnet18_v1", "pretrained": false, "image_size": 32,\n'
                      ' "epochs": 2, "batch_size": 6, "learning_rate": 1e-2,\n'
                      ' "gradual_unfreezing": {"schedule": {"0": 1, "1": 2}}}')
    assert main(["train", str(images), "--config", str(config), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip().startswith("final: epochs 2  train_loss ")


def test_a_binary_config_is_one_line_and_status_2(tmp_path, capsys):
    config = tmp_path / "rules.yaml"
    config.write_bytes(np.random.RandomState(0).bytes(64) + b"\xff\xfe")
    assert main(["explain", "--config", str(config)]) == 2
    line = error_line(capsys)
    assert line.startswith(f"gluon-finetune: error: {config}: not a text file")


def test_save_into_a_path_that_cannot_be_written_is_refused_before_training(images, tmp_path,
                                                                           capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(["train", str(images), "--model", "resnet18_v1", "--no-pretrained",
                 "--image-size", "32", "--save", str(blocker / "model.params")]) == 2
    out = capsys.readouterr()
    assert "train:" not in out.err and "--save" in out.err and "not a folder" in out.err
    assert main(["train", str(images), "--model", "resnet18_v1", "--no-pretrained",
                 "--image-size", "32", "--save", str(tmp_path)]) == 2
    assert "is a folder; give a file name" in error_line(capsys)


def test_an_internal_error_keeps_its_traceback(monkeypatch, images):
    import gluon_finetune.models.zoo
    import gluon_finetune.runs

    def broken(*args, **kwargs):
        raise KeyError("a bug, not an input")
    monkeypatch.setattr(gluon_finetune.models.zoo, "get_model", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["explain", "--model", "resnet18_v1"])
    monkeypatch.undo()

    def bad_fit(*args, **kwargs):
        return None + 1
    monkeypatch.setattr(gluon_finetune.runs, "train_run", bad_fit)  # train's loop
    with pytest.raises(TypeError):
        main(["train", str(images), "--model", "resnet18_v1", "--no-pretrained",
              "--image-size", "32"])


def test_the_console_script_shows_an_internal_errors_traceback():
    script = ("import sys, gluon_finetune.models.zoo as zoo\n"
              "def broken(*a, **k):\n    raise ValueError('internal: not from the user')\n"
              "zoo.get_model = broken\n"
              "from gluon_finetune.cli import main\n"
              "sys.exit(main(['explain', '--model', 'resnet18_v1']))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ValueError: internal: not from the user" in done.stderr


def test_launch_errors_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["launch", "-n", "0", "--", "python"])
    assert exit_info.value.code == 2
    assert "num_workers must be an int >= 1, got 0" in error_line(capsys)


@pytest.mark.parametrize("how", ["flag", "config"])
def test_no_weight_decay_from_the_flag_or_the_config(tmp_path, capsys, how):
    config = tmp_path / "c.yaml"
    config.write_text("model: resnet18_v1\nclasses: 2\nlayers:\n  '*': 0.1\n  features.1: 0.5\n"
                      + ("no_weight_decay: true\n" if how == "config" else ""))
    args = ["explain", "--config", str(config)] + (["--no-weight-decay"] if how == "flag" else [])
    assert main(args) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    # columns: parameter shape block rule lr_mult wd_rule wd_mult ...
    bn_gamma = next(v for k, v in rows.items() if k.endswith("batchnorm0_gamma"))
    assert bn_gamma[3:7] == ["features.1", "0.5", "features.1", "0"]
    bias = next(v for k, v in rows.items() if k.endswith("dense1_bias"))
    assert bias[3:7] == ["*", "0.1", bias[0], "0"]
    weight = next(v for k, v in rows.items() if k.endswith("dense1_weight"))
    assert weight[3:7] == ["*", "0.1", "-", "1"]


# ----------------------------------------------------------------- lr-find and the fine_tune recipe

def test_lr_find_prints_the_suggestion_and_writes_the_plot(images, weights, tmp_path):
    root, source = weights
    out = tmp_path / "plots" / "lr_find.png"
    done = run_on_images("lr-find", images, root, "--num-iter", "12", "--start-lr", "1e-4",
                         "--end-lr", "1", "--out", str(out))
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("lr-find: ") and " rates from 0.0001 to " in lines[0]
    assert lines[1].startswith("suggested learning rate: ")
    assert lines[2] == f"wrote {out}" and out.read_bytes()[:4] == b"\x89PNG"
    assert "lr_find:" in done.stderr  # the tqdm bar


def test_lr_find_with_the_recipe_measures_the_head_and_without_weights(images, tmp_path, capsys):
    config = tmp_path / "ft.yaml"
    config.write_text("model: resnet18_v1\npretrained: false\nimage_size: 32\nbatch_size: 4\n"
                      "recipe: fine_tune\nfreeze_epochs: 2\n")
    assert main(["lr-find", str(images), "--config", str(config), "--num-iter", "5",
                 "--out", str(tmp_path / "lr.png"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("lr-find (the head alone: recipe fine_tune's first phase): 5 rates")


def test_train_with_the_fine_tune_recipe_trains_the_head_then_everything(images, weights,
                                                                        tmp_path):
    root, source = weights
    saved = tmp_path / "model.params"
    done = run_on_images("train", images, root, "--recipe", "fine_tune", "--freeze-epochs",
                         "1", "--epochs", "1", "--lr", "0.01", "--save", str(saved))
    assert done.stdout.strip().splitlines()[-1].startswith("final: epochs 2  train_loss ")
    assert "fine_tune (head):" in done.stderr and "fine_tune (all):" in done.stderr
    trained = mx.gluon.model_zoo.vision.resnet18_v1(classes=2)
    trained.load_parameters(str(saved))
    assert not np.array_equal(trained.features[0].weight.data().asnumpy(),  # thawed: trained
                              source.features[0].weight.data().asnumpy())


def test_the_recipe_from_a_config(images, tmp_path, capsys):
    config = tmp_path / "ft.yaml"
    config.write_text("model: resnet18_v1\npretrained: false\nimage_size: 32\nbatch_size: 6\n"
                      "recipe: fine_tune\nfreeze_epochs: 2\nepochs: 1\n"
                      "layers:\n  '*_bias': {wd_mult: 0.0}\n")
    assert main(["train", str(images), "--config", str(config), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip().startswith("final: epochs 3  train_loss ")


@pytest.mark.parametrize("text, flags, message", [
    ("", ["--freeze-epochs", "1"], "freeze_epochs is for recipe fine_tune"),
    ("freeze_epochs: 1\n", [], "line 2: freeze_epochs: freeze_epochs is for recipe fine_tune"),
    ("recipe: fine_tune\nunfreeze: 3\n", [], "line 3: unfreeze: unfreeze does not combine "
     "with recipe fine_tune"),
    ("", ["--recipe", "fine_tune", "--gradual", "1"], "gradual does not combine with recipe"),
    ("recipe: fine_tune\nlr_scheduler: {type: cosine, max_update: 10}\n", [],
     "line 3: lr_scheduler: lr_scheduler does not combine"),
    ("recipe: fine\n", [], "line 2: recipe: expected one of fine_tune, got 'fine'"),
    ("recipe: fine_tune\nfreeze_epochs: -1\n", [], "line 3: freeze_epochs: must be >= 0"),
])
def test_recipe_settings_that_cannot_work_are_refused(images, tmp_path, capsys, text, flags,
                                                      message):
    config = tmp_path / "ft.yaml"
    config.write_text("model: resnet18_v1\n" + text)
    assert main(["train", str(images), "--config", str(config), "--no-pretrained",
                 "--image-size", "32"] + flags) == 2
    assert message in error_line(capsys)


def test_lr_find_errors_are_one_line_and_status_2(images, tmp_path, capsys):
    base = ["lr-find", str(images), "--model", "resnet18_v1", "--no-pretrained",
            "--image-size", "32"]
    assert main(base + ["--start-lr", "1", "--end-lr", "0.1"]) == 2
    assert "--end-lr (0.1) must be greater than --start-lr (1)" in error_line(capsys)
    assert main(base + ["--out", str(tmp_path)]) == 2
    assert "is a folder; give a file name" in error_line(capsys)
    with pytest.raises(SystemExit) as exit_info:
        main(base + ["--num-iter", "1"])
    assert exit_info.value.code == 2 and "an integer >= 2" in capsys.readouterr().err


def test_the_lr_find_report_copes_with_divergence_and_no_suggestion():
    from gluon_finetune import LRFinderResult
    from gluon_finetune.cli.commands import _summary
    nan = float("nan")
    text = _summary(LRFinderResult((1e-3, 1e-2, 1e-1), (1.0, 0.5, nan), (1.0, 0.5, nan),
                                   None, True), "")
    assert text.splitlines() == [
        "lr-find: 3 rates from 0.001 to 0.1 (stopped early: the loss diverged); lowest "
        "smoothed loss 0.5000 at 0.01",
        "suggested learning rate: none (the smoothed loss never fell: try a larger --end-lr "
        "or more --num-iter)"]
    assert "no finite loss" in _summary(LRFinderResult((1e-3,), (nan,), (nan,), None, True), "")


# ----------------------------------------------------------------- settings: one schema

def built_trainers(monkeypatch):
    """The LayerwiseTrainers the command builds, in order."""
    import gluon_finetune.trainer.layerwise as layerwise
    built = []

    class Recording(layerwise.LayerwiseTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)
    monkeypatch.setattr(layerwise, "LayerwiseTrainer", Recording)
    return built


@pytest.mark.parametrize("flags, momentum", [
    (["--optimizer", "sgd"], 0.9), (["--optimizer", "SGD"], 0.9), (["--optimizer", "Nag"], 0.9),
    (["--optimizer", "SGD", "--momentum", "0"], 0.0), ([], 0.9)])
def test_sgd_and_nag_get_momentum_0_9_whatever_the_case(monkeypatch, capsys, flags, momentum):
    built = built_trainers(monkeypatch)
    assert main(["explain", "--model", "resnet18_v1", "--classes", "2"] + flags) == 0
    assert built[0].optimizer.momentum == momentum


def test_a_configs_optimizer_in_capitals_gets_the_momentum_default(monkeypatch, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("model: resnet18_v1\nclasses: 2\noptimizer: SGD\n")
    built = built_trainers(monkeypatch)
    assert main(["explain", "--config", str(config)]) == 0
    assert built[0].optimizer.momentum == 0.9


# ----------------------------------------------------------------- exactly the error family

@pytest.mark.parametrize("error", ["InvalidValueError", "InvalidTypeError", "MissingFileError",
                                   "RuleError", "NoMatchError", "StatesError", "ConfigError"])
def test_every_error_of_the_family_is_one_line_and_status_2(monkeypatch, capsys, error):
    import gluon_finetune.errors
    import gluon_finetune.models.zoo

    def refuse(*args, **kwargs):
        raise getattr(gluon_finetune.errors, error)("the input\ncannot be used")
    monkeypatch.setattr(gluon_finetune.models.zoo, "get_model", refuse)
    assert main(["explain", "--model", "resnet18_v1"]) == 2
    assert error_line(capsys) == "gluon-finetune: error: the input cannot be used"


@pytest.mark.parametrize("error", [ValueError, TypeError, FileNotFoundError, KeyError])
def test_a_built_in_error_from_the_rule_engine_keeps_its_traceback(monkeypatch, error):
    import gluon_finetune.rules.resolution

    def broken(*args, **kwargs):
        raise error("a bug, not an input")
    monkeypatch.setattr(gluon_finetune.rules.resolution, "resolve", broken)
    with pytest.raises(error, match="a bug"):
        main(["explain", "--model", "resnet18_v1", "--layer-lr", "output=2"])


# ----------------------------------------------------------------- issue 21: the edges of the CLI

def test_unfreeze_with_gradual_unfreezing_is_refused_before_training(images, tmp_path, capsys):
    base = ["train", str(images), "--model", "resnet18_v1", "--no-pretrained", "--image-size",
            "32", "--epochs", "2", "--no-progress"]
    assert main(base + ["--unfreeze", "2", "--gradual", "1"]) == 2
    out = capsys.readouterr()
    assert "final:" not in out.out
    assert "unfreeze does not combine with gradual: gradual unfreezing decides the trainable " \
        "blocks each epoch" in out.err and "{schedule: {0: 2, ...}}" in out.err
    config = tmp_path / "g.yaml"
    config.write_text("unfreeze: 2\ngradual_unfreezing: {every: 1}\n")
    assert main(base + ["--config", str(config)]) == 2
    assert error_line(capsys).startswith(f"gluon-finetune: error: {config}, line 1: unfreeze: "
                                         f"unfreeze does not combine with gradual_unfreezing")


@pytest.mark.parametrize("flags", [["--layer-lr", "output=2", "--layer-lr", "output=3"],
                                   ["--layer-lr", "-1=2", "--layer-lr=-1=frozen"],
                                   ["--layer-lr", "0:2=0", "--layer-lr", "0 : 2=5"]])
def test_a_layer_lr_key_given_twice_is_refused(capsys, flags):
    with pytest.raises(SystemExit) as exit_info:
        main(["explain", "--model", "resnet18_v1", "--classes", "2"] + flags)
    assert exit_info.value.code == 2
    assert "is given twice" in error_line(capsys)


def test_a_flag_replaces_the_configs_rule_for_the_same_key_in_another_spelling(tmp_path,
                                                                                capsys):
    """Issue 21 item 10, variant: keys are compared as the rule engine compares them, so
    --layer-lr '0 : 2=0.5' replaces the config's 0:2 rule (both were kept, and the trainer
    refused a rule "given twice")."""
    config = tmp_path / "rules.yaml"
    config.write_text("model: resnet18_v1\nclasses: 2\nlayers:\n  0:2: 0\n")
    assert main(["explain", "--config", str(config), "--layer-lr", "0 : 2=0.5"]) == 0
    stem = next(line for line in capsys.readouterr().out.splitlines()
                if " 0:features.0 " in line)
    assert " blocks 0:2 " in stem and " 0.5 " in stem and not stem.rstrip().endswith("yes")


def test_the_same_digits_as_an_index_and_a_path_are_two_keys(capsys):
    assert main(["explain", "--model", "resnet18_v1", "--classes", "2", "--layer-lr", "1=2",
                 "--layer-lr", "0:1=0"]) == 0
    capsys.readouterr()


def test_lr_find_refuses_an_image_format_before_the_sweep(images, tmp_path, capsys):
    assert main(["lr-find", str(images), "--model", "resnet18_v1", "--no-pretrained",
                 "--image-size", "32", "--num-iter", "3", "--out",
                 str(tmp_path / "x.xyz")]) == 2
    out = capsys.readouterr()
    assert "lr_find:" not in out.err and "lr-find:" not in out.out  # no sweep
    assert "--out" in out.err and "cannot write .xyz files" in out.err
    assert len(out.err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["plot", "lr-find"])
def test_an_out_without_extension_writes_and_names_a_png(images, tmp_path, capsys, command):
    out = tmp_path / "curves"
    args = ["plot", "--model", "resnet18_v1", "--classes", "2", "--steps", "5"] \
        if command == "plot" else ["lr-find", str(images), "--model", "resnet18_v1",
                                   "--no-pretrained", "--image-size", "32", "--num-iter", "3",
                                   "--no-progress"]
    assert main(args + ["--out", str(out)]) == 0
    written = tmp_path / "curves.png"
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"wrote {written}"
    assert written.read_bytes()[:4] == b"\x89PNG" and not out.exists()


def test_train_on_a_file_says_it_is_not_a_folder(tmp_path, capsys):
    data = tmp_path / "images.zip"
    data.write_bytes(b"PK\x03\x04")
    assert main(["train", str(data), "--model", "resnet18_v1", "--no-pretrained"]) == 2
    line = error_line(capsys)
    assert f"{str(data)!r} is a file, not a folder" in line and "does not exist" not in line


def test_explain_a_bert_model_needs_a_vocabulary_and_says_how_to_give_it(capsys):
    pytest.importorskip("gluonnlp")
    assert main(["explain", "--model", "bert_12_768_12", "--classes", "2"]) == 2
    line = error_line(capsys)
    assert "bert_12_768_12 needs its vocabulary: give --vocab FILE" in line
    assert "--vocab-size N" in line
    assert main(["explain", "--model", "bert_12_768_12"]) == 2
    assert "give --classes N" in error_line(capsys)
    assert main(["train", ".", "--model", "bert_12_768_12", "--classes", "2"]) == 2
    assert "train reads image folders" in error_line(capsys)


@pytest.mark.parametrize("how", ["size", "file"])
def test_explain_a_bert_model_with_a_vocabulary(tmp_path, capsys, how):
    nlp = pytest.importorskip("gluonnlp")
    vocab = nlp.vocab.BERTVocab(nlp.data.count_tokens(["fine", "tuning", "rates"]))
    path = tmp_path / "vocab.json"
    path.write_text(vocab.to_json())
    flags = ["--vocab-size", "100"] if how == "size" else ["--vocab", str(path)]
    assert main(["explain", "--model", "bert_12_768_12", "--classes", "2",
                 "--layer-lr", "-1=10"] + flags) == 0
    rows = capsys.readouterr().out.splitlines()
    embedding = next(row for row in rows if "word_embed_embedding0_weight" in row)
    assert f" {100 if how == 'size' else len(vocab)}x768 " in embedding
    head = [row for row in rows if " 14:classifier.1 " in row]
    assert head and all(" block -1 " in row and " 0.1" in row for row in head)


@pytest.mark.parametrize("flags", [["--vocab-size", "100"], ["--vocab", "vocab.json"]])
def test_a_vocabulary_for_a_model_without_one_is_refused(capsys, flags):
    """Issue 21 item 20, variant: --vocab-size or --vocab given with a vision model did
    nothing, without a word."""
    assert main(["explain", "--model", "resnet18_v1", "--classes", "2"] + flags) == 2
    line = error_line(capsys)
    assert f"{flags[0]} is for GluonNLP models" in line and "resnet18_v1 has no vocabulary" \
        in line and "leave it out" in line


def test_a_vocabulary_file_that_is_not_one_is_one_line(tmp_path, capsys):
    pytest.importorskip("gluonnlp")
    path = tmp_path / "vocab.json"
    path.write_text('{"not": "a vocabulary"}')
    assert main(["explain", "--model", "bert_12_768_12", "--classes", "2", "--vocab",
                 str(path)]) == 2
    assert "is not a GluonNLP vocabulary" in error_line(capsys)
    assert main(["explain", "--model", "bert_12_768_12", "--classes", "2", "--vocab",
                 str(tmp_path / "missing.json")]) == 2
    assert "cannot read it" in error_line(capsys)
