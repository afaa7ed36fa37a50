"""Range checks of task settings, run before any data is read or memory allocated.

Each failure is one :class:`~yfbench.errors.UserError` that names the key and the allowed
range ("task.model.dropout must be a number in [0, 1), got 2.0"), instead of a ValueError
deep inside torch, an allocation failure, or (worse) a silently nonsensical run.
"""

from __future__ import annotations

import math

from yfbench.errors import UserError


def integer(name: str, value: object, minimum: int, *, nullable: bool = False) -> int | None:
    """``value`` if it is an integer >= ``minimum`` (or None when ``nullable``)."""
    if nullable and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        allowed = f"an integer >= {minimum}"
        raise UserError(f"{name} must be {'null or ' if nullable else ''}{allowed}, got {value!r}")
    return value


def number(
    name: str,
    value: object,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    open_low: bool = False,
    open_high: bool = False,
    nullable: bool = False,
) -> float | None:
    """``value`` if it is a finite number in the interval from ``low`` to ``high`` (each end
    closed unless ``open_low``/``open_high``), or None when ``nullable``."""
    if nullable and value is None:
        return None
    if not _in_interval(value, low, high, open_low, open_high):
        allowed = f"a {_interval(low, high, open_low, open_high)}"
        raise UserError(f"{name} must be {'null or ' if nullable else ''}{allowed}, got {value!r}")
    return float(value)


def flag(name: str, value: object) -> bool:
    """``value`` if it is a boolean (so that "false" as a string is not taken as true)."""
    if not isinstance(value, bool):
        raise UserError(f"{name} must be true or false, got {value!r}")
    return value


def _in_interval(value: object, low: float, high: float, open_low: bool, open_high: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    above = value > low if open_low else value >= low
    below = value < high if open_high else value <= high
    return above and below


def _interval(low: float, high: float, open_low: bool, open_high: bool) -> str:
    """The allowed range in words: "finite number", "number > 0", "number in [0, 1)"."""
    if math.isinf(low) and math.isinf(high):
        return "finite number"
    if math.isinf(high):
        return f"number {'>' if open_low else '>='} {low}"
    return f"number in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
