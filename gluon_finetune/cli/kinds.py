"""The kinds of value a setting takes: one check for a flag's text and a config's data.

A kind reads a flag's text (``text``: argparse's ``type=``, failing with
``argparse.ArgumentTypeError`` so that argparse prints ``argument --lr:
expected a finite number > 0, got 'inf'``) and checks a config's value
(``data``: failing with a ``ConfigError`` at the key's file and line). The
settings schema (``schema.py``) gives each setting one kind.
"""
from __future__ import annotations

import argparse
import math
from typing import Any, Callable, Optional, Sequence

from ..checks import is_int, is_real
from ..errors import FinetuneError
from .config_text import Where

__all__ = ["Kind", "Int", "Real", "Text", "Flag", "Choice", "Checked", "Structure", "Keys"]


class Kind:
    """Base: ``expected`` describes the value for messages (``"a positive integer"``)."""

    expected = "a value"
    metavar: Optional[str] = None  # how --help shows the value (None: argparse's own)

    def parse(self, text: str) -> Any:
        """The flag's text -> the value, or ValueError (``text`` words the refusal)."""
        return text

    def check(self, value: Any) -> Optional[str]:
        """What is wrong with a value of the right type (None: nothing)."""
        return None

    def text(self, text: str) -> Any:
        try:
            value = self.parse(text)
        except (ValueError, FinetuneError):
            value = None
        if value is None or self.check(value) is not None:
            raise argparse.ArgumentTypeError(f"expected {self.expected}, got {text!r}")
        return value

    def data(self, value: Any, at: Where) -> Any:
        problem = self.check(value)
        if problem is not None:
            raise at.fail(f"{problem}, got {value!r}")
        return value


class Int(Kind):
    """An integer in ``minimum..maximum``."""

    metavar = "N"

    def __init__(self, minimum: int, maximum: Optional[int] = None):
        self.minimum, self.maximum = minimum, maximum
        if maximum is not None:
            self.expected = f"an integer in {minimum}..{maximum}"
        else:
            self.expected = "a positive integer" if minimum == 1 else \
                f"an integer >= {minimum}"

    def parse(self, text: str) -> int:
        return int(text)

    def check(self, value: Any) -> Optional[str]:
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {self.maximum}"
        if value < self.minimum:
            return "must be >= 0" if self.minimum == 0 else f"must be at least {self.minimum}"
        return None

    def data(self, value: Any, at: Where) -> Any:
        if not is_int(value):
            raise at.fail(f"expected int, got {value!r}")
        return super().data(int(value), at)


class Real(Kind):
    """A finite number (``positive``: > 0)."""

    def __init__(self, positive: bool = False):
        self.positive = positive
        self.expected = "a finite number > 0" if positive else "a finite number"

    def parse(self, text: str) -> float:
        return float(text)

    def check(self, value: Any) -> Optional[str]:
        if not math.isfinite(value):
            return "expected a finite number"
        return "must be > 0" if self.positive and value <= 0 else None

    def data(self, value: Any, at: Where) -> Any:
        if not is_real(value):
            raise at.fail(f"expected int or float, got {value!r}")
        return super().data(value, at)


class Text(Kind):
    """A string: a name, a file or folder (``expected`` says which)."""

    def __init__(self, expected: str = "a string"):
        self.expected = expected

    def data(self, value: Any, at: Where) -> Any:
        if not isinstance(value, str):
            raise at.fail(f"expected str, got {value!r}")
        return value


class Flag(Kind):
    """true or false (on the command line: the flag, or ``--no-...``)."""

    expected = "true or false"

    def data(self, value: Any, at: Where) -> Any:
        if not isinstance(value, bool):
            hint = " (YAML 1.2: write true or false)" if isinstance(value, str) and \
                value.lower() in ("yes", "no", "on", "off") else ""
            raise at.fail(f"expected bool, got {value!r}{hint}")
        return value


class Choice(Text):
    """One of a few names."""

    def __init__(self, choices: Sequence[str]):
        self.choices = tuple(choices)
        self.expected = f"one of {', '.join(self.choices)}"
        self.metavar = "{" + ",".join(self.choices) + "}"

    def check(self, value: Any) -> Optional[str]:
        return None if value in self.choices else f"expected {self.expected}"

    def data(self, value: Any, at: Where) -> Any:
        return Kind.data(self, value, at)


class Checked(Text):
    """A string that a function checks, raising a ``FinetuneError`` whose message is the
    refusal (e.g. an optimizer name: MXNet's registry, with a close match)."""

    def __init__(self, expected: str, check: Callable[[str], Any]):
        self.expected, self._check = expected, check

    def text(self, text: str) -> Any:
        try:
            return self._check(text)
        except FinetuneError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    def data(self, value: Any, at: Where) -> Any:
        try:
            return self._check(value)
        except FinetuneError as err:
            raise at.fail(str(err)) from None


class Structure(Kind):
    """A config's mapping (rules, a schedule, ...), read by ``load(value, at)``; on the
    command line (where it has a flag at all) ``parse`` reads one item's text."""

    expected = "a mapping"

    def __init__(self, load: Callable[[Any, Where], Any],
                 parse: Optional[Callable[[str], Any]] = None, expected: str = "a mapping"):
        self._load, self._parse, self.expected = load, parse, expected

    def text(self, text: str) -> Any:
        return self._parse(text)  # raises ArgumentTypeError with its own words

    def data(self, value: Any, at: Where) -> Any:
        if not isinstance(value, dict):
            raise at.fail(f"expected mapping, got {value!r}")
        return self._load(value, at)


class Keys(Kind):
    """Rule keys (LoRA's targets): one a flag, repeatable, an integer-looking one a block
    index; in a config one key or a list of keys."""

    expected = "rule keys: block paths, parameter names or globs, 're:<regex>', indices, 'm:n'"

    def __init__(self, as_key: Callable[[Any], Any]):
        self._as_key = as_key

    def parse(self, text: str) -> Any:
        return self._as_key(text) if text.strip() else None

    def data(self, value: Any, at: Where) -> Any:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if not ((isinstance(item, str) and item.strip()) or is_int(item)) or \
                    isinstance(item, bool):
                raise at.fail(f"expected {self.expected} (one, or a list), got {item!r}")
        # JSON has no integer keys to write here, so a digit-only string is an index there too
        return [self._as_key(item) for item in items]
