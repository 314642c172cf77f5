"""The gluon-finetune console script."""
import os
import subprocess
import sys

import pytest

from gluon_finetune.cli import main

BIN = os.path.join(os.path.dirname(sys.executable), "gluon-finetune")


def test_explain_prints_the_rule_table(capsys):
    assert main(["explain", "--model", "resnet18_v1", "--classes", "2", "--lr", "0.1",
                 "--layer-lr", "output=10", "--layer-lr", "0=0"]) == 0
    out = capsys.readouterr().out
    head = [line for line in out.splitlines() if "10:output" in line]
    assert head and all(" output " in line and " 1 " in line for line in head)  # lr 0.1*10
    stem = [line for line in out.splitlines() if " 0:features.0 " in line]
    assert len(stem) == 1 and "block 0" in stem[0] and stem[0].rstrip().endswith("yes")


def test_bad_rules_and_models_exit_non_zero_with_a_message(capsys):
    assert main(["explain", "--model", "resnet18_v1", "--layer-lr", "outptu=2"]) == 2
    assert "Did you mean 'output'" in capsys.readouterr().err
    assert main(["explain", "--model", "resnet18_v11"]) == 2
    assert "unknown model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["explain", "--model", "alexnet", "--layer-lr", "output=fast"])
    assert exit_info.value.code == 2
    assert "'fast'" in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run([BIN, "--help"], capture_output=True, text=True, check=True).stdout
    assert "explain" in out
