"""Argument checks shared by every module: one wording, NumPy scalars welcome, bools refused.

``numbers.Integral`` / ``numbers.Real`` include NumPy's integer and float
scalars (``np.int64(3)``), so they are accepted wherever a Python int or
float is; ``True``/``False`` (and NumPy bools) are never a count or a rate.

A check that fails raises an ``InputError`` (also a ``ValueError``,
``TypeError`` or ``FileNotFoundError``, so ``except ValueError`` still works):
the mark of a value the caller gave, as opposed to a bug. The command line
prints those as one line; anything else keeps its traceback.
Pure Python: safe to import on a kvstore server.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import math
import numbers
import re
from types import ModuleType
from typing import Any, Iterable, List, Optional

from .errors import (
    FinetuneError,
    InputError,
    InvalidTypeError,
    InvalidValueError,
    MissingDependencyError,
    MissingFileError,
)

__all__ = ["FinetuneError", "InputError", "InvalidValueError", "InvalidTypeError",
           "MissingFileError", "is_int", "is_real", "check_int", "check_positive_int",
           "check_real", "check_bool", "last_line", "did_you_mean", "ArgumentParser",
           "EXTRAS", "require"]


def last_line(err: BaseException) -> str:
    """The last non-empty line of ``err``'s message, without an ``MXNetError:`` prefix.

    MXNet's errors carry a C++ stack trace; the reason is on the last line.

    Examples
    --------
    >>> last_line(RuntimeError("Traceback ...\\nMXNetError: Decoding failed."))
    'Decoding failed.'
    """
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[-1] if lines else type(err).__name__
    return re.sub(r"^MXNetError:\s*", "", text)


def is_int(value: Any) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not _is_bool(value)


def is_real(value: Any) -> bool:
    """A real number (Python or NumPy int or float), not a bool."""
    return isinstance(value, numbers.Real) and not _is_bool(value)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"


def _shown(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def check_int(name: str, value: Any, minimum: Optional[int] = None,
              maximum: Optional[int] = None) -> int:
    """``value`` as a Python int, or ValueError/TypeError naming ``name`` and the range.

    Examples
    --------
    >>> import numpy as np
    >>> check_int("classes", np.int64(3), minimum=1)
    3
    """
    bounds = _bounds(minimum, maximum)
    if not is_int(value):
        raise InvalidTypeError(f"{name} must be an int{bounds}, got {_shown(value)}",
                               argument=name)
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise InvalidValueError(f"{name} must be an int{bounds}, got {value!r}",
                                argument=name)
    return value


def _bounds(minimum: Optional[int], maximum: Optional[int]) -> str:
    if minimum is not None and maximum is not None:
        return f" in {minimum}..{maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    return f" <= {maximum}" if maximum is not None else ""


def check_positive_int(name: str, value: Any) -> int:
    """Raise ValueError unless ``value`` is an int >= 1 (``True`` is not a count)."""
    if not is_int(value) or value < 1:
        raise InvalidValueError(f"{name} must be a positive integer, got {value!r}",
                                argument=name)
    return int(value)


def check_real(name: str, value: Any, *, positive: bool = False,
               minimum: Optional[float] = None) -> float:
    """``value`` as a finite Python float (``> 0`` with ``positive``, ``>= minimum``).

    Examples
    --------
    >>> check_real("learning_rate", 0.1, positive=True)
    0.1
    """
    expected = "a finite number" + (" > 0" if positive else "") + \
        (f" >= {minimum:g}" if minimum is not None else "")
    if not is_real(value):
        raise InvalidTypeError(f"{name} must be {expected}, got {_shown(value)}",
                               argument=name)
    out = float(value)
    if not math.isfinite(out) or (positive and out <= 0) or \
            (minimum is not None and out < minimum):
        raise InvalidValueError(f"{name} must be {expected}, got {value!r}",
                                argument=name)
    return out


def check_bool(name: str, value: Any) -> bool:
    """``value`` itself if it is True or False; else TypeError."""
    if not isinstance(value, bool):
        raise InvalidTypeError(f"{name} must be True or False, got {_shown(value)}",
                               argument=name)
    return value


def held_schedulers(schedule: Any) -> List[str]:
    """The attributes of a learning-rate scheduler that hold other schedulers (GluonCV's
    ``LRSequential`` keeps them in ``schedulers``): its rates are theirs, absolute, not
    relative to its own ``base_lr``.

    Examples
    --------
    >>> from mxnet.lr_scheduler import FactorScheduler
    >>> class Chain(FactorScheduler):
    ...     def __init__(self, parts):
    ...         super().__init__(step=1)
    ...         self.parts = parts
    >>> held_schedulers(Chain([FactorScheduler(step=2)])), held_schedulers(FactorScheduler(2))
    (['parts'], [])
    """
    def scheduler(value: Any) -> bool:
        return callable(value) and hasattr(value, "base_lr") and not isinstance(value, type)

    return [name for name, value in sorted(getattr(schedule, "__dict__", {}).items())
            if scheduler(value) or (isinstance(value, (list, tuple))
                                    and any(scheduler(v) for v in value))]


def did_you_mean(word: Any, candidates: Iterable[Any], n: int = 3, cutoff: float = 0.5) -> str:
    """``"Did you mean 'a' or 'b'?"`` for the candidates close to ``word`` (difflib), else ``""``.

    The one place that suggests names: every "no such name" message calls it.

    Examples
    --------
    >>> did_you_mean("outptu", ["features", "output"])
    "Did you mean 'output'?"
    >>> did_you_mean("zzz", ["features", "output"])
    ''
    """
    texts = {str(c): c for c in candidates}
    close = difflib.get_close_matches(str(word), list(texts), n=n, cutoff=cutoff)
    if not close:
        return ""
    shown = [repr(texts[c]) for c in close]
    listed = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
    return f"Did you mean {listed}?"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors, and values that may start with ``-<digit>``.

    argparse takes ``--layer-lr -1=10`` for a missing value followed by an
    option ``-1=10``: only plain negative numbers pass as values. No option
    of ours starts with a digit, so every ``-<digit>...`` word is a value.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\d")  # argparse's own hook

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ----------------------------------------------------------------- optional dependencies
# ``pip install gluon-finetune`` brings only MXNet, NumPy, tqdm and ruamel.yaml. Each
# optional feature imports its package through ``require``, so a missing one is one line
# naming the ``pip install`` that fixes it, not a traceback.

# the import name -> (the name users know, the extra of setup.py that installs it)
EXTRAS = {
    "gluoncv": ("GluonCV", "zoo"),
    "gluonnlp": ("GluonNLP", "nlp"),
    "matplotlib": ("matplotlib", "plot"),
    "pandas": ("pandas", "plot"),
    "sklearn": ("scikit-learn", "demo"),
    "horovod": ("Horovod", "horovod"),
}


def require(module: str, extra: Optional[str] = None, *, needed_for: str = "this") -> ModuleType:
    """Import an optional package, or raise one line naming the extra to install.

    Parameters
    ----------
    module : str
        The module to import, e.g. ``"matplotlib.pyplot"``; its top-level package
        must be one of ``EXTRAS`` unless ``extra`` is given.
    extra : str, optional
        The extra of ``gluon-finetune`` that installs it (default: from ``EXTRAS``).
    needed_for : str
        What needs it, for the message (``"plot_schedules"``).

    Returns
    -------
    module
        The imported module.

    Raises
    ------
    MissingDependencyError
        When the import fails (the package is missing, or one of its own
        dependencies is): also an ``ImportError``.

    Examples
    --------
    >>> from gluon_finetune.checks import require
    >>> require("json", extra="core").__name__
    'json'
    >>> import sys
    >>> sys.modules["pandas"] = None  # as if pandas were not installed
    >>> try:
    ...     require("pandas", needed_for="Explanation.to_pandas")
    ... except ImportError as err:
    ...     print(err)
    Explanation.to_pandas needs pandas, which is not installed: pip install 'gluon-finetune[plot]'
    >>> del sys.modules["pandas"]
    """
    package = module.split(".")[0]
    known, default_extra = EXTRAS.get(package, (package, None))
    extra = extra or default_extra
    if extra is None:
        raise InvalidValueError(f"require({module!r}): no extra is known for {package!r}: "
                                f"pass extra=", argument="extra")
    try:
        return importlib.import_module(module)
    except ImportError as err:
        missing = getattr(err, "name", None)
        why = ("which is not installed" if missing == package
               else f"which cannot be imported ({err})")
        raise MissingDependencyError(
            f"{needed_for} needs {known}, {why}: pip install 'gluon-finetune[{extra}]'",
            argument=package) from None
