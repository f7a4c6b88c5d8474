"""Canonical JSON: one byte-exact text per value, for the audit hash chain.

Two nodes must produce the identical string for the same data, or the hashes of a
copied chain break (node messages are signed over the text they carry instead:
``signing.seal``). So: sorted keys, no whitespace, UTF-8 text kept as is
(``ensure_ascii=False``), and **no floats** (their text form is not stable
across languages and they have no place in money data anyway).

Integer dict keys are turned into strings *before* sorting, exactly as a JSON
round trip would, so a value hashes the same before it is stored and after it
is read back (``{2: .., 10: ..}`` sorts as ``"10" < "2"`` both times).
"""

from __future__ import annotations

import json
from typing import Any


class _Bad(Exception):
    """A value canonical JSON refuses. The path to it is collected on the way out, so
    the common case (nothing wrong) builds no path strings: every audit entry is hashed
    over its canonical JSON when written, and again when a till verifies a copied chain
    (thousands of entries after a partition)."""

    def __init__(self, error: type[Exception], what: str, tail: str = ""):
        super().__init__(what)
        self.error, self.what, self.tail = error, what, tail
        self.steps: list[str] = []

    def raise_with_path(self) -> None:
        at = "$" + "".join(reversed(self.steps))
        raise self.error(f"{self.what} (at {at}){self.tail}") from None


def _normalize(obj: Any) -> Any:
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        # ValueError by contract: a float is a bad *value* here, not a bad type
        raise _Bad(ValueError, "floats are not allowed in canonical JSON")
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                raise _Bad(TypeError, "dict keys must be str or int", f": {k!r}")
            key = k if isinstance(k, str) else str(k)
            if key in out:
                raise _Bad(ValueError, f"duplicate key {key!r} after conversion")
            try:
                out[key] = _normalize(v)
            except _Bad as bad:
                bad.steps.append(f".{key}")
                raise
        return out
    if isinstance(obj, (list, tuple)):
        items: list[Any] = []
        try:
            for v in obj:
                items.append(_normalize(v))
        except _Bad as bad:
            bad.steps.append(f"[{len(items)}]")
            raise
        return items
    raise _Bad(TypeError, f"{type(obj).__name__} is not JSON serializable")


def canonical_json(obj: Any) -> str:
    """Deterministic compact JSON text; ValueError on any float (incl. NaN/inf)."""
    try:
        normalized = _normalize(obj)
    except _Bad as bad:
        bad.raise_with_path()
    return json.dumps(
        normalized,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
