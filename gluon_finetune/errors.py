"""The error family: every error that a user's input can cause is a ``FinetuneError``.

Each concrete error also subclasses the built-in it stands for (``ValueError``,
``TypeError``, ``FileNotFoundError``), so ``except ValueError`` keeps working.
The command line prints exactly this family as one line with exit status 2;
anything else is a bug and keeps its traceback. Pure Python: safe to import on
a kvstore server.

Examples
--------
>>> from gluon_finetune import FinetuneError, SlantedTriangular
>>> try:
...     SlantedTriangular(100, cut_frac=2)
... except FinetuneError as err:
...     print(type(err).__name__, isinstance(err, ValueError), err)
InvalidValueError True cut_frac must be in (0, 1), got 2.0
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

__all__ = ["FinetuneError", "InputError", "InvalidValueError", "InvalidTypeError",
           "MissingFileError", "RuleError", "NoMatchError", "StatesError", "ConfigError"]


class FinetuneError(Exception):
    """Base of every error a user's input can cause; ``argument`` names the input where known.

    ``rule_keys`` holds the keys of the rules at fault, where a rule is (two for a
    conflict), so that a config file can point at the rule's line.
    """

    rule_keys: Optional[Tuple[Any, ...]] = None

    def __init__(self, message: str = "", *, argument: Optional[str] = None):
        super().__init__(message)
        self.argument = argument


InputError = FinetuneError  # the name this family had before 0.2.0


class InvalidValueError(FinetuneError, ValueError):
    """A value of the right type that is out of range or names nothing."""


class InvalidTypeError(FinetuneError, TypeError):
    """A value of the wrong type."""


class MissingFileError(FinetuneError, FileNotFoundError):
    """A file or folder the caller named does not exist."""


class RuleError(InvalidValueError):
    """A rule set that cannot be resolved (conflict, no match, bad index)."""


class NoMatchError(RuleError):
    """A rule that matches no parameter: an error, or a warning with ``strict=False``."""


class StatesError(InvalidValueError):
    """A states file that cannot be loaded here; the message names the file."""


class ConfigError(InvalidValueError):
    """A config file that cannot be used; the message names file, line and key."""
