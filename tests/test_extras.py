"""Optional dependencies: a missing one is one line naming the extra that installs it.

The packages are hidden by putting ``None`` in ``sys.modules`` (Python's own way to
make an import fail); ``test_wheel.py`` checks the same with them really absent.
"""
import sys

import pytest
from finetune_helpers import ThreeLayers

from gluon_finetune import LayerwiseTrainer, explain, get_model, plot_schedules
from gluon_finetune.checks import EXTRAS, require
from gluon_finetune.cli import main
from gluon_finetune.errors import FinetuneError, MissingDependencyError


def hide(monkeypatch, package):
    """Make ``import package`` (and its submodules) fail as if it were not installed."""
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, package, None)


def one_line(err, extra):
    message = str(err.value)
    assert "\n" not in message
    assert message.endswith(f"pip install 'gluon-finetune[{extra}]'")
    return message


@pytest.fixture
def trainer():
    net = ThreeLayers(prefix="net_")
    net.initialize()
    return LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={"l3": 0})


def test_require_imports_what_is_there_and_names_the_extra_of_what_is_not(monkeypatch):
    assert require("json", extra="core").__name__ == "json"
    hide(monkeypatch, "pandas")
    with pytest.raises(MissingDependencyError) as err:
        require("pandas", needed_for="a table")
    assert isinstance(err.value, ImportError) and isinstance(err.value, FinetuneError)
    assert one_line(err, "plot") == ("a table needs pandas, which is not installed: "
                                     "pip install 'gluon-finetune[plot]'")
    with pytest.raises(ValueError, match="no extra is known for 'nosuchpackage'"):
        require("nosuchpackage")


def test_every_optional_package_has_an_extra_of_setup_py():
    extras = {extra for _, extra in EXTRAS.values()}
    assert extras == {"zoo", "nlp", "plot", "demo", "horovod"}


def test_a_broken_optional_package_says_what_failed(monkeypatch, tmp_path):
    """Installed, but one of its own dependencies is missing (GluonCV without OpenCV)."""
    (tmp_path / "halfinstalled").mkdir()
    (tmp_path / "halfinstalled" / "__init__.py").write_text("import no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingDependencyError) as err:
        require("halfinstalled", extra="zoo", needed_for="this model")
    assert one_line(err, "zoo") == (
        "this model needs halfinstalled, which cannot be imported (No module named "
        "'no_such_dependency'): pip install 'gluon-finetune[zoo]'")


def test_to_pandas_without_pandas(monkeypatch, trainer):
    table = explain(trainer)
    hide(monkeypatch, "pandas")
    with pytest.raises(MissingDependencyError) as err:
        table.to_pandas()
    assert one_line(err, "plot").startswith("Explanation.to_pandas needs pandas")
    assert "l3" in str(table)  # the text table needs nothing optional


def test_plots_without_matplotlib(monkeypatch, trainer, tmp_path):
    hide(monkeypatch, "matplotlib")
    with pytest.raises(MissingDependencyError) as err:
        plot_schedules(trainer, 5, str(tmp_path / "lr.png"))
    assert "needs matplotlib" in one_line(err, "plot")
    assert not (tmp_path / "lr.png").exists()


def test_gluoncv_names_without_gluoncv(monkeypatch):
    hide(monkeypatch, "gluoncv")
    with pytest.raises(MissingDependencyError) as err:
        get_model("resnet18_v1b", classes=2)
    assert one_line(err, "zoo").startswith("get_model('resnet18_v1b') (not in MXNet's model zoo")
    assert get_model("resnet18_v1", classes=2).output._units == 2  # MXNet's zoo needs nothing


def test_bert_without_gluonnlp(monkeypatch):
    hide(monkeypatch, "gluonnlp")
    with pytest.raises(MissingDependencyError) as err:
        get_model("bert_12_768_12", classes=2, dataset_name="book_corpus_wiki_en_uncased")
    assert "needs GluonNLP" in one_line(err, "nlp")


def test_demo_without_scikit_learn_stops_before_training(monkeypatch):
    from gluon_finetune import demo
    hide(monkeypatch, "sklearn")
    monkeypatch.setattr(demo, "study", lambda *a: pytest.fail("trained without sklearn"))
    with pytest.raises(SystemExit) as err:
        demo.main(["--seeds", "1"])
    message = str(err.value.code)
    assert "\n" not in message and "the demo needs scikit-learn" in message
    assert message.endswith("pip install 'gluon-finetune[demo]'")


def test_cli_plot_without_matplotlib_is_one_line_and_status_2(monkeypatch, tmp_path, capsys):
    hide(monkeypatch, "matplotlib")
    status = main(["plot", "--model", "resnet18_v1", "--classes", "2", "--steps", "5",
                   "--out", str(tmp_path / "lr.png")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err
    assert "needs matplotlib" in err and err.endswith("pip install 'gluon-finetune[plot]'")


def test_the_evaluation_report_without_scikit_learn(monkeypatch):
    from gluon_finetune.reporting.classification import classification_report
    hide(monkeypatch, "sklearn")
    with pytest.raises(MissingDependencyError) as err:
        classification_report([0, 1], [[0.9, 0.1], [0.2, 0.8]], ["cat", "dog"])
    assert one_line(err, "eval").startswith("the evaluation report needs scikit-learn")


@pytest.mark.parametrize("package", ["onnx", "onnxruntime"])
def test_onnx_export_without_onnx_or_its_runtime(monkeypatch, tmp_path, package):
    from gluon_finetune.models.export import export_onnx
    hide(monkeypatch, package)
    with pytest.raises(MissingDependencyError) as err:
        export_onnx("model-symbol.json", "model-0000.params", 32, str(tmp_path / "m.onnx"))
    assert one_line(err, "onnx").startswith(f"ONNX export needs {package}")
    assert not (tmp_path / "m.onnx").exists()
