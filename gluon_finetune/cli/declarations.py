"""The declarations of ``schema.Settings`` read back: what argparse, the config loader
and the reference page are built from."""
from __future__ import annotations

import dataclasses
from typing import Dict, Iterator, Optional

from .schema import Option, Settings

__all__ = ["options", "flag_of", "config_options"]


def options() -> Iterator[Option]:
    """Every setting's declaration, in the order of ``Settings``."""
    for item in dataclasses.fields(Settings):
        if "option" in item.metadata:
            yield Option(name=item.name, **item.metadata["option"])


def flag_of(option: Option) -> Optional[str]:
    """``--name`` (or the declared spelling); None for a config key only or a positional."""
    if option.flag is False or option.action == "positional":
        return None
    return option.flag if isinstance(option.flag, str) else \
        "--" + option.name.replace("_", "-")


def config_options() -> Dict[str, Option]:
    """The config file's keys -> their declarations."""
    return {o.name: o for o in options() if o.config}
