"""The derived tables as the journal sees them: fold(journal) + fold(applied outbox)."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.models import DERIVED_TABLES, JournalEntry, OutboxEvent
from app.services.journal.events import Event
from app.services.journal.state_machine import StateMachine


class DerivedTables:
    def __init__(self, machine: StateMachine):
        self.machine = machine

    def rebuild(self, session: Session) -> None:
        """Derived tables := fold(journal) + fold(applied outbox)."""
        for table in DERIVED_TABLES:
            session.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - fixed names
        session.flush()
        self.machine.apply_page(session, [Event.from_row(row) for row in session.scalars(
            select(JournalEntry).order_by(JournalEntry.gseq))])
        self.fold_outbox(session)

    def fold_outbox(self, session: Session) -> int:
        """Apply this node's applied outbox again (derived = fold(journal) + fold(outbox)),
        in first-come order; returns how many events it holds."""
        pending = session.scalars(select(OutboxEvent).where(OutboxEvent.applied.is_(True))).all()
        self.machine.apply_page(session, [Event.from_row(row)
                                          for row in self.machine.order_offline(pending)])
        return len(pending)
