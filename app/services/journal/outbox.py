"""The outbox: events made here (or taken back from a dropped tail) not yet journaled.

An event leaves the outbox when it comes back through the journal, never on a mere
ack; or at once when the master turns it down for good (`turned_down`).
"""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import delete, func, select, tuple_

from app.models import JournalEntry, OutboxEvent
from app.services.journal.derived import DerivedTables
from app.services.journal.events import Event
from app.services.journal.store import JournalStore
from app.services.journal.subscriptions import Subscriptions


def turned_down(ack: dict) -> bool:
    """An ack that ends an event's life in the outbox unjournaled: a stale edit that lost
    ("rejected"), anything the rules refuse, or a sale whose `client_ref` the master holds
    on another sale ("duplicate" without a gseq: this event is never journaled)."""
    status = ack.get("status")
    return status in ("rejected", "refused") or (status == "duplicate" and ack.get("gseq") is None)


class Outbox:
    def __init__(self, store: JournalStore, derived: DerivedTables, subscriptions: Subscriptions):
        self.store = store
        self.derived = derived
        self.subscriptions = subscriptions

    def pending(self) -> int:
        """How many events wait in the outbox (cached: every heartbeat says it)."""
        return self.store.cache.get("outbox_pending", self._read_pending)

    def _read_pending(self) -> int:
        with self.store.db.read() as session:
            return session.scalar(select(func.count()).select_from(OutboxEvent)) or 0

    def events(self, limit: int = 500, after: Event | None = None) -> list[Event]:
        """The outbox in causal order (a refund after its sale, even when the sale came
        back into the outbox later, from a dropped journal tail); `after`: the page that
        follows that event."""
        order = (OutboxEvent.hlc, OutboxEvent.event_id)
        query = select(OutboxEvent).order_by(*order).limit(limit)
        if after is not None:
            query = query.where(tuple_(*order) > tuple_(after.hlc, after.event_id))
        with self.store.db.read() as session:
            return [Event.from_row(r) for r in session.scalars(query).all()]

    def drop_journaled(self) -> int:
        """Outbox rows whose event is already in the journal are done (belt and braces)."""
        with self.store.db.write() as session:
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
            self.forget([a["event_id"] for a in down], "turned down by the master: "
                        + ", ".join(sorted({str(a.get("status")) for a in down})))
        return len(down)

    def forget(self, event_ids: Iterable[str], reason: str) -> None:
        """Drop outbox events that will never be journaled. One that was applied here
        (an offline sale) is taken back out: the derived tables are rebuilt."""
        ids = list(event_ids)
        if not ids:
            return
        with self.store.db.write() as session:
            applied = session.scalar(select(func.count()).select_from(OutboxEvent).where(
                OutboxEvent.event_id.in_(ids), OutboxEvent.applied.is_(True)))
            session.execute(delete(OutboxEvent).where(OutboxEvent.event_id.in_(ids)))
            if applied:
                self.derived.rebuild(session)
            self.store.audit_entry(session, "sync.rejected", None, {
                "events": ids[:50], "reason": reason, "unapplied": applied})
        self.subscriptions.publish([("outbox_changed", {})]
                                   + ([("catalog_reloaded", {})] if applied else []))
