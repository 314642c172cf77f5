"""One error family: every error a user's input can cause is a FinetuneError.

The source walk below fails on a ``raise`` of a bare built-in exception
anywhere in the package, except the internal ones listed in ``INTERNAL``
(each with the reason it never reaches a caller as an input error).
"""
import ast
import builtins
from pathlib import Path

import mxnet as mx
import pytest
from mxnet.gluon import nn

from gluon_finetune import LayerwiseTrainer, combine, errors, resolve
from gluon_finetune.cli import main
from gluon_finetune.errors import (
    FinetuneError,
    InvalidTypeError,
    InvalidValueError,
    MissingDependencyError,
    MissingFileError,
    RuleError,
    RuleTypeError,
    UnknownNameError,
    UnsupportedError,
)
from gluon_finetune.optim.rates import Unsaved
from gluon_finetune.structure import block_params

PACKAGE = Path(__file__).resolve().parents[1] / "gluon_finetune"
BUILTIN_ERRORS = {name for name, value in vars(builtins).items()
                  if isinstance(value, type) and issubclass(value, BaseException)}

# (module, enclosing function, built-in) -> why it stays a built-in
INTERNAL = {
    ("__init__.py", "__getattr__", "AttributeError"): "Python's module attribute protocol",
    ("demo/__init__.py", "main", "SystemExit"): "the demo's exit status",
    ("structure/tracing.py", "_symbols", "TypeError"):
        "caught by forward_order: the reason a forward cannot be traced, never raised on",
}


def builtin_raises():
    """(module, enclosing function, exception name, line) of each raise of a built-in."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        for func in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                exc = getattr(node, "exc", None) if isinstance(node, ast.Raise) else None
                exc = exc.func if isinstance(exc, ast.Call) else exc
                if isinstance(exc, ast.Name) and exc.id in BUILTIN_ERRORS:
                    found.append((module, func.name, exc.id, node.lineno))
    return found


def test_no_raise_of_a_bare_builtin_error_outside_the_internal_ones():
    raises = builtin_raises()
    outside = [f"{m}:{line} in {f}(): raise {e}" for m, f, e, line in raises
               if (m, f, e) not in INTERNAL]
    assert not outside, "raise the matching FinetuneError (gluon_finetune/errors.py):\n" + \
        "\n".join(outside)
    stale = set(INTERNAL) - {(m, f, e) for m, f, e, _ in raises}
    assert not stale, f"INTERNAL lists raises that are gone: {sorted(stale)}"


def test_the_walk_finds_a_bare_raise(tmp_path, monkeypatch):
    (tmp_path / "bad.py").write_text("def f(x):\n    if x:\n        raise ValueError('x')\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path)
    assert builtin_raises() == [("bad.py", "f", "ValueError", 3)]


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_is_a_finetune_error(name):
    assert issubclass(getattr(errors, name), FinetuneError)


@pytest.mark.parametrize("cls, builtin", [
    (InvalidValueError, ValueError), (InvalidTypeError, TypeError),
    (MissingFileError, FileNotFoundError), (UnknownNameError, KeyError),
    (UnsupportedError, RuntimeError), (MissingDependencyError, ImportError),
    (RuleError, ValueError), (RuleTypeError, TypeError), (RuleTypeError, RuleError),
])
def test_each_concrete_error_is_also_the_builtin_it_replaces(cls, builtin):
    assert issubclass(cls, builtin)


def test_an_unknown_name_reads_as_a_sentence_not_a_quoted_key():
    assert str(UnknownNameError("no child 'x' under <root>")) == "no child 'x' under <root>"


@pytest.mark.parametrize("rules, builtin", [
    ({"*": "fast"}, TypeError),              # a value of the wrong type
    ({"*": float("nan")}, ValueError),       # a value out of range
    ({3.5: 1.0}, TypeError),                 # a key of the wrong type
    ([("*",)], TypeError),                   # not (key, value) pairs
    ({"*": {"lr_mult": 2, "learning_rate": 0.1}}, ValueError),
    ({"re:(": 1.0}, ValueError),             # a bad regular expression
    ({"nothing": 1.0}, ValueError),          # no match
])
def test_except_rule_error_catches_every_rule_error(rules, builtin):
    with pytest.raises(RuleError) as err:
        resolve(rules, ["a_weight", "a_bias"])
    assert isinstance(err.value, builtin)


def test_rule_errors_outside_resolve_are_rule_errors():
    with pytest.raises(RuleError, match="sets the rate twice"):
        combine({"*": 0.1}, {"*": 0.2})
    net = nn.Dense(2, in_units=2)
    net.initialize()
    with pytest.raises(RuleError, match="given both in layers= and inside optimizer_params"):
        LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "weight": {"lr_mult": 0}},
                         layers={"weight": 0.5})


def test_the_base_rate_of_resolve_is_no_rule_error():
    with pytest.raises(InvalidValueError, match="base learning rate") as err:
        resolve({"*": 1.0}, ["w"], base_lr=float("inf"))
    assert not isinstance(err.value, RuleError)


def test_errors_once_built_ins_are_in_the_family():
    net = nn.HybridSequential()
    net.add(nn.Dense(2, in_units=2))
    net.initialize()
    with pytest.raises(UnknownNameError, match="no child 'x'"):
        block_params(net, "x")
    with pytest.raises(UnsupportedError, match="was not saved"):
        Unsaved("l1")(3)
    with pytest.raises(InvalidTypeError, match="fname must be a path"):
        LayerwiseTrainer(net, "sgd").save_states(3)


def test_the_cli_prints_an_input_error_as_one_line(capsys):
    # before the family, this raised a bare ValueError: a traceback
    assert main(["explain", "--model", "bert_12_768_12", "--classes", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "needs its vocabulary" in err


def test_mxnet_stays_as_it_is():
    assert mx.__version__ == "1.9.1"
