"""The master's run path (`admission.admit_run` + `Journal._sequence_run`: a batch of sales
and stock movements decided against in-memory stock, journaled with one INSERT) answers
and journals exactly what the per-event path (`_sequence_one`, one savepoint per event)
does, for every case a batch can hold."""

from __future__ import annotations

import copy

from sqlalchemy import select, text

from app.models import DERIVED_TABLES, AuditEntry, ConflictRecord, JournalEntry
from app.services.journal.events import Event
from app.services.journal.journal import Journal
from tests.ledgers import make_journal, product_event, sale_event, stock_at

# conflicts: random ids (compared without them); outbox: what is still waiting here.
ROW_TABLES = [t for t in DERIVED_TABLES if t != "conflicts"] + ["outbox"]


def per_event_only(journal: Journal) -> Journal:
    journal.sequencer._sequence_run = lambda session, events, last, audits: (0, [], [], [])  # type: ignore[method-assign]
    return journal


def state(master: Journal) -> dict:
    """Everything a batch decides, without the ids and times a master makes up."""
    with master.db.engine.connect() as conn:
        tables = {t: conn.execute(text(f"SELECT * FROM {t} ORDER BY 1, 2")).all()  # noqa: S608
                  for t in ROW_TABLES}
    with master.db.read() as s:
        journal = [(r.gseq, r.type, r.mode, r.origin_device,
                    None if r.type == "conflict.record" else r.event_id,
                    {k: v for k, v in r.payload.items()
                     if r.type != "conflict.record" or k not in ("conflict_id", "created_ms")})
                   for r in s.scalars(select(JournalEntry).order_by(JournalEntry.gseq))]
        conflicts = sorted((c.kind, c.sku, c.event_id, c.origin_device, c.user,
                            repr(sorted(c.details.items())), c.decision)
                           for c in s.scalars(select(ConflictRecord)))
        audit = sorted(a.action for a in s.scalars(select(AuditEntry)))
    return {"tables": tables, "journal": journal, "conflicts": conflicts, "audit": audit}


def refund_event(origin: Journal, sale: Event, qty: int) -> Event:
    return origin.new_event("sale.refund", {
        "refund_id": f"r-{sale.payload['sale_id']}", "sale_id": sale.payload["sale_id"],
        "lines": [{"sku": sale.payload["lines"][0]["sku"], "quantity": qty,
                   "amount_cents": 100 * qty}],
        "amount_cents": 100 * qty, "tax_cents": 0, "method": "cash", "approver": None,
        "reason": "test"}, "m")


def stock_event(origin: Journal, kind: str, sku: str, qty: int) -> Event:
    return origin.new_event(f"stock.{kind}", {"sku": sku, "quantity": qty, "reason": "x"}, "m")


def test_a_batch_is_answered_and_journaled_as_the_per_event_path_does(tmp_path):
    fast = make_journal(tmp_path, 1)
    slow = per_event_only(make_journal(tmp_path / "slow", 1))
    origin = make_journal(tmp_path, 2)  # the till whose outbox is pushed
    for master in (fast, slow):
        master.sequencer.start((1, 1))
    catalog = [product_event(fast, sku, qty) for sku, qty in (("A", 5), ("B", 1), ("C", 0))]
    earlier = sale_event(origin, 1, sku="A")
    # The master's own offline sale and stock receipt, applied and still in its outbox.
    own = sale_event(fast, 1, sku="A")
    own_receipt = stock_event(fast, "receive", "B", 2)
    for ev in (own, own_receipt):
        ev.mode = "offline"
    for master in (fast, slow):
        assert [a["status"] for a in master.sequencer.sequence(copy.deepcopy(catalog))] == ["accepted"] * 3
        master.sequencer.sequence([copy.deepcopy(earlier)], from_device=2)
        master.write_path._keep_offline(copy.deepcopy(own))
        master.write_path._keep_offline(copy.deepcopy(own_receipt))

    def offline(ev: Event) -> Event:
        ev.mode = "offline"
        return ev

    s2 = sale_event(origin, 2, sku="A", qty=2)
    batch = [
        earlier,                                                  # journaled already
        s2,                                                       # accepted
        sale_event(origin, 3, sku="B", qty=2),                    # refused: 1 left
        offline(sale_event(origin, 4, sku="B", qty=2)),           # oversell, conflict
        stock_event(origin, "receive", "C", 3),
        sale_event(origin, 5, sku="C", qty=3, client_ref="cart-1"),
        sale_event(origin, 6, sku="C", client_ref="cart-1"),      # same cart: duplicate
        s2,                                                       # repeated in the batch
        sale_event(origin, 7, sku="Z"),                           # unknown product
        offline(sale_event(origin, 8, sku="A", qty=9)),           # oversell, after a stop
        own,                                                      # from the master's outbox
        own_receipt,
        stock_event(origin, "adjust", "A", -1),
        refund_event(origin, s2, 1),                              # not a run type
        sale_event(origin, 9, sku="B", sale_id="s2-4"),           # a sale id on file
        offline(sale_event(origin, 10, sku="C")),                 # sold out: oversell
        sale_event(origin, 11, sku="C"),                          # refused
        stock_event(origin, "receive", "Z", 4),                   # placeholder product
    ]
    batch[-2].payload["receipt_no"] = "T2-000002"                 # a receipt number on file
    acks = {}
    for name, master in (("fast", fast), ("slow", slow)):
        events = [Event.from_dict(e.to_dict()) for e in batch]
        acks[name] = master.sequencer.sequence(events, from_device=2)
    assert acks["fast"] == acks["slow"]
    statuses = [a["status"] for a in acks["fast"]]
    assert statuses.count("accepted") >= 8 and "refused" in statuses and "duplicate" in statuses
    got, expected = state(fast), state(slow)
    assert len(expected["conflicts"]) >= 3
    assert got == expected


def test_a_run_stops_where_the_per_event_path_must_decide(tmp_path):
    master = make_journal(tmp_path, 1)
    origin = make_journal(tmp_path, 2)
    master.sequencer.start((1, 1))
    master.sequencer.sequence([product_event(master, "A", 10)])
    from app.services.shop import admission

    events = [sale_event(origin, 1), sale_event(origin, 2, sku="nope"), sale_event(origin, 3)]
    with master.db.read() as session:
        verdicts = admission.admit_run(session, events)
    assert [v.event.event_id for v in verdicts] == [events[0].event_id]
    acks = master.sequencer.sequence(events, from_device=2)
    assert [a["status"] for a in acks] == ["accepted", "refused", "accepted"]
    assert stock_at(master, "A") == 8
