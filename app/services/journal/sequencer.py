"""The master's side of the journal: order events into it, in one durable transaction.

A batch is decided a run at a time: the state machine's `admit_batch` takes the longest
prefix it can decide at once (one INSERT for its journal rows, `apply_page` for the
derived tables); anything else goes through `_sequence_one`, one savepoint each.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import JournalEntry, OutboxEvent
from app.models.db import driver, insert_rows
from app.services.journal.cluster_view import STANDALONE, ClusterView
from app.services.journal.events import AuditNote, Event, journal_entry_dict, journal_values
from app.services.journal.outbox import Outbox
from app.services.journal.state_machine import Notice, NotYet, Refusal, Refused, StateMachine
from app.services.journal.store import EpochPair, JournalStore, position_of
from app.services.journal.subscriptions import Subscriptions

# A journal row the master just appended: the ORM row, or its columns as attributes.
AppendedRow = JournalEntry | SimpleNamespace


_TOP_SQL = "SELECT gseq, event_id, epoch_number, epoch_master FROM journal ORDER BY gseq DESC LIMIT 1"


class _LeaseLapsed(Exception):
    """Raised inside the write transaction of `sequence` to roll it back."""


class Sequencer:
    def __init__(self, store: JournalStore, machine: StateMachine, outbox: Outbox,
                 subscriptions: Subscriptions):
        self.store = store
        self.machine = machine
        self.outbox = outbox
        self.subscriptions = subscriptions
        # This node is the sequencing master (`start` / `stop`, driven by the cluster).
        self.active = False
        # What this till knows of the cluster (its lease), read-only: standalone until the
        # cluster runtime is attached (`Journal.attach_cluster`). The lease is renewed by
        # every heartbeat tick; a master whose process stood still (SIGSTOP, a suspended
        # VM) finds it lapsed on waking and sequences nothing until it has heard the
        # others again.
        self.cluster: ClusterView = STANDALONE

    def may_sequence(self) -> bool:
        """Sequencing master with a live lease (`ClusterView.lease_live`)."""
        return self.active and self.cluster.lease_live()

    def start(self, epoch: EpochPair) -> int:
        """Become the sequencing master at `epoch`: first journal our own outbox."""
        with self.store.db.write() as session:
            self.store.write_epoch(session, epoch)
            self.active = True
        return self.drain_outbox()

    def stop(self) -> None:
        with self.store.db.write_lock:
            self.active = False

    def drain_outbox(self) -> int:
        """Master: journal what is in our own outbox (offline sales made before or while
        we took over). Earlier HLC first. What the rules turn down leaves the outbox, as
        at a till that resubmits (a stale edit from a dropped tail: chaos seed 4003)."""
        with self.store.db.read() as session:
            pending = self.machine.order_offline(session.scalars(select(OutboxEvent)).all())
            events = [Event.from_row(r) for r in pending]
        if events and self.may_sequence():
            self.outbox.forget_turned_down(self.sequence(events, from_device=self.store.device_id))
        return len(events)

    def sequence(self, events: list[Event], *, from_device: int | None = None,
                 audits: Mapping[str, AuditNote] | None = None) -> list[dict]:
        """Master: order events into the journal, in one durable transaction.

        Returns one ack per event: accepted {gseq} | duplicate {gseq} | refused {error}
        | rejected {error} (stale edit, recorded as a conflict) | not_master.
        """
        acks: list[dict] = []
        appended: list[AppendedRow] = []
        notices: list[Notice] = []
        prev: dict | None = None
        try:
            with self.store.db.write() as session:
                acks, appended, notices, prev = self._sequence_batch(session, events, from_device,
                                                                     audits or {})
        except _LeaseLapsed:  # rolled back: nothing of this batch is journaled
            return [{"status": "not_master", "event_id": e.event_id} for e in events]
        if appended:
            self.store.wake_waiters()
            self.subscriptions.publish_appended([journal_entry_dict(r) for r in appended], prev)
        self.subscriptions.publish(notices)
        return acks

    def _sequence_batch(self, session: Session, events: list[Event], from_device: int | None,
                        audits: Mapping[str, AuditNote]
                        ) -> tuple[list[dict], list[AppendedRow], list[Notice], dict]:
        store = self.store
        acks: list[dict] = []
        appended: list[AppendedRow] = []
        notices: list[Notice] = []
        if not self.may_sequence():
            raise _LeaseLapsed()
        # The journal's last entry, in one plain statement (every sale comes here).
        top = driver(session).execute(_TOP_SQL).fetchone()
        last = top[0] if top is not None else 0
        prev = position_of(last, SimpleNamespace(event_id=top[1], epoch_number=top[2],
                                                 epoch_master=top[3]) if top else None)
        i = 0
        while i < len(events):
            done, run_acks, rows, run_notices = self._sequence_run(session, events[i:], last, audits)
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
                    ack, rows, ev_notices = self._sequence_one(session, ev, last,
                                                                audits.get(ev.event_id))
            except NotYet as exc:
                ack = {"status": "deferred", "event_id": ev.event_id, "reason": str(exc)}
                rows, ev_notices = [], []
            except Refused as exc:
                ack = refused_ack(ev, exc.refusal)
                rows, ev_notices = [], []
                if self.machine.is_lost_edit(ev, exc.refusal):
                    # A stale edit: record who lost to whom, in the journal.
                    rows, ev_notices = self._record_edit_conflict(session, ev, exc.refusal, last)
                    if ev.mode == "offline":
                        ack["status"] = "rejected"
            last += len(rows)
            appended += rows
            notices += ev_notices
            acks.append(ack)
        store.save_hlc(session)
        if appended and from_device not in (None, store.device_id):
            # Local events carry their own audit entry; a batch from another till
            # gets one entry naming the events and where they came from.
            store.audit_entry(session, "sync.sequenced", None, {
                "from_device": from_device if from_device is not None else store.device_id,
                "events": [r.event_id for r in appended][:50], "count": len(appended),
                "first_gseq": appended[0].gseq, "last_gseq": appended[-1].gseq,
            })
        # Checked again just before the commit: a process stopped (SIGSTOP) in the
        # middle of this batch must not commit it at its old term after it wakes.
        if not self.may_sequence():
            raise _LeaseLapsed()
        return acks, appended, notices, prev

    def _sequence_one(self, session: Session, ev: Event, last: int, note: AuditNote | None
                      ) -> tuple[dict, list[JournalEntry], list[Notice]]:
        store = self.store
        existing = session.scalar(select(JournalEntry.gseq)
                                  .where(JournalEntry.event_id == ev.event_id))
        if existing is not None:
            return {"status": "duplicate", "event_id": ev.event_id, "gseq": existing}, [], []
        repeated = self.machine.repeated_request(session, ev)
        if repeated is not None:
            return {"status": "duplicate", "event_id": ev.event_id, **repeated, "gseq": None}, [], []
        store.hlc.update(ev.hlc)
        decision = self.machine.admit(session, ev)
        outbox = session.get(OutboxEvent, ev.event_id)
        already_applied = bool(outbox and outbox.applied)
        if outbox is not None:
            session.delete(outbox)
        row = JournalEntry(**journal_values(ev, last + 1, store.epoch, store.clock()))
        session.add(row)
        notices = [] if already_applied else self.machine.apply(session, ev)
        if already_applied:
            self.machine.settle_modes(session, [ev])
        store.audit_event(session, ev, note, gseq=row.gseq, epoch=list(store.epoch))
        rows = [row]
        for conflict in self.machine.records_after(session, ev, decision):
            cev = store.new_event("conflict.record", conflict, None)
            crow = JournalEntry(**journal_values(cev, last + len(rows) + 1, store.epoch,
                                                 store.clock()))
            session.add(crow)
            notices += self.machine.apply(session, cev)
            rows.append(crow)
            self._audit_conflict(session, ev, conflict)
        session.flush()
        return {"status": "accepted", "event_id": ev.event_id, "gseq": row.gseq}, rows, notices

    def _sequence_run(self, session: Session, events: list[Event], last: int,
                      audits: Mapping[str, AuditNote]
                      ) -> tuple[int, list[dict], list[AppendedRow], list[Notice]]:
        """Sequence the longest prefix of `events` that the state machine's `admit_batch`
        can decide at once (sales and stock movements, the bulk of any batch): its journal
        rows go in with one INSERT and `apply_page` applies them. Returns (events consumed,
        acks, journal rows, notices); (0, ...) when the first event needs `_sequence_one`."""
        store = self.store
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
            store.hlc.update(ev.hlc)
            if verdict.status == "refuse":
                acks.append(refused_ack(ev, verdict.refusal))
                continue
            gseq = last + len(values) + 1
            values.append(journal_values(ev, gseq, store.epoch, store.clock()))
            journaled.append(ev)
            store.audit_event(session, ev, audits.get(ev.event_id), gseq=gseq,
                              epoch=list(store.epoch))
            acks.append({"status": "accepted", "event_id": ev.event_id, "gseq": gseq})
            for conflict in verdict.records:
                cev = store.new_event("conflict.record", conflict, None)
                values.append(journal_values(cev, last + len(values) + 1, store.epoch,
                                             store.clock()))
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
        self.store.audit_entry(session, "conflict.recorded", ev.user, {
            "conflict_id": conflict["conflict_id"], "kind": conflict["kind"],
            "sku": conflict.get("sku"), "origin_device": ev.origin_device,
            "event_id": ev.event_id})

    def _record_edit_conflict(self, session: Session, ev: Event, refusal: Refusal, last: int
                              ) -> tuple[list[JournalEntry], list[Notice]]:
        store = self.store
        conflict = self.machine.lost_edit_record(session, ev, refusal)
        if conflict is None:
            return [], []
        cev = store.new_event("conflict.record", conflict, None)
        row = JournalEntry(**journal_values(cev, last + 1, store.epoch, store.clock()))
        session.add(row)
        notices = self.machine.apply(session, cev)
        store.audit_entry(session, "edit.rejected", ev.user, {
            "sku": ev.payload.get("sku"), "event_id": ev.event_id,
            "origin_device": ev.origin_device, "conflict_id": conflict["conflict_id"]})
        return [row], notices


def refused_ack(ev: Event, refusal: Refusal) -> dict:
    """The ack of an event the rules refused: the refusal as a plain value, no HTTP status."""
    return {"status": "refused", "event_id": ev.event_id, "error": refusal.to_wire()}
