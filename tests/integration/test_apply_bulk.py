"""`apply_many` (catch-up pages, bootstrap, rebuild) derives exactly what `apply_event`
derives event by event, and what the node that made the events holds."""

from __future__ import annotations

from sqlalchemy import text

from app.models import DERIVED_TABLES, JournalEntry
from app.services.journal.events import Event, journal_values
from app.services.journal.journal import Journal
from app.services.shop.apply import apply_event
from tests.integration.conftest import sell
from tests.ledgers import journal_at


def dump(db) -> dict[str, list[tuple]]:
    with db.engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT * FROM {t} ORDER BY 1, 2")).all()  # noqa: S608
                for t in DERIVED_TABLES}


def fold_one_by_one(journal: Journal, entries: list[dict]) -> None:
    with journal.db.write() as session:
        for data in entries:
            ev = Event.from_dict(data)
            session.add(JournalEntry(**journal_values(ev, data["gseq"], data["epoch"],
                                                     data["recorded_ms"])))
            session.flush()
            apply_event(session, ev)


def test_bulk_catch_up_derives_what_one_by_one_and_the_origin_derive(client, node, cashier,
                                                                       manager, tmp_path):
    # A day with every kind of event, in an order that interleaves bulk and slow paths.
    sold = [sell(client, cashier, [("BAK-003", 2), ("DRK-003", 1)]).get_json()["sale"]
            for _ in range(3)]
    assert client.post("/api/products", headers=manager, json={
        "sku": "TEA-100", "name": "Green tea", "price_cents": 349, "category": "Tea",
        "tax_rate_bp": 700, "stock": 2}).status_code == 201                # new category
    sell(client, cashier, [("TEA-100", 2)])                                 # sells out
    sell(client, cashier, [("BAK-003", 1)], client_ref="till-1-cart-9")
    assert client.post(f"/api/sales/{sold[0]['sale_id']}/refund", headers=manager, json={
        "lines": [{"sku": "BAK-003", "quantity": 1}], "reason": "stale"}).status_code == 201
    assert client.post(f"/api/sales/{sold[1]['sale_id']}/void", headers=manager).status_code == 201
    assert client.patch("/api/products/BAK-003", headers=manager,
                        json={"base_version": 1, "price_cents": 39}).status_code == 200
    for path, qty in (("receive", 10), ("adjust", -1)):
        assert client.post(f"/api/stock/{path}", headers=manager,
                           json={"sku": "DRK-003", "quantity": qty, "reason": "x"}).status_code == 201
    sell(client, cashier, [("DRK-003", 1), ("TEA-100", 1)])                # oversold... or 409
    entries = node.journal.store.entries_since(0, 100_000)["entries"]
    types = {e["type"] for e in entries}
    assert {"product.create", "sale.create", "sale.refund", "sale.void", "product.update",
            "stock.receive", "stock.adjust", "user.create"} <= types

    slow, bulk = journal_at(tmp_path / "slow", 2), journal_at(tmp_path / "bulk", 3)
    fold_one_by_one(slow, entries)
    result = bulk.follower.receive_entries(entries)
    assert result.applied == len(entries) and not result.diverged
    expected = dump(slow.db)
    assert sum(len(rows) for rows in expected.values()) > 200
    assert dump(bulk.db) == expected
    assert dump(node.db) == expected            # and what the till that made them holds


def test_a_rebuild_derives_the_same_tables(client, node, cashier, manager):
    for _ in range(5):
        sell(client, cashier, [("BAK-003", 1)])
    before = dump(node.db)
    with node.db.write() as session:
        node.journal.derived.rebuild(session)
    assert dump(node.db) == before
