"""Money helpers: integer minor units (cents) only, never floats (invariant 5).

Floats cannot represent most decimal amounts exactly, so a float anywhere in a
money path eventually produces a receipt that does not add up. These helpers
therefore *refuse* floats (and bools, which are ints in Python but never money)
instead of converting them.
"""

from __future__ import annotations

from typing import Any

from app.utils.errors import ValidationError

MAX_CENTS = 10**10  # 100 million in major units: far above any till amount


def _require_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return value


def format_cents(cents: int, currency: str = "€") -> str:
    """Render cents for display: ``1230 -> "€12.30"``, ``-5 -> "-€0.05"``.

    Display only; never parse the result back. No thousands separators, so the
    string is unambiguous in any locale.
    """
    _require_int(cents, "cents")
    sign = "-" if cents < 0 else ""
    major, minor = divmod(abs(cents), 100)
    return f"{sign}{currency}{major}.{minor:02d}"


def round_half_up_div(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded to the nearest int, halves away from zero.

    Exact integer arithmetic (no float, no Decimal context), symmetric for
    negatives, so a refund's tax is exactly the negative of the sale's tax:
    ``round_half_up_div(5, 10) == 1`` and ``round_half_up_div(-5, 10) == -1``.
    """
    _require_int(numerator, "numerator")
    _require_int(denominator, "denominator")
    if denominator == 0:
        raise ZeroDivisionError("round_half_up_div by zero")
    negative = (numerator < 0) != (denominator < 0)
    a, b = abs(numerator), abs(denominator)
    q = (2 * a + b) // (2 * b)  # floor(a/b + 1/2)
    return -q if negative else q


def require_cents(
    value: Any,
    field: str,
    *,
    allow_zero: bool = True,
    allow_negative: bool = False,
    maximum: int = MAX_CENTS,
) -> int:
    """Validate a money amount from untrusted JSON and return it as an int.

    Money must arrive as a JSON integer of cents: ``12.3``, ``12.30``, ``"1230"``,
    ``true`` and ``null`` are all refused with a 400 VALIDATION_ERROR naming the
    field, rather than guessed at. ``maximum`` bounds the absolute value.
    """
    details = {"field": field}
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field} must be an integer number of cents", details)
    if value < 0 and not allow_negative:
        raise ValidationError(f"{field} must not be negative", details)
    if value == 0 and not allow_zero:
        raise ValidationError(f"{field} must not be zero", details)
    if abs(value) > maximum:
        raise ValidationError(f"{field} must be at most {maximum} cents", details)
    return value
