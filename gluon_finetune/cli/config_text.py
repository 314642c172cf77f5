"""Config text (YAML or JSON) -> data, and the line of every key, for messages.

YAML is read with a safe loader, with three changes: ``3:5`` stays the string
"3:5" (a block range) instead of YAML 1.1's base-60 number 185; ``1e-3`` is a
number, as in YAML 1.2 and JSON (YAML 1.1 wants ``1.0e-3``); and a key given
twice is an error instead of the last one silently winning (``3`` and ``'3'``
are different keys: a block index and a structural path).
"""
from __future__ import annotations

import json
import re
from typing import Any, Dict, Optional, Tuple

import yaml

from ..errors import ConfigError

__all__ = ["ConfigError", "line_of", "fail", "read_text", "parse"]

# YAML 1.2 / JSON numbers with an exponent; YAML 1.1 reads 1e-3 as the string "1e-3"
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


class _Loader(yaml.SafeLoader):
    """Safe YAML, but ``m:n`` stays a string (YAML 1.1 reads ``3:5`` as 185) and
    ``1e-3`` is a float (YAML 1.1 reads it as a string)."""


def _no_sexagesimal(kind):
    def construct(loader, node):
        if ":" in node.value:
            return node.value
        return getattr(yaml.SafeLoader, f"construct_yaml_{kind}")(loader, node)
    return construct


_Loader.add_constructor("tag:yaml.org,2002:int", _no_sexagesimal("int"))
_Loader.add_constructor("tag:yaml.org,2002:float", _no_sexagesimal("float"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+.0123456789"))


def line_of(lines: Dict[tuple, int], keys: tuple) -> Optional[int]:
    """The line of key path ``keys``, or None."""
    # JSON keys are strings: a key turned into an int (block index, epoch) is found as text
    return lines.get(tuple(keys)) or lines.get(tuple(str(k) for k in keys))


def fail(path: str, lines: Dict[tuple, int], keys: tuple, message: str) -> ConfigError:
    """A ConfigError ``"file, line N: key.path: message"``."""
    line = line_of(lines, keys)
    where = f"{path}, line {line}" if line else path
    dotted = ".".join(str(k) for k in keys)
    return ConfigError(f"{where}: {dotted}: {message}" if dotted else f"{where}: {message}")


def _key_of(loader: _Loader, node) -> Any:
    """The Python key a mapping key node becomes (3 and '3' differ)."""
    try:
        return loader.construct_object(node)
    except yaml.YAMLError:  # e.g. the merge key '<<'
        return node.value


def _key_lines(loader: _Loader, node, prefix: tuple, lines: Dict[tuple, int],
               path: str) -> None:
    """Record the line of every mapping key; a key given twice is an error."""
    if isinstance(node, yaml.MappingNode):
        seen: Dict[Any, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # unhashable: the constructor reports it
            key, line = _key_of(loader, key_node), key_node.start_mark.line + 1
            if key in seen:
                dotted = ".".join(str(k) for k in prefix + (key,))
                raise ConfigError(f"{path}, line {line}: {dotted}: given twice (first at "
                                  f"line {seen[key]})")
            seen[key] = lines[prefix + (key,)] = line
            _key_lines(loader, value_node, prefix + (key,), lines, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _key_lines(loader, item, prefix + (i,), lines, path)


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


def _yaml_error(path: str, err: yaml.YAMLError) -> ConfigError:
    if isinstance(err, yaml.reader.ReaderError):  # a control character: binary data
        code = err.character if isinstance(err.character, int) else ord(err.character)
        return ConfigError(f"{path}: not a text file (character #x{code:04x} at offset "
                           f"{err.position}); a config is YAML or JSON text")
    mark = getattr(err, "problem_mark", None)
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else path
    return ConfigError(f"{where}: invalid YAML: {getattr(err, 'problem', None) or err}")


def _yaml(path: str, text: str, is_json: bool) -> Tuple[Any, Dict[tuple, int]]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        lines: Dict[tuple, int] = {}
        if node is not None:
            _key_lines(loader, node, (), lines, path)
        data = None if node is None or is_json else loader.construct_document(node)
        return data, lines
    finally:
        loader.dispose()


def parse(path: str, text: str) -> Tuple[Any, Dict[tuple, int]]:
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
        parsed, lines = _yaml(path, text, is_json)
    except yaml.YAMLError as err:
        if is_json:
            return data, {}
        raise _yaml_error(path, err) from None
    return (data if is_json else parsed), lines
