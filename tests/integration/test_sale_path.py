"""The sale path, fast (issue 13): what a checkout costs the database, and who waits for whom.

Behaviour, not time: the statements and commits of one sale at a till that journals it
itself (a budget that fails when a query comes back), and cashiers at a till whose
master is slow waiting for it together (a barrier in the master link that only opens
when all of them are in flight at once), with receipt numbers still gapless and
reserved durably before a sale leaves the till.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import event

from app.services.journal.sequencer import refused_ack
from app.services.journal.state_machine import Refusal
from app.services.journal.write_path import LinkDown
from tests.integration.conftest import sell, sql

# One sale at a till that sequences it itself, as SQLite runs it: 1 read for the session,
# 2 for the shop (client_ref + receipt number, products), then ONE write transaction: the
# journal's last entry, admission (event ids held, products, the outbox's stock, sales on
# file), the audit entry (head, row, heads), the journal row, the sale, its payment, the
# HLC (12 in all), and per line a sale line, a stock movement and the stock update
# (admission's reads are reused by the applier). Before issue 13 a 2-line sale took 34
# statements (22 through the ORM) in two write transactions. Raise it only with a reason.
STATEMENTS_PER_SALE = 15
STATEMENTS_PER_LINE = 3


class _Counter:
    """Every statement SQLite runs on the node's connections, from sqlite3's trace callback
    (the sale path skips SQLAlchemy's execution machinery, so its events would miss them):
    pooled connections are dropped and every new one traced while counting."""

    def __init__(self, engine: Any):
        self.engine = engine
        self.statements: list[str] = []
        self.counting = False

    def _trace(self, statement: str) -> None:
        if self.counting:
            self.statements.append(statement.strip())

    def _connected(self, dbapi_conn, _record):  # noqa: ANN001
        dbapi_conn.set_trace_callback(self._trace)

    def __enter__(self) -> "_Counter":
        self.engine.dispose()
        event.listen(self.engine, "connect", self._connected)
        self.counting = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.counting = False
        event.remove(self.engine, "connect", self._connected)

    @property
    def commits(self) -> int:
        return sum(1 for s in self.statements if s.upper() == "COMMIT")

    @property
    def begins(self) -> list[str]:
        return [s for s in self.statements if s.upper().startswith("BEGIN")]

    @property
    def work(self) -> list[str]:
        """What the sale asked SQLite for: no transaction control, no trigger bodies."""
        return [s for s in self.statements if not s.startswith("--")
                and s.split()[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK")]


def test_a_sale_at_its_own_master_costs_one_commit_and_a_budget_of_statements(client, node, cashier):
    assert sell(client, cashier, [("BAK-001", 1)]).status_code == 201  # warm caches
    with _Counter(node.db.engine) as seen:
        resp = sell(client, cashier, [("BAK-001", 2), ("DRK-003", 1)], client_ref="budget-0001")
    assert resp.status_code == 201, resp.get_json()
    # Two reads (the session, the shop), one write transaction, one commit (fsync).
    assert seen.begins == ["BEGIN", "BEGIN", "BEGIN IMMEDIATE"], seen.statements
    assert seen.commits == 1, seen.statements
    budget = STATEMENTS_PER_SALE + 2 * STATEMENTS_PER_LINE
    assert len(seen.work) <= budget, "\n".join(seen.work)
    # ... and that one transaction holds everything: journal entry, sale, audit entry.
    body = resp.get_json()
    assert sql(node, "SELECT COUNT(*) FROM journal WHERE event_id = (SELECT event_id FROM sales "
                     "WHERE sale_id = ?)", (body["sale_id"],)) == [(1,)]
    assert sql(node, "SELECT COUNT(*) FROM audit_log WHERE action = 'sale.created' AND "
                     "json_extract(details, '$.sale_id') = ?", (body["sale_id"],)) == [(1,)]
    # The number lives in the sale's row: nothing was reserved apart from it.
    assert sql(node, "SELECT value FROM node_state WHERE key = 'receipt_seq_reserved'") == []


class _SlowMaster:
    """A master link that holds every submission until `parties` are in flight at once:
    if the till sent its sales one at a time, the barrier times out (LinkDown: the sale
    goes offline, and the test sees it)."""

    master_id = 2

    def __init__(self, node: Any, parties: int, *, refuse_seq: int | None = None):
        self.node = node
        self.barrier = threading.Barrier(parties, timeout=10)
        self.refuse_seq = refuse_seq
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.gseq = 1000
        self.reserved_when_sent: list[tuple[int, int]] = []

    def submit(self, events: list[dict], timeout: float) -> list[dict]:
        ev = events[0]
        seq = ev["payload"]["receipt_seq"]
        reserved = sql(self.node, "SELECT value FROM node_state WHERE key = 'receipt_seq_reserved'")
        with self.lock:
            self.reserved_when_sent.append((seq, int(reserved[0][0]) if reserved else 0))
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            raise LinkDown("the other sales never came") from None
        finally:
            with self.lock:
                self.in_flight -= 1
        if seq == self.refuse_seq:
            return [refused_ack(_Ev(ev["event_id"]), Refusal(
                "OUT_OF_STOCK", "only 0 of BAK-001 in stock, 1 requested",
                {"sku": "BAK-001", "available": 0, "requested": 1}))]
        with self.lock:
            self.gseq += 1
            return [{"status": "accepted", "event_id": ev["event_id"], "gseq": self.gseq}]


class _Ev:
    def __init__(self, event_id: str):
        self.event_id = event_id


class _Follower:
    """The cluster as a follower sees it: a master elsewhere, reached over `link`."""

    def __init__(self, link: _SlowMaster):
        self.link = link

    def lease_live(self) -> bool:
        return False

    def isolated(self) -> bool:
        return False

    def master_link(self) -> _SlowMaster:
        return self.link


def _as_follower(node: Any, link: _SlowMaster) -> None:
    node.journal.sequencer.stop()
    node.journal.attach_cluster(_Follower(link))


def _sell_at_once(app: Any, cashier: dict, n: int) -> list[Any]:
    answers: list[Any] = [None] * n

    def cashier_at_the_till(k: int) -> None:
        answers[k] = sell(app.test_client(), cashier, [("BAK-001", 1)])

    threads = [threading.Thread(target=cashier_at_the_till, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return answers


def test_four_cashiers_at_a_follower_wait_for_a_slow_master_together(app, node, cashier):
    link = _SlowMaster(node, parties=4)
    _as_follower(node, link)
    answers = _sell_at_once(app, cashier, 4)
    assert [a.status_code for a in answers] == [201] * 4, [a.get_json() for a in answers]
    assert {a.get_json()["status"] for a in answers} == {"online"}
    assert link.most_in_flight == 4  # nobody held a lock across the master round trip
    receipts = sorted(a.get_json()["receipt_no"] for a in answers)
    assert receipts == [f"T1-{i:06d}" for i in range(1, 5)]
    # Every number was durable here before its sale left the till.
    assert all(reserved >= seq for seq, reserved in link.reserved_when_sent), link.reserved_when_sent
    assert sql(node, "SELECT value FROM node_state WHERE key = 'receipt_seq_reserved'") == [("4",)]
    assert sql(node, "SELECT COUNT(*) FROM sales") == [(4,)]


def test_a_number_refused_while_a_later_one_was_in_flight_is_the_next_one_given(app, node, cashier):
    link = _SlowMaster(node, parties=2, refuse_seq=1)
    _as_follower(node, link)
    answers = _sell_at_once(app, cashier, 2)
    assert sorted(a.status_code for a in answers) == [201, 409]
    assert link.most_in_flight == 2
    # T1-000002 was sold while T1-000001 was refused: 1 is free, and is the next one.
    link.barrier = threading.Barrier(1)
    link.refuse_seq = None
    third = sell(app.test_client(), cashier, [("BAK-001", 1)])
    fourth = sell(app.test_client(), cashier, [("BAK-001", 1)])
    assert (third.get_json()["receipt_no"], fourth.get_json()["receipt_no"]) == ("T1-000001",
                                                                                "T1-000003")
    assert sql(node, "SELECT receipt_seq FROM sales ORDER BY receipt_seq") == [(1,), (2,), (3,)]


def test_the_newest_number_refused_goes_back_and_its_reservation_too(app, node, cashier):
    link = _SlowMaster(node, parties=1, refuse_seq=1)
    _as_follower(node, link)
    resp = sell(app.test_client(), cashier, [("BAK-001", 1)])
    assert resp.status_code == 409
    assert sql(node, "SELECT value FROM node_state WHERE key = 'receipt_seq_reserved'") == [("0",)]
    link.refuse_seq = None
    assert sell(app.test_client(), cashier, [("BAK-001", 1)]).get_json()["receipt_no"] == "T1-000001"


@pytest.mark.parametrize("repeats", [4])
def test_repeats_of_one_client_ref_at_a_follower_sell_once(app, node, cashier, repeats):
    link = _SlowMaster(node, parties=1)
    _as_follower(node, link)
    answers: list[Any] = []

    def tap() -> None:
        answers.append(sell(app.test_client(), cashier, [("BAK-001", 1)],
                            client_ref="double-tap-0001"))

    threads = [threading.Thread(target=tap) for _ in range(repeats)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(a.status_code for a in answers) == [200] * (repeats - 1) + [201]
    assert len({a.get_json()["sale_id"] for a in answers}) == 1
    assert len(link.reserved_when_sent) == 1  # one submission to the master
    assert sql(node, "SELECT COUNT(*) FROM sales") == [(1,)]
