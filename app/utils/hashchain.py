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
import json
import re
from collections.abc import Iterable, Sequence
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
    (else ``hash_mismatch``). A row's ``damage`` (a reason the caller found in the
    stored row: a seq that is not an integer, a details text that is not what was
    hashed) is reported in place of the seq or hash check. ``entries`` is the
    number of rows verified good, i.e. all of them when ``ok``. Malformed rows are
    reported, never raised.
    """
    expected_seq = 1
    prev = GENESIS
    count = 0
    for row in rows:
        # Damage the caller found in the stored row (a non-integer seq, bad details text).
        damage = row.get("damage") if isinstance(row, dict) else None
        seq = row.get("seq") if isinstance(row, dict) else None
        if isinstance(seq, bool) or seq != expected_seq:
            odd = isinstance(seq, bool) or not isinstance(seq, int)
            return _broken(count, expected_seq, str(damage) if damage and odd else "missing_seq")
        if damage:
            return _broken(count, seq, str(damage))
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


# --------------------------------------------------------------- stored text
def details_problem(text: Any) -> tuple[Any, str | None]:
    """Parse a stored ``details`` text: ``(value, None)``, or why it cannot be what was hashed.

    The hash covers ``canonical_json(value)``, so the stored text must be exactly that
    text: otherwise two different stored texts (key order, whitespace, a duplicate key
    that a parser silently collapses) would verify as the same entry. Reasons:
    ``details_not_text`` (a blob, a number), ``details_invalid_json``,
    ``details_not_canonical``. Never raises.
    """
    if not isinstance(text, str):
        return None, "details_not_text"
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None, "details_invalid_json"
    try:
        canonical = canonical_json(value)
    except (TypeError, ValueError, RecursionError):
        return value, "details_not_canonical"
    return value, (None if canonical == text else "details_not_canonical")


# --------------------------------------------------------------------- heads
_HEAD = re.compile(r"([0-9]{1,18}),([0-9a-f]{64})")


def parse_head(value: Any) -> tuple[int, str] | None:
    """``"seq,hash"`` (as node_state keeps a chain head) -> ``(seq, hash)``; None if malformed."""
    if not isinstance(value, str):
        return None
    match = _HEAD.fullmatch(value)
    return (int(match.group(1)), match.group(2)) if match else None


def head_problem(head: Any, entries: int, last_hash: str | None) -> tuple[int, str] | None:
    """Compare a verified chain (``entries`` rows, the last one hashing to ``last_hash``)
    with its recorded head (the raw node_state value, None if absent).

    Returns ``(seq, reason)`` of the break, or None. The chain alone cannot show rows
    cut off its end; the head can, as long as cutting the head too is also a failure:
    ``head_missing`` (rows but no head), ``head_malformed``, ``truncated`` (the head is
    beyond the last row), ``head_moved`` (the head names another entry than the last).
    """
    if head is None:
        return (entries, "head_missing") if entries else None
    parsed = parse_head(head)
    if parsed is None:
        return max(entries, 1), "head_malformed"
    seq, digest = parsed
    if seq > entries:
        return entries + 1, "truncated"
    if seq < entries:
        return seq + 1, "head_moved"
    if entries and digest != last_hash:
        return entries, "head_moved"
    return None


# ---------------------------------------------------------------- divergence
def divergence(ours: tuple[int, str] | None, seen: tuple[int, str] | None,
               page: Sequence[Any], peer_head: tuple[int, str] | None,
               head_known: bool) -> str | None:
    """Does a peer's chain still extend what we hold of it? None if so, else the reason.

    ``ours``: the last entry of our copy; ``seen``: the highest head the peer showed us;
    ``page``: the peer's entries from ``ours.seq`` on (it must start with our last
    entry, unchanged); ``peer_head``: the head the peer shows now (``head_known`` False
    when the peer does not say). Reasons: ``wiped`` (it has no chain any more),
    ``truncated`` (its head is below what we hold or saw), ``rewritten`` (an entry we
    hold or saw has another hash there, or is missing from a longer chain).
    """
    first = page[0] if page and isinstance(page[0], dict) else None
    if head_known and peer_head is None and (ours is not None or seen is not None):
        return "wiped"
    if ours is not None:
        if first is None or first.get("seq") != ours[0]:
            if not head_known or (peer_head is not None and peer_head[0] < ours[0]):
                return "truncated"
            return "rewritten"
        if first.get("hash") != ours[1]:
            return "rewritten"
    if seen is not None:
        if head_known and peer_head is not None and peer_head[0] < seen[0]:
            return "truncated"
        for entry in page:
            if isinstance(entry, dict) and entry.get("seq") == seen[0] \
                    and entry.get("hash") != seen[1]:
                return "rewritten"
        if head_known and peer_head is not None and peer_head[0] == seen[0] \
                and peer_head[1] != seen[1]:
            return "rewritten"
    return None
