"""The tamper-evident audit log: an append-only hash chain per device.

Entries are written in the same transaction as the change they record. Each entry
hashes the previous entry's hash plus its own canonical JSON, so a changed, inserted,
deleted or reordered row breaks the chain. The head (count and last hash) is also kept
in node_state, so cutting rows off the end is detected too.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import AuditEntry, NodeState
from app.models.db import insert_rows
from app.utils.hashchain import GENESIS, entry_hash, verify_chain


def canonical_entry(device_id: int, seq: int, ts_ms: int, user: str | None, action: str,
                    details: dict) -> dict[str, Any]:
    return {"device_id": device_id, "seq": seq, "ts_ms": ts_ms, "user": user,
            "action": action, "details": details}


_HEAD_SQL = ("SELECT (SELECT seq || ',' || hash FROM audit_log WHERE device_id = ? "
             "ORDER BY seq DESC LIMIT 1), (SELECT value FROM node_state WHERE key = ?)")
_INSERT_SQL = ("INSERT INTO audit_log (device_id, seq, ts_ms, user, action, details, prev_hash, hash) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
_HEAD_UPSERT_SQL = ("INSERT INTO node_state (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value")


class AuditLog:
    def __init__(self, device_id: int, clock: Callable[[], int]):
        self.device_id = device_id
        self.clock = clock
        # Our chain's last seq as far as this process wrote it (a hint for heartbeats:
        # peers copy our chain only when it grew; None until the first entry here).
        self.last_seq: int | None = None

    def record(self, session: Session, action: str, user: str | None,
               details: dict[str, Any] | None = None) -> AuditEntry:
        """Append one entry. Callers hold the database write lock (Database.write).

        The chain continues from the recorded head, not from whatever row is last in the
        table: if rows were cut off the end, appending from the last remaining row would
        re-use their seqs and silently heal the chain; continuing from the head keeps the
        gap (and the break) visible to `verify`.
        """
        key = f"audit_head:{self.device_id}"
        # Plain SQL on the session's connection: this runs in every write transaction
        # (twice per sale), so it skips the ORM's statement and flush machinery.
        conn = session.connection()
        last, head = conn.exec_driver_sql(_HEAD_SQL, (self.device_id, key)).one()
        seq, prev = (0, GENESIS)
        if last is not None:
            last_seq, prev = last.split(",")
            seq = int(last_seq)
        if head is not None:
            head_seq, head_hash = head.split(",")
            # The head wins, unless rows lie beyond it (then never re-use their seqs).
            if int(head_seq) >= seq:
                seq, prev = int(head_seq), head_hash
        seq += 1
        ts = self.clock()
        details = details or {}
        digest = entry_hash(prev, canonical_entry(self.device_id, seq, ts, user, action, details))
        values = {"device_id": self.device_id, "seq": seq, "ts_ms": ts, "user": user,
                  "action": action, "details": details, "prev_hash": prev, "hash": digest}
        conn.exec_driver_sql(_INSERT_SQL, (self.device_id, seq, ts, user, action,
                                           json.dumps(details), prev, digest))
        conn.exec_driver_sql(_HEAD_UPSERT_SQL, (key, f"{seq},{digest}"))
        self.last_seq = seq
        return AuditEntry(**values)


def verify_device(session: Session, device_id: int) -> dict[str, Any]:
    rows = session.scalars(select(AuditEntry).where(AuditEntry.device_id == device_id)
                           .order_by(AuditEntry.seq)).yield_per(2000)
    result = verify_chain({
        "seq": r.seq, "prev_hash": r.prev_hash, "hash": r.hash,
        "entry": canonical_entry(r.device_id, r.seq, r.ts_ms, r.user, r.action, r.details),
    } for r in rows)
    result["device_id"] = device_id
    head = session.get(NodeState, f"audit_head:{device_id}")
    if result["ok"] and head is not None:
        count, digest = head.value.split(",")
        last = session.scalars(select(AuditEntry).where(AuditEntry.device_id == device_id)
                               .order_by(AuditEntry.seq.desc()).limit(1)).first()
        if int(count) != result["entries"] or last is None or last.hash != digest:
            result["ok"] = False
            result["broken_at"] = {"seq": result["entries"] + 1, "reason": "truncated"}
    return result


def verify_all(session: Session) -> dict[str, Any]:
    devices = [d for (d,) in session.execute(select(AuditEntry.device_id).distinct())]
    heads = [int(k.split(":")[1]) for (k,) in session.execute(
        select(NodeState.key).where(NodeState.key.like("audit_head:%")))]
    per_device = [verify_device(session, d) for d in sorted(set(devices) | set(heads))]
    total = session.scalar(select(func.count()).select_from(AuditEntry)) or 0
    broken = next((d for d in per_device if not d["ok"]), None)
    out: dict[str, Any] = {"ok": broken is None, "entries": total, "devices": per_device}
    if broken is not None:
        out["broken_at"] = {"device_id": broken["device_id"], **(broken["broken_at"] or {})}
    return out


def _filtered(query, *, action: str = "", device_id: int | None = None, user: str = "",
              since_ms: int | None = None, until_ms: int | None = None, text: str = ""):
    if action:
        query = query.where(AuditEntry.action.like(action.replace("*", "%")) if "*" in action
                            else AuditEntry.action == action)
    if device_id is not None:
        query = query.where(AuditEntry.device_id == device_id)
    if user:
        query = query.where(AuditEntry.user == user)
    if since_ms is not None:
        query = query.where(AuditEntry.ts_ms >= since_ms)
    if until_ms is not None:
        query = query.where(AuditEntry.ts_ms < until_ms)
    if text:
        from sqlalchemy import String, cast

        like = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(cast(AuditEntry.details, String).like(f"%{like}%", escape="\\"))
    return query


def entry_dict(r: AuditEntry) -> dict[str, Any]:
    return {"device_id": r.device_id, "seq": r.seq, "ts_ms": r.ts_ms, "user": r.user,
            "action": r.action, "details": r.details, "hash": r.hash, "prev_hash": r.prev_hash}


def search(session: Session, *, limit: int = 100, before: tuple[int, int, int] | None = None,
           **filters: Any) -> dict[str, Any]:
    """Newest first, keyset-paged by (ts_ms, device_id, seq) so page N is as fast as page 1."""
    query = _filtered(select(AuditEntry), **filters)
    if before is not None:
        from sqlalchemy import tuple_

        query = query.where(tuple_(AuditEntry.ts_ms, AuditEntry.device_id, AuditEntry.seq)
                            < tuple_(*before))
    rows = session.scalars(query.order_by(AuditEntry.ts_ms.desc(), AuditEntry.device_id.desc(),
                                          AuditEntry.seq.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = None
    if more and rows:
        last = rows[-1]
        cursor = f"{last.ts_ms}.{last.device_id}.{last.seq}"
    return {"entries": [entry_dict(r) for r in rows], "next": cursor}


def iterate(session: Session, **filters: Any):
    """Every matching entry, newest first, streamed (for CSV export)."""
    query = _filtered(select(AuditEntry), **filters).order_by(
        AuditEntry.ts_ms.desc(), AuditEntry.device_id.desc(), AuditEntry.seq.desc())
    yield from session.scalars(query).yield_per(2000)


def canonical_json_text(details: dict) -> str:
    from app.utils.canonical import canonical_json

    try:
        return canonical_json(details)
    except ValueError:
        import json

        return json.dumps(details, sort_keys=True)


def export_chain(session: Session, device_id: int, after_seq: int, limit: int = 1000) -> list[dict]:
    """Entries of one device's chain after `after_seq`, as they travel to other nodes."""
    rows = session.scalars(select(AuditEntry).where(AuditEntry.device_id == device_id,
                                                    AuditEntry.seq > after_seq)
                           .order_by(AuditEntry.seq).limit(limit))
    return [entry_dict(r) for r in rows]


def last_entry(session: Session, device_id: int) -> AuditEntry | None:
    return session.scalars(select(AuditEntry).where(AuditEntry.device_id == device_id)
                           .order_by(AuditEntry.seq.desc()).limit(1)).first()


def import_chain(session: Session, device_id: int, entries: list[dict]) -> int:
    """Append another device's entries, only if each one links and hashes correctly.

    A copy of every till's chain on every node means a till that is tampered with (or
    lost) can be checked against the others. Stops at the first entry that does not fit.
    """
    last = last_entry(session, device_id)
    prev, seq = (last.hash, last.seq) if last else (GENESIS, 0)
    rows = []
    for e in entries:
        if e.get("device_id") != device_id or e.get("seq") != seq + 1 or e.get("prev_hash") != prev:
            break
        digest = entry_hash(prev, canonical_entry(device_id, e["seq"], e["ts_ms"], e["user"],
                                                  e["action"], e["details"]))
        if digest != e.get("hash"):
            break
        rows.append({"device_id": device_id, "seq": e["seq"], "ts_ms": e["ts_ms"], "user": e["user"],
                     "action": e["action"], "details": e["details"], "prev_hash": prev,
                     "hash": digest})
        prev, seq = digest, e["seq"]
    insert_rows(session, AuditEntry.__table__, rows)  # a page is up to 2,000 entries
    return len(rows)
