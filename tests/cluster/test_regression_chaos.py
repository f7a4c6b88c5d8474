"""Regressions found by the chaos harness (tests/chaos, scripts/chaos.py), one test per
failure, named after what went wrong. See docs/chaos.md for how each was found."""

from __future__ import annotations

import json
import threading
import time

import pytest

from app.models.db import Database
from app.services.audit import AuditLog
from app.services.ledger import Ledger
from app.services.replication import pull

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
        if action == "sync.sequenced":
            sequenced_at_old_epoch.append((seq, details.get("first_gseq"), details.get("count")))
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
    assert all(ids.count(s) == 1 for s in acked)


# ------------------------------------------------------------- common prefix
class LedgerPeer:
    """HttpPeer stand-in that answers /api/sync/* from another ledger (no network)."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.address = f"ledger-{ledger.device_id}"

    def get(self, path: str):
        from urllib.parse import parse_qs, urlparse

        url = urlparse(path)
        q = {k: int(v[0]) for k, v in parse_qs(url.query).items()}
        if url.path == "/api/sync/changes":
            return self.ledger.entries_since(q["since"], q.get("limit", 1000))
        if url.path == "/api/sync/ids":
            return {"ids": self.ledger.ids_between(q["low"], q["high"])}
        raise AssertionError(path)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000_000

    def __call__(self) -> int:
        self.now += 1
        return self.now


def _ledger(tmp_path, device_id: int) -> Ledger:
    db = Database(str(tmp_path / f"till{device_id}" / "lanpos.db"))
    db.migrate()
    clock = Clock()
    return Ledger(db, device_id=device_id, clock=clock, audit=AuditLog(device_id, clock))


def _sale(ledger: Ledger, n: int):
    return ledger.new_event("sale.create", {
        "sale_id": f"s{ledger.device_id}-{n}", "receipt_no": f"T{ledger.device_id}-{n:06d}",
        "receipt_seq": n, "device_id": ledger.device_id, "client_ref": None, "cashier": "c",
        "lines": [{"sku": "A", "name": "A", "quantity": 1, "unit_price_cents": 100,
                   "discount_cents": 0, "tax_rate_bp": 700, "total_cents": 100}],
        "subtotal_cents": 100, "discount_cents": 0, "total_cents": 100, "tax_cents": 7,
        "tax_by_rate": {}, "payments": [{"method": "card", "amount_cents": 100}],
        "paid_cents": 100, "change_cents": 0}, "c")


def test_regression_resync_keeps_a_diverged_entry_when_one_later_position_matches(tmp_path):
    """Two sides of a partition sequenced different events at gseq 2 (X on till 1, Y on
    till 2), then both sequenced the same resubmitted event Z at gseq 3. When till 2
    follows till 1 again it must drop Y (back to its outbox) and take X: a single
    matching position (gseq 3 holds Z on both) does not prove the journals share their
    prefix. Found by scripts/chaos.py seed 5: till 2 kept its own gseq 134-135, then
    every sync round died on "UNIQUE constraint failed: journal.event_id" and it never
    converged."""
    a, b, c = _ledger(tmp_path, 1), _ledger(tmp_path, 2), _ledger(tmp_path, 3)
    a.start_sequencing((1, 1))
    a.execute(a.new_event("product.create", {"sku": "A", "name": "A", "price_cents": 100,
                                             "tax_rate_bp": 700, "stock": 10}, "system"))
    b.receive_entries(a.entries_since(0, 10)["entries"])
    # Partition: till 2 becomes master of its side; each side sells on its own.
    b.start_sequencing((2, 2))
    a.execute(_sale(a, 1))                     # X at gseq 2 on till 1
    b.execute(_sale(b, 1))                     # Y at gseq 2 on till 2
    z = _sale(c, 1)                            # till 3's offline sale reaches both masters
    assert a.sequence([z])[0]["gseq"] == 3
    assert b.sequence([z])[0]["gseq"] == 3
    # Heal: till 1 wins; till 2 follows it and pulls.
    b.stop_sequencing()
    pull(b, LedgerPeer(a))
    assert [e for _, e in b.ids_between(0, 10)] == [e for _, e in a.ids_between(0, 10)], \
        "till 2 kept its own gseq 2 although it differs from the master's"
    with b.db.read() as s:
        from app.models import OutboxEvent

        assert s.get(OutboxEvent, b.ids_between(0, 10)[1][1]) is None
