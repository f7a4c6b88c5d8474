"""The journal's storage: positions, the epoch, the HLC, new events, and reading pages.

`JournalStore` is what every other part of the journal (write path, sequencer, follower,
snapshots, outbox) shares: the database, this till's identity and clock, the epoch it
sequences or follows in, and a cache of the figures that every heartbeat reads.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable, Protocol, Sequence, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import JournalEntry, NodeState, OutboxEvent
from app.models.db import Database, driver
from app.services.journal.events import JOURNAL_COLUMNS, AuditNote, Event, journal_entry_dict
from app.services.journal.hlc import HLC
from app.utils.clock import wall_ms

EpochPair = tuple[int, int]
T = TypeVar("T")

_JOURNAL_SELECT = ", ".join(f'"{c}"' for c in JOURNAL_COLUMNS)


class AuditSink(Protocol):
    """Where the journal writes its audit entries (the till's audit log)."""

    def record(self, session: Session, action: str, user: str | None,
               details: dict[str, Any] | None = None) -> object: ...


class CommitCache:
    """Figures read on every heartbeat (position, outbox size), cached until the next
    committed write transaction on the database (the journal's own, or any other
    `db.write()`: seed.bulk_catalog journals directly)."""

    def __init__(self, db: Database):
        self._lock = threading.Lock()
        self._gen = 0
        self._values: dict[str, object] = {}
        db.on_commit(self.invalidate)

    def invalidate(self) -> None:
        with self._lock:
            self._gen += 1
            self._values.clear()

    def get(self, name: str, compute: Callable[[], T]) -> T:
        with self._lock:
            value, gen = self._values.get(name), self._gen
        if value is not None:
            return value  # type: ignore[return-value]  # `name` always caches one type
        value = compute()
        with self._lock:
            if self._gen == gen:  # no write committed meanwhile
                self._values[name] = value
        return value


_SAVE_HLC_SQL = ("INSERT INTO node_state (key, value) VALUES ('hlc_last', ?) "
                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value")


class JournalStore:
    def __init__(self, db: Database, *, device_id: int, clock: Callable[[], int] = wall_ms,
                 audit: AuditSink | None = None):
        self.db = db
        self.device_id = device_id
        self.clock = clock
        self.audit = audit
        self.cache = CommitCache(db)
        self._seq_lock = threading.Lock()
        self._gseq_cond = threading.Condition()
        with db.read() as session:
            self._origin_seq = self._max_origin_seq(session)
            last = session.get(NodeState, "hlc_last")
            self.epoch: EpochPair = self._load_epoch(session)
        self.hlc = HLC(device_id, clock, last.value if last else None)

    # ------------------------------------------------------------ this till's state
    def _max_origin_seq(self, session: Session) -> int:
        a = session.scalar(select(func.max(JournalEntry.origin_seq))
                           .where(JournalEntry.origin_device == self.device_id)) or 0
        b = session.scalar(select(func.max(OutboxEvent.origin_seq))
                           .where(OutboxEvent.origin_device == self.device_id)) or 0
        return max(a, b)

    @staticmethod
    def _load_epoch(session: Session) -> EpochPair:
        row = session.get(NodeState, "epoch")
        if row is None:
            return (0, 0)
        n, m = row.value.split(",")
        return (int(n), int(m))

    def write_epoch(self, session: Session, epoch: EpochPair) -> None:
        """Take `epoch` as ours, stored in `session`'s transaction."""
        self.epoch = epoch
        session.merge(NodeState(key="epoch", value=f"{epoch[0]},{epoch[1]}"))

    def persist_epoch(self, epoch: EpochPair) -> None:
        with self.db.write() as session:
            session.merge(NodeState(key="epoch", value=f"{epoch[0]},{epoch[1]}"))
        self.epoch = epoch

    def new_event(self, type_: str, payload: dict[str, Any], user: str | None,
                  base_version: int | None = None) -> Event:
        with self._seq_lock:
            self._origin_seq += 1
            seq = self._origin_seq
            stamp = self.hlc.now()
        payload = dict(payload)
        payload.setdefault("created_ms", self.clock())
        return Event(event_id=uuid.uuid4().hex, origin_device=self.device_id, origin_seq=seq,
                     hlc=stamp, type=type_, payload=payload, user=user, base_version=base_version)

    def save_hlc(self, session: Session) -> None:
        if self.hlc.last:
            # Plain SQL, one statement: this runs in every write transaction of the journal.
            driver(session).execute(_SAVE_HLC_SQL, (self.hlc.last,))

    def audit_entry(self, session: Session, action: str, user: str | None, details: dict) -> None:
        if self.audit is not None:
            self.audit.record(session, action, user, details)

    def audit_event(self, session: Session, ev: Event, note: AuditNote | None,
                    **sequenced: object) -> None:
        """The audit entry a use case gave with its event, in the same transaction.

        When this node journals it itself, the entry also names the gseq and epoch, so
        the audit log shows which master sequenced what, under which term.
        """
        if note is not None:
            action, details = note.action, note.details
            self.audit_entry(session, action, ev.user, {**details, "event_id": ev.event_id,
                                                        "mode": ev.mode, **sequenced})

    # ------------------------------------------------------------------ positions
    @staticmethod
    def last_gseq(session: Session) -> int:
        return session.scalar(select(func.max(JournalEntry.gseq))) or 0

    def position(self) -> tuple[int, EpochPair]:
        """(last gseq, epoch of the last entry): how fresh this node's journal is."""
        return self.cache.get("position", self._read_position)

    def _read_position(self) -> tuple[int, EpochPair]:
        with self.db.read() as session:
            row = session.execute(select(JournalEntry.gseq, JournalEntry.epoch_number,
                                         JournalEntry.epoch_master)
                                  .order_by(JournalEntry.gseq.desc()).limit(1)).first()
            if row is None:
                return 0, (0, 0)
            return row[0], (row[1], row[2])

    def position_at(self, gseq: int) -> dict:
        """{gseq, event_id, epoch} of one journal position (what anchors are compared by)."""
        with self.db.read() as session:
            return position_of(gseq, session.get(JournalEntry, gseq) if gseq else None)

    def wake_waiters(self) -> None:
        with self._gseq_cond:
            self._gseq_cond.notify_all()

    def wait_for_gseq(self, gseq: int, timeout: float) -> bool:
        """Read-your-writes at a client: wait until the journal has reached gseq."""
        deadline = time.monotonic() + timeout
        with self._gseq_cond:
            while True:
                with self.db.read() as session:
                    if self.last_gseq(session) >= gseq:
                        return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._gseq_cond.wait(min(left, 0.05))

    # ---------------------------------------------------------------------- pages
    def entries_since(self, since: int, limit: int) -> dict:
        with self.db.read() as session:
            rows = session.scalars(select(JournalEntry).where(JournalEntry.gseq > since)
                                   .order_by(JournalEntry.gseq).limit(limit)).all()
            anchor = session.get(JournalEntry, since) if since else None
            return {
                "entries": [journal_entry_dict(r) for r in rows],
                "anchor": position_of(since, anchor),
                "last_gseq": self.last_gseq(session),
            }

    def raw_page(self, since: int, limit: int) -> tuple[list[Sequence[Any]], dict, int]:
        """`entries_since` as stored: rows in `JOURNAL_COLUMNS` order with the payload
        still JSON text, the anchor and the last gseq. For serving pages without decoding
        and encoding every payload again (`replication.changes_json`)."""
        with self.db.read() as session:
            rows = session.connection().exec_driver_sql(
                f"SELECT {_JOURNAL_SELECT} FROM journal WHERE gseq > ? ORDER BY gseq LIMIT ?",
                (since, limit)).all()
            anchor = position_of(since, session.get(JournalEntry, since) if since else None)
            return list(rows), anchor, self.last_gseq(session)

    def ids_between(self, low: int, high: int, *, epochs: bool = False) -> list[list]:
        """[gseq, event_id] (with epochs: [gseq, event_id, epoch_number, epoch_master])."""
        with self.db.read() as session:
            if epochs:
                return [list(r) for r in session.execute(
                    select(JournalEntry.gseq, JournalEntry.event_id, JournalEntry.epoch_number,
                           JournalEntry.epoch_master)
                    .where(JournalEntry.gseq > low, JournalEntry.gseq <= high)
                    .order_by(JournalEntry.gseq))]
            return [[g, e] for g, e in session.execute(
                select(JournalEntry.gseq, JournalEntry.event_id)
                .where(JournalEntry.gseq > low, JournalEntry.gseq <= high)
                .order_by(JournalEntry.gseq))]


def position_of(gseq: int, row: JournalEntry | None) -> dict:
    """A journal position as nodes compare it: gseq, event_id and the epoch it was
    sequenced in. Within one epoch pair a single master writes one linear journal and
    every node appends only after its predecessor matched, so an equal (gseq, event_id,
    epoch) proves an equal prefix; an equal event_id alone does not (a resubmitted event
    can land at the same gseq on both sides of a partition)."""
    return {"gseq": gseq, "event_id": row.event_id if row else None,
            "epoch": [row.epoch_number, row.epoch_master] if row else None}


def same_position(mine: JournalEntry | None, theirs: dict) -> bool:
    if mine is None or mine.event_id != theirs.get("event_id"):
        return False
    epoch = theirs.get("epoch")
    return epoch is None or list(epoch) == [mine.epoch_number, mine.epoch_master]
