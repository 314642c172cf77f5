"""The scripts in examples/ run and print what they claim to show."""
import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_gradual_unfreezing_example_prints_both_curves(capsys):
    module = runpy.run_path(str(EXAMPLES / "gradual_unfreezing.py"), run_name="example")
    history = module["main"](["--epochs", "2", "--per-class", "5"])
    out = capsys.readouterr().out
    assert "plain fine-tuning" in out and "gradual unfreezing" in out
    assert len(history) == 2
    for plain, gradual in history:
        assert 0.0 <= plain <= 1.0 and 0.0 <= gradual <= 1.0
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["0", "1"]
    assert [float(row[1]) for row in rows] == [round(p, 3) for p, _ in history]


def test_demo_runs_and_keeps_the_frozen_layer(capsys):
    from gluon_finetune import demo
    demo.main()
    out = capsys.readouterr().out
    assert "bit-identical to the pretrained one: True" in out
    assert "features.0" in out and "test accuracy" in out
