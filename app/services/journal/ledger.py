"""The write path: every change becomes an event, ordered by the master into the journal.

`Ledger.execute(event)` is what every domain service calls:

* this node is the sequencing master -> admit, journal, apply, commit (fsync), broadcast;
* a master link is up -> submit and wait (~300 ms); 201/409 comes from the master;
* otherwise -> keep the event in the outbox, apply it locally, answer "offline".

An event leaves the outbox only when it comes back through the journal stream
(`receive_entries`), never on a mere ack: if the master dies between ack and
broadcast, the till still holds it and resubmits it (duplicates are dropped by
event_id). Clients apply entries strictly in gseq order; a gap asks for a pull.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Iterator

from sqlalchemy import delete, func, select, text, tuple_
from sqlalchemy.orm import Session

from app.models import DERIVED_TABLES, JournalEntry, NodeState, OutboxEvent
from app.models.db import Database, insert_rows
from app.services.journal.cluster_view import STANDALONE, ClusterView
from app.services.journal.events import (
    COMMUTATIVE_TYPES,
    MASTER_DERIVED_TYPES,
    Event,
    journal_entry_dict,
)
from app.services.journal.hlc import HLC, parse_hlc
from app.services.journal.state_machine import Notice, NotYet, StateMachine
from app.utils.chunks import chunks
from app.utils.clock import wall_ms
from app.utils.errors import ApiError, ServiceUnavailable

log = logging.getLogger(__name__)

EpochPair = tuple[int, int]


# Journal columns in the order `raw_page` returns them.
WIRE_COLUMNS = ("gseq", "epoch_number", "epoch_master", "event_id", "origin_device", "origin_seq",
                "hlc", "type", "payload", "user", "base_version", "mode", "recorded_ms")
_WIRE_SELECT = ", ".join(f'"{c}"' for c in WIRE_COLUMNS)
# A journal row the master just appended: the ORM row, or its columns as attributes.
AppendedRow = JournalEntry | SimpleNamespace


def turned_down(ack: dict) -> bool:
    """An ack that ends an event's life in the outbox unjournaled: a stale edit that lost
    ("rejected"), anything the rules refuse, or a sale whose `client_ref` the master holds
    on another sale ("duplicate" without a gseq: this event is never journaled)."""
    status = ack.get("status")
    return status in ("rejected", "refused") or (status == "duplicate" and ack.get("gseq") is None)


class SnapshotUnavailable(Exception):
    """This node cannot give a snapshot right now (see `Ledger.write_snapshot`)."""


class LinkDown(Exception):
    """The master link is not usable (not connected, timed out, refused by the master)."""


@dataclass
class Outcome:
    status: str  # "online" | "offline" | "duplicate"
    event: Event
    gseq: int | None = None
    ack: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReceiveResult:
    applied: int = 0
    gap_after: int | None = None  # set when entries do not continue our journal
    diverged: bool = False
    last_gseq: int = 0


class Ledger:
    def __init__(self, db: Database, *, device_id: int, machine: StateMachine,
                 clock: Callable[[], int] = wall_ms, audit: Any = None,
                 submit_timeout: float = 0.3):
        self.db = db
        # What the journal's entries drive (admission, derived tables): the shop.
        self.machine = machine
        self.device_id = device_id
        self.clock = clock
        self.audit = audit
        self.submit_timeout = submit_timeout
        self.sequencing = False
        # What this till knows of the cluster (lease, isolation, master link), read-only:
        # standalone until the cluster runtime attaches itself (`attach_cluster`). The
        # lease is renewed by every heartbeat tick; a master whose process stood still
        # (SIGSTOP, a suspended VM) finds it lapsed on waking and sequences nothing until
        # it has heard the others again.
        self._cluster: ClusterView = STANDALONE
        # When a sale last had to go offline here (the status pill says so until the
        # outbox drains, even while a silent master's socket still looks connected).
        self.last_offline_ms: int | None = None
        self.epoch: EpochPair = (0, 0)
        # Who hears the notices of every change (`subscribe`): browsers, the cluster.
        self._subscribers: list[Callable[[list[Notice]], None]] = []
        # Who hears of entries this master appended (`subscribe_appended`: the cluster
        # broadcasts them) and of an event that had to go offline (`subscribe_offline`).
        self._appended_subscribers: list[Callable[[list[dict], dict | None], None]] = []
        self._offline_subscribers: list[Callable[[], None]] = []
        self._seq_lock = threading.Lock()
        self._gseq_cond = threading.Condition()
        # position() and outbox_pending() go into every heartbeat (several a second):
        # cached, and dropped after every committed write transaction on this database:
        # this ledger's own, and any other db.write() (seed.bulk_catalog journals directly).
        self._cache_lock = threading.Lock()
        self._cache_gen = 0
        self._position_cache: tuple[int, EpochPair] | None = None
        self._outbox_cache: int | None = None
        db.on_commit(self._invalidate)
        with db.read() as session:
            self._origin_seq = self._max_origin_seq(session)
            last = session.get(NodeState, "hlc_last")
            self.epoch = self._load_epoch(session)
        self.hlc = HLC(device_id, clock, last.value if last else None)

    def subscribe(self, callback: Callable[[list[Notice]], None]) -> None:
        """Call `callback(notices)` after every change this ledger commits (in the order
        subscribers came; a notice list may be empty)."""
        self._subscribers.append(callback)

    def subscribe_appended(self, callback: Callable[[list[dict], dict | None], None]) -> None:
        """Call `callback(entries, prev)` after this master commits new journal entries
        (`prev`: the position they follow)."""
        self._appended_subscribers.append(callback)

    def subscribe_offline(self, callback: Callable[[], None]) -> None:
        """Call `callback()` after an event had to go to the outbox offline here."""
        self._offline_subscribers.append(callback)

    def attach_cluster(self, view: ClusterView) -> None:
        """The wiring started the cluster runtime: from now on lease, isolation and master
        link are its answers (until then, and without a cluster, `STANDALONE`'s)."""
        self._cluster = view

    @property
    def cluster(self) -> ClusterView:
        """The cluster as this ledger sees it (read-only)."""
        return self._cluster

    def _publish(self, notices: list[Notice]) -> None:
        for callback in list(self._subscribers):
            callback(notices)

    # ------------------------------------------------------------------ helpers
    def _invalidate(self) -> None:
        with self._cache_lock:
            self._cache_gen += 1
            self._position_cache = None
            self._outbox_cache = None

    def _cached(self, name: str, compute: Callable[[], Any]) -> Any:
        with self._cache_lock:
            value, gen = getattr(self, name), self._cache_gen
        if value is not None:
            return value
        value = compute()
        with self._cache_lock:
            if self._cache_gen == gen:  # no write committed meanwhile
                setattr(self, name, value)
        return value

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

    def persist_epoch(self, epoch: EpochPair) -> None:
        with self.db.write() as session:
            session.merge(NodeState(key="epoch", value=f"{epoch[0]},{epoch[1]}"))
        self.epoch = epoch

    @staticmethod
    def last_gseq(session: Session) -> int:
        return session.scalar(select(func.max(JournalEntry.gseq))) or 0

    def position(self) -> tuple[int, EpochPair]:
        """(last gseq, epoch of the last entry): how fresh this node's journal is."""
        return self._cached("_position_cache", self._read_position)

    def _read_position(self) -> tuple[int, EpochPair]:
        with self.db.read() as session:
            row = session.execute(select(JournalEntry.gseq, JournalEntry.epoch_number,
                                         JournalEntry.epoch_master)
                                  .order_by(JournalEntry.gseq.desc()).limit(1)).first()
            if row is None:
                return 0, (0, 0)
            return row[0], (row[1], row[2])

    def outbox_pending(self) -> int:
        return self._cached("_outbox_cache", self._read_outbox_pending)

    def _read_outbox_pending(self) -> int:
        with self.db.read() as session:
            return session.scalar(select(func.count()).select_from(OutboxEvent)) or 0

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

    def _save_hlc(self, session: Session) -> None:
        if self.hlc.last:
            session.merge(NodeState(key="hlc_last", value=self.hlc.last))

    def _audit(self, session: Session, action: str, user: str | None, details: dict) -> None:
        if self.audit is not None:
            self.audit.record(session, action, user, details)

    def _audit_event(self, session: Session, ev: Event, **sequenced: Any) -> None:
        """The audit entry a service attached to its event, in the same transaction.

        When this node journals it itself, the entry also names the gseq and epoch, so
        the audit log shows which master sequenced what, under which term.
        """
        audit = ev.extra.pop("audit", None)
        if audit is not None:
            action, details = audit
            self._audit(session, action, ev.user, {**details, "event_id": ev.event_id,
                                                   "mode": ev.mode, **sequenced})

    def _wake_waiters(self) -> None:
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

    # ------------------------------------------------------------- write path
    def may_sequence(self) -> bool:
        """Sequencing master with a live lease (`ClusterView.lease_live`)."""
        return self.sequencing and self._cluster.lease_live()

    def execute(self, ev: Event, *, offline_ok: bool = True) -> Outcome:
        """Make one event durable the best way the cluster allows right now."""
        if self.sequencing:
            if self._cluster.isolated() and ev.type in COMMUTATIVE_TYPES:
                ev.mode = "offline"  # may land in a losing tail: never refuse, say so
            ack = self.sequence([ev])[0]
            if ack.get("status") not in ("not_master", "deferred"):
                return self._outcome_from_ack(ev, ack)
            # We stopped sequencing between the check and the journal (stepped down, a
            # new term is catching up, or our lease lapsed): nothing was journaled, so
            # take it the way a till without a master does, never as "online".
        link = self._cluster.master_link()
        if link is not None:
            try:
                ack = link.submit([ev.to_dict()], timeout=self.submit_timeout)[0]
            except LinkDown as exc:
                log.info("master link unusable (%s): %s goes offline", exc, ev.type)
            else:
                if ack.get("status") in ("accepted", "duplicate"):
                    self._keep_acked(ev, ack)
                if ack.get("status") in ("accepted", "duplicate", "refused"):
                    return self._outcome_from_ack(ev, ack)
                log.info("master answered %s; %s goes offline", ack.get("status"), ev.type)
        if not offline_ok or ev.type not in COMMUTATIVE_TYPES:
            raise ServiceUnavailable("this change needs the master, and no master is reachable "
                                     "right now; try again in a moment")
        ev.mode = "offline"
        self._keep_offline(ev)
        self.last_offline_ms = self.clock()
        if self.sequencing:  # we became master while waiting for the old one
            self.drain_outbox()
        else:
            for callback in list(self._offline_subscribers):
                callback()
        return Outcome(status="offline", event=ev)

    @staticmethod
    def _outcome_from_ack(ev: Event, ack: dict) -> Outcome:
        """A master's answer as the cashier sees it; a refusal becomes its ApiError.

        An event journaled as offline (by an isolated master) is reported as offline.
        """
        if ack.get("status") == "refused":
            err = ack["error"]
            raise ApiError(err["code"], err["message"], err.get("status", 409), err.get("details"))
        if ack.get("status") == "duplicate":
            status = "duplicate"
        else:
            status = "offline" if ev.mode == "offline" else "online"
        return Outcome(status=status, event=ev, gseq=ack.get("gseq"), ack=ack)

    def _keep_offline(self, ev: Event) -> None:
        with self.db.write() as session:
            if session.scalar(select(JournalEntry.gseq).where(JournalEntry.event_id == ev.event_id)):
                return  # the master took it after all and its broadcast beat our timeout
            session.add(_outbox_row(ev, applied=True, now=self.clock()))
            notices = self.machine.apply(session, ev)
            self._audit_event(session, ev)
            self._save_hlc(session)
        self._publish(notices + [("outbox_changed", {})])

    def _keep_acked(self, ev: Event, ack: dict) -> None:
        """Acked by the master: keep it in the outbox until the journal brings it back.

        It is applied as what it is (an online event, as the master journaled it); the
        outbox copy is marked "offline" (acknowledged, never to be refused) for a
        resubmission after a failover. Commutative events are applied now; edits come
        back via the journal (read-your-writes waits for that gseq).
        """
        notices: list[Notice] = []
        with self.db.write() as session:
            in_journal = session.scalar(select(JournalEntry.gseq)
                                        .where(JournalEntry.event_id == ev.event_id))
            if in_journal is None and ack.get("status") == "accepted":
                applied = ev.type in COMMUTATIVE_TYPES
                if applied:
                    notices = self.machine.apply(session, ev)
                row = _outbox_row(ev, applied=applied, now=self.clock())
                row.mode = "offline"
                session.add(row)
            self._audit_event(session, ev)
            self._save_hlc(session)
        self._publish(notices)
        if ev.type not in COMMUTATIVE_TYPES and ack.get("gseq"):
            self.wait_for_gseq(int(ack["gseq"]), timeout=1.0)

    # --------------------------------------------------------------- master side
    def sequence(self, events: list[Event], *, from_device: int | None = None) -> list[dict]:
        """Master: order events into the journal, in one durable transaction.

        Returns one ack per event: accepted {gseq} | duplicate {gseq} | refused {error}
        | rejected {error} (stale edit, recorded as a conflict) | not_master.
        """
        acks: list[dict] = []
        appended: list[AppendedRow] = []
        notices: list[Notice] = []
        prev: dict | None = None
        try:
            with self.db.write() as session:
                acks, appended, notices, prev = self._sequence_batch(session, events, from_device)
        except _LeaseLapsed:  # rolled back: nothing of this batch is journaled
            return [{"status": "not_master", "event_id": e.event_id} for e in events]
        if appended:
            self._wake_waiters()
            entries = [journal_entry_dict(r) for r in appended]
            for callback in list(self._appended_subscribers):
                callback(entries, prev)
        self._publish(notices)
        return acks

    def _sequence_batch(self, session: Session, events: list[Event], from_device: int | None
                        ) -> tuple[list[dict], list[AppendedRow], list[Notice], dict]:
        acks: list[dict] = []
        appended: list[AppendedRow] = []
        notices: list[Notice] = []
        if not self.may_sequence():
            raise _LeaseLapsed()
        last = self.last_gseq(session)
        prev_row = session.get(JournalEntry, last) if last else None
        prev = _position(last, prev_row)
        i = 0
        while i < len(events):
            done, run_acks, rows, run_notices = self._sequence_run(session, events[i:], last)
            if done:
                i += done
                last += len(rows)
                appended += rows
                notices += run_notices
                acks += run_acks
                continue
            ev = events[i]
            i += 1
            try:
                with session.begin_nested():
                    ack, rows, ev_notices = self._sequence_one(session, ev, last)
            except NotYet as exc:
                ack = {"status": "deferred", "event_id": ev.event_id, "reason": str(exc)}
                rows, ev_notices = [], []
            except ApiError as exc:
                ack = _refused(ev, exc)
                rows, ev_notices = [], []
                if self.machine.is_lost_edit(ev, exc):
                    # A stale edit: record who lost to whom, in the journal.
                    rows, ev_notices = self._record_edit_conflict(session, ev, exc, last)
                    if ev.mode == "offline":
                        ack["status"] = "rejected"
            last += len(rows)
            appended += rows
            notices += ev_notices
            acks.append(ack)
        self._save_hlc(session)
        if appended and from_device not in (None, self.device_id):
            # Local events carry their own audit entry; a batch from another till
            # gets one entry naming the events and where they came from.
            self._audit(session, "sync.sequenced", None, {
                "from_device": from_device if from_device is not None else self.device_id,
                "events": [r.event_id for r in appended][:50], "count": len(appended),
                "first_gseq": appended[0].gseq, "last_gseq": appended[-1].gseq,
            })
        # Checked again just before the commit: a process stopped (SIGSTOP) in the
        # middle of this batch must not commit it at its old term after it wakes.
        if not self.may_sequence():
            raise _LeaseLapsed()
        return acks, appended, notices, prev

    def _sequence_one(self, session: Session, ev: Event, last: int
                      ) -> tuple[dict, list[JournalEntry], list[Notice]]:
        existing = session.scalar(select(JournalEntry.gseq)
                                  .where(JournalEntry.event_id == ev.event_id))
        if existing is not None:
            return {"status": "duplicate", "event_id": ev.event_id, "gseq": existing}, [], []
        repeated = self.machine.repeated_request(session, ev)
        if repeated is not None:
            return {"status": "duplicate", "event_id": ev.event_id, **repeated, "gseq": None}, [], []
        self.hlc.update(ev.hlc)
        decision = self.machine.admit(session, ev)
        outbox = session.get(OutboxEvent, ev.event_id)
        already_applied = bool(outbox and outbox.applied)
        if outbox is not None:
            session.delete(outbox)
        row = _journal_row(ev, last + 1, self.epoch, self.clock())
        session.add(row)
        notices = [] if already_applied else self.machine.apply(session, ev)
        if already_applied:
            self.machine.settle_modes(session, [ev])
        self._audit_event(session, ev, gseq=row.gseq, epoch=list(self.epoch))
        rows = [row]
        for conflict in self.machine.records_after(session, ev, decision):
            cev = self.new_event("conflict.record", conflict, None)
            crow = _journal_row(cev, last + len(rows) + 1, self.epoch, self.clock())
            session.add(crow)
            notices += self.machine.apply(session, cev)
            rows.append(crow)
            self._audit_conflict(session, ev, conflict)
        session.flush()
        return {"status": "accepted", "event_id": ev.event_id, "gseq": row.gseq}, rows, notices

    def _sequence_run(self, session: Session, events: list[Event], last: int
                      ) -> tuple[int, list[dict], list[AppendedRow], list[Notice]]:
        """Sequence the longest prefix of `events` that the state machine's `admit_batch`
        can decide at once (sales and stock movements, the bulk of any batch): its journal
        rows go in with one INSERT and `apply_page` applies them. Returns (events consumed,
        acks, journal rows, notices); (0, ...) when the first event needs `_sequence_one`."""
        verdicts = self.machine.admit_batch(session, events)
        acks: list[dict] = []
        values: list[dict[str, Any]] = []
        journaled: list[Event] = []
        for verdict in verdicts:
            ev = verdict.event
            if verdict.status == "duplicate":
                acks.append({"status": "duplicate", "event_id": ev.event_id, "gseq": verdict.gseq,
                             **verdict.ack})
                continue
            self.hlc.update(ev.hlc)
            if verdict.status == "refuse":
                acks.append(_refused(ev, verdict.error))
                continue
            gseq = last + len(values) + 1
            values.append(_journal_values(ev, gseq, self.epoch, self.clock()))
            journaled.append(ev)
            self._audit_event(session, ev, gseq=gseq, epoch=list(self.epoch))
            acks.append({"status": "accepted", "event_id": ev.event_id, "gseq": gseq})
            for conflict in verdict.records:
                cev = self.new_event("conflict.record", conflict, None)
                values.append(_journal_values(cev, last + len(values) + 1, self.epoch, self.clock()))
                journaled.append(cev)
                self._audit_conflict(session, ev, conflict)
        notices: list[Notice] = []
        if values:
            insert_rows(session, JournalEntry.__table__, values)
            notices = self.machine.apply_page(session, journaled)
        # The rows as attributes, like the JournalEntry rows of `_sequence_one`: building
        # ORM instances only to read them back cost 38 us a row.
        return len(verdicts), acks, [SimpleNamespace(**v) for v in values], notices

    def _audit_conflict(self, session: Session, ev: Event, conflict: dict) -> None:
        self._audit(session, "conflict.recorded", ev.user, {
            "conflict_id": conflict["conflict_id"], "kind": conflict["kind"],
            "sku": conflict.get("sku"), "origin_device": ev.origin_device,
            "event_id": ev.event_id})

    def _record_edit_conflict(self, session: Session, ev: Event, exc: ApiError, last: int
                              ) -> tuple[list[JournalEntry], list[Notice]]:
        conflict = self.machine.lost_edit_record(session, ev, exc)
        if conflict is None:
            return [], []
        cev = self.new_event("conflict.record", conflict, None)
        row = _journal_row(cev, last + 1, self.epoch, self.clock())
        session.add(row)
        notices = self.machine.apply(session, cev)
        self._audit(session, "edit.rejected", ev.user, {
            "sku": ev.payload.get("sku"), "event_id": ev.event_id,
            "origin_device": ev.origin_device, "conflict_id": conflict["conflict_id"]})
        return [row], notices

    def start_sequencing(self, epoch: EpochPair) -> int:
        """Become the sequencing master at `epoch`: first journal our own outbox."""
        with self.db.write() as session:
            self.epoch = epoch
            session.merge(NodeState(key="epoch", value=f"{epoch[0]},{epoch[1]}"))
            self.sequencing = True
        return self.drain_outbox()

    def drain_outbox(self) -> int:
        """Master: journal what is in our own outbox (offline sales made before or while
        we took over). Earlier HLC first. What the rules turn down leaves the outbox, as
        at a till that resubmits (a stale edit from a dropped tail: chaos seed 4003)."""
        with self.db.read() as session:
            pending = self.machine.order_offline(session.scalars(select(OutboxEvent)).all())
            events = [Event.from_row(r) for r in pending]
        if events and self.may_sequence():
            self.forget_turned_down(self.sequence(events, from_device=self.device_id))
        return len(events)

    def stop_sequencing(self) -> None:
        with self.db.write_lock:
            self.sequencing = False

    # --------------------------------------------------------------- client side
    def receive_entries(self, entries: list[dict], prev: dict | None = None) -> ReceiveResult:
        """Append entries that a master sent, strictly in gseq order.

        `prev` names the entry before the first one; if ours differs there, this
        node holds a tail from a losing epoch and must resync (nothing is applied).
        """
        result = ReceiveResult()
        notices: list[Notice] = []
        with self.db.write() as session:
            last = self.last_gseq(session)
            result.last_gseq = last
            if prev is not None and prev.get("gseq") and prev["gseq"] <= last:
                mine = session.get(JournalEntry, prev["gseq"])
                if not _same_position(mine, prev):
                    result.diverged = True
                    return result
            fresh: list[tuple[dict, Event]] = []
            for data in sorted(entries, key=lambda d: d["gseq"]):
                gseq = int(data["gseq"])
                if gseq <= last:
                    # We have this position already (our journal grew since the sender
                    # chose its page): it must be the same entry, or we diverged.
                    if not _same_position(session.get(JournalEntry, gseq), data):
                        result.diverged = True
                        break
                    continue
                if gseq != last + 1:
                    result.gap_after = last
                    break
                fresh.append((data, Event.from_dict(data)))
                last = gseq
            notices += self._append_entries(session, fresh, result)
            self._save_hlc(session)
        if result.applied:
            self._wake_waiters()
            self._publish(notices + [("outbox_changed", {})])
        return result

    def _append_entries(self, session: Session, fresh: list[tuple[dict, Event]],
                        result: ReceiveResult) -> list[Notice]:
        """Journal a contiguous run of a master's entries and apply them (one INSERT for
        the journal rows, the state machine's `apply_page` for the derived tables)."""
        ids = [ev.event_id for _, ev in fresh]
        held = {e for chunk in chunks(ids) for e in session.scalars(
            select(JournalEntry.event_id).where(JournalEntry.event_id.in_(chunk)))}
        if held:  # we hold one of them at another position: our journal diverged
            fresh = fresh[:next(k for k, (_, ev) in enumerate(fresh) if ev.event_id in held)]
            result.diverged = True
            ids = [ev.event_id for _, ev in fresh]
        if not fresh:
            return []
        applied_here: dict[str, bool] = {}
        for chunk in chunks(ids):
            applied_here.update(session.execute(select(OutboxEvent.event_id, OutboxEvent.applied)
                                                .where(OutboxEvent.event_id.in_(chunk))).all())
            session.execute(delete(OutboxEvent).where(OutboxEvent.event_id.in_(chunk)))
        now = self.clock()
        insert_rows(session, JournalEntry.__table__, [
            _journal_values(ev, int(data["gseq"]), data["epoch"], int(data.get("recorded_ms") or now))
            for data, ev in fresh])
        # Events this till applied when it made them only take the journal's mode.
        self.machine.settle_modes(session, [ev for _, ev in fresh if applied_here.get(ev.event_id)])
        notices = self.machine.apply_page(
            session, [ev for _, ev in fresh if not applied_here.get(ev.event_id)])
        self.hlc.update(max((ev.hlc for _, ev in fresh), key=parse_hlc))
        result.applied += len(fresh)
        result.last_gseq = int(fresh[-1][0]["gseq"])
        return notices

    def entries_since(self, since: int, limit: int) -> dict:
        with self.db.read() as session:
            rows = session.scalars(select(JournalEntry).where(JournalEntry.gseq > since)
                                   .order_by(JournalEntry.gseq).limit(limit)).all()
            anchor = session.get(JournalEntry, since) if since else None
            return {
                "entries": [journal_entry_dict(r) for r in rows],
                "anchor": _position(since, anchor),
                "last_gseq": self.last_gseq(session),
            }

    def raw_page(self, since: int, limit: int) -> tuple[list[tuple], dict, int]:
        """`entries_since` as stored: rows in `WIRE_COLUMNS` order with the payload still
        JSON text, the anchor and the last gseq. For serving pages without decoding and
        encoding every payload again (`replication.changes_json`)."""
        with self.db.read() as session:
            rows = session.connection().exec_driver_sql(
                f"SELECT {_WIRE_SELECT} FROM journal WHERE gseq > ? ORDER BY gseq LIMIT ?",
                (since, limit)).all()
            anchor = _position(since, session.get(JournalEntry, since) if since else None)
            return rows, anchor, self.last_gseq(session)

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

    def position_at(self, gseq: int) -> dict:
        """{gseq, event_id, epoch} of one journal position (what anchors are compared by)."""
        with self.db.read() as session:
            return _position(gseq, session.get(JournalEntry, gseq) if gseq else None)

    def truncate_after(self, keep: int, reason: str) -> int:
        """Drop our journal tail after `keep` (it lost): its events go back to the outbox.

        They are resubmitted to the winning master (duplicates dropped by event_id), so
        nothing acknowledged is lost; master-made conflict records are left for the
        winner to decide again. The derived tables are rebuilt from the kept journal plus
        the applied outbox.
        """
        with self.db.write() as session:
            tail = session.scalars(select(JournalEntry).where(JournalEntry.gseq > keep)
                                   .order_by(JournalEntry.gseq)).all()
            waiting = set(session.scalars(select(OutboxEvent.event_id)))
            back = []
            for row in tail:
                if row.type in MASTER_DERIVED_TYPES or row.event_id in waiting:
                    continue
                ev = Event.from_row(row)
                ev.mode = "offline"
                back.append(_row_values(_outbox_row(ev, applied=ev.type in COMMUTATIVE_TYPES,
                                                    now=self.clock())))
            insert_rows(session, OutboxEvent.__table__, back)
            session.execute(delete(JournalEntry).where(JournalEntry.gseq > keep))
            self._rebuild(session)
            self._audit(session, "sync.tail_dropped", None, {
                "kept_gseq": keep, "dropped": len(tail), "reason": reason,
                "events": [r.event_id for r in tail][:50]})
        self._publish([("catalog_reloaded", {}), ("outbox_changed", {})])
        return len(tail)

    def _rebuild(self, session: Session) -> None:
        """Derived tables := fold(journal) + fold(applied outbox)."""
        for table in DERIVED_TABLES:
            session.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - fixed names
        session.flush()
        self.machine.apply_page(session, [Event.from_row(row) for row in session.scalars(
            select(JournalEntry).order_by(JournalEntry.gseq))])
        self._fold_outbox(session)

    def _fold_outbox(self, session: Session) -> int:
        """Apply this node's applied outbox again (derived = fold(journal) + fold(outbox)),
        in first-come order; returns how many events it holds."""
        pending = session.scalars(select(OutboxEvent).where(OutboxEvent.applied.is_(True))).all()
        self.machine.apply_page(session, [Event.from_row(row)
                                          for row in self.machine.order_offline(pending)])
        return len(pending)

    def write_snapshot(self, path: str) -> dict[str, Any]:
        """Copy the journal and every derived table, as of one read transaction, into a
        new SQLite file at `path` (a wiped or new till installs it: `install_snapshot`).

        SQLite copies the rows itself (CREATE TABLE ... AS SELECT), so a 100,000-product
        shop is a few hundred milliseconds of the master's time instead of a replay.
        """
        with closing(sqlite3.connect(self.db.path, isolation_level=None)) as conn:
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("ATTACH DATABASE ? AS snap", (path,))
            conn.execute("PRAGMA snap.journal_mode=OFF")
            conn.execute("PRAGMA snap.synchronous=OFF")
            conn.execute("BEGIN")
            if conn.execute("SELECT count(*) FROM main.outbox WHERE applied").fetchone()[0]:
                # Our derived tables also hold our own unjournaled events: not fold(journal).
                conn.execute("ROLLBACK")
                conn.execute("DETACH DATABASE snap")
                raise SnapshotUnavailable("this node has applied events waiting in its outbox")
            for table in SNAPSHOT_TABLES:
                conn.execute(f"CREATE TABLE snap.{table} AS SELECT * FROM main.{table}")
            last, count = conn.execute("SELECT max(gseq), count(*) FROM main.journal").fetchone()
            conn.execute("COMMIT")
            conn.execute("DETACH DATABASE snap")
        return {"last_gseq": last or 0, "entries": count}

    def install_snapshot(self, path: str) -> int:
        """Take a master's snapshot (`write_snapshot`) instead of replaying its journal:
        the entries we lack and all derived tables are copied by SQLite itself, then this
        till's applied outbox (sales not journaled yet) is folded in again, as `_rebuild`
        does. Only onto a journal the snapshot extends (same entry at our last gseq).
        Returns the gseq installed; 0 when it does not fit (pull pages instead)."""
        with self.db.write_attached(path, "snap") as session:
            conn = session.connection()
            mine = self.last_gseq(session)
            last, count = conn.exec_driver_sql(
                "SELECT max(gseq), count(*) FROM snap.journal").one()
            if not last or count != last:
                raise ValueError(f"snapshot journal is not gapless: {count} entries up to {last}")
            theirs = conn.exec_driver_sql("SELECT event_id, epoch_number, epoch_master FROM "
                                          "snap.journal WHERE gseq = ?", (mine,)).first()
            if last <= mine or (mine and (theirs is None or not _same_position(
                    session.get(JournalEntry, mine),
                    {"event_id": theirs[0], "epoch": [theirs[1], theirs[2]]}))):
                return 0  # nothing new, or our journal diverged: pages sort that out
            with _bulk_load(conn, SNAPSHOT_TABLES):
                for table in DERIVED_TABLES:
                    conn.exec_driver_sql(f"DELETE FROM main.{table}")
                for table in ("journal", *reversed(DERIVED_TABLES)):  # referenced tables first
                    cols = ", ".join(f'"{r[1]}"' for r in conn.exec_driver_sql(
                        f"PRAGMA main.table_info({table})"))
                    only_new = f" WHERE gseq > {int(mine)}" if table == "journal" else ""
                    conn.exec_driver_sql(f"INSERT INTO main.{table} ({cols}) "  # noqa: S608
                                         f"SELECT {cols} FROM snap.{table}{only_new}")
            self.machine.derived_tables_loaded(conn)  # once, for the triggers left out above
            conn.exec_driver_sql("DELETE FROM outbox WHERE event_id IN (SELECT event_id FROM journal)")
            kept = self._fold_outbox(session)
            top = conn.exec_driver_sql("SELECT hlc FROM journal ORDER BY gseq DESC LIMIT 1").scalar()
            self.hlc.update(top)
            self._save_hlc(session)
            self._audit(session, "sync.snapshot_installed", None, {
                "from_gseq": mine, "last_gseq": last, "outbox_kept": kept})
        self._wake_waiters()
        self._publish([("catalog_reloaded", {}), ("outbox_changed", {})])
        return last

    def outbox_events(self, limit: int = 500, after: Event | None = None) -> list[Event]:
        """The outbox in causal order (a refund after its sale, even when the sale came
        back into the outbox later, from a dropped journal tail); `after`: the page that
        follows that event."""
        order = (OutboxEvent.hlc, OutboxEvent.event_id)
        query = select(OutboxEvent).order_by(*order).limit(limit)
        if after is not None:
            query = query.where(tuple_(*order) > tuple_(after.hlc, after.event_id))
        with self.db.read() as session:
            return [Event.from_row(r) for r in session.scalars(query).all()]

    def drop_journaled_from_outbox(self) -> int:
        """Outbox rows whose event is already in the journal are done (belt and braces)."""
        with self.db.write() as session:
            done = session.scalars(select(OutboxEvent.event_id).join(
                JournalEntry, JournalEntry.event_id == OutboxEvent.event_id)).all()
            if done:
                session.execute(delete(OutboxEvent).where(OutboxEvent.event_id.in_(done)))
        return len(done)

    def forget_turned_down(self, acks: list[dict]) -> int:
        """Drop the outbox events that these acks (of their submission) turn down for
        good (`turned_down`); returns how many."""
        down = [a for a in acks if turned_down(a)]
        if down:
            self.forget_outbox([a["event_id"] for a in down], "turned down by the master: "
                               + ", ".join(sorted({str(a.get("status")) for a in down})))
        return len(down)

    def forget_outbox(self, event_ids: Iterable[str], reason: str) -> None:
        """Drop outbox events that will never be journaled. One that was applied here
        (an offline sale) is taken back out: the derived tables are rebuilt."""
        ids = list(event_ids)
        if not ids:
            return
        with self.db.write() as session:
            applied = session.scalar(select(func.count()).select_from(OutboxEvent).where(
                OutboxEvent.event_id.in_(ids), OutboxEvent.applied.is_(True)))
            session.execute(delete(OutboxEvent).where(OutboxEvent.event_id.in_(ids)))
            if applied:
                self._rebuild(session)
            self._audit(session, "sync.rejected", None, {"events": ids[:50], "reason": reason,
                                                         "unapplied": applied})
        self._publish([("outbox_changed", {})] + ([("catalog_reloaded", {})] if applied else []))


SNAPSHOT_TABLES = ("journal", *DERIVED_TABLES)


@contextmanager
def _bulk_load(conn: Any, tables: Iterable[str]) -> Iterator[None]:
    """Loading many rows at once: the secondary indexes and triggers of `tables` are
    dropped for the load and created again after it (one sort per index instead of a
    b-tree insert per row), in the same transaction. Unique constraints stay."""
    names = ", ".join(f"'{t}'" for t in tables)
    saved = conn.exec_driver_sql(
        "SELECT type, name, sql FROM main.sqlite_master WHERE type IN ('index', 'trigger') "
        f"AND sql IS NOT NULL AND tbl_name IN ({names})").all()  # noqa: S608 - fixed names
    for kind, name, _sql in saved:
        conn.exec_driver_sql(f"DROP {kind.upper()} main.{name}")
    yield
    for _kind, _name, sql in saved:
        conn.exec_driver_sql(sql)


class _LeaseLapsed(Exception):
    """Raised inside the write transaction of `sequence` to roll it back."""


def _position(gseq: int, row: JournalEntry | None) -> dict:
    """A journal position as nodes compare it: gseq, event_id and the epoch it was
    sequenced in. Within one epoch pair a single master writes one linear journal and
    every node appends only after its predecessor matched, so an equal (gseq, event_id,
    epoch) proves an equal prefix; an equal event_id alone does not (a resubmitted event
    can land at the same gseq on both sides of a partition)."""
    return {"gseq": gseq, "event_id": row.event_id if row else None,
            "epoch": [row.epoch_number, row.epoch_master] if row else None}


def _same_position(mine: JournalEntry | None, theirs: dict) -> bool:
    if mine is None or mine.event_id != theirs.get("event_id"):
        return False
    epoch = theirs.get("epoch")
    return epoch is None or list(epoch) == [mine.epoch_number, mine.epoch_master]


def _journal_values(ev: Event, gseq: int, epoch: EpochPair | list[int], recorded_ms: int
                    ) -> dict[str, Any]:
    """A journal row's columns (for `insert_rows`, or a `JournalEntry`)."""
    return {"gseq": gseq, "epoch_number": epoch[0], "epoch_master": epoch[1],
            "event_id": ev.event_id, "origin_device": ev.origin_device,
            "origin_seq": ev.origin_seq, "hlc": ev.hlc, "type": ev.type, "payload": ev.payload,
            "user": ev.user, "base_version": ev.base_version, "mode": ev.mode,
            "recorded_ms": recorded_ms}


def _journal_row(ev: Event, gseq: int, epoch: EpochPair, now: int) -> JournalEntry:
    return JournalEntry(**_journal_values(ev, gseq, epoch, now))


def _row_values(row: OutboxEvent) -> dict[str, Any]:
    """A new (unsaved) row's columns with their defaults, for `insert_rows`."""
    values = {}
    for column in type(row).__table__.columns:
        value = getattr(row, column.key)
        if value is None and column.default is not None and column.default.is_scalar:
            value = column.default.arg
        values[column.key] = value
    return values


def _refused(ev: Event, exc: ApiError) -> dict:
    return {"status": "refused", "event_id": ev.event_id,
            "error": {**exc.to_dict()["error"], "status": exc.status}}


def _outbox_row(ev: Event, *, applied: bool, now: int) -> OutboxEvent:
    return OutboxEvent(
        event_id=ev.event_id, origin_device=ev.origin_device, origin_seq=ev.origin_seq,
        hlc=ev.hlc, type=ev.type, payload=ev.payload, user=ev.user,
        base_version=ev.base_version, mode=ev.mode, applied=applied, created_ms=now)
