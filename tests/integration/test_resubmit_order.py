"""A sync round after a partition: the losing tail goes back to the outbox and is
resubmitted before anything is pulled (replication.drop_losing_tail, Ledger.outbox_events
paging). Ledgers on real SQLite files; the peer serves the real page builders."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

from sqlalchemy import func, select

from app.models import OutboxEvent
from app.services.ledger import Ledger
from app.services.replication import changes_json, drop_losing_tail, pull
from tests.ledgers import make_ledger, product_event, sale_event


class LedgerPeer:
    """What `HttpPeer.get` returns for /api/sync/changes and /ids, from a ledger in this
    process (the routes call the same functions); counts the entries it served."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.address = f"ledger-{ledger.device_id}"
        self.served = 0

    def get(self, path: str) -> dict:
        url = urlparse(path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/api/sync/changes":
            page = json.loads(changes_json(self.ledger, int(q["since"]), int(q["limit"])))
            self.served += len(page["entries"])
            return page
        if url.path == "/api/sync/ids":
            return {"ids": self.ledger.ids_between(int(q["low"]), int(q["high"]),
                                                   epochs=q.get("epochs") == "1")}
        raise AssertionError(path)


def journal_len(ledger: Ledger) -> int:
    return ledger.position()[0]


def outbox_len(ledger: Ledger) -> int:
    with ledger.db.read() as s:
        return s.scalar(select(func.count()).select_from(OutboxEvent))


def healed_pair(tmp_path):
    """Master 1 and till 2 share a catalog; cut off, till 2 sold 3 on its own side while
    the master journaled 5 sales of till 3's (that till 2 has not seen)."""
    master = make_ledger(tmp_path, 1)
    master.start_sequencing((1, 1))
    master.execute(product_event(master, stock=100))
    till = make_ledger(tmp_path, 2)
    till.receive_entries(master.entries_since(0, 10)["entries"])
    till.start_sequencing((2, 2))  # its own side of the partition
    for n in range(1, 4):
        till.execute(sale_event(till, n))
    till.stop_sequencing()
    other = make_ledger(tmp_path, 3)
    master.sequence([sale_event(other, n) for n in range(1, 6)], from_device=3)
    return master, till


def test_the_losing_tail_goes_to_the_outbox_before_anything_is_pulled(tmp_path):
    master, till = healed_pair(tmp_path)
    peer = LedgerPeer(master)
    assert drop_losing_tail(till, peer) == 3
    assert journal_len(till) == 1 and outbox_len(till) == 3
    assert peer.served <= 1  # the check reads one entry, not the 5 it misses
    # Resubmitted first, pulled after: the master journals them after till 3's sales,
    # and the pull brings them back, which empties the outbox.
    acks = master.sequence(till.outbox_events(), from_device=2)
    assert [a["status"] for a in acks] == ["accepted"] * 3
    pull(till, peer)
    assert outbox_len(till) == 0
    assert till.ids_between(0, 100) == master.ids_between(0, 100)
    assert journal_len(till) == 9


def test_a_journal_the_master_extends_is_kept(tmp_path):
    master, till = healed_pair(tmp_path)
    follower = make_ledger(tmp_path, 4)
    follower.receive_entries(master.entries_since(0, 3)["entries"])
    assert drop_losing_tail(follower, LedgerPeer(master)) == 0
    assert journal_len(follower) == 3 and outbox_len(follower) == 0
    empty = make_ledger(tmp_path, 5)
    assert drop_losing_tail(empty, LedgerPeer(master)) == 0


def test_outbox_pages_cover_the_outbox_once_in_causal_order(tmp_path):
    _master, till = healed_pair(tmp_path)  # no master link: its sales stay offline
    for n in range(4, 13):
        till.execute(sale_event(till, n))
    everything = [e.event_id for e in till.outbox_events(limit=100)]
    assert len(everything) == 9
    paged, after = [], None
    for _ in range(4):  # 2 pages and an empty one; a paging that repeats itself stops too
        page = till.outbox_events(limit=5, after=after)
        if not page:
            break
        paged += [e.event_id for e in page]
        after = page[-1]
    assert paged == everything
