"""The wheel installs as a new user would install it, with the core dependencies only.

One module-scoped fixture builds the wheel from a copy of the sources, makes a fresh
virtual environment (no system site packages) and installs the wheel there with pip,
which fetches MXNet, NumPy, tqdm and ruamel.yaml (pinned by ``requirements.lock`` as
constraints) from the package registry or pip's cache. The tests then run the
console script, a short training snippet and ``explain`` in it, and check that every
optional feature names the extra to install in one line.
"""
import re
import shutil
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["setup.py", "pyproject.toml", "README.md", "LICENSE", "gluon_finetune"]
pytestmark = pytest.mark.slow


def run(cmd, **kwargs):
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=900, **kwargs)
    assert done.returncode == 0, f"{cmd}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the fresh venv's python, the wheel's path)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name)
    # no build isolation: the build uses this venv's setuptools and wheel, offline
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-q", "-w", tmp / "dist", source])
    wheel, = (tmp / "dist").glob("gluon_finetune-*.whl")
    venv.create(tmp / "venv", with_pip=True, system_site_packages=False)
    python = tmp / "venv" / "bin" / "python"
    run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-c", ROOT / "requirements.lock", wheel])
    return python, wheel


def in_venv(python, code):
    return run([python, "-c", textwrap.dedent(code)], cwd=python.parents[2])


def setup_version():
    return re.search(r'version="([^"]+)"', (ROOT / "setup.py").read_text()).group(1)


def test_only_the_core_dependencies_are_installed(installed):
    python, _ = installed
    listed = run([python, "-m", "pip", "list", "--format=freeze"]).stdout.lower()
    names = {line.split("==")[0] for line in listed.split()}
    assert {"gluon-finetune", "mxnet", "numpy", "tqdm", "ruamel.yaml"} <= names
    assert not names & {"gluoncv", "gluonnlp", "matplotlib", "pandas", "scikit-learn"}


def test_metadata_has_the_license_and_the_one_version(installed):
    python, wheel = installed
    out = in_venv(python, """
        from importlib.metadata import distribution
        import gluon_finetune
        dist = distribution("gluon-finetune")
        print(gluon_finetune.__version__, dist.metadata["License"])
        print(sorted(str(f) for f in dist.files if "LICENSE" in str(f)))
        """).stdout.splitlines()
    assert out[0] == f"{setup_version()} Apache-2.0"
    assert "LICENSE" in out[1]
    assert f"gluon_finetune-{setup_version()}-" in wheel.name


def test_console_script_help(installed):
    python, _ = installed
    out = run([python.parent / "gluon-finetune", "--help"]).stdout
    for command in ("train", "lr-find", "explain", "plot", "launch"):
        assert command in out


def test_train_a_few_steps_and_explain(installed):
    python, _ = installed
    out = in_venv(python, """
        import mxnet as mx
        from mxnet import autograd, gluon
        from gluon_finetune import LayerwiseTrainer, explain
        net = gluon.nn.HybridSequential()
        net.add(gluon.nn.Dense(8, in_units=4, activation="relu"), gluon.nn.Dense(3, in_units=8))
        net.initialize(mx.init.Xavier())
        frozen = net[0].weight.data().copy()
        trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={0: 0, -1: 2.0})
        x, y = mx.nd.random.normal(shape=(16, 4)), mx.nd.array([0, 1, 2, 0] * 4)
        loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
        for _ in range(3):
            with autograd.record():
                loss = loss_fn(net(x), y)
            loss.backward()
            trainer.step(16)
        print("frozen kept:", (net[0].weight.data() == frozen).asnumpy().all())
        print(explain(trainer))
        """).stdout
    assert "frozen kept: True" in out
    assert re.search(r"dense\d+_weight\s+3x8\s+1:1\s+block -1\s+2\b", out), out


def test_cli_explain_runs_on_the_core_install(installed):
    python, _ = installed
    out = run([python.parent / "gluon-finetune", "explain", "--model", "resnet18_v1",
               "--classes", "2", "--layer-lr", "output=10"]).stdout
    assert "10:output" in out


MISSING = {
    "plot": """
        from gluon_finetune import LayerwiseTrainer, plot_schedules
        from mxnet import gluon
        net = gluon.nn.Dense(2, in_units=2); net.initialize()
        plot_schedules(LayerwiseTrainer(net, "sgd"), 5, "lr.png")""",
    "plot ": """
        from gluon_finetune import explain
        from mxnet import gluon
        net = gluon.nn.Dense(2, in_units=2); net.initialize()
        explain(net, {"*": 0.1}, learning_rate=0.1).to_pandas()""",
    "zoo": """
        from gluon_finetune import get_model
        get_model("resnet18_v1b", classes=2)""",
    "nlp": """
        from gluon_finetune import get_model
        get_model("bert_12_768_12", classes=2, dataset_name="book_corpus_wiki_en_uncased")""",
}


@pytest.mark.parametrize("extra", sorted(MISSING))
def test_a_missing_optional_package_names_its_extra(installed, extra):
    python, _ = installed
    code = "from gluon_finetune.errors import MissingDependencyError\ntry:\n" \
        + textwrap.indent(textwrap.dedent(MISSING[extra]).strip(), "    ") \
        + "\nexcept MissingDependencyError as err:\n    print(err)\n"
    out = in_venv(python, code).stdout.strip()
    assert "\n" not in out and out.endswith(f"pip install 'gluon-finetune[{extra.strip()}]'")


def test_the_demo_and_the_plot_command_say_what_to_install(installed):
    python, _ = installed
    demo = subprocess.run([python, "-m", "gluon_finetune.demo"], capture_output=True,
                          text=True, timeout=300)
    assert demo.returncode == 1 and demo.stderr.strip().count("\n") == 0
    assert "needs scikit-learn" in demo.stderr and "gluon-finetune[demo]" in demo.stderr
    plot = subprocess.run([python.parent / "gluon-finetune", "plot", "--model", "resnet18_v1",
                           "--classes", "2", "--out", str(python.parents[2] / "lr.png")],
                          capture_output=True, text=True, timeout=300)
    assert plot.returncode == 2 and plot.stderr.strip().count("\n") == 0
    assert "gluon-finetune[plot]" in plot.stderr
