"""The checker must catch what it claims to catch: lost, duplicated and phantom sales,
diverged journals, a refused sale that was journaled, epoch pairs claimed twice.
Synthetic journals on real SQLite files (no processes, fast)."""

from __future__ import annotations

import shutil

from app.services.journal.journal import Journal
from tests.chaos.checker import SALE_CHECKS, check_run, check_sales, fold_stock
from tests.ledgers import journal_at, sale_event


def journal(path, device_id: int) -> Journal:
    return journal_at(path, device_id)


def sale(led: Journal, n: int, ref: str, sku: str = "A"):
    return sale_event(led, n, sku=sku, client_ref=ref, sale_id=f"s{n}")


def op(ref: str, outcome: str, sale_id: str | None = None, http: int | None = 201) -> dict:
    return {"kind": "sale", "till": 1, "client_ref": ref, "outcome": outcome, "sale_id": sale_id,
            "http": http, "t_start": 0.0, "t_end": 0.1, "id": 1}


def test_checker_finds_lost_phantom_refused_and_diverged(tmp_path):
    a = journal(tmp_path / "a", 1)
    a.sequencer.start((1, 1))
    a.execute(a.new_event("product.create", {"sku": "A", "name": "A", "price_cents": 100,
                                             "tax_rate_bp": 700, "stock": 10}, "system"))
    a.execute(sale(a, 1, "ref-ok"))
    a.execute(sale(a, 2, "ref-phantom"))  # nobody sent this one
    a.execute(sale(a, 3, "ref-409"))  # this one was answered 409
    a.db.dispose()
    (tmp_path / "b").mkdir()
    shutil.copyfile(tmp_path / "a" / "lanpos.db", tmp_path / "b" / "lanpos.db")
    b = journal(tmp_path / "b", 2)
    b.sequencer.start((2, 2))
    b.execute(sale(b, 4, "ref-only-b"))  # b's journal diverges from a's
    b.db.dispose()
    history = [op("ref-ok", "ok", "s1"), op("ref-lost", "ok", "s9"), op("ref-409", "fail", http=409),
               op("ref-only-b", "unknown", http=None)]
    res = check_run(tills={1: str(tmp_path / "a" / "lanpos.db"), 2: str(tmp_path / "b" / "lanpos.db")},
                    wiped=[], history=history, faults=[], monitor=[], skewed=set(),
                    verify_audit=False)
    v = res.violations
    assert not res.ok
    assert any("ref-lost" in p for p in v["acknowledged sales present exactly once"])
    assert any("ref-phantom" in p for p in v["no sale that nobody sold"])
    assert any("ref-409" in p for p in v["refused sales absent"])
    assert v["journals identical"]
    assert res.counts["lost"] == 1
    assert v["stock = received - sold + refunded, same everywhere"]  # b sold one more


def test_checker_finds_two_masters_at_one_epoch_and_unrecorded_oversells(tmp_path):
    a = journal(tmp_path / "a", 1)
    a.sequencer.start((1, 1))
    a.execute(a.new_event("product.create", {"sku": "A", "name": "A", "price_cents": 100,
                                             "tax_rate_bp": 700, "stock": 1}, "system"))
    a.db.dispose()
    monitor = [{"t": 1.0, "views": {
        1: {"role": "master", "epoch": [3, 1], "master_id": 1, "state": "online"},
        2: {"role": "master", "epoch": [3, 1], "master_id": 2, "state": "online"}}}]
    res = check_run(tills={1: str(tmp_path / "a" / "lanpos.db")}, wiped=[], history=[],
                    faults=[], monitor=monitor, skewed=set(), verify_audit=False)
    assert res.violations["one master per epoch, epoch pairs never reused"]
    stock, below = fold_stock([(1, "e1", "product.create", {"sku": "A", "stock": 1}, 1, 1),
                               (2, "e2", "sale.create", {"sale_id": "s", "lines": [
                                   {"sku": "A", "quantity": 2}]}, 1, 1)])
    assert stock == {"A": -1} and below == [("e2", "A", 1, 2)]


# ------------------------------------------------------- sales against the history
def _sale(ref: str, sale_id: str) -> dict:
    return {"sale_id": sale_id, "client_ref": ref, "lines": []}


def _unknown(ref: str) -> dict:
    """A request that ended without an answer (kill -9 cut it): Jepsen's :info."""
    return op(ref, "unknown", http=None)


def test_check_sales_an_unknown_outcome_may_be_journaled_once_or_not_at_all():
    """The history of issue 12: the master committed a sale, then `kill -9` cut its
    answer. The sale is journaled (the cashier's retry with the same client_ref finds
    it); that is not a sale nobody was told about."""
    history = [op("ok-1", "ok", "s1"), _unknown("cut-by-kill"), _unknown("never-arrived")]
    journals = {1: [_sale("ok-1", "s1"), _sale("cut-by-kill", "s2")],
                2: [_sale("ok-1", "s1"), _sale("cut-by-kill", "s2")]}
    problems, counts = check_sales(journals, history)
    assert problems == {check: [] for check in SALE_CHECKS}
    assert counts["unknown_resolved_present"] == 1 and counts["unknown_resolved_absent"] == 1


def test_check_sales_an_unknown_outcome_journaled_twice_fails():
    history = [op("ok-1", "ok", "s1"), _unknown("cut-by-kill")]
    journals = {1: [_sale("ok-1", "s1"), _sale("cut-by-kill", "s2"), _sale("cut-by-kill", "s3")]}
    problems, counts = check_sales(journals, history)
    assert problems["acknowledged sales present exactly once"] == [
        "till1: sale cut-by-kill (unknown outcome) journaled 2 times"]
    assert counts["duplicated"] == 1 and counts["unknown_duplicated"] == 1


def test_check_sales_an_acknowledged_sale_missing_or_twice_fails_on_the_till_that_has_it_so():
    history = [op("ok-1", "ok", "s1"), op("ok-2", "ok", "s2")]
    journals = {1: [_sale("ok-1", "s1"), _sale("ok-2", "s2")],
                2: [_sale("ok-1", "s1")],                              # ok-2 lost here
                3: [_sale("ok-1", "s1"), _sale("ok-2", "s2"), _sale("ok-2", "s2")]}
    problems, counts = check_sales(journals, history)
    assert sorted(problems["acknowledged sales present exactly once"]) == [
        "till2: acknowledged sale ok-2 missing", "till3: acknowledged sale ok-2 journaled 2 times"]
    assert counts["lost"] == 1 and counts["duplicated"] == 1


def test_check_sales_refused_never_journaled_and_nothing_else_either():
    history = [op("refused", "fail", http=409), op("bad", "error", http=400),
               op("not-sent", "error", http=None),
               # refused after an unknown first attempt: may still be there once
               _unknown("retried"), op("retried", "fail", http=409)]
    journals = {1: [_sale("refused", "s1"), _sale("bad", "s2"), _sale("not-sent", "s3"),
                    _sale("retried", "s4"), _sale("nobody-sent-this", "s5")]}
    problems, _ = check_sales(journals, history)
    assert sorted(problems["refused sales absent"]) == [
        "till1: sale bad answered ['400'] but journaled",
        "till1: sale not-sent answered ['error'] but journaled",
        "till1: sale refused answered ['409'] but journaled"]
    assert problems["no sale that nobody sold"] == [
        "till1: sale s5 (client_ref nobody-sent-this) was never sent"]
    assert problems["acknowledged sales present exactly once"] == []


def test_check_sales_an_acknowledged_sale_journaled_under_another_sale_id_fails():
    problems, _ = check_sales({1: [_sale("ok-1", "other")]}, [op("ok-1", "ok", "s1")])
    assert problems["acknowledged sales present exactly once"] == [
        "till1: ok-1 acknowledged as {'s1'}, journaled as other"]
