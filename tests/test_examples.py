"""Every script in examples/ runs (short settings) and shows what it claims."""
import os
import runpy
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from image_folder import make_image_folder

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name, argv):
    module = runpy.run_path(str(EXAMPLES / name), run_name="example")
    return module["main"](argv)


def test_every_example_has_a_test():
    tested = {"gradual_unfreezing.py", "frozen_layer_both_orders.py", "lenet_transfer.py",
              "gluoncv_finetune.py", "rfc_snippet.py", "bert_finetune.py",
              "lr_find_then_fine_tune.py",
              "dist_train.py"}  # launched by test_dist.py (it needs a parameter server)
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_gradual_unfreezing_example_prints_both_curves(capsys):
    history = run_example("gradual_unfreezing.py", ["--epochs", "2", "--per-class", "5"])
    out = capsys.readouterr().out
    assert "plain fine-tuning" in out and "gradual unfreezing" in out
    assert len(history) == 2
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["0", "1"]
    assert [float(row[1]) for row in rows] == [round(p, 3) for p, _ in history]


def test_lr_find_then_fine_tune_leaves_the_net_alone_and_plots(tmp_path, capsys):
    out = tmp_path / "lr.png"
    result = run_example("lr_find_then_fine_tune.py", ["--num-iter", "30", "--epochs", "1",
                                                        "--per-class", "5", "--out", str(out)])
    (found, kept, accuracy), = result["runs"]
    assert kept and found.suggestion is not None and 1e-5 <= found.suggestion <= 10
    assert set(accuracy) == {"suggested", "default"} and out.stat().st_size > 10_000
    assert f"wrote {out}" in capsys.readouterr().out


def test_frozen_layer_in_both_rule_orders(capsys):
    result = run_example("frozen_layer_both_orders.py", ["--steps", "5"])
    assert result["l3_kept"] and result["l1_trained"] and result["orders_agree"]
    table = result["table"]
    assert {row["rule"] for row in table if "dense2" in row["parameter"]} == {"l3"}
    assert all(row["frozen"] for row in table if "dense2" in row["parameter"])
    assert all(row["lr_mult"] == 0.1 and not row["frozen"]
               for row in table if "dense2" not in row["parameter"])
    assert "both rule orders give bit-identical weights: True" in capsys.readouterr().out


def test_lenet_transfer_trains_only_the_new_head(capsys):
    result = run_example("lenet_transfer.py", ["--epochs", "3", "--per-class", "10"])
    assert result["trunk_kept"] and result["head_moved"]
    assert result["accuracy"] > 0.4  # 5 classes: chance is 0.2
    out = capsys.readouterr().out
    assert "trunk bit-identical to the pretrained one: True" in out


def test_rfc_snippet_runs_in_the_rfc_form(capsys):
    result = run_example("rfc_snippet.py", ["--steps", "3"])
    assert result["frozen_kept"] and result["frozen_count"] > 0
    assert result["trainable_blocks"][-1] == "output.0"
    features, output = zip(*result["rates"])
    assert features == pytest.approx((0.01, 0.01, 0.005))          # FactorScheduler(2, 0.5)
    assert output == pytest.approx((0.0009, 0.0008, 0.0007))       # PolyScheduler(10) at 1e-3


def test_gluoncv_example_loads_local_weights_and_unfreezes_gradually(tmp_path, capsys):
    from gluoncv.model_zoo import get_model as gluoncv_model
    source = gluoncv_model("resnet18_v1b")
    source.initialize(mx.init.Xavier())
    source(mx.nd.zeros((1, 3, 32, 32)))
    source.save_parameters(str(tmp_path / "resnet18_v1b.params"))
    data = make_image_folder(tmp_path / "images")
    result = run_example("gluoncv_finetune.py", [str(data), "--root", str(tmp_path),
                                                 "--epochs", "2", "--image-size", "32",
                                                 "--batch-size", "4"])
    net, history = result["net"], result["history"]
    assert result["classes"] == ["blue", "red"] and net.fc.weight.shape[0] == 2
    stem = net.conv1.weight.data().asnumpy()
    assert np.array_equal(stem, source.conv1.weight.data().asnumpy())  # loaded, still frozen
    assert [h["epoch"] for h in history] == [0, 1] and all("val_acc" in h for h in history)
    assert "epoch 1: 2 trainable blocks" in capsys.readouterr().out


def test_demo_study_table_ranks_fine_tuning_above_scratch(tmp_path, capsys):
    from gluon_finetune import demo
    results = demo.main(["--seeds", "2", "--epochs", "6", "--out", str(tmp_path),
                         "--no-progress"])
    out = capsys.readouterr().out
    for method in demo.METHODS:
        assert method in out
    assert "trunk bit-identical after training: True" in out
    final = {m: np.mean([run["curve"][-1] for run in runs]) for m, runs in results.items()}
    assert final["gradual + discriminative"] > final["scratch"]
    assert final["head only"] > final["scratch"]
    for png in ("learning_rates.png", "accuracy.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bert_lora_variant_learns_training_a_tenth_of_the_parameters():
    if not os.environ.get("CI"):  # `make test` installs GluonNLP: there it must run
        pytest.importorskip("gluonnlp")
    result = run_example("bert_finetune.py", ["--epochs", "6", "--layers", "2", "--lora", "8"])
    assert result["history"][-1][1] >= 0.9
    assert result["share"] == "2114 of 21826 parameters train (9.7%)"
    adapted = [row for row in result["table"] if "query_weight" in row["parameter"]]
    assert {row["frozen"] for row in adapted if row["parameter"].endswith("weight")} == {True}
    assert any("4 weights are adapted by LoRA" in note for note in result["table"].notes)


def test_bert_recipe_thaws_top_layers_and_learns(capsys):
    if not os.environ.get("CI"):  # `make test` installs GluonNLP: there it must run
        pytest.importorskip("gluonnlp")
    result = run_example("bert_finetune.py", ["--epochs", "4", "--layers", "2"])
    history, table = result["history"], result["table"]
    assert [trainable for trainable, _ in history] == [2, 4, 5, 5]  # embeddings, 2 layers, ...
    assert history[-1][1] >= 0.9  # two classes: chance is 0.5
    peaks = {}
    for row in table:  # layer decay: each block's schedule peaks at 0.8x the next one's
        index = int(row["block"].split(":")[0])
        peaks[index] = float(row["schedule"].split("=")[1].rstrip(")"))
        assert row["frozen"] == (index < 3)
    assert [peaks[i] for i in range(5)] == pytest.approx([3e-3 * 0.8 ** (4 - i)
                                                          for i in range(5)])
    for row in table:  # no decay on biases and LayerNorm parameters, decay elsewhere
        no_decay = row["parameter"].endswith(("_bias", "_beta", "_gamma"))
        assert row["wd_mult"] == (0.0 if no_decay else 1.0), row["parameter"]
        assert (row["wd_rule"] is not None) == no_decay
    out = capsys.readouterr().out
    assert "bert.encoder.transformer_cells.1" in out and "val acc" in out
