"""Packaging facts: one version number, the license, the extras that optional imports name."""
import ast
import re
from pathlib import Path

from gluon_finetune.checks import EXTRAS

ROOT = Path(__file__).resolve().parents[1]


def setup_call():
    """The keyword arguments of setup() in setup.py, with the module's constants evaluated."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, (ast.List, ast.Constant)):
            constants[node.targets[0].id] = ast.literal_eval(node.value)
    call = next(n.value for n in tree.body if isinstance(n, ast.Expr)
                and getattr(getattr(n.value, "func", None), "id", None) == "setup")
    return {k.arg: k.value for k in call.keywords}, constants


def test_the_version_is_written_once_and_the_changelog_names_it():
    keywords, _ = setup_call()
    version = ast.literal_eval(keywords["version"])
    newest = re.search(r"^## \[(\d+\.\d+\.\d+)\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert newest.group(1) == version
    # nowhere else: the package reads it from its installed metadata
    for path in (ROOT / "gluon_finetune").rglob("*.py"):
        assert f'"{version}"' not in path.read_text(), path


def test_apache_license_text_and_metadata():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    keywords, _ = setup_call()
    assert ast.literal_eval(keywords["license"]) == "Apache-2.0"


def test_every_extra_that_an_error_names_exists_in_setup_py():
    keywords, constants = setup_call()
    extras = {k.value for k in keywords["extras_require"].keys}
    assert {"zoo", "nlp", "plot", "demo", "all"} <= extras
    assert {extra for _, extra in EXTRAS.values()} <= extras
    core = " ".join(ast.literal_eval(keywords["install_requires"])).lower()
    for package in ("gluoncv", "gluonnlp", "matplotlib", "pandas", "scikit-learn"):
        assert package not in core
    everything = " ".join(sum(constants.values(), [])).lower()
    for package in ("gluoncv", "gluonnlp", "matplotlib", "pandas", "scikit-learn"):
        assert package in everything
