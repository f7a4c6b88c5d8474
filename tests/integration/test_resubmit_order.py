"""A sync round after a partition: the losing tail goes back to the outbox and is
resubmitted before anything is pulled (replication.drop_losing_tail, Outbox.events
paging). Journals on real SQLite files; the peer serves the real page builders."""

from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy import func, select

from app.models import OutboxEvent, Product
from app.services.cluster.runtime import ClusterRuntime
from app.services.cluster.socketio_transport import SocketIoTransport
from app.services.journal.journal import Journal
from app.services.journal.replication import drop_losing_tail, pull
from app.services.journal.write_path import LinkDown
from tests.ledgers import JournalPeer, make_journal, product_event, sale_event


def journal_len(journal: Journal) -> int:
    return journal.store.position()[0]


def outbox_len(journal: Journal) -> int:
    with journal.db.read() as s:
        return s.scalar(select(func.count()).select_from(OutboxEvent))


def healed_pair(tmp_path):
    """Master 1 and till 2 share a catalog; cut off, till 2 sold 3 on its own side while
    the master journaled 5 sales of till 3's (that till 2 has not seen)."""
    master = make_journal(tmp_path, 1)
    master.sequencer.start((1, 1))
    master.execute(product_event(master, stock=100))
    till = make_journal(tmp_path, 2)
    till.follower.receive_entries(master.store.entries_since(0, 10)["entries"])
    till.sequencer.start((2, 2))  # its own side of the partition
    for n in range(1, 4):
        till.execute(sale_event(till, n))
    till.sequencer.stop()
    other = make_journal(tmp_path, 3)
    master.sequencer.sequence([sale_event(other, n) for n in range(1, 6)], from_device=3)
    return master, till


def test_the_losing_tail_goes_to_the_outbox_before_anything_is_pulled(tmp_path):
    master, till = healed_pair(tmp_path)
    peer = JournalPeer(master)
    assert drop_losing_tail(till, peer) == 3
    assert journal_len(till) == 1 and outbox_len(till) == 3
    assert peer.served <= 1  # the check reads one entry, not the 5 it misses
    # Resubmitted first, pulled after: the master journals them after till 3's sales,
    # and the pull brings them back, which empties the outbox.
    acks = master.sequencer.sequence(till.outbox.events(), from_device=2)
    assert [a["status"] for a in acks] == ["accepted"] * 3
    pull(till, peer)
    assert outbox_len(till) == 0
    assert till.store.ids_between(0, 100) == master.store.ids_between(0, 100)
    assert journal_len(till) == 9


def test_a_journal_the_master_extends_is_kept(tmp_path):
    master, till = healed_pair(tmp_path)
    follower = make_journal(tmp_path, 4)
    follower.follower.receive_entries(master.store.entries_since(0, 3)["entries"])
    assert drop_losing_tail(follower, JournalPeer(master)) == 0
    assert journal_len(follower) == 3 and outbox_len(follower) == 0
    empty = make_journal(tmp_path, 5)
    assert drop_losing_tail(empty, JournalPeer(master)) == 0


def test_outbox_pages_cover_the_outbox_once_in_causal_order(tmp_path):
    _master, till = healed_pair(tmp_path)  # no master link: its sales stay offline
    for n in range(4, 13):
        till.execute(sale_event(till, n))
    everything = [e.event_id for e in till.outbox.events(limit=100)]
    assert len(everything) == 9
    paged, after = [], None
    for _ in range(4):  # 2 pages and an empty one; a paging that repeats itself stops too
        page = till.outbox.events(limit=5, after=after)
        if not page:
            break
        paged += [e.event_id for e in page]
        after = page[-1]
    assert paged == everything


def test_a_round_whose_push_fails_still_pulls_the_journal(node, tmp_path, monkeypatch):
    """The round pushes before it pulls; a push that fails (here every submit) must not
    keep the till's journal from catching up. The round still counts as failed."""
    monkeypatch.setattr(node.config, "cluster_secret", "test-secret")
    transport = SocketIoTransport.for_config(node.config, broadcast=lambda *a: None)
    runtime = ClusterRuntime(node, transport, emit_browsers=lambda *a: None)
    monkeypatch.setattr(runtime.sync, "retry_soon", lambda: None)
    till = node.journal
    master = make_journal(tmp_path, 2)
    master.follower.receive_entries(till.store.entries_since(0, 100_000)["entries"])
    till.sequencer.stop()
    master.sequencer.start((9, 2))
    with till.db.read() as s:
        sku = s.scalars(select(Product.sku)).first()
    master.execute(master.new_event("stock.receive", {"sku": sku, "quantity": 5}, "m"))
    till.execute(till.new_event("stock.receive", {"sku": sku, "quantity": 1}, "m"))  # offline

    def refuse(events, timeout):
        raise LinkDown("timed out")

    link = SimpleNamespace(address="master", device_id=2, connected=True, submit=refuse,
                           pages=lambda: JournalPeer(master))
    runtime.links.put(link)
    runtime.core.role, runtime.core.master_id = "client", 2
    runtime.sync.run_round("test")
    assert till.store.position() == master.store.position()
    assert outbox_len(till) == 1                     # not pushed: waits for the next round
    stats = runtime.sync.stats
    assert stats["failed_syncs"] == 1 and stats["successful_syncs"] == 0
