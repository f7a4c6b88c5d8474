"""The journal write path on real SQLite files, two journals wired by hand (no network)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.models import ConflictRecord, JournalEntry, OutboxEvent, Product, Refund, Sale
from app.services.journal.journal import Journal
from app.services.journal.state_machine import Refused
from app.services.journal.write_path import LinkDown
from app.utils.errors import status_of_code
from tests.ledgers import journal_at, make_journal, product_event, sale_event, stock_at


def product(journal: Journal, sku: str = "A", stock: int = 1):
    return product_event(journal, sku, stock)


def sale(journal: Journal, sku: str = "A", qty: int = 1, receipt: int = 1):
    return sale_event(journal, receipt, sku=sku, qty=qty)


def count(journal: Journal, model) -> int:
    with journal.db.read() as s:
        return s.scalar(select(func.count()).select_from(model))


def stock(journal: Journal, sku: str = "A") -> int:
    with journal.db.read() as s:
        return s.get(Product, sku).stock


class Wire:
    """A master link that hands events straight to another journal."""

    def __init__(self, master: Journal):
        self.master = master
        self.master_id = master.device_id
        self.down = False

    def submit(self, events: list[dict], timeout: float) -> list[dict]:
        if self.down:
            raise LinkDown("cut")
        from app.services.journal.events import Event

        return self.master.sequencer.sequence([Event.from_dict(e) for e in events], from_device=2)


class LinkView:
    """The client's ClusterView: a cluster with a master reachable over `wire`."""

    def __init__(self, wire: Wire):
        self.wire = wire

    def lease_live(self) -> bool:
        return True

    def isolated(self) -> bool:
        return False

    def master_link(self) -> Wire:
        return self.wire


class Broadcast:
    """The master's broadcast of appended entries to the client, which can be lost."""

    def __init__(self, client: Journal):
        self.client = client
        self.lost = False

    def __call__(self, entries: list[dict], prev: dict | None) -> None:
        if not self.lost:
            self.client.follower.receive_entries(entries, prev)


class Pair:
    """A master and a client journal (`master, client = pair`), with the client's wire to
    the master and the master's broadcast to the client."""

    def __init__(self, master: Journal, client: Journal, wire: Wire, broadcast: Broadcast):
        self.master, self.client, self.wire, self.broadcast = master, client, wire, broadcast

    def __iter__(self):
        return iter((self.master, self.client))


@pytest.fixture
def pair(tmp_path):
    master = make_journal(tmp_path, 1)
    master.sequencer.start((1, 1))
    client = make_journal(tmp_path, 2)
    broadcast = Broadcast(client)
    master.subscribe_appended(broadcast)
    wire = Wire(master)
    client.attach_cluster(LinkView(wire))
    master.execute(product(master))
    return Pair(master, client, wire, broadcast)


def test_the_same_event_delivered_twice_is_applied_once(pair):
    master, client = pair
    ev = sale(client)
    first = master.sequencer.sequence([ev], from_device=2)[0]
    again = master.sequencer.sequence([ev], from_device=2)[0]
    assert first["status"] == "accepted" and again == {**again, "status": "duplicate",
                                                         "gseq": first["gseq"]}
    entries = master.store.entries_since(0, 100)["entries"]
    assert client.follower.receive_entries(entries).applied == 0  # already had them via the push
    assert count(master, Sale) == count(client, Sale) == 1
    assert stock(master) == stock(client) == 0


def test_an_event_stays_in_the_outbox_until_the_journal_brings_it_back(pair):
    master, client = pair
    pair.broadcast.lost = True  # the broadcast is lost
    outcome = client.execute(sale(client))
    assert outcome.status == "online"
    assert count(client, OutboxEvent) == 1          # acked, but not yet seen in the journal
    assert stock(client) == 0                       # applied locally already
    client.follower.receive_entries(master.store.entries_since(0, 100)["entries"])
    assert count(client, OutboxEvent) == 0
    assert stock(client) == 0 and count(client, Sale) == 1  # not applied twice


def test_online_sale_beyond_stock_is_refused_by_the_master(pair):
    master, client = pair
    assert client.execute(sale(client, receipt=1)).status == "online"
    with pytest.raises(Refused) as refused:
        client.execute(sale(client, receipt=2))
    # A plain refusal; the cashier's 409 is decided from its code at the route edge.
    assert refused.value.code == "OUT_OF_STOCK" and status_of_code(refused.value.code) == 409
    assert refused.value.details == {"sku": "A", "available": 0, "requested": 1}
    assert count(master, Sale) == 1 and count(client, OutboxEvent) == 0


def test_offline_sale_is_kept_then_sequenced_with_an_oversell_conflict(pair):
    master, client = pair
    pair.wire.down = True
    outcome = client.execute(sale(client, receipt=1))
    assert outcome.status == "offline" and count(client, OutboxEvent) == 1
    master.execute(sale(master, receipt=1))          # the master sells the last unit too
    pair.wire.down = False
    acks = pair.wire.submit([e.to_dict() for e in client.outbox.events()], 1)
    assert acks[0]["status"] == "accepted"
    assert stock(master) == stock(client) == -1
    with master.db.read() as s:
        kinds = [t for (t,) in s.execute(select(JournalEntry.type).order_by(JournalEntry.gseq))]
    assert kinds[-1] == "conflict.record"
    assert count(client, OutboxEvent) == 0


def test_gap_is_detected_and_nothing_is_applied_past_it(pair):
    master, client = pair
    pair.broadcast.lost = True
    for _ in range(3):
        master.execute(master.new_event("stock.receive", {"sku": "A", "quantity": 1}, "m"))
    entries = master.store.entries_since(0, 100)["entries"]
    result = client.follower.receive_entries(entries[2:])     # gseq 2 went missing
    assert result.gap_after == 1 and result.applied == 0
    assert stock(client) == 1


def test_a_diverged_tail_goes_back_to_the_outbox_and_state_is_rebuilt(tmp_path):
    a = make_journal(tmp_path, 1)
    a.sequencer.start((1, 1))
    a.execute(product(a, stock=5))
    b = make_journal(tmp_path, 2)
    b.follower.receive_entries(a.store.entries_since(0, 10)["entries"])
    # Partition: b becomes master of its own side and sells there.
    a.sequencer.stop()
    b.sequencer.start((2, 2))
    b.execute(sale(b, qty=2))
    assert stock(b) == 3
    # Heal: a wins; b drops its tail (after gseq 1) and resubmits it.
    dropped = b.follower.truncate_after(1, "test")
    assert dropped == 1 and count(b, OutboxEvent) == 1
    assert stock(b) == 3                             # the sale still counts here (applied outbox)
    b.sequencer.stop()
    a.sequencer.start((3, 1))
    acks = a.sequencer.sequence(b.outbox.events(), from_device=2)
    assert acks[0]["status"] == "accepted"
    b.follower.receive_entries(a.store.entries_since(1, 10)["entries"],
                                 prev=a.store.entries_since(0, 1)["anchor"])
    assert count(b, OutboxEvent) == 0 and stock(a) == stock(b) == 3
    assert [e for _, e in a.store.ids_between(0, 10)] == [e for _, e in b.store.ids_between(0, 10)]


def test_regression_outbox_receipt_does_not_let_an_online_sale_oversell_in_journal_order(tmp_path):
    """Chaos seed 3000: a receipt waiting in the master's own outbox (applied locally,
    not journaled yet) made the derived stock look sufficient; the online sale was
    journaled before the receipt and the journal showed an oversell with no conflict."""
    master = make_journal(tmp_path, 1)
    master.sequencer.start((1, 1))
    master.execute(product(master, stock=0))
    receipt = master.new_event("stock.receive", {"sku": "A", "quantity": 5}, "m")
    receipt.mode = "offline"
    master.write_path._keep_offline(receipt)          # in the outbox, applied: derived stock is 5
    assert stock(master) == 5
    ack = master.sequencer.sequence([sale(master)], from_device=2)[0]
    assert ack["status"] == "refused" and ack["error"]["code"] == "OUT_OF_STOCK"
    assert set(ack["error"]) == {"code", "message", "details"}  # no HTTP status between tills
    master.sequencer.drain_outbox()                   # the receipt is journaled ...
    assert master.sequencer.sequence([sale(master, receipt=2)], from_device=2)[0]["status"] == "accepted"
    assert stock(master) == 4               # ... and then the sale fits


def receipts(journal: Journal) -> dict[str, str]:
    with journal.db.read() as s:
        return dict(s.execute(select(Sale.sale_id, Sale.receipt_no)).all())


def test_regression_a_till_that_lost_its_disk_and_prints_a_receipt_again_blocks_nobody(tmp_path):
    """Chaos seed 104: till 3 was wiped, caught up from a master that lacked some of its
    sales, printed those receipt numbers again, and the unique receipt column stopped
    every node that applied both sales. Now both sales are kept, the later one in
    journal order is filed under a suffixed number, the same on every node, and the
    master records a conflict."""
    master = make_journal(tmp_path, 1)
    master.sequencer.start((1, 1))
    master.execute(product(master, stock=5))
    old_till = make_journal(tmp_path, 2)
    first = sale_event(old_till, 1, sale_id="a1" * 16)
    assert master.sequencer.sequence([first], from_device=2)[0]["status"] == "accepted"

    wiped = journal_at(tmp_path / "till2-after-wipe", 2)
    wiped.follower.receive_entries(master.store.entries_since(0, 1)["entries"])  # only the catalog so far
    second = sale_event(wiped, 1, sale_id="b2" * 16)               # prints T2-000001 again
    assert wiped.execute(second).status == "offline"
    assert receipts(wiped) == {"b2" * 16: "T2-000001"}

    # The journal brings the first sale: it takes the number, the outbox sale moves.
    assert wiped.follower.receive_entries(master.store.entries_since(1, 100)["entries"]).applied == 1
    assert receipts(wiped) == {"a1" * 16: "T2-000001", "b2" * 16: "T2-000001-B2B2"}

    # The master journals the second one later: filed the same way, with a conflict.
    assert master.sequencer.sequence(wiped.outbox.events(), from_device=2)[0]["status"] == "accepted"
    wiped.follower.receive_entries(master.store.entries_since(2, 100)["entries"])
    assert receipts(master) == receipts(wiped) == {"a1" * 16: "T2-000001",
                                                   "b2" * 16: "T2-000001-B2B2"}
    assert stock(master) == stock(wiped) == 3 and count(wiped, OutboxEvent) == 0
    with master.db.read() as s:
        conflict = s.scalar(select(ConflictRecord).where(ConflictRecord.kind == "receipt_reused"))
        assert conflict.details == {"sale_id": "b2" * 16, "receipt_no": "T2-000001",
                                    "filed_as": "T2-000001-B2B2", "other_sale_id": "a1" * 16}
    with wiped.db.read() as s:
        assert s.scalar(select(func.count()).select_from(ConflictRecord)) == 1


def test_regression_chaos_seed_3049_a_dropped_tail_that_held_the_catalog_keeps_initial_stock(
        tmp_path):
    """Chaos seed 3049: till 3 followed a wiped master with a new journal and dropped its
    whole journal into the outbox. The rebuild applied the outbox's sales (product
    creates are not applied from an outbox), which made placeholder products; when the
    real master's journal brought the creates back, "first create wins" skipped them:
    no name, inactive, and no initial stock (stock short by it for good)."""
    master = make_journal(tmp_path, 1)
    master.sequencer.start((1, 1))
    master.execute(product(master, stock=5))
    master.execute(sale_event(master, 1, qty=2))
    till = make_journal(tmp_path, 3)
    till.follower.receive_entries(master.store.entries_since(0, 100)["entries"])
    assert stock(till) == 3

    assert till.follower.truncate_after(0, "diverged from a wiped master") == 2
    assert stock(till) == -2          # the placeholder: only the outbox's sale applied
    till.follower.receive_entries(master.store.entries_since(0, 100)["entries"])
    with till.db.read() as s:
        p = s.get(Product, "A")
        assert (p.name, p.active, p.stock, p.version) == ("A", True, 3, 1)
    assert stock(master) == 3 and count(till, OutboxEvent) == 0
    assert receipts(till) == receipts(master)


def test_regression_chaos_seed_3037_a_refund_is_never_journaled_before_its_sale(tmp_path):
    """Chaos seed 3037: till 3 sold offline and refunded that sale offline; after a
    partition its sale came back into the outbox later than the refund, the master got
    the refund first and journaled it before the sale. Every node that applied the
    journal skipped the refund (no such sale yet); the tills that had applied both from
    their outbox kept it: stock differed for good. Now the master defers the refund until
    the sale is journaled, and a till pushes its outbox in causal (HLC) order."""
    master = make_journal(tmp_path, 1)
    master.sequencer.start((1, 1))
    master.execute(product(master, stock=5))
    till = make_journal(tmp_path, 3)
    till.follower.receive_entries(master.store.entries_since(0, 100)["entries"])
    sale_ev = sale_event(till, 1)
    assert till.execute(sale_ev).status == "offline"
    refund = till.new_event("sale.refund", {
        "refund_id": "r" * 32, "sale_id": sale_ev.payload["sale_id"], "method": "cash",
        "lines": [{"sku": "A", "quantity": 1, "amount_cents": 100}], "amount_cents": 100,
        "tax_cents": 7, "approver": None, "reason": "chaos refund"}, "c")
    assert till.execute(refund).status == "offline"
    assert stock(till) == 5

    # The refund reaches the master first: neither journaled nor refused.
    ack = master.sequencer.sequence([refund], from_device=3)[0]
    assert ack["status"] == "deferred"
    assert [e["type"] for e in master.store.entries_since(0, 100)["entries"]] == ["product.create"]

    # The sale came back into the outbox later than the refund (a dropped tail):
    # the push still sends the sale first.
    with till.db.write() as s:
        s.get(OutboxEvent, sale_ev.event_id).created_ms += 60_000
    pending = till.outbox.events()
    assert [e.type for e in pending] == ["sale.create", "sale.refund"]
    acks = master.sequencer.sequence(pending, from_device=3)
    assert [a["status"] for a in acks] == ["accepted", "accepted"]
    till.follower.receive_entries(master.store.entries_since(1, 100)["entries"])
    assert stock(master) == stock(till) == 5
    assert count(master, Refund) == count(till, Refund) == 1 and count(till, OutboxEvent) == 0


def test_a_served_page_carries_the_stored_payloads_as_entries_since_gives_them(pair):
    import json

    from app.services.journal.replication import changes_json, full_export_json

    master, client = pair
    client.execute(sale(client, receipt=1))
    weird = master.new_event("product.create", {"sku": "Q", "name": 'Tea "Earl" Grey\n\u00e9',
                                                "price_cents": 5, "tax_rate_bp": 0}, 'u"1')
    weird.base_version = 3
    master.execute(weird)
    for since, limit in ((0, 100), (1, 2), (3, 100), (99, 10)):
        assert json.loads(changes_json(master, since, limit)) == {
            "success": True, **master.store.entries_since(since, limit)}
    everything = master.store.entries_since(0, 1000)
    assert json.loads(full_export_json(master, 2)) == {
        "success": True, "schema_version": 2, "last_gseq": everything["last_gseq"],
        "entries": everything["entries"]}


def rows_without_ids(journal: Journal) -> dict[str, list[tuple]]:
    from sqlalchemy import text

    from app.models import DERIVED_TABLES

    out = {}
    with journal.db.engine.connect() as conn:
        for table in DERIVED_TABLES:
            cols = [r[1] for r in conn.execute(text(f"PRAGMA table_info({table})")) if r[1] != "id"]
            out[table] = sorted(conn.execute(text(f"SELECT {', '.join(cols)} FROM {table}")).all(),
                                key=repr)
    return out


def test_an_empty_till_installs_a_snapshot_and_derives_what_pages_derive(tmp_path):
    import copy

    master = make_journal(tmp_path, 1)
    master.sequencer.start((1, 1))
    origin = make_journal(tmp_path, 3)
    master.sequencer.sequence([product(master, "A", 5), product(master, "B", 1)])
    sold = [sale(origin, "A", 1, receipt=n) for n in (1, 2)]
    late = sale(origin, "B", 2, receipt=3)
    late.mode = "offline"                               # an oversell: a conflict record
    master.sequencer.sequence(sold + [late], from_device=3)
    # Made offline at the empty till before it bootstraps: one the master has journaled
    # already (it came back some other way), one it has not.
    known, unknown = sale(origin, "A", 1, receipt=4), sale(origin, "A", 1, receipt=5)
    for ev in (known, unknown):
        ev.mode = "offline"
    master.sequencer.sequence([copy.deepcopy(known)], from_device=3)
    paged, snapped = journal_at(tmp_path / "paged", 2), journal_at(tmp_path / "snapped", 2)
    for till in (paged, snapped):
        for ev in (known, unknown):
            till.write_path._keep_offline(copy.deepcopy(ev))

    path = str(tmp_path / "snap.db")
    meta = master.snapshots.write(path)
    last = master.store.position()[0]
    assert meta == {"last_gseq": last, "entries": last}
    assert snapped.snapshots.install(path) == last
    paged.follower.receive_entries(master.store.entries_since(0, 1000)["entries"])
    # Row for row; surrogate ids follow the order rows were written in on each till.
    assert rows_without_ids(snapped) == rows_without_ids(paged)
    assert snapped.store.entries_since(0, 1000) == paged.store.entries_since(0, 1000) \
        == master.store.entries_since(0, 1000)
    assert [e.event_id for e in snapped.outbox.events()] == [unknown.event_id]
    assert stock_at(snapped, "A") == 5 - 4 and stock_at(snapped, "B") == -1
    assert snapped.snapshots.install(path) == 0          # not empty any more: pages from now on
    with snapped.db.read() as s:
        assert s.scalar(select(func.count()).select_from(ConflictRecord)) == 1


def test_a_snapshot_with_a_gap_is_refused_and_changes_nothing(tmp_path):
    import sqlite3

    from tests.integration.test_apply_bulk import dump

    master = make_journal(tmp_path, 1)
    master.sequencer.start((1, 1))
    master.sequencer.sequence([product(master, "A", 5), product(master, "B", 1)])
    path = str(tmp_path / "snap.db")
    master.snapshots.write(path)
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM journal WHERE gseq = 1")
    till = journal_at(tmp_path / "till", 2)
    before = dump(till.db)
    with pytest.raises(ValueError, match="gapless"):
        till.snapshots.install(path)
    assert dump(till.db) == before and till.store.position()[0] == 0


def test_a_till_behind_takes_a_snapshot_only_onto_a_journal_the_snapshot_extends(tmp_path):
    from app.services.journal.snapshots import SnapshotUnavailable

    master = make_journal(tmp_path, 1)
    master.sequencer.start((1, 1))
    origin = make_journal(tmp_path, 3)
    master.sequencer.sequence([product(master, "A", 50)])
    master.sequencer.sequence([sale(origin, "A", 1, receipt=n) for n in range(1, 4)], from_device=3)
    behind, paged = journal_at(tmp_path / "behind", 2), journal_at(tmp_path / "paged", 2)
    for till in (behind, paged):
        till.follower.receive_entries(master.store.entries_since(0, 2)["entries"])
    diverged = journal_at(tmp_path / "diverged", 4)   # its own term: another entry at gseq 1
    diverged.sequencer.start((1, 4))
    diverged.sequencer.sequence([product(diverged, "A", 50)])
    diverged.sequencer.stop()
    master.sequencer.sequence([sale(origin, "A", 2, receipt=n) for n in range(4, 9)], from_device=3)

    path = str(tmp_path / "snap.db")
    master.snapshots.write(path)
    last = master.store.position()[0]
    assert behind.snapshots.install(path) == last
    paged.follower.receive_entries(master.store.entries_since(2, 1000)["entries"])
    assert rows_without_ids(behind) == rows_without_ids(paged)
    assert behind.store.entries_since(0, 1000) == master.store.entries_since(0, 1000)
    before = rows_without_ids(diverged), diverged.store.entries_since(0, 100)
    assert diverged.snapshots.install(path) == 0
    assert (rows_without_ids(diverged), diverged.store.entries_since(0, 100)) == before

    # A node whose derived tables also hold its own unjournaled sales gives no snapshot.
    offline = sale(behind, "A", 1, receipt=1)
    behind.write_path._keep_offline(offline)
    with pytest.raises(SnapshotUnavailable):
        behind.snapshots.write(str(tmp_path / "other.db"))


def test_regression_chaos_seed_4003_a_master_forgets_its_own_edit_that_lost(tmp_path):
    """Chaos seed 4003: till 2, master on its side of a partition, journaled a price edit;
    its tail was dropped at the heal (the edit went back to its outbox) and another edit
    of the same product won. When till 2 became master again it journaled its own outbox,
    the stale edit was rejected (one conflict record), but the rejected event stayed in
    its outbox: outbox_pending never reached 0 and the cluster never looked converged."""
    a = make_journal(tmp_path, 1)
    a.sequencer.start((1, 1))
    a.execute(product(a, stock=5))
    b = make_journal(tmp_path, 2)
    b.follower.receive_entries(a.store.entries_since(0, 10)["entries"])

    def price_edit(journal: Journal, cents: int):
        return journal.new_event("product.update", {"sku": "A", "changes": {"price_cents": cents}},
                                "manager", base_version=1)

    a.sequencer.stop()
    b.sequencer.start((2, 2))
    b.execute(price_edit(b, 150))                  # journaled on b's side
    b.sequencer.stop()
    a.sequencer.start((3, 1))
    a.execute(price_edit(a, 200))                  # the edit that wins
    assert b.follower.truncate_after(1, "lost the partition") == 1
    b.follower.receive_entries(a.store.entries_since(1, 10)["entries"],
                                 prev=a.store.entries_since(0, 1)["anchor"])
    a.sequencer.stop()
    b.sequencer.start((4, 2))                     # a is gone; b takes over
    assert count(b, OutboxEvent) == 0
    assert count(b, ConflictRecord) == 1
    with b.db.read() as s:
        assert s.get(Product, "A").price_cents == 200
    b.sequencer.drain_outbox()                               # a later round: nothing to do again
    assert count(b, ConflictRecord) == 1


def test_an_offline_sale_whose_client_ref_the_master_already_journaled_leaves_the_outbox(tmp_path):
    """A cashier retries a payment (same client_ref) on a till that lost its disk and has
    no master: the till sells it offline again. The master answers `duplicate` with the
    sale it journaled first (no gseq: this event is never journaled). The till must drop
    it and un-apply it, or its outbox never empties and its stock counts the sale twice."""
    a = make_journal(tmp_path, 1)
    a.sequencer.start((1, 1))
    a.execute(product(a, stock=5))
    a.sequencer.sequence([sale_event(make_journal(tmp_path, 2), 1, client_ref="pay-1")], from_device=2)
    wiped = journal_at(tmp_path / "till2-after-the-wipe", 2)
    wiped.follower.receive_entries(a.store.entries_since(0, 1)["entries"])       # the catalog only
    wiped.execute(sale_event(wiped, 1, client_ref="pay-1", sale_id="s2-retry"))
    assert stock(wiped) == 4 and count(wiped, OutboxEvent) == 1
    acks = a.sequencer.sequence(wiped.outbox.events(), from_device=2)
    assert acks[0]["status"] == "duplicate" and acks[0]["gseq"] is None
    assert wiped.outbox.forget_turned_down(acks) == 1
    wiped.follower.receive_entries(a.store.entries_since(1, 10)["entries"],
                                     prev=a.store.entries_since(0, 1)["anchor"])
    assert count(wiped, OutboxEvent) == 0
    assert stock(wiped) == stock(a) == 4
    assert count(wiped, Sale) == count(a, Sale) == 1
