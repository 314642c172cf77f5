"""The ``gluon-finetune`` command: ``train``, ``lr-find``, ``explain``, ``plot``, ``launch``.

    gluon-finetune train data/ --model resnet18_v1 --unfreeze 3 --lr 0.01 \\
        --layer-lr output=10 --layer-lr -1=10 --epochs 5 --save model.params
    gluon-finetune train data/ --model resnet18_v1 --recipe fine_tune --freeze-epochs 1
    gluon-finetune lr-find data/ --model resnet18_v1 --unfreeze 1 --out lr_find.png
    gluon-finetune explain --model resnet18_v1 --classes 2 --config rules.yaml
    gluon-finetune plot --model resnet18_v1 --classes 2 --config rules.yaml --steps 500
    gluon-finetune launch -n 2 -s 1 -- python train.py      (see launch.py)

Every flag and config key is declared once, in ``schema.py``; the parser
below is built from it. Settings are defaults < ``--config`` (YAML or JSON,
``config.py``) < flags given on the command line; a ``--layer-lr`` rule
replaces the config's rule for the same key.

An error of the package's family (``gluon_finetune.errors.FinetuneError``: a
flag, config, folder or file that cannot be used) ends the command with one
line on stderr and status 2; the line names the config's file and line only
when the value at fault came from the config. Any other exception is a bug
and keeps its traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

from ..checks import ArgumentParser
from ..errors import ConfigError, FinetuneError, RuleError
from ..rules.keys import key_id
from .commands import COMMANDS
from .config import Config, load_config
from .declarations import flag_of, options
from .schema import COMMANDS as DECLARED
from .schema import Option, Settings, refuse

__all__ = ["main", "build_parser", "settings_of"]


class _Rules(argparse.Action):
    """``--layer-lr``: one more rule; a key given twice (as the rule engine compares keys:
    ``0:2`` and ``0 : 2`` are one) is refused, as configs and
    ``LayerwiseTrainer(layers=...)`` refuse it (``3`` and ``"3"`` are two keys)."""

    def __call__(self, parser, namespace, values, option_string=None):
        rules = list(getattr(namespace, self.dest, None) or [])
        key, value = values
        for given, before in rules:
            if key_id(given) == key_id(key):
                parser.error(f"argument {option_string}: the rule key {key!r} is given twice "
                             f"({before} and {value}); give each key once")
        setattr(namespace, self.dest, rules + [values])


def _help(option: Option, command: str) -> str:
    shown = option.shown_for(command)
    text = option.help_for(command)
    return f"{text} (default {shown})" if shown else text


def _add(parser: argparse.ArgumentParser, option: Option, command: str) -> None:
    """The option's argument. Flags default to SUPPRESS: only what was given is in the
    namespace, so that a flag wins over the config and a default does not."""
    if option.action == "positional":
        nargs = option.nargs_for(command)
        parser.add_argument(option.name, type=option.kind.text, help=_help(option, command),
                            **({"nargs": nargs} if nargs else {}),
                            metavar=option.name.upper())
        return
    kwargs: Dict[str, Any] = dict(dest=option.name, default=argparse.SUPPRESS,
                                  help=_help(option, command))
    if option.action == "store_true":
        kwargs.update(action="store_const", const=True)
    elif option.action == "bool":
        kwargs.update(action=argparse.BooleanOptionalAction)
    elif option.action == "repeat":  # one value a flag, collected in a list
        kwargs.update(type=option.kind.text, metavar=option.metavar, action="append")
    else:
        kwargs.update(type=option.kind.text, metavar=option.metavar or option.kind.metavar,
                      action=_Rules if option.action == "append" else "store")
    parser.add_argument(flag_of(option), **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """argparse for every command, from the schema."""
    parser = ArgumentParser(prog="gluon-finetune", description=(
        "Per-layer learning rates and freezing for MXNet Gluon fine-tuning."))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, (summary, description) in DECLARED.items():
        sub = commands.add_parser(command, help=summary, description=description)
        for option in options():
            if command in option.commands and (flag_of(option) or
                                               option.action == "positional"):
                _add(sub, option, command)
    commands.add_parser("launch", add_help=False, help="run a distributed (dist_sync) job "
                        "on this machine: launch -n 2 -s 1 -- python train.py")
    return parser


# ----------------------------------------------------------------- settings and their origin

@dataclass(frozen=True)
class _Origin:
    """What the config gave and no flag replaced: the settings and the rule keys."""

    config: Optional[Config] = None
    settings: FrozenSet[str] = frozenset()
    rules: Tuple = ()

    def message(self, err: FinetuneError) -> str:
        """``err`` on one line, prefixed with the config's file and line when the value
        at fault came from the config (``err.setting``, a key path, or a rule)."""
        text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        if self.config is None or isinstance(err, ConfigError):
            return text
        setting = getattr(err, "setting", None)
        if setting == "layers" or isinstance(err, RuleError):
            return self.config.locate(err, self.rules)
        keys = tuple(setting.split(".")) if setting else ()
        if keys and keys[0] in self.settings:
            return f"{self.config.where(*keys)}: {setting}: {text}"
        return text


def _flags(args: argparse.Namespace) -> Dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k != "command"}


def _origin(args: argparse.Namespace, config: Optional[Config]) -> _Origin:
    if config is None:
        return _Origin()
    flags = _flags(args)
    # --gradual replaces the config's gradual_unfreezing (its restart: is kept)
    replaced = set(flags) | ({"gradual_unfreezing"} if "gradual" in flags else set())
    flag_keys = {key_id(k) for k, _ in flags.get("layers", ())}
    return _Origin(config, frozenset(set(config.settings) - replaced),
                   tuple(k for k, _ in config.layers or () if key_id(k) not in flag_keys))


def settings_of(args: argparse.Namespace, config: Optional[Config]) -> Settings:
    """Defaults < config < flags given on the command line, checked together."""
    given = dict(config.settings) if config is not None else {}
    flags = _flags(args)
    # a flag replaces the config's rule for its key (compared as the rule engine does;
    # two spellings of one key inside the config stay, for the trainer to refuse)
    flag_rules = list(flags.get("layers", ()))
    replaced = {key_id(k) for k, _ in flag_rules}
    rules = [(k, v) for k, v in dict(given.get("layers") or {}).items()
             if key_id(k) not in replaced] + flag_rules
    given.update(flags)
    if rules or (config is not None and config.layers is not None):
        given["layers"] = rules
    defaults = {o.name: o.default_for(args.command) for o in options()
                if isinstance(o.default, dict)}
    return Settings(command=args.command, **{**defaults, **given})


# flags that do not change what a run computes (where it goes, how it is shown, its data)
_NOT_RECORDED = ("data", "resume", "out", "save", "config", "no_progress")
_WITH_RESUME = ("resume", "data", "no_progress")  # what train --resume RUN may be given


def _given(args: argparse.Namespace, config: Optional[Config]) -> Dict[str, Any]:
    """What a run folder records to rebuild the settings: the config's text, the flags."""
    flags = {k: [list(rule) for rule in v] if k == "layers" else v
             for k, v in _flags(args).items() if k not in _NOT_RECORDED and v is not None}
    text = None if config is None else {"name": os.path.basename(config.path),
                                        "text": config.text}
    return {"config": text, "flags": flags}


def _resumed(args: argparse.Namespace) -> Tuple[Settings, Optional[Config]]:
    """``train --resume RUN [DATA]``: the settings the run recorded (its config's text and
    flags), on DATA if given."""
    from ..runs import RunFolder
    given = {k: v for k, v in _flags(args).items() if v is not None}
    other = sorted(set(given) - set(_WITH_RESUME))
    if other:
        raise refuse(other[0], f"--resume continues a run with the settings it was started "
                     f"with; {flag_of(next(o for o in options() if o.name == other[0]))} "
                     f"cannot change them (start a new run with --out)")
    record = RunFolder.open(args.resume).record
    saved = record.get("settings") or {}
    config = load_config(saved["config"]["name"], saved["config"]["text"]) \
        if saved.get("config") else None
    flags = {k: [tuple(rule) for rule in v] if k == "layers" else v
             for k, v in (saved.get("flags") or {}).items()}
    namespace = argparse.Namespace(command="train", **flags, resume=args.resume,
                                   data=given.get("data", record["data"]["root"]),
                                   **({"no_progress": True} if "no_progress" in given else {}))
    settings = settings_of(namespace, config)
    settings.given = saved
    return settings, config


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command: 0 on success; 2, with a one-line message, for an error of the
    package's family (a flag, the config, the data, a file that cannot be used).
    Anything else is a bug: it raises, with its traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["launch"]:  # its own parser: everything after '--' is the command
        from .launch import main as launch_main
        return launch_main(argv[1:])
    args = build_parser().parse_args(argv)
    origin = _Origin()
    try:
        if args.command == "train" and getattr(args, "resume", None) is not None:
            settings, config = _resumed(args)
        else:
            config = load_config(args.config) if getattr(args, "config", None) else None
            origin = _origin(args, config)
            settings = settings_of(args, config)
            settings.given = _given(args, config)
        COMMANDS[args.command](settings)
    except FinetuneError as err:
        print(f"gluon-finetune: error: {origin.message(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
