"""The ``gluon-finetune`` command.

``gluon-finetune explain --model resnet18_v1 --classes 2 --layer-lr output=10 --layer-lr 0:4=0``
prints the rule table: which rule each parameter gets and at what rate.
"""
from __future__ import annotations

import argparse
import re
import sys
from typing import List, Optional, Tuple

_INDEX = re.compile(r"^-?\d+$")


def parse_layer_rule(text: str) -> Tuple[object, float]:
    """``KEY=VALUE`` -> a rule; an integer KEY is a block index, VALUE a multiplier."""
    key, sep, value = text.rpartition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=MULTIPLIER (e.g. output=10), got {text!r}")
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"the multiplier in {text!r} must be a number, got {value!r}") from None
    return (int(key) if _INDEX.match(key) else key), number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gluon-finetune", description=(
        "Per-layer learning rates and freezing for MXNet Gluon fine-tuning."))
    commands = parser.add_subparsers(dest="command", required=True)
    explain = commands.add_parser("explain", help="print the rule table for a zoo model")
    explain.add_argument("--model", required=True, help="a model-zoo name, e.g. resnet18_v1")
    explain.add_argument("--classes", type=int, help="replace the head with this many outputs")
    explain.add_argument("--unfreeze", type=int, help="train only the last N blocks")
    explain.add_argument("--lr", type=float, default=0.01, help="base learning rate")
    explain.add_argument("--layer-lr", type=parse_layer_rule, action="append", default=[],
                         metavar="KEY=MULT", help="a rule: block path, name, glob, index or "
                         "range, with a learning-rate multiplier (0 freezes); repeatable")
    commands.add_parser("launch", add_help=False, help="run a distributed (dist_sync) job "
                        "on this machine: launch -n 2 -s 1 -- python train.py")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["launch"]:  # its own parser: everything after '--' is the command
        from .launch import main as launch_main
        return launch_main(argv[1:])
    args = build_parser().parse_args(argv)
    from .report import explain
    from .zoo import get_model
    try:
        net = get_model(args.model, classes=args.classes, unfreeze=args.unfreeze)
        print(explain(net, args.layer_lr, learning_rate=args.lr))
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"gluon-finetune: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
