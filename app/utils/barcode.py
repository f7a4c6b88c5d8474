"""GTIN barcodes: EAN-13, UPC-A (12 digits) and EAN-8.

All three share one check-digit rule (GS1 "mod 10"): weighting the payload
digits 3, 1, 3, 1, ... starting from the rightmost one. Validating the check
digit catches a misread scan or a mistyped code before it becomes a
"product not found" or, worse, the wrong product.
"""

from __future__ import annotations

VALID_LENGTHS = (8, 12, 13)  # EAN-8, UPC-A, EAN-13


def _is_ascii_digits(s: object) -> bool:
    # str.isdigit() alone accepts e.g. Arabic-Indic or full-width digits.
    return isinstance(s, str) and s.isascii() and s.isdigit()


def _gtin_check_digit(payload: str) -> int:
    total = 0
    for i, ch in enumerate(reversed(payload)):
        total += int(ch) * (3 if i % 2 == 0 else 1)
    return (10 - total % 10) % 10


def ean13_check_digit(first12: str) -> int:
    """The 13th digit of an EAN-13 whose first 12 digits are ``first12``."""
    if not _is_ascii_digits(first12) or len(first12) != 12:
        raise ValueError("first12 must be exactly 12 ASCII digits")
    return _gtin_check_digit(first12)


def is_valid_barcode(code: str) -> bool:
    """True for an EAN-13, UPC-A or EAN-8 with a correct check digit.

    Strict: no whitespace or separators (callers strip scanner input first).
    Never raises; anything that is not a digit string is simply invalid.
    """
    if not _is_ascii_digits(code) or len(code) not in VALID_LENGTHS:
        return False
    return _gtin_check_digit(code[:-1]) == int(code[-1])


def make_ean13(prefix12: str) -> str:
    """Append the check digit to 12 digits, giving a valid EAN-13."""
    return prefix12 + str(ean13_check_digit(prefix12))
