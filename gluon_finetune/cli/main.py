"""The ``gluon-finetune`` command: ``train``, ``lr-find``, ``explain``, ``plot``, ``launch``.

    gluon-finetune train data/ --model resnet18_v1 --unfreeze 3 --lr 0.01 \\
        --layer-lr output=10 --layer-lr -1=10 --epochs 5 --save model.params
    gluon-finetune train data/ --model resnet18_v1 --recipe fine_tune --freeze-epochs 1
    gluon-finetune lr-find data/ --model resnet18_v1 --unfreeze 1 --out lr_find.png
    gluon-finetune explain --model resnet18_v1 --classes 2 --config rules.yaml
    gluon-finetune plot --model resnet18_v1 --classes 2 --config rules.yaml --steps 500
    gluon-finetune launch -n 2 -s 1 -- python train.py      (see launch.py)

Settings come from ``--config`` (YAML or JSON, see ``config.py``) and from
flags; a flag given on the command line wins over the config, and a
``--layer-lr`` rule replaces the config's rule for the same key.

A flag, config, folder or file that cannot be used ends the command with one
line on stderr and status 2 (the package marks such errors: ``InputError``,
``RuleError``); the line names the config's file and line only when the value
at fault came from the config. Any other exception is a bug and keeps its
traceback.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from typing import Any, Dict, FrozenSet, List, NamedTuple, Optional, Tuple

from ..checks import ArgumentParser, InputError, InvalidValueError
from ..rules.resolution import RuleError
from .commands import COMMANDS
from .config import RECIPES, Config, ConfigError, check_optimizer, load_config, rule_key

_DEFAULTS = {"optimizer": "sgd", "learning_rate": 0.01, "epochs": 5, "batch_size": 32,
             "image_size": 224, "bn": "frozen", "granularity": "unit"}
_FINE_TUNE_LR = 2e-3  # fine_tune's own default base_lr


def parse_layer_rule(text: str) -> Tuple[object, Optional[float]]:
    """``KEY=VALUE`` -> a rule. An integer KEY is a block index; VALUE is a
    multiplier, ``0`` or ``frozen`` freezes."""
    key, sep, value = text.rpartition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=MULTIPLIER (e.g. output=10 or "
                                         f"-1=10), got {text!r}")
    if key.startswith("re:"):
        try:
            re.compile(key[3:])
        except re.error as err:
            raise argparse.ArgumentTypeError(f"invalid regular expression in {text!r}: "
                                             f"{err}") from None
    if value.strip().lower() == "frozen":
        return rule_key(key), None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(
            f"the multiplier in {text!r} must be a finite number or 'frozen', got {value!r}")
    return rule_key(key), number


def _number_type(expected: str, accepts, convert=float):
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accepts(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


_finite = _number_type("a finite number", math.isfinite)
_positive_rate = _number_type("a finite number > 0", lambda v: math.isfinite(v) and v > 0)
_positive_int = _number_type("a positive integer", lambda v: v >= 1, int)
_count = _number_type("an integer >= 0", lambda v: v >= 0, int)
_seed = _number_type("an integer in 0..4294967295", lambda v: 0 <= v < 2 ** 32, int)


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="a model-zoo name, e.g. resnet18_v1 (or in --config)")
    parser.add_argument("--classes", type=_positive_int,
                        help="replace the head with this many outputs")
    parser.add_argument("--unfreeze", type=_count, metavar="N",
                        help="train only the last N blocks")
    parser.add_argument("--config", metavar="FILE", help="settings and rules, YAML or JSON")
    parser.add_argument("--lr", type=_positive_rate, dest="learning_rate",
                        help=f"base learning rate (default {_DEFAULTS['learning_rate']})")
    parser.add_argument("--layer-lr", type=parse_layer_rule, action="append", default=[],
                        metavar="KEY=MULT", help="a rule: block path, parameter name, glob, "
                        "index (-1: the head) or range, with a learning-rate multiplier (0 or "
                        "'frozen' freezes); repeatable")
    parser.add_argument("--optimizer", help=f"MXNet optimizer (default {_DEFAULTS['optimizer']})")
    parser.add_argument("--momentum", type=_finite,
                        help="momentum for sgd/nag (default 0.9 for those)")
    parser.add_argument("--wd", type=_finite, help="weight decay")
    parser.add_argument("--bn", choices=("frozen", "stats", "train"),
                        help="BatchNorm in frozen blocks (default frozen)")
    parser.add_argument("--no-weight-decay", action="store_const", const=True, default=None,
                        help="no weight decay on biases and normalization layers "
                        "(no_weight_decay(net) rules, merged with the others)")


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    """The image folder, the model's weights and the run's settings (train, lr-find)."""
    parser.add_argument("data", help="the image folder")
    _add_model_args(parser)
    parser.add_argument("--batch-size", type=_positive_int, help="default 32")
    parser.add_argument("--image-size", type=_positive_int, help="resize to this (default 224)")
    parser.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                        help="start from the zoo's weights (default: yes)")
    parser.add_argument("--root", help="folder of pretrained weights (default: MXNet's)")
    parser.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_train_command(commands) -> None:
    train = commands.add_parser("train", help="fine-tune a zoo model on an image folder",
                                description="Fine-tune a zoo model on an image folder: "
                                "DATA/<class>/<image>, or DATA/train/... and DATA/val/...")
    _add_data_args(train)
    train.add_argument("--epochs", type=_positive_int, help="default 5 (with --recipe "
                       "fine_tune: the epochs after the head-only ones)")
    train.add_argument("--gradual", type=_positive_int, metavar="EVERY",
                       help="gradual unfreezing: the head first, one more block every EVERY "
                       "epochs")
    train.add_argument("--recipe", choices=RECIPES, help="fine_tune: the head alone for "
                       "--freeze-epochs, then every block with discriminative one-cycle "
                       "rates (default --lr 0.002)")
    train.add_argument("--freeze-epochs", type=_count, metavar="N",
                       help="with --recipe fine_tune: head-only epochs (default 1)")
    train.add_argument("--save", metavar="FILE", help="write the parameters here (and the "
                       "trainer state to FILE.states)")


def _add_lr_find_command(commands) -> None:
    find = commands.add_parser("lr-find", help="learning-rate range test on an image folder",
                               description="Sweep the base learning rate geometrically over "
                               "--num-iter training batches, print the suggested rate and "
                               "plot loss against rate. The network is left untouched.")
    _add_data_args(find)
    find.add_argument("--start-lr", type=_positive_rate, default=1e-7, help="default 1e-7")
    find.add_argument("--end-lr", type=_positive_rate, default=10.0, help="default 10")
    find.add_argument("--num-iter", type=_number_type("an integer >= 2", lambda v: v >= 2, int),
                      default=100, help="rates to try, one batch each (default 100)")
    find.add_argument("--out", default="lr_find.png", help="the plot (default lr_find.png)")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="gluon-finetune", description=(
        "Per-layer learning rates and freezing for MXNet Gluon fine-tuning."))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train_command(commands)
    _add_lr_find_command(commands)
    explain = commands.add_parser("explain", help="print the rule table for a zoo model")
    _add_model_args(explain)
    plot = commands.add_parser("plot", help="write each layer's learning rate over the "
                               "steps to a PNG")
    _add_model_args(plot)
    plot.add_argument("--steps", type=_positive_int, default=1000,
                      help="how many updates to draw (default 1000)")
    plot.add_argument("--out", default="lr_schedule.png", help="the PNG (default "
                      "lr_schedule.png)")
    commands.add_parser("launch", add_help=False, help="run a distributed (dist_sync) job "
                        "on this machine: launch -n 2 -s 1 -- python train.py")
    return parser


# ----------------------------------------------------------------- where errors come from

class _Origin(NamedTuple):
    """What the config gave and no flag replaced: the settings and the rule keys."""
    config: Optional[Config] = None
    settings: FrozenSet[str] = frozenset()
    rules: Tuple = ()


class _Steps:
    """Which config keys feed the step the command is at (argument name -> key path),
    so that an error about one of them names the config's file and line, and an
    error about anything else (the data folder, ``--out``) does not."""

    def __init__(self) -> None:
        self.origin = _Origin()
        self.keys: Dict[str, Tuple[str, ...]] = {}

    def now(self, **keys) -> None:
        self.keys = {arg: (key,) if isinstance(key, str) else key for arg, key in keys.items()}

    def message(self, err: Exception) -> str:
        text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        config = self.origin.config
        if config is None or isinstance(err, ConfigError):
            return text
        keys = self.keys.get(getattr(err, "argument", None))
        if keys == ("layers",) or isinstance(err, RuleError):
            return config.locate(err, self.origin.rules)
        if keys and keys[0] in self.origin.settings:
            return f"{config.where(*keys)}: {'.'.join(keys)}: {text}"
        return text


# ----------------------------------------------------------------- settings (the commands
# themselves: commands.py)

def _settings(args, config: Optional[Config]) -> Tuple[Dict[str, Any], _Origin]:
    """Defaults < config < flags given on the command line; and what the config gave."""
    settings = dict(_DEFAULTS)
    flags = {k: v for k, v in vars(args).items()
             if v is not None and k not in ("layer_lr", "config", "command")}
    if config is not None:
        settings.update(config.settings)
    settings.update(flags)
    if settings.get("recipe") == "fine_tune" and "learning_rate" not in \
            set(flags) | set(config.settings if config is not None else ()):
        settings["learning_rate"] = _FINE_TUNE_LR
    rules = dict(config.layers or ()) if config is not None else {}
    flag_rules = dict(args.layer_lr)
    rules.update(flag_rules)  # a flag replaces the config's rule for the same key
    settings["layers"] = list(rules.items()) if (rules or config and config.layers is not None) \
        else None
    if not settings.get("model"):
        raise InvalidValueError("no model: give --model NAME or 'model:' in the config",
                                argument="model")
    check_optimizer(settings["optimizer"])  # a flag's: the config's is checked when loaded
    if config is None:
        return settings, _Origin()
    replaced = set(flags) | ({"gradual_unfreezing"} if "gradual" in flags else set())
    return settings, _Origin(config, frozenset(set(config.settings) - replaced),
                             tuple(k for k, _ in config.layers or () if k not in flag_rules))


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command: 0 on success; 2, with a one-line message, when an input (a flag,
    the config, the data, a file) cannot be used. Anything else is a bug: it raises."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["launch"]:  # its own parser: everything after '--' is the command
        from .launch import main as launch_main
        return launch_main(argv[1:])
    args = build_parser().parse_args(argv)
    steps = _Steps()
    try:
        config = load_config(args.config) if args.config else None
        settings, steps.origin = _settings(args, config)
        COMMANDS[args.command](settings, args, steps)
    except (InputError, RuleError) as err:
        print(f"gluon-finetune: error: {steps.message(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
