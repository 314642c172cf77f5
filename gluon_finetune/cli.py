"""The ``gluon-finetune`` command: ``train``, ``explain``, ``plot`` and ``launch``.

    gluon-finetune train data/ --model resnet18_v1 --unfreeze 3 --lr 0.01 \\
        --layer-lr output=10 --epochs 5 --save model.params
    gluon-finetune explain --model resnet18_v1 --classes 2 --config rules.yaml
    gluon-finetune plot --model resnet18_v1 --classes 2 --config rules.yaml --steps 500
    gluon-finetune launch -n 2 -s 1 -- python train.py      (see launch.py)

Settings come from ``--config`` (YAML or JSON, see ``config.py``) and from
flags; a flag given on the command line wins over the config, and a
``--layer-lr`` rule replaces the config's rule for the same key.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List, Optional, Tuple

from .config import ConfigError, load_config, rule_key

_DEFAULTS = {"optimizer": "sgd", "learning_rate": 0.01, "epochs": 5, "batch_size": 32,
             "image_size": 224, "bn": "frozen", "granularity": "unit"}
_MOMENTUM_OPTIMIZERS = ("sgd", "nag")


def parse_layer_rule(text: str) -> Tuple[object, Optional[float]]:
    """``KEY=VALUE`` -> a rule. An integer KEY is a block index; VALUE is a
    multiplier, ``0`` or ``frozen`` freezes."""
    key, sep, value = text.rpartition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=MULTIPLIER (e.g. output=10), got {text!r}")
    if value.strip().lower() == "frozen":
        return rule_key(key), None
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"the multiplier in {text!r} must be a number or 'frozen', got {value!r}") from None
    return rule_key(key), number


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="a model-zoo name, e.g. resnet18_v1 (or in --config)")
    parser.add_argument("--classes", type=_positive_int,
                        help="replace the head with this many outputs")
    parser.add_argument("--unfreeze", type=int, metavar="N", help="train only the last N blocks")
    parser.add_argument("--config", metavar="FILE", help="settings and rules, YAML or JSON")
    parser.add_argument("--lr", type=float, dest="learning_rate",
                        help=f"base learning rate (default {_DEFAULTS['learning_rate']})")
    parser.add_argument("--layer-lr", type=parse_layer_rule, action="append", default=[],
                        metavar="KEY=MULT", help="a rule: block path, parameter name, glob, "
                        "index or range, with a learning-rate multiplier (0 or 'frozen' "
                        "freezes); repeatable")
    parser.add_argument("--optimizer", help=f"MXNet optimizer (default {_DEFAULTS['optimizer']})")
    parser.add_argument("--momentum", type=float,
                        help="momentum for sgd/nag (default 0.9 for those)")
    parser.add_argument("--wd", type=float, help="weight decay")
    parser.add_argument("--bn", choices=("frozen", "stats", "train"),
                        help="BatchNorm in frozen blocks (default frozen)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gluon-finetune", description=(
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
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
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


# ----------------------------------------------------------------- settings

def _settings(args, config) -> Dict[str, Any]:
    """Defaults < config < flags given on the command line."""
    settings = dict(_DEFAULTS)
    if config is not None:
        settings.update(config.settings)
    settings.update({k: v for k, v in vars(args).items()
                     if v is not None and k not in ("layer_lr", "config", "command")})
    rules = dict(config.layers or ()) if config is not None else {}
    rules.update(args.layer_lr)  # a flag replaces the config's rule for the same key
    settings["layers"] = list(rules.items()) if (rules or config and config.layers is not None) \
        else None
    if not settings.get("model"):
        raise ValueError("no model: give --model NAME or 'model:' in the config")
    return settings


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


def _build(settings: Dict[str, Any], classes: Optional[int] = None, pretrained: bool = False):
    """(net, trainer) for the settings."""
    from .trainer import LayerwiseTrainer
    from .zoo import get_model
    net = get_model(settings["model"], classes=settings.get("classes", classes),
                    unfreeze=settings.get("unfreeze"), pretrained=pretrained,
                    root=settings.get("root"), granularity=settings["granularity"],
                    bn=settings["bn"])
    trainer = LayerwiseTrainer(net, settings["optimizer"], _optimizer_params(settings),
                               layers=settings["layers"], bn=settings["bn"])
    if settings.get("unfreeze") is not None:  # a limit on top of the rules: "*" cannot thaw
        trainer.set_trainable_blocks(settings["unfreeze"])
    return net, trainer


# ----------------------------------------------------------------- commands

def _explain(settings: Dict[str, Any]) -> None:
    _, trainer = _build(settings)
    print(trainer.explain())


def _plot(settings: Dict[str, Any], args) -> None:
    from .plots import plot_schedules
    _, trainer = _build(settings)
    print(f"wrote {plot_schedules(trainer, args.steps, args.out)}")


def _unfreezer(trainer, settings: Dict[str, Any]):
    from .unfreezing import GradualUnfreezing
    spec = dict(settings.get("gradual_unfreezing") or {})
    if settings.get("gradual") is not None:
        spec = {"every": settings["gradual"], "restart": spec.get("restart")}
    if not spec:
        return None
    return GradualUnfreezing(trainer, **spec).on_epoch


def _train(settings: Dict[str, Any], args) -> None:
    import mxnet as mx
    import numpy as np

    from .data import image_folders
    from .training import fit
    mx.random.seed(args.seed)
    np.random.seed(args.seed)
    data = image_folders(args.data, settings["image_size"], settings["batch_size"])
    if settings.get("classes") not in (None, len(data.classes)):
        raise ValueError(f"classes is {settings['classes']}, but {args.data!r} has "
                         f"{len(data.classes)} class folders: {data.classes}")
    net, trainer = _build(settings, classes=len(data.classes),
                          pretrained=settings.get("pretrained", True))
    history = fit(net, trainer, data.train, settings["epochs"], data.val,
                  on_epoch=_unfreezer(trainer, settings), progress=not args.no_progress)
    if args.save:
        net.save_parameters(args.save)
        trainer.save_states(args.save + ".states")
    last = history[-1]
    val = f"  val_acc {last['val_acc']:.4f}" if "val_acc" in last else ""
    saved = f"  saved {args.save}" if args.save else ""
    print(f"final: epochs {len(history)}  train_loss {last['train_loss']:.4f}  "
          f"train_acc {last['train_acc']:.4f}{val}  seconds {last['seconds']:.1f}{saved}")


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command; 0 on success, 2 on a usage or configuration error."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["launch"]:  # its own parser: everything after '--' is the command
        from .launch import main as launch_main
        return launch_main(argv[1:])
    args = build_parser().parse_args(argv)
    config = None
    try:
        config = load_config(args.config) if args.config else None
        settings = _settings(args, config)
        if args.command == "train":
            _train(settings, args)
        elif args.command == "explain":
            _explain(settings)
        else:
            _plot(settings, args)
    except ConfigError as err:
        print(f"gluon-finetune: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError, KeyError) as err:
        message = config.locate(err) if config is not None else str(err)
        print(f"gluon-finetune: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
