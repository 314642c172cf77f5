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
           "MissingFileError", "UnknownNameError", "UnsupportedError", "MissingDependencyError",
           "RuleError", "RuleTypeError", "NoMatchError", "StatesError", "ConfigError"]


class FinetuneError(Exception):
    """Base of every error a user's input can cause; ``argument`` names the input where known.

    Catch it to handle any input error of the package; the concrete classes are also
    the built-in exception they stand for.

    Attributes
    ----------
    argument : str or None
        The argument (or setting) at fault, where known: ``"unfreeze"``, ``"layers"``.
    rule_keys : tuple or None
        The keys of the rules at fault, where a rule is (two for a conflict), so that
        a config file can point at the rule's line.

    Examples
    --------
    >>> from gluon_finetune import FinetuneError, get_model
    >>> try:
    ...     get_model("resnet18_v1", unfreeze=-1)
    ... except FinetuneError as err:
    ...     print(type(err).__name__, err.argument, isinstance(err, ValueError))
    InvalidValueError unfreeze True
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


class UnknownNameError(FinetuneError, KeyError):
    """A name or path that names nothing here (a block path, a parameter); the message
    lists what exists."""

    def __str__(self) -> str:
        # KeyError quotes its argument (it is meant to be the key); ours is a sentence.
        return str(self.args[0]) if self.args else ""


class UnsupportedError(FinetuneError, RuntimeError):
    """A request this setup cannot carry out (a mode MXNet does not allow, a schedule a
    states file could not keep)."""


class MissingDependencyError(FinetuneError, ImportError):
    """An optional package the request needs is not installed; the message names it.

    Raised by ``gluon_finetune.checks.require``: one line that ends with the
    ``pip install 'gluon-finetune[EXTRA]'`` that fixes it.

    Examples
    --------
    >>> import sys
    >>> from gluon_finetune import explain
    >>> from gluon_finetune.errors import MissingDependencyError
    >>> sys.modules["pandas"] = None  # as if pandas were not installed
    >>> try:
    ...     explain(net, {"*": 0.1}, learning_rate=0.1).to_pandas()
    ... except MissingDependencyError as err:
    ...     print(err)
    Explanation.to_pandas needs pandas, which is not installed: pip install 'gluon-finetune[plot]'
    >>> del sys.modules["pandas"]
    """


class RuleError(InvalidValueError):
    """A rule set that cannot be resolved (conflict, no match, bad index, bad value).

    Examples
    --------
    >>> from gluon_finetune import LayerwiseTrainer, RuleError
    >>> try:
    ...     LayerwiseTrainer(net, "sgd", layers={"*_weight": 0.5, "features": 2.0})
    ... except RuleError as err:
    ...     print(err.rule_keys)
    ('*_weight', 'features')

    ``except RuleError`` catches every error of a rule set, those of the wrong type
    (:class:`RuleTypeError`, also a ``TypeError``) included.
    """


class RuleTypeError(RuleError, InvalidTypeError):
    """A rule key or value of a type no rule can have; also a ``TypeError``."""


class NoMatchError(RuleError):
    r"""A rule that matches no parameter: an error, or a warning with ``strict=False``.

    Examples
    --------
    >>> from gluon_finetune import LayerwiseTrainer, NoMatchError
    >>> try:
    ...     LayerwiseTrainer(net, "sgd", layers={"outptu": 10})
    ... except NoMatchError as err:
    ...     print(str(err).replace(". ", ".\n"))
    rule 'outptu': no block path or parameter is named 'outptu'.
    Did you mean 'output'? (pass strict=False to only warn)
    """


class StatesError(InvalidValueError):
    """A states file that cannot be loaded here; the message names the file.

    Examples
    --------
    >>> from gluon_finetune import LayerwiseTrainer, StatesError
    >>> with open("not.states", "w") as f:
    ...     _ = f.write("text, not a states file")
    >>> try:
    ...     LayerwiseTrainer(net, "sgd").load_states("not.states")
    ... except StatesError as err:
    ...     print(err)
    not.states is not a readable trainer states file (UnpicklingError: could not find MARK)
    """


class ConfigError(InvalidValueError):
    r"""A config file that cannot be used; the message names file, line and key.

    Examples
    --------
    >>> from gluon_finetune import ConfigError, load_config
    >>> with open("rules.yaml", "w") as f:
    ...     _ = f.write("model: resnet18_v1\nlerning_rate: 0.1\n")
    >>> try:
    ...     load_config("rules.yaml")
    ... except ConfigError as err:
    ...     print(str(err).split("?")[0])
    rules.yaml, line 2: lerning_rate: unknown key. Did you mean 'learning_rate'
    """
