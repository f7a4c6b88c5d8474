"""Resubmit this till's outbox to the master: HLC (causal) order, pages back to back."""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from app.services.cluster.links import PeerLink
from app.services.journal.events import Event
from app.services.journal.journal import Journal
from app.services.journal.write_path import LinkDown

# Events per submit, per outbox read (and audit entry), and the most chunks one sync
# round submits.
PUSH_PAGE = 500
PUSH_CHUNK = 5000
MAX_PUSH_CHUNKS = 100
SUBMIT_TIMEOUT = 10.0


class OutboxPusher:
    def __init__(self, journal: Journal, audit: Callable[[str, dict[str, Any]], None],
                 retry_soon: Callable[[], None]):
        self.journal = journal
        self.audit = audit
        self.retry_soon = retry_soon

    def push_outbox(self, link: PeerLink) -> int:
        """Submit our outbox to the master in HLC (causal) order, pages of `PUSH_PAGE`.

        Pages go out back to back: each submit waits for its acks, so the master has
        sequenced a page before it sees the next (a refund never overtakes its sale).
        The acked events stay in the outbox until the journal brings them back (the pull
        that follows in the sync round, or the master's pushes).
        """
        journal = self.journal
        pushed = 0
        journal.outbox.drop_journaled()
        after: Event | None = None
        for _ in range(MAX_PUSH_CHUNKS):
            chunk = journal.outbox.events(limit=PUSH_CHUNK, after=after)
            if not chunk:
                break
            after = chunk[-1]
            answers: list[str] = []
            try:
                self._push_pages(link, chunk, answers)
            finally:
                # One entry per chunk, after its pages: an audit write between pages would
                # wait for this till's write lock while it applies the journal coming back.
                if answers:
                    self.audit("sync.resubmitted", {"master_id": link.device_id,
                                                    "events": len(answers),
                                                    "acks": dict(Counter(answers))})
            pushed += len(answers)
            if len(chunk) < PUSH_CHUNK:
                break
        return pushed

    def _push_pages(self, link: PeerLink, chunk: list[Event], answers: list[str]) -> None:
        """Submit `chunk` in pages; collect each ack's status."""
        for start in range(0, len(chunk), PUSH_PAGE):
            acks = link.submit([e.to_dict() for e in chunk[start:start + PUSH_PAGE]],
                               timeout=SUBMIT_TIMEOUT)
            answers += [str(a.get("status")) for a in acks]
            self.journal.outbox.forget_turned_down(acks)
            if any(a.get("status") == "not_master" for a in acks):
                raise LinkDown("master is not sequencing")
            if any(a.get("status") == "deferred" for a in acks):
                self.retry_soon()  # after the events they wait for are journaled
