"""Fine-tuning configs in YAML or JSON: settings and layer rules as data.

```yaml
model: resnet18_v1
classes: 2
unfreeze: 5
learning_rate: 1e-2
optimizer: sgd
optimizer_params: {momentum: 0.9, wd: 1e-4}
layers:
  "*": 0.1
  0:2: 0
  output:
    learning_rate: 0.05
    lr_scheduler: {type: factor, step: 100, factor: 0.5}
gradual_unfreezing: {schedule: {0: 1, 2: 3}}
```

Every error names the file, the line and the key, and comes when the file is
loaded, except what needs the model to be seen (a rule that matches nothing,
a schedule that thaws more blocks than the network has). How the text is
read (YAML's number and key rules): ``config_text.py``.
"""
from __future__ import annotations

import inspect
import math
import os
import re
from typing import Any, Dict, List, Optional, Tuple

from ..checks import InvalidTypeError, InvalidValueError, did_you_mean, is_int, is_real
from ..rules.resolution import VALUE_KEYS
from .config_text import ConfigError, line_of, parse, read_text
from .config_text import fail as _fail

__all__ = ["Config", "ConfigError", "load_config", "rule_key", "check_optimizer",
           "SCHEDULERS", "SETTINGS", "RECIPES"]

# Known top-level keys, with the Python types each accepts.
SETTINGS: Dict[str, tuple] = {
    "model": (str,), "classes": (int,), "unfreeze": (int,), "pretrained": (bool,),
    "root": (str,), "optimizer": (str,), "learning_rate": (int, float),
    "optimizer_params": (dict,), "lr_scheduler": (dict,), "layers": (dict,),
    "gradual_unfreezing": (dict,), "epochs": (int,), "batch_size": (int,),
    "bn": (str,), "granularity": (str,), "image_size": (int,), "no_weight_decay": (bool,),
    "recipe": (str,), "freeze_epochs": (int,),
}
RECIPES = ("fine_tune",)  # train's recipes besides the plain loop (cli.py)
_POSITIVE = {"classes", "epochs", "batch_size", "image_size"}
_INDEX = re.compile(r"^\s*-?\d+\s*$")
_UNFREEZING_KEYS = ("every", "schedule", "restart")
_RATE_FIELDS = ("learning_rate", "lr_mult", "wd_mult")
# the rules a rules.py message is about: "rule 'a': ...", "rules 'a' and 'b' both ..."


def _schedulers() -> Dict[str, type]:
    import mxnet as mx

    from ..optim.schedules import OneCycle, SlantedTriangular
    return {"factor": mx.lr_scheduler.FactorScheduler,
            "multifactor": mx.lr_scheduler.MultiFactorScheduler,
            "poly": mx.lr_scheduler.PolyScheduler, "cosine": mx.lr_scheduler.CosineScheduler,
            "slanted_triangular": SlantedTriangular, "one_cycle": OneCycle}


SCHEDULERS = ("factor", "multifactor", "poly", "cosine", "slanted_triangular", "one_cycle")


class Config:
    """A loaded config: ``settings`` (top-level keys) and ``layers`` (rule pairs).

    ``where(*keys)`` gives ``"file, line N"`` for a key path, for messages.
    """

    def __init__(self, path: str, settings: Dict[str, Any], lines: Dict[tuple, int]):
        self.path, self.settings, self._lines = path, settings, lines

    @property
    def layers(self) -> Optional[List[Tuple[Any, Any]]]:
        rules = self.settings.get("layers")
        return None if rules is None else list(rules.items())

    def get(self, key: str, default: Any = None) -> Any:
        return self.settings.get(key, default)

    def where(self, *keys) -> str:
        line = line_of(self._lines, keys)
        return f"{self.path}, line {line}" if line else self.path

    def locate(self, err: Exception, keys=None) -> str:
        """``err``'s message, prefixed with the file and line of the config rule at fault.

        The rules at fault are the ones the error carries (``err.rule_keys``, set
        by ``rules.resolve``); ``keys`` limits the search to these config keys
        (default: all of the config's). An error about no rule of this file is
        returned as it is.
        """
        text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        at_fault = getattr(err, "rule_keys", None) or ()
        for key in (self.settings.get("layers") or {}) if keys is None else keys:
            if any(type(key) is type(bad) and key == bad for bad in at_fault):
                return f"{self.where('layers', key)}: layers: {text}"
        return text


def rule_key(key: Any) -> Any:
    """A rule key read from text: an integer-looking string is a block index."""
    return int(key) if isinstance(key, str) and _INDEX.match(key) else key


def check_optimizer(name: str) -> str:
    """``name`` if MXNet has an optimizer of that name (any case).

    Raises
    ------
    InvalidValueError
        Naming a close match and every registered optimizer.

    Examples
    --------
    >>> check_optimizer("SGD")
    'SGD'
    """
    from mxnet.optimizer import Optimizer
    registry = sorted(Optimizer.opt_registry)
    if isinstance(name, str) and name.lower() in registry:
        return name
    hint = did_you_mean(str(name).lower(), registry, n=1, cutoff=0.6)
    hint = f"{hint} " if hint else ""
    raise InvalidValueError(f"unknown optimizer {name!r}. {hint}MXNet has: "
                            f"{', '.join(registry)}", argument="optimizer")


def _check_number(value, keys, path, lines, positive=False) -> None:
    if not is_real(value) or not math.isfinite(value):
        raise _fail(path, lines, keys, f"expected a finite number, got {value!r}")
    if positive and value <= 0:
        raise _fail(path, lines, keys, f"must be > 0, got {value!r}")


def _scheduler(spec, keys: tuple, path: str, lines) -> Any:
    """``{type: factor, step: 100, ...}`` -> the scheduler object."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise _fail(path, lines, keys, f"expected a mapping with 'type' (one of "
                    f"{', '.join(SCHEDULERS)}) and its arguments, got {spec!r}")
    kind, args = spec["type"], {k: v for k, v in spec.items() if k != "type"}
    classes = _schedulers()
    if kind not in classes:
        raise _fail(path, lines, keys + ("type",), f"unknown scheduler {kind!r}; expected one "
                    f"of {', '.join(SCHEDULERS)}")
    accepted = [n for n in inspect.signature(classes[kind]).parameters if n != "self"]
    for name in args:
        if name not in accepted:
            raise _fail(path, lines, keys + (name,), f"{kind} scheduler has no argument "
                        f"{name!r}; it takes {', '.join(accepted)}")
    try:
        return classes[kind](**args)
    except (TypeError, ValueError, AssertionError) as err:
        raise _fail(path, lines, keys, f"cannot build a {kind} scheduler from {args}: "
                    f"{err or type(err).__name__}") from None


def _rule_key(key, path: str, lines) -> None:
    if isinstance(key, str) or is_int(key):
        return
    raise _fail(path, lines, ("layers", key), f"a rule key is a block path, a parameter name "
                f"or glob, 're:<regex>', '*', a block index or a range 'm:n'; got {key!r}")


def _rule_fields(value: dict, keys: tuple, path: str, lines) -> dict:
    out = dict(value)
    for field, item in value.items():
        if field not in VALUE_KEYS:
            hint = did_you_mean(field, VALUE_KEYS, n=1, cutoff=0.6)
            hint = f"{hint} " if hint else ""
            raise _fail(path, lines, keys + (field,), f"unknown key. {hint}A rule's mapping "
                        f"takes {', '.join(VALUE_KEYS)}")
        if field in _RATE_FIELDS:
            _check_number(item, keys + (field,), path, lines)
        if field == "frozen" and not isinstance(item, bool):
            raise _fail(path, lines, keys + (field,), f"expected true or false, got {item!r}")
    if "lr_scheduler" in out:
        out["lr_scheduler"] = _scheduler(out["lr_scheduler"], keys + ("lr_scheduler",),
                                         path, lines)
    return out


def _rule_value(value, keys: tuple, path: str, lines) -> Any:
    """A rule value as data -> as the rule engine takes it (schedulers built)."""
    if value is None:
        return value
    if isinstance(value, bool):
        raise _fail(path, lines, keys, f"{str(value).lower()} is not a rule value; use a "
                    f"multiplier, 0 or null (frozen), or a mapping")
    if is_real(value):
        _check_number(value, keys, path, lines)
        return value
    if isinstance(value, dict):
        return _rule_fields(value, keys, path, lines)
    raise _fail(path, lines, keys, f"expected a multiplier, null (frozen) or a mapping with "
                f"{'/'.join(VALUE_KEYS)}, got {value!r}")


def _has_type(value, types: tuple) -> bool:
    if isinstance(value, bool):
        return bool in types
    if int in types and is_int(value) or float in types and is_real(value):
        return True
    return isinstance(value, tuple(t for t in types if t not in (int, float)))


def _choices(key: str) -> Tuple[str, ...]:
    if key == "bn":
        from ..trainer.freezing import BN_POLICIES
        return BN_POLICIES
    from ..structure.index import GRANULARITIES
    return GRANULARITIES


def _check_setting(key: str, value, path: str, lines) -> None:
    if key not in SETTINGS:
        hint = did_you_mean(key, SETTINGS, n=1, cutoff=0.6)
        hint = f"{hint} " if hint else ""
        raise _fail(path, lines, (key,), f"unknown key. {hint}Expected one of "
                    f"{', '.join(SETTINGS)} (rules go under 'layers:')")
    types = SETTINGS[key]
    if not _has_type(value, types):
        expected = " or ".join("mapping" if t is dict else t.__name__ for t in types)
        raise _fail(path, lines, (key,), f"expected {expected}, got {value!r}")
    if key == "learning_rate":
        _check_number(value, (key,), path, lines, positive=True)
    if key in _POSITIVE and value < 1:
        raise _fail(path, lines, (key,), f"must be at least 1, got {value!r}")
    if key in ("unfreeze", "freeze_epochs") and value < 0:
        raise _fail(path, lines, (key,), f"must be >= 0, got {value!r}")
    if key == "recipe" and value not in RECIPES:
        raise _fail(path, lines, (key,), f"expected one of {', '.join(RECIPES)}, got "
                    f"{value!r}")
    if key in ("bn", "granularity") and value not in _choices(key):
        raise _fail(path, lines, (key,), f"expected one of {', '.join(_choices(key))}, "
                    f"got {value!r}")
    if key == "optimizer":
        try:
            check_optimizer(value)
        except InvalidValueError as err:
            raise _fail(path, lines, (key,), str(err)) from None


def _check_optimizer_params(params: dict, path: str, lines) -> None:
    for name, value in params.items():
        keys = ("optimizer_params", name)
        if isinstance(value, dict):
            raise _fail(path, lines, keys, "expected a number, true/false or a string; "
                        "rules go under 'layers:'")
        if is_real(value):
            _check_number(value, keys, path, lines)
        elif value is not None and not isinstance(value, (bool, str)):
            raise _fail(path, lines, keys, f"expected a number, true/false or a string, "
                        f"got {value!r}")


def _count(value, keys: tuple, path: str, lines, minimum: int) -> int:
    if not is_int(value) or value < minimum:
        raise _fail(path, lines, keys, f"expected an int >= {minimum}, got {value!r}")
    return int(value)


def _unfreezing_schedule(schedule, path: str, lines) -> Dict[int, int]:
    keys = ("gradual_unfreezing", "schedule")
    if not isinstance(schedule, dict):
        raise _fail(path, lines, keys, f"expected a mapping epoch: trainable blocks, got "
                    f"{schedule!r}")
    out = {}
    for epoch, blocks in schedule.items():
        epoch_key = rule_key(epoch)  # JSON keys are strings: "2" is epoch 2
        number = _count(epoch_key, keys + (epoch,), path, lines, 0)
        if number in out:
            raise _fail(path, lines, keys + (epoch,), f"epoch {number} is given twice")
        out[number] = _count(blocks, keys + (epoch,), path, lines, 0)
    if 0 not in out:
        raise _fail(path, lines, keys, f"must say how many blocks train at epoch 0, got "
                    f"epochs {sorted(out)}")
    return out


def _unfreezing(spec: dict, path: str, lines) -> dict:
    """The ``gradual_unfreezing`` mapping, checked, as ``GradualUnfreezing`` takes it."""
    for key in spec:
        if key not in _UNFREEZING_KEYS:
            raise _fail(path, lines, ("gradual_unfreezing", key), f"unknown key; expected "
                        f"one of {', '.join(_UNFREEZING_KEYS)}")
    out = dict(spec)
    if spec and ("every" in spec) == ("schedule" in spec):
        raise _fail(path, lines, ("gradual_unfreezing",), "give exactly one of every "
                    "(epochs per newly thawed block) and schedule (epoch: trainable blocks)")
    if "every" in spec:
        out["every"] = _count(spec["every"], ("gradual_unfreezing", "every"), path, lines, 1)
    if "schedule" in spec:
        out["schedule"] = _unfreezing_schedule(spec["schedule"], path, lines)
    if spec.get("restart") not in (None, "schedule"):
        raise _fail(path, lines, ("gradual_unfreezing", "restart"), f"expected schedule or "
                    f"null, got {spec['restart']!r}")
    return out


def _settings(data: dict, path: str, lines) -> Dict[str, Any]:
    for key, value in data.items():
        _check_setting(key, value, path, lines)
    settings = dict(data)
    if "lr_scheduler" in settings:
        settings["lr_scheduler"] = _scheduler(settings["lr_scheduler"], ("lr_scheduler",),
                                              path, lines)
    _check_optimizer_params(settings.get("optimizer_params", {}), path, lines)
    if "layers" in settings:
        # JSON keys are always strings: there a digit-only key is a block index.
        as_key = rule_key if path.lower().endswith(".json") else (lambda key: key)
        for key in settings["layers"]:
            _rule_key(key, path, lines)
        settings["layers"] = {as_key(key): _rule_value(value, ("layers", key), path, lines)
                              for key, value in settings["layers"].items()}
    if "gradual_unfreezing" in settings:
        settings["gradual_unfreezing"] = _unfreezing(settings["gradual_unfreezing"], path,
                                                     lines)
    return settings


def load_config(path: str) -> Config:
    """Read and check a YAML (``.yaml``/``.yml``) or JSON (``.json``) config.

    Parameters
    ----------
    path : str
        The file, UTF-8 text. Top-level keys: see ``SETTINGS``; rules go under
        ``layers`` (keys as in ``LayerwiseTrainer``; ``lr_scheduler`` values
        are ``{type: <one of SCHEDULERS>, <its arguments>}``).

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        For a missing or binary file, invalid YAML/JSON, an unknown or repeated
        key, or a value of the wrong type or out of range; the message names
        the file, line and key. (What needs the model, such as a rule that
        matches nothing, is checked when the trainer is built.)

    Examples
    --------
    >>> config = load_config("rules.yaml")                # doctest: +SKIP
    >>> LayerwiseTrainer(net, "sgd", {"learning_rate": config.get("learning_rate")},
    ...                  layers=config.layers)            # doctest: +SKIP
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"path must be a file name, got {type(path).__name__}: "
                               f"{path!r}", argument="path")
    path = os.fspath(path)
    data, lines = parse(path, read_text(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level, got "
                          f"{type(data).__name__}")
    return Config(path, _settings(data, path, lines), lines)
