"""The tamper-evident audit log: an append-only hash chain per device (DESIGN invariant 6).

Entries are written in the same transaction as the change they record. Each entry
hashes the previous entry's hash plus its own canonical JSON, so a changed, inserted,
deleted or reordered row breaks the chain. `details` is stored as exactly the canonical
JSON text that was hashed, and verification reads the stored text (never a re-parsed
value), so two different stored texts can never both verify.

The head of every chain (ours and the copies of other tills' chains) is kept in
node_state (`audit_head:<device>` = "seq,hash"), so cutting rows off the end is
detected; a chain without its head, a head that names another entry, or a missing own
chain is a failure too. What a till holding the file could still do (rewrite its own
chain and head from some entry on: the rule is public) is caught by the copies: every
till copies every other till's chain (`take_peer_chain`), and a till whose chain stops
extending what a peer copied or saw is reported there as `audit.diverged`, an entry in
that peer's own chain, which every till copies in turn. See docs/audit.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any, Callable

from sqlalchemy import String, Text, cast, select, tuple_, type_coerce
from sqlalchemy.orm import Session

from app.models import AuditEntry
from app.models.db import driver
from app.utils.canonical import canonical_json
from app.utils.hashchain import (
    GENESIS,
    details_problem,
    divergence,
    entry_hash,
    head_problem,
    parse_head,
    verify_chain,
)

log = logging.getLogger(__name__)

HEAD_KEY = "audit_head:"          # + device id: "seq,hash" of that chain's last entry
SEEN_KEY = "audit_seen:"          # + device id: the highest head that peer has shown us
DIVERGED_KEY = "audit_diverged:"  # + device id: our copy's head when we reported it
DEVICE_KEY = "audit_device"       # this till's own device id: its chain must exist
DIVERGED = "audit.diverged"


def canonical_entry(device_id: int, seq: int, ts_ms: int, user: str | None, action: str,
                    details: Any) -> dict[str, Any]:
    return {"device_id": device_id, "seq": seq, "ts_ms": ts_ms, "user": user,
            "action": action, "details": details}


# The last entry with an integer seq (a damaged row must not stop the till writing),
# and the recorded head, in one statement: this runs in every write transaction.
_HEAD_SQL = ("SELECT l.seq, l.hash, (SELECT value FROM node_state WHERE key = ?) FROM (SELECT 1) "
             "LEFT JOIN (SELECT seq, hash FROM audit_log WHERE device_id = ? "
             "AND typeof(seq) = 'integer' ORDER BY seq DESC LIMIT 1) AS l")
_INSERT_SQL = ("INSERT INTO audit_log (device_id, seq, ts_ms, user, action, details, prev_hash, hash) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
_STATE_UPSERT_SQL = ("INSERT INTO node_state (key, value) VALUES (?, ?) "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value")
_HEADS_UPSERT_SQL = ("INSERT INTO node_state (key, value) VALUES (?, ?), (?, ?) "
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
        gap (and the break) visible to `verify`. A malformed head is no reason to stop
        selling: the chain then continues one seq past its last row, so the gap keeps the
        damage visible rather than healing it.
        """
        key = f"{HEAD_KEY}{self.device_id}"
        # Plain SQL on the session's connection: this runs in every write transaction
        # (twice per sale), so it skips the ORM's statement and flush machinery.
        conn = driver(session)  # the sqlite3 connection: no SQLAlchemy machinery either
        last_seq, last_hash, head = conn.execute(_HEAD_SQL, (key, self.device_id)).fetchone()
        seq, prev = (0, GENESIS)
        if last_seq is not None:
            seq, prev = last_seq, last_hash if isinstance(last_hash, str) else GENESIS
        parsed = parse_head(head)
        if parsed is not None and parsed[0] >= seq:
            seq, prev = parsed  # the head wins, unless rows lie beyond it (never re-use seqs)
        elif head is not None and parsed is None:
            log.warning("audit head %s is malformed; continuing after a visible gap", key)
            seq += 1
        seq += 1
        ts = self.clock()
        details = details or {}
        text = canonical_json(details)  # what is hashed is what is stored
        digest = entry_hash(prev, canonical_entry(self.device_id, seq, ts, user, action, details))
        conn.execute(_INSERT_SQL, (self.device_id, seq, ts, user, action, text, prev, digest))
        conn.execute(_HEADS_UPSERT_SQL, (key, f"{seq},{digest}", DEVICE_KEY, str(self.device_id)))
        self.last_seq = seq
        return AuditEntry(device_id=self.device_id, seq=seq, ts_ms=ts, user=user, action=action,
                          details=details, prev_hash=prev, hash=digest)


# ------------------------------------------------------------------ helpers
def _shown(value: Any) -> Any:
    """A stored value as JSON can carry it (a blob as x'..' text, a real as its text)."""
    if value is None or isinstance(value, (str, int)) and not isinstance(value, bool):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"x'{bytes(value).hex()}'"
    return repr(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _state(conn: Any, key: str) -> Any:
    row = conn.exec_driver_sql("SELECT value FROM node_state WHERE key = ?", (key,)).first()
    return row[0] if row else None


def _set_state(conn: Any, key: str, value: str) -> None:
    conn.exec_driver_sql(_STATE_UPSERT_SQL, (key, value))


def _last_row(conn: Any, device_id: int) -> tuple[int, str] | None:
    """(seq, hash) of a chain's last entry with an integer seq, None if it has none."""
    row = conn.exec_driver_sql("SELECT seq, hash FROM audit_log WHERE device_id = ? AND "
                               "typeof(seq) = 'integer' ORDER BY seq DESC LIMIT 1",
                               (device_id,)).first()
    if row is None:
        return None
    return row[0], row[1] if isinstance(row[1], str) else ""


def _device_key(value: Any) -> int | None:
    text = value if isinstance(value, str) else None
    return int(text) if text and text.isascii() and text.isdigit() and len(text) < 10 else None


# ------------------------------------------------------------------- verify
_CHAIN_SQL = ("SELECT seq, ts_ms, user, action, details, prev_hash, hash FROM audit_log "
              "WHERE device_id = ? ORDER BY CAST(seq AS INTEGER), seq")


def verify_device(session: Session, device_id: int, *, must_exist: bool = False) -> dict[str, Any]:
    """Verify one device's chain from the stored bytes, then its head.

    Rows are read raw (the JSON column type would re-parse `details`, and SQLite keeps
    whatever type was written: a seq of 3.5, 'x' or a blob is reported, not raised).
    Ordered by the integer value of seq, so a row whose seq is not an integer is met
    about where it stands and reported there as `seq_not_integer`.
    """
    conn = session.connection()
    offender: list[Any] = [None]

    def rows() -> Iterator[dict[str, Any]]:
        for seq, ts_ms, user, action, details, prev_hash, digest in conn.exec_driver_sql(
                _CHAIN_SQL, (device_id,)):
            offender[0] = seq
            value, problem = details_problem(details)
            entry = canonical_entry(device_id, seq, ts_ms, user, action, value)
            if problem == "details_not_canonical" and not _hashes_to(prev_hash, entry, digest):
                problem = None  # the value itself was changed: verify_chain says hash_mismatch
            damage = "seq_not_integer" if not _is_int(seq) else problem
            yield {"seq": seq, "prev_hash": prev_hash, "hash": digest, "damage": damage,
                   "entry": entry}

    result = verify_chain(rows())
    result["device_id"] = device_id
    if not result["ok"]:
        if result["broken_at"]["reason"] == "seq_not_integer":
            result["broken_at"]["stored_seq"] = _shown(offender[0])
        return result
    last = _last_row(conn, device_id) if result["entries"] else None
    problem = head_problem(_state(conn, f"{HEAD_KEY}{device_id}"), result["entries"],
                           last[1] if last else None)
    if problem is None and must_exist and not result["entries"]:
        problem = (1, "chain_missing")  # every start writes node.started
    if problem is not None:
        result["ok"] = False
        result["broken_at"] = {"seq": problem[0], "reason": problem[1]}
    return result


def _hashes_to(prev_hash: Any, entry: dict[str, Any], digest: Any) -> bool:
    try:
        return isinstance(prev_hash, str) and entry_hash(prev_hash, entry) == digest
    except (TypeError, ValueError, RecursionError):
        return False


def divergence_reports(session: Session) -> dict[Any, list[dict[str, Any]]]:
    """Every `audit.diverged` entry in any chain, by the device it is about."""
    out: dict[Any, list[dict[str, Any]]] = {}
    for reporter, seq, details in session.connection().exec_driver_sql(
            "SELECT device_id, seq, details FROM audit_log WHERE action = ? "
            "ORDER BY device_id, seq", (DIVERGED,)):
        value, _problem = details_problem(details)  # a damaged report is a chain break anyway
        if not isinstance(value, dict) or not _is_int(value.get("device_id")):
            continue
        out.setdefault(value["device_id"], []).append({
            "reported_by": _shown(reporter), "report_seq": _shown(seq),
            "reason": value.get("reason"), "our_seq": value.get("our_seq"),
            "peer_seq": value.get("peer_seq")})
    return out


def verify_all(session: Session, own_device: int | None = None) -> dict[str, Any]:
    """Every chain in this database, the own chain required, divergence reports applied.

    `own_device`: this till's device id (the API passes its config); the CLI leaves it
    None and the id every entry of ours re-asserts (node_state `audit_device`) is used.
    """
    conn = session.connection()
    if own_device is None:
        own_device = _device_key(_state(conn, DEVICE_KEY))
    devices: set[Any] = {d for (d,) in conn.exec_driver_sql("SELECT DISTINCT device_id FROM audit_log")}
    bad_heads: list[dict[str, Any]] = []
    for (key,) in conn.exec_driver_sql("SELECT key FROM node_state WHERE key LIKE 'audit\\_head:%' "
                                       "ESCAPE '\\'"):
        device = _device_key(key[len(HEAD_KEY):]) if isinstance(key, str) else None
        if device is None:
            bad_heads.append({"device_id": _shown(key), "entries": 0, "ok": False,
                              "broken_at": {"seq": 1, "reason": "head_malformed"}})
        else:
            devices.add(device)
    if own_device is not None:
        devices.add(own_device)
    per_device: list[dict[str, Any]] = []
    for d in sorted(devices, key=lambda v: (not _is_int(v), str(v) if not _is_int(v) else v)):
        if _is_int(d):
            per_device.append(verify_device(session, d, must_exist=d == own_device))
        else:
            per_device.append({"device_id": _shown(d), "entries": 0, "ok": False,
                               "broken_at": {"seq": 1, "reason": "device_not_integer"}})
    per_device += bad_heads
    reports = divergence_reports(session)
    known = {d["device_id"] for d in per_device}
    per_device += [{"device_id": d, "entries": 0, "ok": True, "broken_at": None}
                   for d in sorted(reports) if d not in known]
    for dev in per_device:
        found = reports.get(dev["device_id"])
        if not found:
            continue
        dev["diverged"] = found
        if dev["ok"]:
            first = found[0]
            dev["ok"] = False
            dev["broken_at"] = {"seq": first["our_seq"], "reason": "diverged",
                                "diverged": first["reason"], "reported_by": first["reported_by"]}
    (total,) = conn.exec_driver_sql("SELECT COUNT(*) FROM audit_log").one()
    broken = next((d for d in per_device if not d["ok"]), None)
    out: dict[str, Any] = {"ok": broken is None and own_device is not None, "entries": total,
                           "devices": per_device}
    if broken is not None:
        out["broken_at"] = {"device_id": broken["device_id"], **(broken["broken_at"] or {})}
    elif own_device is None:
        out["broken_at"] = {"device_id": None, "seq": None, "reason": "device_unknown"}
    return out


# -------------------------------------------------------------- list/export
_c = AuditEntry.__table__.c
# details as the stored text (the JSON type would parse it, and fail on a damaged row).
_RAW = (_c.device_id, _c.seq, _c.ts_ms, _c.user, _c.action,
        type_coerce(_c.details, Text).label("details"), _c.prev_hash, _c.hash)


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
        like = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(cast(AuditEntry.details, String).like(f"%{like}%", escape="\\"))
    return query


def entry_dict(row: Sequence[Any]) -> dict[str, Any]:
    """One stored row for people and peers; never raises on a damaged row.

    A value that is not what an entry holds (details that are not the canonical JSON
    text, a seq that is not an integer, a blob) is shown as stored, and named with its
    reason in `damaged`.
    """
    device_id, seq, ts_ms, user, action, details, prev_hash, digest = row
    damaged: dict[str, str] = {}
    value, problem = details_problem(details)
    if problem:
        damaged["details"] = problem
        value = _shown(details)
    for name, v in (("device_id", device_id), ("seq", seq), ("ts_ms", ts_ms)):
        if not _is_int(v):
            damaged[name] = "not_integer"
    for name, v, optional in (("user", user, True), ("action", action, False),
                              ("prev_hash", prev_hash, False), ("hash", digest, False)):
        if not (isinstance(v, str) or optional and v is None):
            damaged[name] = "not_text"
    out = {"device_id": _shown(device_id), "seq": _shown(seq), "ts_ms": _shown(ts_ms),
           "user": _shown(user), "action": _shown(action), "details": value,
           "hash": _shown(digest), "prev_hash": _shown(prev_hash)}
    if damaged:
        out["damaged"] = damaged
    return out


def search(session: Session, *, limit: int = 100, before: tuple[int, int, int] | None = None,
           **filters: Any) -> dict[str, Any]:
    """Newest first, keyset-paged by (ts_ms, device_id, seq) so page N is as fast as page 1."""
    query = _filtered(select(*_RAW), **filters)
    if before is not None:
        query = query.where(tuple_(AuditEntry.ts_ms, AuditEntry.device_id, AuditEntry.seq)
                            < tuple_(*before))
    rows = session.execute(query.order_by(AuditEntry.ts_ms.desc(), AuditEntry.device_id.desc(),
                                          AuditEntry.seq.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = None
    if more:
        # From the oldest row on the page whose key is made of integers (a damaged row's
        # key cannot be a cursor; at worst the next page repeats a few rows).
        keyed = [r for r in rows if all(_is_int(v) for v in r[:3])]
        if keyed:
            last = keyed[-1]
            cursor = f"{last.ts_ms}.{last.device_id}.{last.seq}"
    return {"entries": [entry_dict(r) for r in rows], "next": cursor}


CSV_HEADER = ["device_id", "seq", "ts_ms", "user", "action", "details", "hash", "damaged"]


def export_rows(session: Session, **filters: Any) -> Iterator[list[Any]]:
    """Every matching entry, newest first, streamed as CSV cells (CSV_HEADER).

    `details` is the stored text as is; `damaged` names what is wrong with a row
    ("details:details_invalid_json seq:not_integer"), empty for a sound row.
    """
    query = _filtered(select(*_RAW), **filters).order_by(
        AuditEntry.ts_ms.desc(), AuditEntry.device_id.desc(), AuditEntry.seq.desc())
    for row in session.execute(query.execution_options(yield_per=2000)):
        shown = entry_dict(row)
        damaged = shown.get("damaged", {})
        details = row.details if isinstance(row.details, str) else _shown(row.details)
        yield [shown["device_id"], shown["seq"], shown["ts_ms"], shown["user"] or "",
               shown["action"], details, shown["hash"],
               " ".join(f"{k}:{v}" for k, v in damaged.items())]


# --------------------------------------------------------- copies of chains
def export_chain(session: Session, device_id: int, after_seq: int, limit: int = 1000) -> list[dict]:
    """Entries of one device's chain after `after_seq`, as they travel to other nodes.

    A damaged row travels as stored (raw details text): the receiver's hash check then
    fails there and it reports the chain, instead of this till answering 500.
    """
    rows = session.execute(select(*_RAW).where(AuditEntry.device_id == device_id,
                                               AuditEntry.seq > after_seq)
                           .order_by(AuditEntry.seq).limit(limit)).all()
    out = []
    for r in rows:
        entry = entry_dict(r)
        entry.pop("damaged", None)
        out.append(entry)
    return out


def chain_head(session: Session, device_id: int) -> dict[str, Any] | None:
    """{seq, hash} of a chain's last entry (what a peer compares with its copy), or None."""
    last = _last_row(session.connection(), device_id)
    return {"seq": last[0], "hash": last[1]} if last else None


def import_chain(session: Session, device_id: int, entries: Sequence[Any]) -> int:
    """Append another device's entries to our copy, only while each one links and hashes.

    Stores `details` as the canonical text that was hashed and moves the copy's head
    (`audit_head:<device>`) in the same transaction. Stops at the first entry that does
    not fit and returns how many were taken (`take_peer_chain` reports the rest).
    """
    conn = session.connection()
    last = _last_row(conn, device_id)
    seq, prev = last if last else (0, GENESIS)
    rows = []
    for e in entries:
        if not isinstance(e, dict) or e.get("device_id") != device_id or e.get("seq") != seq + 1 \
                or e.get("prev_hash") != prev or not _is_int(e.get("ts_ms")) \
                or not isinstance(e.get("action"), str) \
                or not (e.get("user") is None or isinstance(e.get("user"), str)):
            break
        try:
            text = canonical_json(e.get("details"))
            digest = entry_hash(prev, canonical_entry(device_id, e["seq"], e["ts_ms"], e["user"],
                                                      e["action"], e.get("details")))
        except (TypeError, ValueError, RecursionError):
            break
        if digest != e.get("hash"):
            break
        rows.append((device_id, e["seq"], e["ts_ms"], e["user"], e["action"], text, prev, digest))
        prev, seq = digest, e["seq"]
    if rows:  # a page is up to 2,000 entries: one executemany
        conn.exec_driver_sql(_INSERT_SQL, rows)
        _set_state(conn, f"{HEAD_KEY}{device_id}", f"{seq},{prev}")
    return len(rows)


def _peer_head(page: dict[str, Any]) -> tuple[bool, tuple[int, str] | None]:
    """(does the peer say, its head) from a `/api/sync/audit` answer."""
    if "head" not in page:
        return False, None  # an older till: it does not say
    head = page["head"]
    if head is None:
        return True, None
    if isinstance(head, dict) and _is_int(head.get("seq")) and isinstance(head.get("hash"), str):
        return True, (head["seq"], head["hash"])
    return False, None


def take_peer_chain(session: Session, audit_log: AuditLog, device_id: int,
                    page: dict[str, Any]) -> dict[str, Any]:
    """Extend our copy of a peer's chain from its `/api/sync/audit?after=<our seq - 1>` page.

    The page must start with the last entry we hold, unchanged, and the peer's head
    must not be below the highest one it showed us before. If not, the peer's chain
    stopped extending our copy (rewritten, truncated, wiped): the copy is kept as it
    is, and an `audit.diverged` entry goes into our own chain, once per divergence
    (node_state `audit_diverged:<device>` holds the copy's head it was reported at).
    Callers hold the write lock (Database.write).
    """
    out: dict[str, Any] = {"added": 0, "diverged": None}
    entries = page.get("entries")
    if device_id == audit_log.device_id or not isinstance(entries, list):
        return out
    conn = session.connection()
    head_known, peer_head = _peer_head(page)
    ours = _last_row(conn, device_id)
    seen = parse_head(_state(conn, f"{SEEN_KEY}{device_id}"))
    reason = divergence(ours, seen, entries, peer_head, head_known)
    if reason is None:
        new = entries[1:] if ours is not None else entries
        out["added"] = import_chain(session, device_id, new)
        if out["added"] < len(new):
            reason = "invalid_entry"  # an entry after our copy does not link or hash
        elif head_known and peer_head is not None and (seen is None or peer_head[0] > seen[0]):
            _set_state(conn, f"{SEEN_KEY}{device_id}", f"{peer_head[0]},{peer_head[1]}")
    if reason is not None:
        out["diverged"] = reason
        ours = _last_row(conn, device_id)
        mark = f"{ours[0]},{ours[1]}" if ours else "0"
        if _state(conn, f"{DIVERGED_KEY}{device_id}") != mark:
            first = entries[0] if entries and isinstance(entries[0], dict) else {}
            at_ours = first.get("hash") if ours and first.get("seq") == ours[0] else None
            audit_log.record(session, DIVERGED, None, {
                "device_id": device_id, "reason": reason,
                "our_seq": ours[0] if ours else 0, "our_hash": ours[1] if ours else None,
                "peer_seq": peer_head[0] if peer_head else None,
                "peer_hash": peer_head[1] if peer_head else None,
                "peer_hash_at_our_seq": at_ours if isinstance(at_ours, str) else None,
                "seen_seq": seen[0] if seen else None})
            _set_state(conn, f"{DIVERGED_KEY}{device_id}", mark)
            out["recorded"] = True
    return out
