"""Tamper-evident audit log: a per-device SHA-256 hash chain (invariant 6).

Each entry's hash covers the previous entry's hash plus the canonical JSON of
its own fields: ``hash = sha256(prev_hash + canonical_json(entry))``, starting
from ``GENESIS``. Changing, inserting, deleting or reordering a row breaks the
chain from that row on, and anyone holding the rows can check it with
:func:`verify_chain` (no key needed).

Limitation, by design of any bare chain: deleting the *last* rows (truncating
the tail) leaves a valid shorter chain. The chain alone cannot detect that; the
node therefore also records the running entry count and head hash elsewhere
(node settings / heartbeats to peers, the day report) and compares them with
``verify_chain``'s ``entries`` and the last row's ``hash``. Put ``seq`` inside
``entry`` too, so a row's position is part of what is hashed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from app.utils.canonical import canonical_json

GENESIS = "0" * 64


def entry_hash(prev_hash: str, entry: dict) -> str:
    """sha256 hex of ``prev_hash + canonical_json(entry)``."""
    return hashlib.sha256((prev_hash + canonical_json(entry)).encode("utf-8")).hexdigest()


def verify_chain(rows: Iterable[dict]) -> dict[str, Any]:
    """Verify rows given in ``seq`` order (``ORDER BY seq``); stops at the first break.

    Each row: ``{"seq", "prev_hash", "hash", "entry": {...hashed fields...}}``.
    Checks, per row: ``seq`` is the next integer from 1 (else ``missing_seq``
    reported at the seq that was expected), ``prev_hash`` equals the previous
    row's ``hash`` or GENESIS (else ``prev_mismatch``), and ``hash`` recomputes
    (else ``hash_mismatch``). ``entries`` is the number of rows verified good,
    i.e. all of them when ``ok``. Malformed rows are reported, never raised.
    """
    expected_seq = 1
    prev = GENESIS
    count = 0
    for row in rows:
        seq = row.get("seq") if isinstance(row, dict) else None
        if isinstance(seq, bool) or seq != expected_seq:
            return _broken(count, expected_seq, "missing_seq")
        if row.get("prev_hash") != prev:
            return _broken(count, seq, "prev_mismatch")
        entry = row.get("entry")
        stored = row.get("hash")
        try:
            ok = isinstance(entry, dict) and entry_hash(prev, entry) == stored
        except (TypeError, ValueError):
            ok = False
        if not ok:
            return _broken(count, seq, "hash_mismatch")
        prev = stored
        count += 1
        expected_seq += 1
    return {"ok": True, "entries": count, "broken_at": None}


def _broken(count: int, seq: int, reason: str) -> dict[str, Any]:
    return {"ok": False, "entries": count, "broken_at": {"seq": seq, "reason": reason}}
