"""The import contracts of .importlinter hold, and each of them can fail.

``lint-imports`` runs in a subprocess with the source tree's folder first on
the path, so that it reads this copy of gluon_finetune (not an installed one).
Each contract is then broken on purpose in a copy of the package: a contract
that cannot fail checks nothing.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()"


def lint_imports(root: Path, *contracts: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-c", RUN, "--no-cache"]
    for contract in contracts:
        args += ["--contract", contract]
    env = dict(os.environ, PYTHONPATH=str(root), COLUMNS="200")
    return subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


# (contract id, module of gluon_finetune, the line that breaks the contract)
VIOLATIONS = [
    ("layers", "structure/declared.py", "from ..rules import values"),
    ("layers", "reporting/plots.py", "from ..trainer import LayerwiseTrainer"),
    ("layers", "optim/rates.py", "from ..recipes import fit"),
    ("base", "checks.py", "from .structure import index"),
    ("base", "_compat.py", "from .trainer import freeze"),
    ("compat", "_compat.py", "from mxnet.optimizer import SGD"),
    ("optim", "_compat.py", "from mxnet.gluon import nn"),  # optim imports _compat
    ("rule-engine", "rules/values.py", "from mxnet.gluon import nn"),
    ("rule-engine", "rules/resolution.py", "from ..structure import index"),  # via index
    ("optim", "optim/rates.py", "import mxnet.gluon"),
    ("optim", "optim/schedules.py", "import mxnet"),  # the package imports mxnet.gluon
    ("optim", "optim/rates.py", "from ..structure import index"),  # via index
    ("recipes", "recipes/data.py", "from ..trainer.layerwise import LayerwiseTrainer"),
    ("recipes", "recipes/data.py", "from ..optim.rates import LayerwiseState"),
    ("layers", "lora/targets.py", "from ..models import get_model"),
    ("lora", "lora/files.py", "from ..trainer.freezing import freeze"),
]


@pytest.mark.parametrize("contract, module, line", VIOLATIONS)
def test_each_contract_fails_on_a_violation(tmp_path, contract, module, line):
    shutil.copytree(ROOT / "gluon_finetune", tmp_path / "gluon_finetune",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path)
    assert lint_imports(tmp_path, contract).returncode == 0  # the copy keeps it
    with open(tmp_path / "gluon_finetune" / module, "a") as source:
        source.write(f"\n{line}  # noqa\n")
    result = lint_imports(tmp_path, contract)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout
