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


def _normalize_fast(obj: Any) -> Any:
    """`_normalize` without the path bookkeeping (signing a page of 500 journal entries
    builds one path string per value otherwise); on any error the caller runs
    `_normalize` again for the message that says where."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if isinstance(k, str):
                key = k
            elif isinstance(k, int) and not isinstance(k, bool):
                key = str(k)
            else:
                raise TypeError(k)
            if key in out:
                raise ValueError(key)
            out[key] = _normalize_fast(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [_normalize_fast(v) for v in obj]
    raise ValueError(obj)  # floats and anything else: `_normalize` says what and where


def canonical_json(obj: Any) -> str:
    """Deterministic compact JSON text; ValueError on any float (incl. NaN/inf)."""
    try:
        normalized = _normalize_fast(obj)
    except (TypeError, ValueError):
        normalized = _normalize(obj, "$")  # raises with the path of the bad value
    return json.dumps(
        normalized,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
