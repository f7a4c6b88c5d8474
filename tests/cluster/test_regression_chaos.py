"""Regressions found by the chaos harness (tests/chaos, scripts/chaos.py), one test per
failure, named after what went wrong. See docs/chaos.md for how each was found."""

from __future__ import annotations

import json
import threading
import time

import pytest

from app.models.db import Database
from app.services.audit import AuditLog
from app.services.journal.journal import Journal
from app.services.journal.replication import pull
from app.services.shop.state_machine import ShopStateMachine
from tests.ledgers import Clock, make_journal, sale_event

pytestmark = pytest.mark.cluster


# ------------------------------------------------------------------ paused master
def _audit_after(node, device_id: int, wall_ms: int) -> list[tuple[int, str, dict]]:
    rows = node.query("SELECT seq, action, details FROM audit_log WHERE device_id=? AND ts_ms>=? "
                      "ORDER BY seq", (device_id, wall_ms))
    return [(seq, action, json.loads(details)) for seq, action, details in rows]


def test_regression_paused_master_sequences_after_wake(make_cluster):
    """SIGSTOP the master past the failover timeout; the others elect till 2. When till 1
    wakes, the sales its cashiers rang up meanwhile (queued in its socket backlog) must
    not be journaled at its old epoch before it has heard of the new master: a paused
    master is fenced (DESIGN invariant 3; issue 7: "the paused old master must not
    sequence after it wakes"). Found by scripts/chaos.py seed 5 (pause-master)."""
    cluster = make_cluster(3)
    sku = "DRK-001"
    price = cluster[1].product(sku)["price_cents"]
    for n in cluster.nodes.values():
        n.token("cashier")  # log in before the pause
    old_epoch = cluster[1].health()["epoch"]
    cluster[1].pause()
    try:
        cluster.wait_master(expected=2, timeout=10, nodes=[cluster[2], cluster[3]])
        results: list = []

        def ring_up() -> None:
            try:
                results.append(cluster[1].sell(sku, 1, price_cents=price, timeout=15))
            except Exception as exc:  # noqa: BLE001
                results.append(exc)

        threads = [threading.Thread(target=ring_up) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)  # the requests wait in till 1's accept backlog
    finally:
        woke_ms = int(time.time() * 1000)
        cluster[1].resume()
    for t in threads:
        t.join(20)
    time.sleep(1.0)
    sequenced_at_old_epoch = []
    for seq, action, details in _audit_after(cluster[1], 1, woke_ms):
        # Until it has started a new term (after catching up) or follows someone, a
        # woken master must journal nothing.
        if action in ("role.master", "role.step_down", "election.follow"):
            break
        # Batches from other tills are audited as sync.sequenced; a local sale's own audit
        # entry names the gseq and epoch when this node journals it itself.
        if action == "sync.sequenced" or ("gseq" in details and "epoch" in details):
            sequenced_at_old_epoch.append((seq, action, details.get("first_gseq", details.get("gseq"))))
        elif details.get("gseq") is not None and details.get("epoch") == list(old_epoch):
            sequenced_at_old_epoch.append((seq, details["gseq"], 1))  # a sale it journaled itself
    assert not sequenced_at_old_epoch, (
        f"till 1 woke from a pause as master of epoch {old_epoch} and journaled "
        f"{sequenced_at_old_epoch} before it learned that till 2 had taken over")
    # Nothing is lost either way: every sale it answered 201 for ends up journaled once.
    cluster.wait_master(timeout=20)
    journal = cluster.wait_converged(timeout=40)
    assert len(journal) == len({e for _, e in journal})
    acked = [r.json()["sale_id"] for r in results if not isinstance(r, Exception) and r.status_code == 201]
    rows = cluster[2].query("SELECT payload FROM journal WHERE type='sale.create'")
    ids = [json.loads(p)["sale_id"] for (p,) in rows]
    wrong = {s: ids.count(s) for s in acked if ids.count(s) != 1}
    assert not wrong, (
        f"acknowledged sales journaled other than once: {wrong}; answers "
        f"{[r if isinstance(r, Exception) else (r.status_code, r.json()) for r in results]}\n"
        f"till 1 log:\n{cluster[1].tail_log()}")


# ------------------------------------------------------------- common prefix
class JournalPeer:
    """HttpPeer stand-in that answers /api/sync/* from another journal (no network)."""

    def __init__(self, journal: Journal):
        self.journal = journal
        self.address = f"journal-{journal.device_id}"

    def get(self, path: str):
        from urllib.parse import parse_qs, urlparse

        url = urlparse(path)
        q = {k: int(v[0]) for k, v in parse_qs(url.query).items()}
        if url.path == "/api/sync/changes":
            return self.journal.store.entries_since(q["since"], q.get("limit", 1000))
        if url.path == "/api/sync/ids":
            return {"ids": self.journal.store.ids_between(q["low"], q["high"], epochs=q.get("epochs") == 1)}
        raise AssertionError(path)


def _journal(tmp_path, device_id: int) -> Journal:
    return make_journal(tmp_path, device_id)


def _sale(journal: Journal, n: int):
    return sale_event(journal, n)


def test_regression_resync_keeps_a_diverged_entry_when_one_later_position_matches(tmp_path):
    """Two sides of a partition sequenced different events at gseq 2 (X on till 1, Y on
    till 2), then both sequenced the same resubmitted event Z at gseq 3. When till 2
    follows till 1 again it must drop Y (back to its outbox) and take X: a single
    matching position (gseq 3 holds Z on both) does not prove the journals share their
    prefix. Found by scripts/chaos.py seed 5: till 2 kept its own gseq 134-135, then
    every sync round died on "UNIQUE constraint failed: journal.event_id" and it never
    converged."""
    a, b, c = _journal(tmp_path, 1), _journal(tmp_path, 2), _journal(tmp_path, 3)
    a.sequencer.start((1, 1))
    a.execute(a.new_event("product.create", {"sku": "A", "name": "A", "price_cents": 100,
                                             "tax_rate_bp": 700, "stock": 10}, "system"))
    b.follower.receive_entries(a.store.entries_since(0, 10)["entries"])
    # Partition: till 2 becomes master of its side; each side sells on its own.
    b.sequencer.start((2, 2))
    a.execute(_sale(a, 1))                     # X at gseq 2 on till 1
    b.execute(_sale(b, 1))                     # Y at gseq 2 on till 2
    z = _sale(c, 1)                            # till 3's offline sale reaches both masters
    assert a.sequencer.sequence([z])[0]["gseq"] == 3
    assert b.sequencer.sequence([z])[0]["gseq"] == 3
    # Heal: till 1 wins; till 2 follows it and pulls.
    b.sequencer.stop()
    pull(b, JournalPeer(a))
    assert [e for _, e in b.store.ids_between(0, 10)] == [e for _, e in a.store.ids_between(0, 10)], \
        "till 2 kept its own gseq 2 although it differs from the master's"
    with b.db.read() as s:
        from app.models import OutboxEvent

        assert s.get(OutboxEvent, b.store.ids_between(0, 10)[1][1]) is None


# ------------------------------------------------------------- receipt numbers
class _PowerCut(Exception):
    pass


class _MasterThenPowerCut:
    """A master link whose master journals the sale, after which the till loses power
    before it has stored anything itself (kill -9 between the master's ack and the
    till's own commit)."""

    master_id = 1

    def __init__(self, master: Journal):
        self.master = master

    def submit(self, events: list[dict], timeout: float) -> list[dict]:
        from app.services.journal.events import Event

        self.master.sequencer.sequence([Event.from_dict(e) for e in events], from_device=3)
        raise _PowerCut()


class _Wire:
    master_id = 1

    def __init__(self, master: Journal):
        self.master = master

    def submit(self, events: list[dict], timeout: float) -> list[dict]:
        from app.services.journal.events import Event

        return self.master.sequencer.sequence([Event.from_dict(e) for e in events], from_device=3)


class _LinkedTo:
    """A client till's ClusterView: the master is reachable over `link`."""

    def __init__(self, link: _MasterThenPowerCut | _Wire):
        self.link = link

    def lease_live(self) -> bool:
        return True

    def isolated(self) -> bool:
        return False

    def master_link(self) -> _MasterThenPowerCut | _Wire:
        return self.link


def test_regression_receipt_number_reused_after_a_crash_mid_sale(tmp_path):
    """Till 3's sale reached the master and was journaled, then till 3 was killed before
    it stored the sale itself. After the restart its next sale got the same receipt
    number (receipt_seq came from its local sales table only). Every node that later
    held both sales failed on "UNIQUE constraint failed: sales.receipt_no" in every sync
    round and never converged (scripts/chaos.py seed 103: partition-master + kill-client;
    216 acknowledged sales missing on till 2)."""
    import shutil

    from app import create_app
    from app.config import Config
    from app.services.shop import sales
    from app.services.shop.seed import seed_demo

    till_dir = tmp_path / "till3"
    app = create_app(Config(data_dir=str(till_dir), cluster=False, testing=True, device_id=3))
    node = app.extensions["lanpos_node"]
    seed_demo(node)  # the shop's catalog and users, as the master's journal brought them
    node.db.dispose()
    (tmp_path / "master").mkdir()
    shutil.copyfile(till_dir / "lanpos.db", tmp_path / "master" / "lanpos.db")
    master = Journal(Database(str(tmp_path / "master" / "lanpos.db")), device_id=1,
                    machine=ShopStateMachine(), audit=AuditLog(1, Clock()))
    master.sequencer.start((2, 1))
    node.journal.sequencer.stop()  # till 3 is a client of that master

    cashier = {"username": "cashier", "role": "cashier"}
    line = [{"sku": "DRK-001", "quantity": 1}]
    pay = [{"method": "cash", "amount_cents": 100_000}]
    node.journal.attach_cluster(_LinkedTo(_MasterThenPowerCut(master)))
    with pytest.raises(_PowerCut):
        sales.create_sale(node, cashier, line, pay, client_ref="first-sale-0001")
    # "Restart": the same database, now with a healthy link to the master.
    app2 = create_app(Config(data_dir=str(till_dir), cluster=False, testing=True, device_id=3))
    node2 = app2.extensions["lanpos_node"]
    node2.journal.sequencer.stop()
    node2.journal.attach_cluster(_LinkedTo(_Wire(master)))
    second, _ = sales.create_sale(node2, cashier, line, pay, client_ref="second-sale-0002")
    with master.db.read() as s:
        from app.models import JournalEntry

        receipts = [e.payload["receipt_no"] for e in s.query(JournalEntry)
                    .filter(JournalEntry.type == "sale.create")]
    assert len(receipts) == 2
    assert len(set(receipts)) == 2, f"till 3 gave two different sales receipt {receipts[0]}"


# ------------------------------------------------------------------ clock steps
def test_regression_clock_stepped_back_stops_the_heartbeat_scheduler(tmp_path):
    """Step the master's wall clock back 300 s (a PC clock corrected by hand or NTP):
    APScheduler's interval jobs are timed by the wall clock, so the master's heartbeat
    job (and sync, audit pull) stops for 300 s; its lease lapses and every sale at the
    master goes offline while the cluster is whole, and the till never converges
    (scripts/chaos.py seed 102: pause-master + clock-skew). Needs a C compiler for the
    LD_PRELOAD clock shim (tests/chaos/skewclock.c)."""
    from tests.chaos.hosts import ClockSkew
    from tests.cluster.harness import Cluster

    skew = ClockSkew(str(tmp_path / "clock"))
    if not skew.available:
        pytest.skip(f"no way to move a process's wall clock here: {skew.reason}")
    skew_file = str(tmp_path / "till1.skew")
    skew.set_offset(skew_file, 0)
    cluster = Cluster(3, str(tmp_path / "c"))
    cluster[1].env = skew.env_for(skew_file)
    try:
        cluster.start()
        sku = "DRK-002"
        price = cluster[1].product(sku)["price_cents"]
        assert cluster[1].sell(sku, 1, price_cents=price).json()["status"] == "online"
        skew.set_offset(skew_file, -300_000)
        time.sleep(4.0)  # two failover timeouts
        statuses = [cluster[1].sell(sku, 1, price_cents=price).json()["status"] for _ in range(3)]
        assert statuses == ["online"] * 3, (
            f"after its wall clock stepped back, the master answered {statuses}")
    finally:
        cluster.stop()


def test_regression_stale_page_is_appended_on_top_of_a_different_tail(tmp_path):
    """A till asked the old master for the entries after gseq 1; while that page was on
    its way (the request hung in a partition), the till became master itself and
    journaled its own gseq 2-3 (higher epoch). The page then arrived: its anchor (gseq 1)
    still matched, entries 2-3 were skipped as "already there" without comparing them,
    and the old master's gseq 4 was appended on top of the till's own entries: a journal
    whose epochs go (4,2) then (3,1), different from every other till's forever
    (scripts/chaos.py seed 1003: partition-bridge + wipe-db + partition-master)."""
    a, b = _journal(tmp_path, 1), _journal(tmp_path, 2)
    a.sequencer.start((3, 1))
    a.execute(a.new_event("product.create", {"sku": "A", "name": "A", "price_cents": 100,
                                             "tax_rate_bp": 700, "stock": 10}, "system"))
    b.follower.receive_entries(a.store.entries_since(0, 10)["entries"])
    page = a.store.entries_since(1, 10)  # b asks for gseq > 1 ... (a has nothing more yet)
    for n in range(1, 4):
        a.execute(_sale(a, n))  # a's gseq 2, 3, 4
    page = a.store.entries_since(1, 10)  # ... and this is the answer, delayed in the network
    b.sequencer.start((4, 2))  # meanwhile b became master and journaled gseq 2, 3
    b.execute(_sale(b, 1))
    b.execute(_sale(b, 2))
    b.sequencer.stop()
    before = b.store.ids_between(0, 10, epochs=True)
    result = b.follower.receive_entries(page["entries"], prev=page["anchor"])
    assert result.diverged and result.applied == 0
    assert b.store.ids_between(0, 10, epochs=True) == before, "a stale page was appended to a diverged tail"
