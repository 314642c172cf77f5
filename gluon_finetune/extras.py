"""Optional dependencies: one helper imports them and names the extra that installs them.

``pip install gluon-finetune`` brings only MXNet, NumPy, tqdm and PyYAML. Each
optional feature imports its package through :func:`require`, so a missing one
is one line naming the ``pip install`` that fixes it, not a traceback (the
command line prints it as such, exit status 2).
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Optional

from .errors import InvalidValueError, MissingDependencyError

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
    >>> from gluon_finetune.extras import require
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
