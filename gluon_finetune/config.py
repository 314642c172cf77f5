"""Fine-tuning configs in YAML or JSON: settings and layer rules as data.

```yaml
model: resnet18_v1
classes: 2
unfreeze: 5
learning_rate: 0.01
optimizer: sgd
optimizer_params: {momentum: 0.9, wd: 0.0001}
layers:
  "*": 0.1
  "0:2": 0
  output:
    learning_rate: 0.05
    lr_scheduler: {type: factor, step: 100, factor: 0.5}
```

Every error names the file, the line and the key. YAML is read with a safe
loader, except that ``3:5`` stays the string "3:5" (a block range) instead of
YAML 1.1's base-60 number 185, and a key given twice is an error instead of
the last one silently winning.
"""
from __future__ import annotations

import difflib
import inspect
import json
import math
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import yaml

__all__ = ["Config", "ConfigError", "load_config", "rule_key", "SCHEDULERS", "SETTINGS"]

# Known top-level keys, with the Python types each accepts.
SETTINGS: Dict[str, tuple] = {
    "model": (str,), "classes": (int,), "unfreeze": (int,), "pretrained": (bool,),
    "root": (str,), "optimizer": (str,), "learning_rate": (int, float),
    "optimizer_params": (dict,), "lr_scheduler": (dict,), "layers": (dict,),
    "gradual_unfreezing": (dict,), "epochs": (int,), "batch_size": (int,),
    "bn": (str,), "granularity": (str,), "image_size": (int,),
}
_POSITIVE = {"classes", "epochs", "batch_size", "image_size"}
_INDEX = re.compile(r"^\s*-?\d+\s*$")
_UNFREEZING_KEYS = {"every": (int,), "schedule": (dict,), "restart": (str,)}


class ConfigError(ValueError):
    """A config file that cannot be used; the message names file, line and key."""


def _schedulers() -> Dict[str, type]:
    import mxnet as mx

    from .schedules import OneCycle, SlantedTriangular
    return {"factor": mx.lr_scheduler.FactorScheduler,
            "multifactor": mx.lr_scheduler.MultiFactorScheduler,
            "poly": mx.lr_scheduler.PolyScheduler, "cosine": mx.lr_scheduler.CosineScheduler,
            "slanted_triangular": SlantedTriangular, "one_cycle": OneCycle}


SCHEDULERS = ("factor", "multifactor", "poly", "cosine", "slanted_triangular", "one_cycle")


class _Loader(yaml.SafeLoader):
    """Safe YAML, but ``m:n`` stays a string (YAML 1.1 reads ``3:5`` as 185)."""


def _no_sexagesimal(kind):
    def construct(loader, node):
        if ":" in node.value:
            return node.value
        return getattr(yaml.SafeLoader, f"construct_yaml_{kind}")(loader, node)
    return construct


_Loader.add_constructor("tag:yaml.org,2002:int", _no_sexagesimal("int"))
_Loader.add_constructor("tag:yaml.org,2002:float", _no_sexagesimal("float"))


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
        line = self._lines.get(tuple(str(k) for k in keys))
        return f"{self.path}, line {line}" if line else self.path

    def locate(self, err: Exception) -> str:
        """``err``'s message prefixed with the line of the rule it names, if any."""
        text = str(err)
        for key, _ in self.layers or ():
            labels = [repr(key)] + ([repr(f"block {key}")] if isinstance(key, int) else [])
            if any(label in text for label in labels):
                return f"{self.where('layers', key)}: layers: {text}"
        return f"{self.path}: {text}"


def _fail(path: str, lines: Dict[tuple, int], keys: tuple, message: str) -> ConfigError:
    line = lines.get(tuple(str(k) for k in keys))
    where = f"{path}, line {line}" if line else path
    dotted = ".".join(str(k) for k in keys)
    return ConfigError(f"{where}: {dotted}: {message}" if dotted else f"{where}: {message}")


def _key_lines(node, prefix: tuple, lines: Dict[tuple, int], path: str) -> None:
    """Record the line of every mapping key; a key given twice is an error."""
    if isinstance(node, yaml.MappingNode):
        seen: Dict[str, int] = {}
        for key_node, value_node in node.value:
            key, line = str(key_node.value), key_node.start_mark.line + 1
            if key in seen:
                dotted = ".".join(prefix + (key,))
                raise ConfigError(f"{path}, line {line}: {dotted}: given twice (first at "
                                  f"line {seen[key]})")
            seen[key] = lines[prefix + (key,)] = line
            _key_lines(value_node, prefix + (key,), lines, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _key_lines(item, prefix + (str(i),), lines, path)


def _parse(path: str, text: str) -> Tuple[Any, Dict[tuple, int]]:
    """(data, key lines). JSON is parsed as JSON; its key lines come from YAML,
    of which it is (nearly always) a subset."""
    is_json = path.lower().endswith(".json")
    data: Any = None
    if is_json:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}, line {err.lineno}, column {err.colno}: invalid JSON: "
                              f"{err.msg}") from None
    try:
        node = yaml.compose(text, Loader=_Loader)
        if not is_json:
            data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        if is_json:
            return data, {}
        mark = getattr(err, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else path
        raise ConfigError(f"{where}: invalid YAML: {getattr(err, 'problem', None) or err}") \
            from None
    lines: Dict[tuple, int] = {}
    if node is not None:
        _key_lines(node, (), lines, path)
    return data, lines


def rule_key(key: Any) -> Any:
    """A rule key read from text: an integer-looking string is a block index."""
    return int(key) if isinstance(key, str) and _INDEX.match(key) else key


def _check_number(value, keys, path, lines, positive=False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value):
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


def _rule_value(value, keys: tuple, path: str, lines) -> Any:
    """A rule value as data -> as the rule engine takes it (schedulers built)."""
    if value is None or isinstance(value, bool):
        if value is True:
            raise _fail(path, lines, keys, "true is not a rule value; use a multiplier, 0 or "
                        "null (frozen), or a mapping")
        return value
    if isinstance(value, (int, float)):
        _check_number(value, keys, path, lines)
        return value
    if isinstance(value, dict):
        out = dict(value)
        if "lr_scheduler" in out:
            out["lr_scheduler"] = _scheduler(out["lr_scheduler"], keys + ("lr_scheduler",),
                                             path, lines)
        return out
    raise _fail(path, lines, keys, f"expected a multiplier, null (frozen) or a mapping with "
                f"learning_rate/lr_mult/lr_scheduler/wd_mult/frozen, got {value!r}")


def _check_setting(key: str, value, path: str, lines) -> None:
    if key not in SETTINGS:
        close = difflib.get_close_matches(str(key), SETTINGS, n=1)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        raise _fail(path, lines, (key,), f"unknown key. {hint}Expected one of "
                    f"{', '.join(SETTINGS)} (rules go under 'layers:')")
    types = SETTINGS[key]
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        expected = " or ".join("mapping" if t is dict else t.__name__ for t in types)
        raise _fail(path, lines, (key,), f"expected {expected}, got {value!r}")
    if key == "learning_rate":
        _check_number(value, (key,), path, lines, positive=True)
    if key in _POSITIVE and value < 1:
        raise _fail(path, lines, (key,), f"must be at least 1, got {value!r}")
    if key == "unfreeze" and value < 0:
        raise _fail(path, lines, (key,), f"must be >= 0, got {value!r}")


def _check_unfreezing(spec: Mapping, path: str, lines) -> None:
    for key, value in spec.items():
        types = _UNFREEZING_KEYS.get(key)
        if types is None:
            raise _fail(path, lines, ("gradual_unfreezing", key), f"unknown key; expected "
                        f"one of {', '.join(_UNFREEZING_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, types):
            raise _fail(path, lines, ("gradual_unfreezing", key),
                        f"expected {types[0].__name__}, got {value!r}")


def load_config(path: str) -> Config:
    """Read and check a YAML (``.yaml``/``.yml``) or JSON (``.json``) config.

    Parameters
    ----------
    path : str
        The file. Top-level keys: see ``SETTINGS``; rules go under ``layers``
        (keys as in ``LayerwiseTrainer``; ``lr_scheduler`` values are
        ``{type: <one of SCHEDULERS>, <its arguments>}``).

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        For a missing file, invalid YAML/JSON, an unknown or repeated key, or
        a value of the wrong type; the message names the file, line and key.

    Examples
    --------
    >>> config = load_config("rules.yaml")                # doctest: +SKIP
    >>> LayerwiseTrainer(net, "sgd", {"learning_rate": config.get("learning_rate")},
    ...                  layers=config.layers)            # doctest: +SKIP
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file name, got {type(path).__name__}: {path!r}")
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config: {err.strerror}") from None
    data, lines = _parse(path, text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level, got "
                          f"{type(data).__name__}")
    for key, value in data.items():
        _check_setting(key, value, path, lines)
    settings = dict(data)
    if "lr_scheduler" in settings:
        settings["lr_scheduler"] = _scheduler(settings["lr_scheduler"], ("lr_scheduler",),
                                              path, lines)
    if "layers" in settings:
        # JSON keys are always strings: there a digit-only key is a block index.
        as_key = rule_key if path.lower().endswith(".json") else (lambda key: key)
        settings["layers"] = {as_key(key): _rule_value(value, ("layers", key), path, lines)
                              for key, value in settings["layers"].items()}
    _check_unfreezing(settings.get("gradual_unfreezing", {}), path, lines)
    return Config(path, settings, lines)
