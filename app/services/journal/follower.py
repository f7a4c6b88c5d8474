"""A follower's side of the journal: append what a master sent, strictly in gseq order;
drop a tail that lost (its events go back to the outbox)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.models import JournalEntry, OutboxEvent
from app.models.db import insert_rows
from app.services.journal.derived import DerivedTables
from app.services.journal.events import (
    COMMUTATIVE_TYPES,
    MASTER_DERIVED_TYPES,
    Event,
    journal_values,
    outbox_values,
)
from app.services.journal.hlc import parse_hlc
from app.services.journal.state_machine import Notice, StateMachine
from app.services.journal.store import JournalStore, same_position
from app.services.journal.subscriptions import Subscriptions
from app.utils.chunks import chunks


@dataclass
class ReceiveResult:
    applied: int = 0
    gap_after: int | None = None  # set when entries do not continue our journal
    diverged: bool = False
    last_gseq: int = 0


class Follower:
    def __init__(self, store: JournalStore, machine: StateMachine, derived: DerivedTables,
                 subscriptions: Subscriptions):
        self.store = store
        self.machine = machine
        self.derived = derived
        self.subscriptions = subscriptions

    def receive_entries(self, entries: list[dict], prev: dict | None = None) -> ReceiveResult:
        """Append entries that a master sent, strictly in gseq order.

        `prev` names the entry before the first one; if ours differs there, this
        node holds a tail from a losing epoch and must resync (nothing is applied).
        """
        store = self.store
        result = ReceiveResult()
        notices: list[Notice] = []
        with store.db.write() as session:
            last = store.last_gseq(session)
            result.last_gseq = last
            if prev is not None and prev.get("gseq") and prev["gseq"] <= last:
                mine = session.get(JournalEntry, prev["gseq"])
                if not same_position(mine, prev):
                    result.diverged = True
                    return result
            fresh: list[tuple[dict, Event]] = []
            for data in sorted(entries, key=lambda d: d["gseq"]):
                gseq = int(data["gseq"])
                if gseq <= last:
                    # We have this position already (our journal grew since the sender
                    # chose its page): it must be the same entry, or we diverged.
                    if not same_position(session.get(JournalEntry, gseq), data):
                        result.diverged = True
                        break
                    continue
                if gseq != last + 1:
                    result.gap_after = last
                    break
                fresh.append((data, Event.from_dict(data)))
                last = gseq
            notices += self._append_entries(session, fresh, result)
            store.save_hlc(session)
        if result.applied:
            store.wake_waiters()
            self.subscriptions.publish(notices + [("outbox_changed", {})])
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
        now = self.store.clock()
        insert_rows(session, JournalEntry.__table__, [
            journal_values(ev, int(data["gseq"]), data["epoch"], int(data.get("recorded_ms") or now))
            for data, ev in fresh])
        # Events this till applied when it made them only take the journal's mode.
        self.machine.settle_modes(session, [ev for _, ev in fresh if applied_here.get(ev.event_id)])
        notices = self.machine.apply_page(
            session, [ev for _, ev in fresh if not applied_here.get(ev.event_id)])
        self.store.hlc.update(max((ev.hlc for _, ev in fresh), key=parse_hlc))
        result.applied += len(fresh)
        result.last_gseq = int(fresh[-1][0]["gseq"])
        return notices

    def truncate_after(self, keep: int, reason: str) -> int:
        """Drop our journal tail after `keep` (it lost): its events go back to the outbox.

        They are resubmitted to the winning master (duplicates dropped by event_id), so
        nothing acknowledged is lost; master-made conflict records are left for the
        winner to decide again. The derived tables are rebuilt from the kept journal plus
        the applied outbox.
        """
        store = self.store
        with store.db.write() as session:
            tail = session.scalars(select(JournalEntry).where(JournalEntry.gseq > keep)
                                   .order_by(JournalEntry.gseq)).all()
            waiting = set(session.scalars(select(OutboxEvent.event_id)))
            back = []
            for row in tail:
                if row.type in MASTER_DERIVED_TYPES or row.event_id in waiting:
                    continue
                ev = Event.from_row(row)
                ev.mode = "offline"
                back.append(outbox_values(ev, applied=ev.type in COMMUTATIVE_TYPES,
                                          created_ms=store.clock()))
            insert_rows(session, OutboxEvent.__table__, back)
            session.execute(delete(JournalEntry).where(JournalEntry.gseq > keep))
            self.derived.rebuild(session)
            store.audit_entry(session, "sync.tail_dropped", None, {
                "kept_gseq": keep, "dropped": len(tail), "reason": reason,
                "events": [r.event_id for r in tail][:50]})
        self.subscriptions.publish([("catalog_reloaded", {}), ("outbox_changed", {})])
        return len(tail)
