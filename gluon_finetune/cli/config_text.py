"""Config text (YAML or JSON) -> plain data, and the line of every key, for messages.

YAML is read by ``ruamel.yaml`` as YAML 1.2 (safe: no Python objects): ``3:5``
is the string "3:5" (a block range; YAML 1.1 read the base-60 number 185),
``1e-3`` is a number as in JSON, ``yes``/``no`` are strings, and every key
knows its line. Two changes to ruamel's reading: ``.5e1`` is a number (YAML
1.2's core schema says so; ruamel wants ``.5e+1``), and a key given twice is a
``ConfigError`` naming both lines (``3`` and ``'3'`` are different keys: a
block index and a structural path; ``3`` and ``0x3`` are the same).
"""
from __future__ import annotations

import json
import re
from typing import Any, Dict, Optional, Tuple

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.tag import Tag

from ..errors import ConfigError

__all__ = ["ConfigError", "Where", "read_text", "parse"]

_DOT_EXPONENT = re.compile(r"^[-+]?\.[0-9]+[eE][-+]?[0-9]+$")  # YAML 1.2 core; ruamel misses it
Lines = Dict[tuple, int]


class Where:
    """A key path in a config file, for messages: ``"file, line N: key.path: ..."``."""

    def __init__(self, path: str, lines: Lines, keys: tuple = ()):
        self.path, self.lines, self.keys = path, lines, tuple(keys)

    def __truediv__(self, key: Any) -> Where:
        return Where(self.path, self.lines, self.keys + (key,))

    @property
    def line(self) -> Optional[int]:
        # JSON keys are strings: a key turned into an int (block index, epoch) is found as text
        return self.lines.get(self.keys) or self.lines.get(tuple(str(k) for k in self.keys))

    def place(self) -> str:
        """``"file, line N"`` (or the file alone where the line is not known)."""
        return f"{self.path}, line {self.line}" if self.line else self.path

    def fail(self, message: str) -> ConfigError:
        """A ConfigError ``"file, line N: key.path: message"``."""
        dotted = ".".join(str(k) for k in self.keys)
        return ConfigError(f"{self.place()}: {dotted}: {message}" if dotted else
                           f"{self.place()}: {message}")


class _Resolver(VersionedResolver):
    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is ScalarNode and implicit[0] and _DOT_EXPONENT.match(value):
            return Tag(suffix="tag:yaml.org,2002:float")
        return super().resolve(kind, value, implicit)


class _Constructor(RoundTripConstructor):
    """Notes a key given twice (with both lines) instead of ruamel's own error, which
    cannot say the key's path; ``_plain`` reports it."""

    def check_mapping_key(self, node: Any, key_node: Any, mapping: Any, key: Any,
                          value: Any) -> bool:
        if key in mapping:
            first = mapping.lc.key(key)[0] + 1
            self.loader.twice.setdefault(id(mapping), (key, key_node.start_mark.line + 1, first))
            return False
        return True


def _plain(data: Any, where: Where, twice: Dict[int, tuple]) -> Any:
    """ruamel's round-trip objects -> dict/list/int/float/str/bool/None, recording the
    line of every key in ``where.lines``; a key given twice is a ConfigError."""
    if isinstance(data, CommentedMap):
        if id(data) in twice:
            key, line, first = twice[id(data)]
            at = where / key
            raise Where(at.path, {at.keys: line}, at.keys).fail(f"given twice (first at line "
                                                                f"{first})")
        out = {}
        for key, value in data.items():
            key = _plain(key, where, twice)
            position = data.lc.data.get(key)  # keys merged in with '<<' have none
            if position is not None:
                where.lines[where.keys + (key,)] = position[0] + 1
            out[key] = _plain(value, where / key, twice)
        return out
    if isinstance(data, list):
        return [_plain(item, where / i, twice) for i, item in enumerate(data)]
    for kind in (bool, int, float, str):  # ruamel's ScalarFloat, HexInt ... are subclasses
        if isinstance(data, kind):
            return kind(data)
    return data


def read_text(path: str) -> str:
    """The file's text; a ConfigError for a file that cannot be read or is not UTF-8."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            return f.read()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a text file (byte 0x{err.object[err.start]:02x} at "
                          f"offset {err.start} is not UTF-8); a config is YAML or JSON "
                          f"text") from None


def _yaml_error(path: str, err: YAMLError) -> ConfigError:
    if isinstance(err, ReaderError):  # a control character: binary data
        code = err.character if isinstance(err.character, int) else ord(err.character)
        return ConfigError(f"{path}: not a text file (character #x{code:04x} at offset "
                           f"{err.position}); a config is YAML or JSON text")
    mark = err.problem_mark if isinstance(err, MarkedYAMLError) else None
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else path
    return ConfigError(f"{where}: invalid YAML: {getattr(err, 'problem', None) or err}")


def _yaml(path: str, text: str) -> Tuple[Any, Lines]:
    yaml = YAML(typ="rt", pure=True)
    yaml.Resolver, yaml.Constructor = _Resolver, _Constructor
    yaml.twice = {}
    data = yaml.load(text)
    lines: Lines = {}
    return _plain(data, Where(path, lines), yaml.twice), lines


def parse(path: str, text: str) -> Tuple[Any, Lines]:
    """(data, key lines). JSON is parsed as JSON; its key lines come from YAML 1.2,
    of which it is a subset."""
    if not path.lower().endswith(".json"):
        try:
            return _yaml(path, text)
        except YAMLError as err:
            raise _yaml_error(path, err) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}, line {err.lineno}, column {err.colno}: invalid JSON: "
                          f"{err.msg}") from None
    try:
        return data, _yaml(path, text)[1]
    except YAMLError:
        return data, {}
