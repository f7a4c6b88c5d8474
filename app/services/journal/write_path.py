"""The write path: every change becomes an event, ordered by the master into the journal.

`WritePath.execute(event)` (`Journal.execute`) is what every shop use case calls:

* this node is the sequencing master -> admit, journal, apply, commit (fsync), broadcast;
* a master link is up -> submit and wait (~300 ms); 201/409 comes from the master;
* otherwise -> keep the event in the outbox, apply it locally, answer "offline".

An event leaves the outbox only when it comes back through the journal stream
(`Follower.receive_entries`), never on a mere ack: if the master dies between ack and
broadcast, the till still holds it and resubmits it (duplicates are dropped by
event_id). Clients apply entries strictly in gseq order; a gap asks for a pull.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import select

from app.models import JournalEntry, OutboxEvent
from app.services.journal.cluster_view import STANDALONE, ClusterView
from app.services.journal.events import COMMUTATIVE_TYPES, AuditNote, Event, outbox_values
from app.services.journal.sequencer import Sequencer
from app.services.journal.state_machine import Notice, Refusal, Refused, StateMachine
from app.services.journal.store import JournalStore
from app.services.journal.subscriptions import Subscriptions
from app.utils.errors import ServiceUnavailable

log = logging.getLogger(__name__)


class LinkDown(Exception):
    """The master link is not usable (not connected, timed out, refused by the master)."""


@dataclass
class Outcome:
    status: str  # "online" | "offline" | "duplicate"
    event: Event
    gseq: int | None = None
    ack: dict[str, Any] = field(default_factory=dict)


class WritePath:
    def __init__(self, store: JournalStore, machine: StateMachine, sequencer: Sequencer,
                 subscriptions: Subscriptions, *, submit_timeout: float = 0.3):
        self.store = store
        self.machine = machine
        self.sequencer = sequencer
        self.subscriptions = subscriptions
        self.submit_timeout = submit_timeout
        # Isolation and master link, read-only: standalone until the cluster runtime is
        # attached (`Journal.attach_cluster`).
        self.cluster: ClusterView = STANDALONE
        # When a sale last had to go offline here (the status pill says so until the
        # outbox drains, even while a silent master's socket still looks connected).
        self.last_offline_ms: int | None = None

    def execute(self, ev: Event, *, audit: AuditNote | None = None, offline_ok: bool = True,
                before_submit: Callable[[], None] | None = None) -> Outcome:
        """Make one event durable the best way the cluster allows right now.

        `audit` is written in the transaction that makes the event durable here (as the
        master's journal entry, the acknowledged copy, or the offline copy).

        `before_submit` is called once, just before the event first leaves this till for
        a master (never when this till sequences it itself or keeps it offline): what
        must be durable here before another till may journal the event (a sale's
        receipt number). If it raises, nothing was sent.
        """
        if self.sequencer.active:
            if self.cluster.isolated() and ev.type in COMMUTATIVE_TYPES:
                ev.mode = "offline"  # may land in a losing tail: never refuse, say so
            ack = self.sequencer.sequence(
                [ev], audits={ev.event_id: audit} if audit is not None else None)[0]
            if ack.get("status") not in ("not_master", "deferred"):
                return self._outcome_from_ack(ev, ack)
            # We stopped sequencing between the check and the journal (stepped down, a
            # new term is catching up, or our lease lapsed): nothing was journaled, so
            # take it the way a till without a master does, never as "online".
        link = self.cluster.master_link()
        if link is not None:
            if before_submit is not None:
                before_submit()
            try:
                ack = link.submit([ev.to_dict()], timeout=self.submit_timeout)[0]
            except LinkDown as exc:
                log.info("master link unusable (%s): %s goes offline", exc, ev.type)
            else:
                if ack.get("status") in ("accepted", "duplicate"):
                    self._keep_acked(ev, ack, audit)
                if ack.get("status") in ("accepted", "duplicate", "refused"):
                    return self._outcome_from_ack(ev, ack)
                log.info("master answered %s; %s goes offline", ack.get("status"), ev.type)
        if not offline_ok or ev.type not in COMMUTATIVE_TYPES:
            raise ServiceUnavailable("this change needs the master, and no master is reachable "
                                     "right now; try again in a moment")
        ev.mode = "offline"
        self._keep_offline(ev, audit)
        self.last_offline_ms = self.store.clock()
        if self.sequencer.active:  # we became master while waiting for the old one
            self.sequencer.drain_outbox()
        else:
            self.subscriptions.publish_offline()
        return Outcome(status="offline", event=ev)

    @staticmethod
    def _outcome_from_ack(ev: Event, ack: dict) -> Outcome:
        """A master's answer as the cashier sees it; a refusal is raised as `Refused`.

        An event journaled as offline (by an isolated master) is reported as offline.
        """
        if ack.get("status") == "refused":
            raise Refused(Refusal.from_wire(ack["error"]))
        if ack.get("status") == "duplicate":
            status = "duplicate"
        else:
            status = "offline" if ev.mode == "offline" else "online"
        return Outcome(status=status, event=ev, gseq=ack.get("gseq"), ack=ack)

    def _keep_offline(self, ev: Event, audit: AuditNote | None = None) -> None:
        store = self.store
        with store.db.write() as session:
            if session.scalar(select(JournalEntry.gseq).where(JournalEntry.event_id == ev.event_id)):
                return  # the master took it after all and its broadcast beat our timeout
            session.add(OutboxEvent(**outbox_values(ev, applied=True, created_ms=store.clock())))
            notices = self.machine.apply(session, ev)
            store.audit_event(session, ev, audit)
            store.save_hlc(session)
        self.subscriptions.publish(notices + [("outbox_changed", {})])

    def _keep_acked(self, ev: Event, ack: dict, audit: AuditNote | None) -> None:
        """Acked by the master: keep it in the outbox until the journal brings it back.

        It is applied as what it is (an online event, as the master journaled it); the
        outbox copy is marked "offline" (acknowledged, never to be refused) for a
        resubmission after a failover. Commutative events are applied now; edits come
        back via the journal (read-your-writes waits for that gseq).
        """
        store = self.store
        notices: list[Notice] = []
        with store.db.write() as session:
            in_journal = session.scalar(select(JournalEntry.gseq)
                                        .where(JournalEntry.event_id == ev.event_id))
            if in_journal is None and ack.get("status") == "accepted":
                applied = ev.type in COMMUTATIVE_TYPES
                if applied:
                    notices = self.machine.apply(session, ev)
                row = OutboxEvent(**outbox_values(ev, applied=applied, created_ms=store.clock()))
                row.mode = "offline"
                session.add(row)
            store.audit_event(session, ev, audit)
            store.save_hlc(session)
        self.subscriptions.publish(notices)
        if ev.type not in COMMUTATIVE_TYPES and ack.get("gseq"):
            store.wait_for_gseq(int(ack["gseq"]), timeout=1.0)
