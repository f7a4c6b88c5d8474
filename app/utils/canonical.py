"""Canonical JSON: one byte-exact text per value, for hashing and signing.

Two nodes must produce the identical string for the same data, or hashes and
signatures break. So: sorted keys, no whitespace, UTF-8 text kept as is
(``ensure_ascii=False``), and **no floats** (their text form is not stable
across languages and they have no place in money data anyway).

Integer dict keys are turned into strings *before* sorting, exactly as a JSON
round trip would, so a value hashes the same before it is stored and after it
is read back (``{2: .., 10: ..}`` sorts as ``"10" < "2"`` both times).
"""

from __future__ import annotations

import json
from typing import Any


def _normalize(obj: Any, path: str) -> Any:
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        # ValueError by contract: a float is a bad *value* here, not a bad type
        raise ValueError(f"floats are not allowed in canonical JSON (at {path})")  # noqa: TRY004
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                raise TypeError(f"dict keys must be str or int (at {path}): {k!r}")
            key = k if isinstance(k, str) else str(k)
            if key in out:
                raise ValueError(f"duplicate key {key!r} after conversion (at {path})")
            out[key] = _normalize(v, f"{path}.{key}")
        return out
    if isinstance(obj, (list, tuple)):
        return [_normalize(v, f"{path}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"{type(obj).__name__} is not JSON serializable (at {path})")


def canonical_json(obj: Any) -> str:
    """Deterministic compact JSON text; ValueError on any float (incl. NaN/inf)."""
    return json.dumps(
        _normalize(obj, "$"),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
