"""Learning-rate curves (previewed and recorded) and the PNGs drawn from them."""
import mxnet as mx
import pytest
from finetune_helpers import three_layers, train_step

from gluon_finetune import LayerwiseTrainer, OneCycle
from gluon_finetune.reporting.plots import (
    RateRecorder,
    lr_curves,
    merged_curves,
    plot_accuracy,
    plot_lr_curves,
)


def scheduled_trainer():
    net = three_layers()
    rules = {"l1": 0, "l2": 0.5,
             "l3": {"lr_scheduler": mx.lr_scheduler.FactorScheduler(step=2, factor=0.5,
                                                                    base_lr=1.0)}}
    return net, LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers=rules)


def test_lr_curves_preview_each_layer_without_touching_the_trainer():
    net, trainer = scheduled_trainer()
    curves = lr_curves(trainer, 6)
    assert curves["0:l1"] == [0.0] * 6
    assert curves["1:l2"] == pytest.approx([0.05] * 6)
    # the rule's scheduler peaks at the rule's rate (0.1 * 1) and halves every 2 updates
    assert curves["2:l3"] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert trainer.current_lrs() == pytest.approx([0.0, 0.0, 0.05, 0.05, 0.1, 0.1])
    assert lr_curves(trainer, 6) == curves  # the preview ran on copies


def test_the_recorder_sees_the_rates_training_used():
    net, trainer = scheduled_trainer()
    recorder = RateRecorder()
    for seed in range(5):
        train_step(net, trainer, seed)
        recorder(trainer)
    assert recorder.steps == 5
    preview = lr_curves(scheduled_trainer()[1], 5)
    assert recorder.curves["2:l3"] == pytest.approx(preview["2:l3"])
    assert recorder.curves["0:l1"] == [0.0] * 5


def test_merged_curves_group_identical_layers_in_block_order():
    merged = merged_curves({"2:c": [1, 1], "0:a": [0, 0], "1:b": [0, 0], "3:d": [1, 2]})
    assert merged == {"0:a ... 1:b (2 layers) (frozen)": [0, 0], "2:c": [1, 1],
                      "3:d": [1, 2]}


def test_plots_write_pngs(tmp_path):
    net, trainer = scheduled_trainer()
    lr_png = plot_lr_curves(lr_curves(trainer, 10), str(tmp_path / "a" / "lr.png"))
    acc_png = plot_accuracy({"plain": [0.5, 0.6], "gradual": [0.6, 0.7]},
                            str(tmp_path / "acc.png"))
    for png in (lr_png, acc_png):
        with open(png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_bad_inputs_are_clear_errors(tmp_path):
    net, trainer = scheduled_trainer()
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        lr_curves(trainer, 0)
    with pytest.raises(TypeError, match="expects a LayerwiseTrainer"):
        lr_curves(mx.gluon.Trainer(net.collect_params(), "sgd"), 3)
    with pytest.raises(ValueError, match="non-empty mapping"):
        plot_lr_curves({}, str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match="'a' has no values"):
        plot_accuracy({"a": []}, str(tmp_path / "x.png"))
    assert not (tmp_path / "x.png").exists()


def test_a_preview_mid_training_shows_the_next_steps_and_changes_nothing():
    """Stock trap: after 3 updates the preview showed schedule(1..5) where training then
    used schedule(4..8), and a FactorScheduler previewed from its decayed state."""
    def build():
        net = three_layers()
        rules = {"l1": {"lr_scheduler": OneCycle(max_update=10, base_lr=1.0)},
                 "l2": {"lr_scheduler": mx.lr_scheduler.FactorScheduler(step=2, factor=0.5)},
                 "l3": 0.5}
        return net, LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers=rules)

    net, trainer = build()
    twin, untouched = build()
    for seed in range(3):
        train_step(net, trainer, seed)
        train_step(twin, untouched, seed)
    before = trainer.current_lrs()
    preview = lr_curves(trainer, 5)
    assert trainer.current_lrs() == before
    cycle = OneCycle(max_update=10, base_lr=0.1)
    assert preview["0:l1"] == pytest.approx([cycle(t) for t in range(4, 9)])
    recorder = RateRecorder()
    for seed in range(3, 8):
        train_step(net, trainer, seed)
        train_step(twin, untouched, seed)
        recorder(trainer)
    assert preview.keys() == recorder.curves.keys()
    for label, curve in preview.items():
        assert curve == pytest.approx(recorder.curves[label]), label
    for a, b in zip(net.collect_params().values(), twin.collect_params().values()):
        assert (a.data().asnumpy() == b.data().asnumpy()).all()  # the preview left no trace
