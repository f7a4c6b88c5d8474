"""A use case's audit entry is an argument of `execute`, written exactly once in the
transaction that makes its event durable here, whichever way that turns out to be."""

from __future__ import annotations

import json

from sqlalchemy import text

from app.services.journal.events import AuditNote
from tests.ledgers import make_journal, product_event


def audit_actions(journal) -> list[tuple[str, dict]]:
    with journal.db.engine.connect() as conn:
        rows = conn.execute(text("SELECT action, details FROM audit_log ORDER BY seq")).all()
    return [(action, json.loads(details)) for action, details in rows]


class LeaseLapsesAtCommit:
    """A master whose lease is live when the batch starts and gone at its commit."""

    def __init__(self) -> None:
        self.asked = 0

    def lease_live(self) -> bool:
        self.asked += 1
        return self.asked == 1

    def isolated(self) -> bool:
        return False

    def master_link(self) -> None:
        return None


def receipt(journal):
    return journal.new_event("stock.receive", {"sku": "A", "quantity": 2, "reason": None,
                                               "approver": None}, "manager")


def test_the_master_writes_the_note_with_the_entry_it_journals(tmp_path):
    till = make_journal(tmp_path, 1)
    till.sequencer.start((1, 1))
    till.sequencer.sequence([product_event(till)])
    ev = receipt(till)
    outcome = till.execute(ev, audit=AuditNote("stock.received", {"sku": "A"}))
    assert outcome.status == "online"
    notes = [d for a, d in audit_actions(till) if a == "stock.received"]
    assert notes == [{"sku": "A", "event_id": ev.event_id, "mode": "online",
                      "gseq": outcome.gseq, "epoch": [1, 1]}]


def test_a_note_survives_a_sequencing_attempt_that_rolled_back(tmp_path):
    """The journal entry and its note rolled back together (the lease lapsed before the
    commit); the event then went to the outbox, and its note with it: once, not zero
    times (the note is not consumed by the attempt), not twice."""
    till = make_journal(tmp_path, 1)
    till.sequencer.start((1, 1))
    till.sequencer.sequence([product_event(till)])
    fence = LeaseLapsesAtCommit()
    till.attach_cluster(fence)
    ev = receipt(till)
    outcome = till.execute(ev, audit=AuditNote("stock.received", {"sku": "A"}))
    assert fence.asked >= 2 and outcome.status == "offline"
    notes = [d for a, d in audit_actions(till) if a == "stock.received"]
    assert notes == [{"sku": "A", "event_id": ev.event_id, "mode": "offline"}]


def test_an_event_without_a_note_writes_none(tmp_path):
    till = make_journal(tmp_path, 1)
    till.sequencer.start((1, 1))
    till.sequencer.sequence([product_event(till)])
    before = len(audit_actions(till))
    till.execute(receipt(till))
    assert len(audit_actions(till)) == before
