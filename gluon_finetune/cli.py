"""The ``gluon-finetune`` command: ``train``, ``explain``, ``plot`` and ``launch``.

    gluon-finetune train data/ --model resnet18_v1 --unfreeze 3 --lr 0.01 \\
        --layer-lr output=10 --layer-lr -1=10 --epochs 5 --save model.params
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
import os
import re
import sys
from typing import Any, Dict, FrozenSet, List, NamedTuple, Optional, Tuple

from .checks import ArgumentParser, InputError, InvalidValueError
from .config import Config, ConfigError, check_optimizer, load_config, rule_key
from .rules import RuleError, rule_items

_DEFAULTS = {"optimizer": "sgd", "learning_rate": 0.01, "epochs": 5, "batch_size": 32,
             "image_size": 224, "bn": "frozen", "granularity": "unit"}
_MOMENTUM_OPTIMIZERS = ("sgd", "nag")
_GRADUAL = {"schedule": ("gradual_unfreezing", "schedule"),
            "every": ("gradual_unfreezing", "every"),
            "restart": ("gradual_unfreezing", "restart")}


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


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="gluon-finetune", description=(
        "Per-layer learning rates and freezing for MXNet Gluon fine-tuning."))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser("train", help="fine-tune a zoo model on an image folder",
                                description="Fine-tune a zoo model on an image folder: "
                                "DATA/<class>/<image>, or DATA/train/... and DATA/val/...")
    train.add_argument("data", help="the image folder")
    _add_model_args(train)
    train.add_argument("--epochs", type=_positive_int, help="default 5")
    train.add_argument("--batch-size", type=_positive_int, help="default 32")
    train.add_argument("--image-size", type=_positive_int, help="resize to this (default 224)")
    train.add_argument("--gradual", type=_positive_int, metavar="EVERY",
                       help="gradual unfreezing: the head first, one more block every EVERY "
                       "epochs")
    train.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                       help="start from the zoo's weights (default: yes)")
    train.add_argument("--root", help="folder of pretrained weights (default: MXNet's)")
    train.add_argument("--save", metavar="FILE", help="write the parameters here (and the "
                       "trainer state to FILE.states)")
    train.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    train.add_argument("--no-progress", action="store_true", help="hide progress bars")
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


# ----------------------------------------------------------------- settings

def _settings(args, config: Optional[Config]) -> Tuple[Dict[str, Any], _Origin]:
    """Defaults < config < flags given on the command line; and what the config gave."""
    settings = dict(_DEFAULTS)
    flags = {k: v for k, v in vars(args).items()
             if v is not None and k not in ("layer_lr", "config", "command")}
    if config is not None:
        settings.update(config.settings)
    settings.update(flags)
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


def _optimizer_params(settings: Dict[str, Any]) -> Dict[str, Any]:
    params = dict(settings.get("optimizer_params") or {})
    params["learning_rate"] = settings["learning_rate"]
    if settings.get("momentum") is not None:
        params["momentum"] = settings["momentum"]
    elif settings["optimizer"] in _MOMENTUM_OPTIMIZERS:
        params.setdefault("momentum", 0.9)
    if settings.get("wd") is not None:
        params["wd"] = settings["wd"]
    if settings.get("lr_scheduler") is not None:
        params["lr_scheduler"] = settings["lr_scheduler"]
    return params


def _check_rules(net, settings: Dict[str, Any]) -> None:
    """Resolve the rules on the network first: ``resolve`` is pure and its only input
    here is the user's, so any error it raises is about the rules."""
    from .rules import resolve
    from .structure import block_names, structural_paths
    try:
        resolve(settings["layers"] or (), list(net.collect_params().keys()),
                paths=structural_paths(net), base_lr=settings["learning_rate"],
                block_list=block_names(net, net.finetune_granularity))
    except (ValueError, TypeError) as err:
        wrapped = InvalidValueError(str(err), argument="layers")
        wrapped.rule_keys = getattr(err, "rule_keys", None)  # which rules are at fault
        raise wrapped from err


def _build(settings: Dict[str, Any], steps: _Steps, classes: Optional[int] = None,
           pretrained: bool = False):
    """(net, trainer) for the settings."""
    from .trainer import LayerwiseTrainer
    from .zoo import get_model
    steps.now(name="model", classes="classes", unfreeze="unfreeze", pretrained="pretrained",
              root="root", granularity="granularity", bn="bn")
    net = get_model(settings["model"], classes=settings.get("classes", classes),
                    unfreeze=settings.get("unfreeze"), pretrained=pretrained,
                    root=settings.get("root"), granularity=settings["granularity"],
                    bn=settings["bn"])
    steps.now(layers="layers")
    if settings.get("no_weight_decay"):
        from .recipes import combine, no_weight_decay
        settings = dict(settings, layers=rule_items(combine(settings["layers"] or {},
                                                             no_weight_decay(net))))
    _check_rules(net, settings)
    steps.now(optimizer_params="optimizer_params", layers="layers")
    trainer = LayerwiseTrainer(net, settings["optimizer"], _optimizer_params(settings),
                               layers=settings["layers"], bn=settings["bn"])
    if settings.get("unfreeze") is not None:  # a limit on top of the rules: "*" cannot thaw
        steps.now(unfreeze="unfreeze")
        trainer.set_trainable_blocks(settings["unfreeze"])
    return net, trainer


def _check_writable(path: str, flag: str) -> None:
    """Refuse an output file that cannot be written, before the work that fills it."""
    if os.path.isdir(path):
        raise InvalidValueError(f"{flag} {path!r} is a folder; give a file name", argument=flag)
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):  # missing folders are made when writing
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise InvalidValueError(f"{flag} {path!r} cannot be written: {folder!r} is a file, "
                                f"not a folder", argument=flag)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InvalidValueError(f"{flag} {path!r} cannot be written: no permission to write "
                                f"in {folder!r}", argument=flag)


# ----------------------------------------------------------------- commands

def _explain(settings: Dict[str, Any], args, steps: _Steps) -> None:
    _, trainer = _build(settings, steps)
    print(trainer.explain())


def _plot(settings: Dict[str, Any], args, steps: _Steps) -> None:
    from matplotlib.backend_bases import FigureCanvasBase

    from .plots import plot_schedules
    _check_writable(args.out, "--out")
    kind = os.path.splitext(args.out)[1][1:].lower()
    if kind and kind not in FigureCanvasBase.get_supported_filetypes():
        raise InvalidValueError(f"--out {args.out!r}: matplotlib cannot write .{kind} files; "
                                f"use .png (or .pdf, .svg)", argument="out")
    _, trainer = _build(settings, steps)
    steps.now()
    print(f"wrote {plot_schedules(trainer, args.steps, args.out)}")


def _unfreezer(trainer, settings: Dict[str, Any]):
    from .unfreezing import GradualUnfreezing
    spec = dict(settings.get("gradual_unfreezing") or {})
    if settings.get("gradual") is not None:
        spec = {"every": settings["gradual"], "restart": spec.get("restart")}
    if not spec:
        return None
    return GradualUnfreezing(trainer, **spec).on_epoch


def _save(net, trainer, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    net.save_parameters(path)
    trainer.save_states(path + ".states")


def _train(settings: Dict[str, Any], args, steps: _Steps) -> None:
    import mxnet as mx
    import numpy as np

    from .data import image_folders
    from .input_size import check_input_size
    from .training import fit
    if args.save:
        _check_writable(args.save, "--save")
    mx.random.seed(args.seed)
    np.random.seed(args.seed)
    steps.now(image_size="image_size", batch_size="batch_size")
    data = image_folders(args.data, settings["image_size"], settings["batch_size"])
    steps.now(classes="classes")
    if settings.get("classes") not in (None, len(data.classes)):
        raise InvalidValueError(f"classes is {settings['classes']}, but {args.data!r} has "
                                f"{len(data.classes)} class folders: {data.classes}",
                                argument="classes")
    net, trainer = _build(settings, steps, classes=len(data.classes),
                          pretrained=settings.get("pretrained", True))
    steps.now(image_size="image_size")
    check_input_size(net, settings["image_size"], settings["model"])
    steps.now(**_GRADUAL)
    on_epoch = _unfreezer(trainer, settings)
    steps.now()
    history = fit(net, trainer, data.train, settings["epochs"], data.val,
                  on_epoch=on_epoch, progress=not args.no_progress)
    if args.save:
        _save(net, trainer, args.save)
    last = history[-1]
    val = f"  val_acc {last['val_acc']:.4f}" if "val_acc" in last else ""
    saved = f"  saved {args.save}" if args.save else ""
    print(f"final: epochs {len(history)}  train_loss {last['train_loss']:.4f}  "
          f"train_acc {last['train_acc']:.4f}{val}  seconds {last['seconds']:.1f}{saved}")


_COMMANDS = {"train": _train, "explain": _explain, "plot": _plot}


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
        _COMMANDS[args.command](settings, args, steps)
    except (InputError, RuleError) as err:
        print(f"gluon-finetune: error: {steps.message(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
