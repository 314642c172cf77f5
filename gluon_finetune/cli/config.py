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

The keys and what each takes are the settings schema's (``schema.py``: each
key declared once, with its flag where it has one); the structures (rules,
schedules, gradual unfreezing) are read by ``structures.py``. Every error
names the file, the line and the key, and comes when the file is loaded,
except what needs the model to be seen (a rule that matches nothing, a
schedule that thaws more blocks than the network has). How the text is read
(YAML 1.2, ``ruamel.yaml``): ``config_text.py``.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

from ..checks import InvalidTypeError, did_you_mean
from .config_text import ConfigError, Where, parse, read_text
from .declarations import config_options

__all__ = ["Config", "ConfigError", "load_config"]


class Config:
    """A loaded config: ``settings`` (top-level keys) and ``layers`` (rule pairs).

    ``where(*keys)`` gives ``"file, line N"`` for a key path, for messages.
    """

    def __init__(self, path: str, settings: Dict[str, Any], lines: Dict[tuple, int],
                 text: str = ""):
        self.path, self.settings, self._lines, self.text = path, settings, lines, text

    @property
    def layers(self) -> Optional[List[Tuple[Any, Any]]]:
        rules = self.settings.get("layers")
        return None if rules is None else list(rules.items())

    def get(self, key: str, default: Any = None) -> Any:
        return self.settings.get(key, default)

    def where(self, *keys) -> str:
        return Where(self.path, self._lines, keys).place()

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


def _settings(data: dict, at: Where) -> Dict[str, Any]:
    """Each key checked by its declaration in the schema."""
    known = config_options()
    settings = {}
    for key, value in data.items():
        if key not in known:
            hint = did_you_mean(key, known, n=1, cutoff=0.6)
            hint = f"{hint} " if hint else ""
            raise (at / key).fail(f"unknown key. {hint}Expected one of {', '.join(known)} "
                                  f"(rules go under 'layers:')")
        settings[key] = known[key].kind.data(value, at / key)
    return settings


def load_config(path: str, text: Optional[str] = None) -> Config:
    """Read and check a YAML (``.yaml``/``.yml``) or JSON (``.json``) config.

    Parameters
    ----------
    path : str
        The file, UTF-8 text. Top-level keys: see ``schema.Settings``; rules go under
        ``layers`` (keys as in ``LayerwiseTrainer``; ``lr_scheduler`` values
        are ``{type: <one of SCHEDULERS>, <its arguments>}``).
    text : str, optional
        The file's text, given instead of read (a run folder records its
        config's text); ``path`` then names it in messages and says its kind.

    Returns
    -------
    Config
        ``config.layers`` (the rules as ``(key, value)`` pairs, schedules built),
        ``config.get(key)``, ``config.settings``, ``config.where(*keys)`` (``"file,
        line N"``).

    Raises
    ------
    ConfigError
        For a missing or binary file, invalid YAML/JSON, an unknown or repeated
        key, or a value of the wrong type or out of range; the message names
        the file, line and key. (What needs the model, such as a rule that
        matches nothing, is checked when the trainer is built.)

    Examples
    --------
    >>> from gluon_finetune import LayerwiseTrainer, load_config
    >>> with open("rules.yaml", "w") as f:
    ...     _ = f.write('''
    ... learning_rate: 1e-2       # YAML 1.2: a number
    ... layers:
    ...   "*": 0.1
    ...   0:2: 0                  # blocks 0-1 frozen
    ...   -1: {learning_rate: 0.05, lr_scheduler: {type: factor, step: 100, factor: 0.5}}
    ... ''')
    >>> config = load_config("rules.yaml")
    >>> config.get("learning_rate"), [key for key, _ in config.layers], config.where("layers", -1)
    (0.01, ['*', '0:2', -1], 'rules.yaml, line 6')
    >>> trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": config.get("learning_rate")},
    ...                            layers=config.layers)
    >>> trainer.explain()["net_dense0_weight"]["schedule"]
    'FactorScheduler(base_lr=0.05)'
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"path must be a file name, got {type(path).__name__}: "
                               f"{path!r}", argument="path")
    path = os.fspath(path)
    text = read_text(path) if text is None else text
    data, lines = parse(path, text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level, got "
                          f"{type(data).__name__}")
    return Config(path, _settings(data, Where(path, lines)), lines, text)
