"""Every public name is documented in numpy style, with an example that runs as a doctest.

The API reference (docs/reference/) is generated from these docstrings, so this is the
check that it is complete: each name of ``gluon_finetune.__all__`` has a summary, the
sections its signature calls for (Parameters, Returns, Raises) and Examples; no example
is skipped; no docstring sends the reader to a source file instead of saying the thing.
Public methods of the exported classes have a docstring, with Parameters when they take
arguments.
"""
import inspect
import re

import pytest

import gluon_finetune

NAMES = sorted(n for n in gluon_finetune.__all__ if n != "__version__")
# records the package builds and hands out: their constructors check nothing, so no Raises
RECORDS = {"Setting", "LRFinderResult", "FeatureCache", "BlockGroup"}
FILE_POINTER = re.compile(r"\b(see|in)\s+``?[\w/]+\.py``?", re.I)


def section(doc: str, name: str) -> bool:
    return re.search(rf"^{name}\n-{{3,}}$", doc, re.M) is not None


def takes_arguments(obj) -> bool:
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return False
    return any(p.name not in ("self", "cls") for p in signature.parameters.values())


def is_exception(obj) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseException)


@pytest.mark.parametrize("name", NAMES)
def test_numpy_docstring_with_a_running_example(name):
    obj = getattr(gluon_finetune, name)
    doc = inspect.getdoc(obj) or ""
    assert doc and not doc.startswith(("Parameters", "Examples")), f"{name}: no summary line"
    missing = [s for s in ("Examples",) if not section(doc, s)]
    if takes_arguments(obj) and not is_exception(obj):
        wanted = ("Parameters",) if name in RECORDS else ("Parameters", "Raises")
        missing += [s for s in wanted if not section(doc, s)]
    if inspect.isfunction(obj):
        returns = inspect.signature(obj).return_annotation
        if returns not in (None, "None", inspect.Signature.empty):
            missing += [s for s in ("Returns",) if not section(doc, s)]
    assert not missing, f"{name}: no {', '.join(missing)} section"
    assert ">>>" in doc, f"{name}: its Examples section has no example"
    assert "+SKIP" not in doc, f"{name}: an example is skipped"
    assert not FILE_POINTER.search(doc), f"{name}: points at a file: {FILE_POINTER.search(doc)}"


def public_methods():
    for name in NAMES:
        cls = getattr(gluon_finetune, name)
        if not isinstance(cls, type) or is_exception(cls):
            continue
        seen = set()
        for owner in cls.__mro__:  # its own and its mixins', not MXNet's
            if not owner.__module__.startswith("gluon_finetune"):
                continue
            for attr, value in vars(owner).items():
                wanted = inspect.isfunction(value) or isinstance(value, property)
                if attr.startswith("_") or attr in seen or not wanted:
                    continue
                seen.add(attr)
                yield f"{name}.{attr}", value


@pytest.mark.parametrize("qualname, member", [
    pytest.param(q, m, id=q) for q, m in public_methods()])
def test_public_methods_are_documented(qualname, member):
    doc = inspect.getdoc(member) or ""
    assert doc, f"{qualname}: no docstring"
    if inspect.isfunction(member) and takes_arguments(member):
        assert section(doc, "Parameters"), f"{qualname}: no Parameters section"
    assert "+SKIP" not in doc and not FILE_POINTER.search(doc), qualname
