"""Argument checks shared by the modules around the trainer (loop, data, plots)."""
from __future__ import annotations

__all__ = ["check_positive_int"]


def check_positive_int(name: str, value) -> None:
    """Raise ValueError unless ``value`` is an int >= 1 (``True`` is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
