"""GET /api/sales/search (the back office's receipts list, issue 17): every filter,
keyset paging while new sales arrive, bad input, and a sale's journal position."""

from __future__ import annotations

import time

import pytest

from tests.integration.conftest import assert_error, sell


def now_ms() -> int:
    return int(time.time() * 1000)


def search(client, headers, **params):
    resp = client.get("/api/sales/search", headers=headers, query_string=params)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    body = resp.get_json()
    assert body["success"] is True
    return body


def receipts(body) -> list[str]:
    return [s["receipt_no"] for s in body["sales"]]


@pytest.fixture
def shop(client, cashier, manager):
    """Four sales of known shape since `since`: two cash by the cashier, one card by the
    manager, one split; returned as {name: sale}."""
    since = now_ms() - 1
    made = {}
    made["bread"] = sell(client, cashier, [("BAK-001", 2)]).get_json()
    price = client.get("/api/products/DRK-003", headers=cashier).get_json()["product"]["price_cents"]
    resp = sell(client, manager, [("DRK-003", 1)], [{"method": "card", "amount_cents": price}])
    assert resp.status_code == 201, resp.get_json()
    made["drink"] = resp.get_json()
    made["mixed"] = sell(client, cashier, [("BAK-001", 1), ("DRK-003", 3)]).get_json()
    total = made["mixed"]["total_cents"]
    resp = sell(client, cashier, [("DRK-003", 3), ("BAK-001", 1)],
                [{"method": "card", "amount_cents": total - 100},
                 {"method": "cash", "amount_cents": 100}])
    assert resp.status_code == 201, resp.get_json()
    made["split"] = resp.get_json()
    for sale in made.values():
        assert sale["success"] is True
    return since, made


def test_newest_first_with_summaries(client, manager, shop):
    since, made = shop
    body = search(client, manager, since_ms=since)
    assert receipts(body) == [made[k]["receipt_no"] for k in ("split", "mixed", "drink", "bread")]
    assert body["next_cursor"] is None
    top = body["sales"][0]
    assert top["methods"] == ["card", "cash"]
    assert top["items"] == 4
    assert top["total_cents"] == made["split"]["total_cents"]
    assert top["device_id"] == made["split"]["sale"]["device_id"]


def test_each_filter(client, manager, shop):
    since, made = shop
    r = {k: v["receipt_no"] for k, v in made.items()}
    assert receipts(search(client, manager, since_ms=since, cashier="manager")) == [r["drink"]]
    assert receipts(search(client, manager, since_ms=since, cashier="cashier")) == \
        [r["split"], r["mixed"], r["bread"]]
    assert receipts(search(client, manager, since_ms=since, method="card")) == [r["split"], r["drink"]]
    assert receipts(search(client, manager, since_ms=since, method="cash")) == \
        [r["split"], r["mixed"], r["bread"]]
    assert receipts(search(client, manager, receipt_no=r["mixed"].lower())) == [r["mixed"]]
    assert receipts(search(client, manager, since_ms=since, sku="BAK-001")) == \
        [r["split"], r["mixed"], r["bread"]]
    assert receipts(search(client, manager, since_ms=since, sku="NOPE-1")) == []
    bread = made["bread"]["total_cents"]
    same = [r[k] for k in ("split", "mixed", "drink", "bread") if made[k]["total_cents"] == bread]
    assert receipts(search(client, manager, since_ms=since, min_cents=bread, max_cents=bread)) == same
    above = [r[k] for k in ("split", "mixed", "drink", "bread") if made[k]["total_cents"] > bread]
    assert receipts(search(client, manager, since_ms=since, min_cents=bread + 1)) == above
    below = [r[k] for k in ("split", "mixed", "drink", "bread") if made[k]["total_cents"] <= bread]
    assert receipts(search(client, manager, since_ms=since, max_cents=bread)) == below
    biggest = max(v["total_cents"] for v in made.values())
    assert receipts(search(client, manager, since_ms=since, min_cents=biggest + 1)) == []
    device = made["bread"]["sale"]["device_id"]
    assert len(search(client, manager, since_ms=since, device_id=device)["sales"]) == 4
    assert search(client, manager, since_ms=since, device_id=device + 1)["sales"] == []
    # the day: since/until bound created_ms, until exclusive
    created = made["drink"]["sale"]["created_ms"]
    day = search(client, manager, since_ms=created, until_ms=made["mixed"]["sale"]["created_ms"])
    assert r["drink"] in receipts(day) and r["mixed"] not in receipts(day)
    assert r["bread"] not in receipts(day) or made["bread"]["sale"]["created_ms"] == created
    # filters combine (AND)
    assert receipts(search(client, manager, since_ms=since, method="card", cashier="cashier",
                           sku="DRK-003")) == [r["split"]]


def test_keyset_pages_have_no_duplicates_and_no_gaps_while_sales_arrive(client, manager, cashier):
    since = now_ms() - 1
    first = [sell(client, cashier, [("BAK-001", 1)]).get_json()["receipt_no"] for _ in range(23)]
    seen: list[str] = []
    cursor = None
    arrived: list[str] = []
    pages = 0
    while True:
        params = {"since_ms": since, "limit": 5}
        if cursor:
            params["cursor"] = cursor
        body = search(client, manager, **params)
        seen += receipts(body)
        pages += 1
        # new sales arrive between pages: they are newer than every cursor, so they
        # belong before page 1 and must neither repeat nor shift a row on later pages
        arrived.append(sell(client, cashier, [("DRK-003", 1)]).get_json()["receipt_no"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 5
    assert len(seen) == len(set(seen)) == 23
    assert seen == list(reversed(first))
    # and from the top again, the new ones lead
    top = receipts(search(client, manager, since_ms=since, limit=200))
    assert top == list(reversed(arrived)) + list(reversed(first))


def test_sales_in_the_same_millisecond_are_ordered_by_sale_id(client, manager, cashier, node):
    since = now_ms() - 1
    for _ in range(6):
        assert sell(client, cashier, [("BAK-001", 1)]).status_code == 201
    con = node.db.engine.raw_connection()
    try:
        con.execute("UPDATE sales SET created_ms = ? WHERE created_ms >= ?", (since + 5, since))
        con.commit()
    finally:
        con.close()
    all_ids = [s["sale_id"] for s in search(client, manager, since_ms=since)["sales"]]
    assert all_ids == sorted(all_ids, reverse=True) and len(all_ids) == 6
    paged: list[str] = []
    cursor = None
    while True:
        body = search(client, manager, since_ms=since, limit=4, **({"cursor": cursor} if cursor else {}))
        paged += [s["sale_id"] for s in body["sales"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert paged == all_ids


@pytest.mark.parametrize("params", [
    {"limit": "0"}, {"limit": "201"}, {"limit": "x"}, {"cursor": "nope"},
    {"cursor": "12.ZZ"}, {"cursor": "1' OR 1=1"}, {"since_ms": "-1"}, {"since_ms": "yesterday"},
    {"since_ms": "2000", "until_ms": "1000"}, {"device_id": "0"}, {"device_id": "T1"},
    {"cashier": "a b"}, {"cashier": "x" * 65}, {"method": "cheque"},
    {"receipt_no": "T1 000001"}, {"receipt_no": "%"}, {"min_cents": "-5"},
    {"min_cents": "1.50"}, {"min_cents": "500", "max_cents": "100"}, {"sku": "a;b"},
    {"sku": "x" * 65}, {"offset": "10"}, {"colour": "red"},
])
def test_bad_input_is_a_400_never_a_500(client, manager, params):
    err = assert_error(client.get("/api/sales/search", headers=manager, query_string=params), 400,
                       "VALIDATION_ERROR")
    assert err["details"]["field"] in params


def test_cashiers_may_not_search(client, cashier):
    assert_error(client.get("/api/sales/search", headers=cashier), 403)
    assert_error(client.get("/api/sales/search"), 401)


def test_journal_position_of_a_sale_and_its_refund(client, manager, cashier, node):
    sale = sell(client, cashier, [("BAK-001", 2)]).get_json()
    sale_id = sale["sale_id"]
    resp = client.post(f"/api/sales/{sale_id}/refund", headers=manager,
                       json={"lines": [{"sku": "BAK-001", "quantity": 1}]})
    assert resp.status_code == 201, resp.get_json()
    refund_id = resp.get_json()["sale"]["refund"]["refund_id"]
    body = client.get(f"/api/sales/{sale_id}/journal", headers=manager).get_json()
    assert body["success"] is True
    journal = body["journal"]
    con = node.db.engine.raw_connection()
    try:
        (gseq, epoch, master), = con.execute(
            "SELECT j.gseq, j.epoch_number, j.epoch_master FROM journal j JOIN sales s"
            " ON s.event_id = j.event_id WHERE s.sale_id = ?", (sale_id,)).fetchall()
        (rgseq,), = con.execute(
            "SELECT j.gseq FROM journal j JOIN refunds r ON r.event_id = j.event_id"
            " WHERE r.refund_id = ?", (refund_id,)).fetchall()
    finally:
        con.close()
    assert (journal["sale"]["gseq"], journal["sale"]["epoch"], journal["sale"]["epoch_master"]) == \
        (gseq, epoch, master)
    assert journal["refunds"][refund_id]["gseq"] == rgseq > gseq
    assert_error(client.get("/api/sales/nope/journal", headers=manager), 404)
    assert_error(client.get(f"/api/sales/{sale_id}/journal", headers=cashier), 403)
