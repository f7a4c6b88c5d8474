"""Checkout: pricing, tax, discounts, payments, receipt numbers, idempotency, stock, refunds, voids."""

from __future__ import annotations

import json
import threading

import pytest

from app.utils.money import round_half_up_div
from tests.integration.conftest import (
    assert_error,
    movement_sum,
    sell,
    sql,
    state,
    stock_of,
)

MANAGER_OK = {"username": "manager", "pin": "234567"}


def cash(amount: int) -> list[dict]:
    return [{"method": "cash", "amount_cents": amount}]


# ----------------------------------------------------------------- happy path
def test_sale_returns_receipt_and_decrements_stock(client, node, cashier):
    resp = sell(client, cashier, [("BAK-001", 3), ("DRK-003", 2)], 500)
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["success"] is True
    assert body["receipt_no"] == "T1-000001"
    assert body["total_cents"] == 3 * 35 + 2 * 159 == 423
    assert body["tax_cents"] == 7 + 51
    assert body["change_cents"] == 77
    assert body["status"] == "online"
    assert len(body["sale_id"]) == 32
    assert stock_of(client, cashier, "BAK-001") == 117
    assert stock_of(client, cashier, "DRK-003") == 58
    sale = client.get(f"/api/sales/{body['sale_id']}", headers=cashier).get_json()["sale"]
    assert sale["receipt_no"] == "T1-000001" and sale["cashier"] == "cashier"
    assert sale["status"] == "completed" and sale["device_id"] == 1
    assert [(line["sku"], line["quantity"], line["unit_price_cents"], line["total_cents"])
            for line in sale["lines"]] == [("BAK-001", 3, 35, 105), ("DRK-003", 2, 159, 318)]
    assert sale["payments"] == [{"method": "cash", "amount_cents": 423, "tendered_cents": 500,
                                 "change_cents": 77}]
    assert sql(node, "SELECT COUNT(*) FROM journal WHERE type = 'sale.create'") == [(1,)]
    assert sql(node, "SELECT user FROM audit_log WHERE action = 'sale.created'") == [("cashier",)]


@pytest.mark.parametrize("lines,payments,extra", [
    ([("BAK-001", 3), ("DRK-003", 2)], cash(500), {}),
    ([("DAI-007", 1)], [{"method": "card", "amount_cents": 349}], {}),
    ([("DAI-007", 2)], [{"method": "card", "amount_cents": 300}, {"method": "cash", "amount_cents": 500}],
     {"client_ref": "compare-0001"}),
    ([{"sku": "BAK-003", "quantity": 2, "discount_cents": 10}, ("DRK-001", 1)], cash(1000),
     {"cart_discount_cents": 7}),
])
def test_sale_in_the_response_is_the_sale_as_stored(client, manager, lines, payments, extra):
    resp = sell(client, manager, lines, payments, **extra)
    assert resp.status_code == 201
    assert resp.get_json()["status"] == "online"
    answered = resp.get_json()["sale"]
    stored = client.get(f"/api/sales/{answered['sale_id']}", headers=manager).get_json()["sale"]
    assert answered == stored


def test_money_in_responses_is_always_integer(client, cashier):
    body = sell(client, cashier, [("DAI-001", 1), ("HOU-001", 1)], 1000).get_json()
    sale = body["sale"]

    def walk(value, path="$"):
        assert not isinstance(value, float), path
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")

    walk(body)
    assert sale["total_cents"] == sum(p["amount_cents"] for p in sale["payments"])


# ----------------------------------------------------------------- tax, rounding
def test_two_tax_rates_rounded_once_per_rate(client, cashier):
    """Per-rate rounding: tax = round_half_up(gross_of_rate * bp / (10000 + bp)), once per rate.

    Rounded line by line the same cart would give 12 + 43 = 55 too, but split 12/43
    instead of 11/44: this cart tells the two rules apart.
    """
    lines = [("BAK-001", 1), ("BAK-002", 1), ("BAK-008", 1),  # 7 %: 35 + 85 + 55 = 175
             ("DRK-001", 1), ("DRK-002", 1), ("DRK-003", 1)]  # 19 %: 59 + 59 + 159 = 277
    body = sell(client, cashier, lines, 452).get_json()
    assert body["total_cents"] == 452 and body["change_cents"] == 0
    sale = body["sale"]
    assert sale["tax_by_rate"] == {
        "700": {"gross_cents": 175, "tax_cents": 11, "net_cents": 164},
        "1900": {"gross_cents": 277, "tax_cents": 44, "net_cents": 233},
    }
    assert body["tax_cents"] == 55
    per_line = {700: sum(round_half_up_div(p * 700, 10700) for p in (35, 85, 55)),
                1900: sum(round_half_up_div(p * 1900, 11900) for p in (59, 59, 159))}
    assert per_line == {700: 12, 1900: 43}  # what per-line rounding would have said


def test_rounding_is_half_up(client, manager, cashier):
    """A 100 % rate makes exact halves: 1 cent gross -> 0.5 tax -> 1; 5 -> 2.5 -> 3."""
    for sku, price in (("HALF-1", 1), ("HALF-5", 5)):
        assert client.post("/api/products", headers=manager, json={
            "sku": sku, "name": sku, "price_cents": price, "tax_rate_bp": 10000,
            "stock": 5}).status_code == 201
    assert sell(client, cashier, [("HALF-1", 1)], 1).get_json()["tax_cents"] == 1
    assert sell(client, cashier, [("HALF-5", 1)], 5).get_json()["tax_cents"] == 3


# ----------------------------------------------------------------- discounts
def test_discount_by_cashier_needs_approval(client, node, cashier):
    before = state(node)
    err = assert_error(sell(client, cashier, [{"sku": "BAK-003", "quantity": 1, "discount_cents": 50}]),
                       400, "APPROVAL_REQUIRED")
    assert err["details"] == {"field": "approver"}
    assert_error(sell(client, cashier, [("BAK-003", 1)], cart_discount_cents=10), 400,
                 "APPROVAL_REQUIRED")
    assert state(node) == before


def test_discount_with_manager_pin_approval(client, node, cashier):
    resp = sell(client, cashier, [{"sku": "BAK-003", "quantity": 2, "discount_cents": 78}], 500,
                approver=MANAGER_OK)
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["total_cents"] == 2 * 289 - 78 == 500
    assert body["tax_cents"] == round_half_up_div(500 * 700, 10700) == 33
    sale = body["sale"]
    assert sale["approver"] == "manager" and sale["cashier"] == "cashier"
    assert sale["discount_cents"] == 78 and sale["subtotal_cents"] == 578
    assert sale["lines"][0]["discount_cents"] == 78
    audit = sql(node, "SELECT user, details FROM audit_log WHERE action = 'sale.created'")
    assert audit[-1][0] == "cashier" and '"approver":"manager"' in audit[-1][1].replace(" ", "")


def test_discount_approver_with_cashier_pin_is_403(client, node, cashier):
    before = state(node)
    err = assert_error(sell(client, cashier, [{"sku": "BAK-003", "quantity": 1, "discount_cents": 10}],
                            approver={"username": "cashier", "pin": "0000"}), 403, "FORBIDDEN")
    assert err["details"] == {"required_role": "manager"}
    assert_error(sell(client, cashier, [{"sku": "BAK-003", "quantity": 1, "discount_cents": 10}],
                      approver={"username": "manager", "pin": "9999"}), 401, "UNAUTHORIZED")
    assert state(node) == before


def test_manager_gives_discounts_without_approver(client, manager):
    resp = sell(client, manager, [("BAK-003", 1), ("DRK-003", 1)], 400, cart_discount_cents=48)
    assert resp.status_code == 201
    sale = resp.get_json()["sale"]
    assert sale["total_cents"] == 289 + 159 - 48 == 400
    # The cart discount is split over the lines in proportion (largest remainder), exactly.
    shares = [line["discount_cents"] for line in sale["lines"]]
    assert sum(shares) == 48 and shares == [31, 17]
    assert [line["total_cents"] for line in sale["lines"]] == [258, 142]
    assert sale["tax_by_rate"] == {
        "700": {"gross_cents": 258, "tax_cents": round_half_up_div(258 * 700, 10700),
                "net_cents": 258 - round_half_up_div(258 * 700, 10700)},
        "1900": {"gross_cents": 142, "tax_cents": round_half_up_div(142 * 1900, 11900),
                 "net_cents": 142 - round_half_up_div(142 * 1900, 11900)},
    }


@pytest.mark.parametrize("lines,extra", [
    ([{"sku": "BAK-003", "quantity": 1, "discount_cents": 290}], {}),
    ([{"sku": "BAK-003", "quantity": 1}], {"cart_discount_cents": 290}),
    ([{"sku": "BAK-003", "quantity": 1, "discount_cents": -1}], {}),
    ([{"sku": "BAK-003", "quantity": 1, "discount_cents": 1.5}], {}),
])
def test_discount_out_of_range_is_400(client, node, manager, lines, extra):
    before = state(node)
    assert_error(sell(client, manager, lines, **extra), 400, "VALIDATION_ERROR")
    assert state(node) == before


# ----------------------------------------------------------------- payments
def test_cash_change(client, cashier):
    body = sell(client, cashier, [("DAI-007", 1)], 2000).get_json()
    assert body["total_cents"] == 349 and body["change_cents"] == 1651
    assert body["sale"]["paid_cents"] == 2000


def test_split_payment_card_then_cash_with_change(client, cashier):
    payments = [{"method": "card", "amount_cents": 300}, {"method": "cash", "amount_cents": 200}]
    body = sell(client, cashier, [("BAK-001", 3), ("DRK-003", 2)], payments).get_json()
    assert body["total_cents"] == 423 and body["change_cents"] == 77
    assert body["sale"]["payments"] == [
        {"method": "card", "amount_cents": 300, "tendered_cents": None, "change_cents": 0},
        {"method": "cash", "amount_cents": 123, "tendered_cents": 200, "change_cents": 77},
    ]


def test_exact_card_payment(client, cashier):
    body = sell(client, cashier, [("DAI-007", 1)], [{"method": "card", "amount_cents": 349}]).get_json()
    assert body["change_cents"] == 0
    assert body["sale"]["payments"][0]["amount_cents"] == 349


@pytest.mark.parametrize("payments", [
    [{"method": "card", "amount_cents": 350}],
    [{"method": "card", "amount_cents": 200}, {"method": "card", "amount_cents": 200}],
])
def test_card_over_payment_is_refused(client, node, cashier, payments):
    before = state(node)
    err = assert_error(sell(client, cashier, [("DAI-007", 1)], payments), 400, "VALIDATION_ERROR")
    assert "card" in err["message"]
    assert state(node) == before


def test_cash_before_card_is_given_back_as_change(client, cashier):
    """The documented rule: a card alone never exceeds what is due; cash gives the change."""
    payments = [{"method": "cash", "amount_cents": 100}, {"method": "card", "amount_cents": 349}]
    body = sell(client, cashier, [("DAI-007", 1)], payments).get_json()
    assert body["change_cents"] == 100
    assert [p["amount_cents"] for p in body["sale"]["payments"]] == [0, 349]


@pytest.mark.parametrize("payments", [
    [{"method": "cash", "amount_cents": 348}],
    [{"method": "card", "amount_cents": 100}, {"method": "cash", "amount_cents": 100}],
])
def test_payment_short_of_total(client, node, cashier, payments):
    before = state(node)
    err = assert_error(sell(client, cashier, [("DAI-007", 1)], payments), 400, "PAYMENT_SHORT")
    assert err["details"]["total_cents"] == 349 and err["details"]["paid_cents"] < 349
    assert state(node) == before


# ------------------------------------------------------------- receipt numbers
def test_receipt_numbers_are_gapless(client, node, cashier):
    numbers = [sell(client, cashier, [("BAK-001", 1)]).get_json()["receipt_no"] for _ in range(3)]
    assert numbers == ["T1-000001", "T1-000002", "T1-000003"]
    # Refused sales consume no number.
    assert_error(sell(client, cashier, [("BAK-009", 99)]), 409, "OUT_OF_STOCK")
    assert_error(sell(client, cashier, [("BAK-001", 1)], 1), 400, "PAYMENT_SHORT")
    assert_error(sell(client, cashier, [("NOPE-1", 1)]), 404, "UNKNOWN_SKU")
    assert sell(client, cashier, [("BAK-001", 1)]).get_json()["receipt_no"] == "T1-000004"
    seqs = [s for (s,) in sql(node, "SELECT receipt_seq FROM sales ORDER BY receipt_seq")]
    assert seqs == [1, 2, 3, 4]


def test_receipt_numbers_stay_gapless_under_concurrency(app, node, cashier):
    results: list[str] = []
    errors: list = []

    def worker():
        client = app.test_client()
        for _ in range(5):
            resp = sell(client, cashier, [("BAK-001", 1)])
            if resp.status_code == 201:
                results.append(resp.get_json()["receipt_no"])
            else:
                errors.append(resp.get_json())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(results) == [f"T1-{i:06d}" for i in range(1, 21)]
    assert movement_sum(node, "BAK-001") == 100


def test_receipt_lookup(client, cashier):
    sale_id = sell(client, cashier, [("BAK-001", 1)]).get_json()["sale_id"]
    resp = client.get("/api/sales/by-receipt/t1-000001", headers=cashier)
    assert resp.status_code == 200 and resp.get_json()["sale"]["sale_id"] == sale_id
    assert_error(client.get("/api/sales/by-receipt/T1-999999", headers=cashier), 404, "NOT_FOUND")


# ------------------------------------------------------------------ idempotency
def test_same_client_ref_twice_sells_once(client, node, cashier):
    first = sell(client, cashier, [("BAK-004", 2)], client_ref="till1-cart-0001")
    assert first.status_code == 201
    second = sell(client, cashier, [("BAK-004", 2)], client_ref="till1-cart-0001")
    assert second.status_code == 200
    a, b = first.get_json(), second.get_json()
    assert b["sale_id"] == a["sale_id"] and b["receipt_no"] == a["receipt_no"] == "T1-000001"
    assert b["total_cents"] == a["total_cents"] and b["duplicate"] is True and a["duplicate"] is False
    assert stock_of(client, cashier, "BAK-004") == 12
    assert sql(node, "SELECT COUNT(*) FROM sales") == [(1,)]
    assert sql(node, "SELECT COUNT(*) FROM journal WHERE type = 'sale.create'") == [(1,)]
    # A retry with a different cart still returns the first sale and sells nothing.
    third = sell(client, cashier, [("BAK-005", 1)], client_ref="till1-cart-0001")
    assert third.status_code == 200 and third.get_json()["sale_id"] == a["sale_id"]
    assert stock_of(client, cashier, "BAK-005") == 40
    # A new client_ref is a new sale.
    assert sell(client, cashier, [("BAK-004", 1)], client_ref="till1-cart-0002").status_code == 201


def test_concurrent_retries_with_one_client_ref_sell_once(app, node, cashier):
    codes: list[int] = []

    def worker():
        resp = sell(app.test_client(), cashier, [("BAK-004", 1)], client_ref="double-tap-0001")
        codes.append(resp.status_code)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(codes) == [200, 200, 200, 201]
    assert sql(node, "SELECT COUNT(*) FROM sales") == [(1,)]
    assert movement_sum(node, "BAK-004") == 13


@pytest.mark.parametrize("ref", ["short", "", "x" * 65, 12345678])
def test_bad_client_ref_is_400(client, node, cashier, ref):
    before = state(node)
    assert_error(sell(client, cashier, [("BAK-001", 1)], client_ref=ref), 400, "VALIDATION_ERROR")
    assert state(node) == before


# -------------------------------------------------------------------- stock
def test_selling_more_than_stock_is_409_out_of_stock(client, node, cashier):
    before = state(node)
    err = assert_error(sell(client, cashier, [("BAK-001", 1), ("BAK-009", 3)]), 409, "OUT_OF_STOCK")
    assert err["details"]["sku"] == "BAK-009"
    assert err["details"]["available"] == 2 and err["details"]["requested"] == 3
    assert state(node) == before  # the whole sale is refused, BAK-001 included
    assert sell(client, cashier, [("BAK-009", 2)]).status_code == 201
    assert stock_of(client, cashier, "BAK-009") == 0
    err = assert_error(sell(client, cashier, [("BAK-009", 1)]), 409, "OUT_OF_STOCK")
    assert err["details"]["available"] == 0


def test_out_of_stock_counts_the_same_sku_on_two_lines(client, node, cashier):
    before = state(node)
    err = assert_error(sell(client, cashier, [("BAK-009", 2), ("BAK-009", 1)]), 409, "OUT_OF_STOCK")
    assert err["details"] == {"sku": "BAK-009", "available": 2, "requested": 3}
    assert state(node) == before


def test_same_sku_on_two_lines_is_one_line_and_void_restocks_all(client, node, cashier, manager):
    resp = sell(client, cashier, [("BAK-005", 1), ("BAK-001", 1), ("BAK-005", 2)])
    assert resp.status_code == 201
    sale = resp.get_json()["sale"]
    assert [(line["sku"], line["quantity"]) for line in sale["lines"]] == [("BAK-005", 3), ("BAK-001", 1)]
    assert sale["total_cents"] == 3 * 119 + 35
    assert stock_of(client, cashier, "BAK-005") == 37
    assert client.post(f"/api/sales/{sale['sale_id']}/void", headers=manager).status_code == 201
    assert stock_of(client, cashier, "BAK-005") == 40
    assert stock_of(client, cashier, "BAK-001") == 120


def test_sold_out_is_broadcast_as_a_critical_event(app, node, cashier):
    seen: list = []
    node.journal.subscribe(seen.extend)
    sell(app.test_client(), cashier, [("DAI-009", 1)])
    assert ("critical_event", {"kind": "sold_out", "sku": "DAI-009", "name": "Camembert 125 g",
                               "stock": 0}) in seen
    assert ("stock_changed", {"sku": "DAI-009", "stock": 0}) in seen


# ------------------------------------------------------------------ refunds
def test_partial_refund_by_line_then_the_rest(client, node, cashier, manager):
    sale = sell(client, cashier, [("BAK-003", 3), ("DRK-003", 1)]).get_json()["sale"]
    sale_id = sale["sale_id"]
    resp = client.post(f"/api/sales/{sale_id}/refund", headers=manager,
                       json={"lines": [{"sku": "BAK-003", "quantity": 1}], "reason": "stale"})
    assert resp.status_code == 201
    body = resp.get_json()["sale"]
    assert body["refund"]["amount_cents"] == 289 and body["refund"]["kind"] == "refund"
    assert body["status"] == "partially_refunded" and body["refunded_cents"] == 289
    assert [line["refunded_qty"] for line in body["lines"]] == [1, 0]
    assert stock_of(client, cashier, "BAK-003") == 16
    # Full refund of what is left (no body).
    resp = client.post(f"/api/sales/{sale_id}/refund", headers=manager)
    assert resp.status_code == 201
    body = resp.get_json()["sale"]
    assert body["status"] == "refunded"
    assert body["refunded_cents"] == sale["total_cents"] == 3 * 289 + 159
    assert stock_of(client, cashier, "BAK-003") == 18 and stock_of(client, cashier, "DRK-003") == 60
    assert len(body["refunds"]) == 2
    assert len(sql(node, "SELECT 1 FROM audit_log WHERE action = 'sale.refunded'")) == 2
    # Nothing left to refund.
    before = state(node)
    assert_error(client.post(f"/api/sales/{sale_id}/refund", headers=manager), 409, "NOTHING_TO_REFUND")
    assert state(node) == before


def test_refunds_of_a_discounted_line_add_up_to_what_was_paid(client, manager):
    sale = sell(client, manager, [{"sku": "BAK-003", "quantity": 3, "discount_cents": 100}]).get_json()
    sale_id = sale["sale_id"]
    assert sale["total_cents"] == 767
    amounts = []
    for _ in range(3):
        resp = client.post(f"/api/sales/{sale_id}/refund", headers=manager,
                           json={"lines": [{"sku": "BAK-003", "quantity": 1}]})
        amounts.append(resp.get_json()["sale"]["refund"]["amount_cents"])
    assert sum(amounts) == 767 and amounts == [256, 255, 256]


def test_over_refund_is_refused(client, node, cashier, manager):
    sale_id = sell(client, cashier, [("BAK-003", 2)]).get_json()["sale_id"]
    client.post(f"/api/sales/{sale_id}/refund", headers=manager,
                json={"lines": [{"sku": "BAK-003", "quantity": 1}]})
    before = state(node)
    err = assert_error(client.post(f"/api/sales/{sale_id}/refund", headers=manager,
                                   json={"lines": [{"sku": "BAK-003", "quantity": 2}]}),
                       409, "OVER_REFUND")
    assert err["details"] == {"sku": "BAK-003", "refundable": 1}
    # Two lines of one sku in a refund request count together.
    assert_error(client.post(f"/api/sales/{sale_id}/refund", headers=manager,
                             json={"lines": [{"sku": "BAK-003", "quantity": 1},
                                             {"sku": "BAK-003", "quantity": 1}]}), 409, "OVER_REFUND")
    assert state(node) == before


@pytest.mark.parametrize("body,status,code", [
    ({"lines": [{"sku": "DRK-001", "quantity": 1}]}, 400, "VALIDATION_ERROR"),
    ({"lines": [{"sku": "BAK-003", "quantity": 0}]}, 400, "VALIDATION_ERROR"),
    ({"lines": [{"sku": "BAK-003", "quantity": -1}]}, 400, "VALIDATION_ERROR"),
    ({"lines": [{"sku": "BAK-003", "quantity": 0.5}]}, 400, "VALIDATION_ERROR"),
    ({"lines": [{"sku": "BAK-003"}]}, 400, "VALIDATION_ERROR"),
    ({"lines": "all"}, 400, "VALIDATION_ERROR"),
    ({"amount_cents": 5}, 400, "VALIDATION_ERROR"),
    ({"refund_to": "bitcoin"}, 400, "VALIDATION_ERROR"),
    ({"refund_to": "CARD"}, 400, "VALIDATION_ERROR"),
    ({"refund_to": 1}, 400, "VALIDATION_ERROR"),
])
def test_refund_bad_input_changes_nothing(client, node, cashier, manager, body, status, code):
    sale_id = sell(client, cashier, [("BAK-003", 2)]).get_json()["sale_id"]
    before = state(node)
    assert_error(client.post(f"/api/sales/{sale_id}/refund", headers=manager, json=body), status, code)
    assert state(node) == before


def test_refund_or_void_of_unknown_sale_is_404(client, node, manager):
    before = state(node)
    assert_error(client.post("/api/sales/0123456789abcdef/refund", headers=manager), 404, "NOT_FOUND")
    assert_error(client.post("/api/sales/0123456789abcdef/void", headers=manager), 404, "NOT_FOUND")
    assert state(node) == before


def test_cashier_refunds_with_manager_approval(client, node, cashier):
    sale_id = sell(client, cashier, [("BAK-003", 1)]).get_json()["sale_id"]
    before = state(node)
    assert_error(client.post(f"/api/sales/{sale_id}/refund", headers=cashier,
                             json={"approver": {"username": "cashier", "pin": "0000"}}), 403, "FORBIDDEN")
    assert state(node) == before
    resp = client.post(f"/api/sales/{sale_id}/refund", headers=cashier, json={"approver": MANAGER_OK})
    assert resp.status_code == 201
    rows = sql(node, "SELECT user, details FROM audit_log WHERE action = 'sale.refunded'")
    assert rows[-1][0] == "cashier" and '"approver":"manager"' in rows[-1][1].replace(" ", "")


# -------------------------------------------------------------------- voids
def test_void_restocks_everything_left_and_blocks_refunds(client, node, cashier, manager):
    sale = sell(client, cashier, [("BAK-003", 3), ("DRK-003", 2)]).get_json()["sale"]
    sale_id = sale["sale_id"]
    client.post(f"/api/sales/{sale_id}/refund", headers=manager,
                json={"lines": [{"sku": "BAK-003", "quantity": 1}]})
    resp = client.post(f"/api/sales/{sale_id}/void", headers=manager, json={"reason": "wrong till"})
    assert resp.status_code == 201
    body = resp.get_json()["sale"]
    assert body["status"] == "voided"
    assert body["refund"]["kind"] == "void" and body["refund"]["amount_cents"] == 2 * 289 + 2 * 159
    assert body["refunded_cents"] == sale["total_cents"]
    assert stock_of(client, cashier, "BAK-003") == 18 and stock_of(client, cashier, "DRK-003") == 60
    assert sql(node, "SELECT kind, delta FROM stock_movements WHERE event_id = "
                     "(SELECT event_id FROM refunds WHERE kind = 'void')") == [("void", 2), ("void", 2)]
    assert len(sql(node, "SELECT 1 FROM audit_log WHERE action = 'sale.voided'")) == 1
    before = state(node)
    assert_error(client.post(f"/api/sales/{sale_id}/refund", headers=manager), 409, "ALREADY_VOIDED")
    assert_error(client.post(f"/api/sales/{sale_id}/refund", headers=manager,
                             json={"lines": [{"sku": "DRK-003", "quantity": 1}]}), 409, "ALREADY_VOIDED")
    assert_error(client.post(f"/api/sales/{sale_id}/void", headers=manager), 409, "ALREADY_VOIDED")
    assert state(node) == before


def test_cashier_voids_with_manager_approval(client, cashier):
    sale_id = sell(client, cashier, [("BAK-003", 1)]).get_json()["sale_id"]
    resp = client.post(f"/api/sales/{sale_id}/void", headers=cashier, json={"approver": MANAGER_OK})
    assert resp.status_code == 201 and resp.get_json()["sale"]["status"] == "voided"


# --------------------------------------------------------------------- lists
def test_list_sales_newest_first_and_by_device(client, cashier):
    ids = [sell(client, cashier, [("BAK-001", 1)]).get_json()["sale_id"] for _ in range(3)]
    body = client.get("/api/sales?limit=2", headers=cashier).get_json()
    assert body["total"] == 3
    assert [s["sale_id"] for s in body["sales"]] == ids[::-1][:2]
    assert body["sales"][0]["lines"] and body["sales"][0]["payments"]
    assert client.get("/api/sales?device_id=1", headers=cashier).get_json()["total"] == 3
    assert client.get("/api/sales?device_id=2", headers=cashier).get_json()["total"] == 0


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=x", "device_id=0", "device_id=abc"])
def test_list_sales_bad_query_is_400(client, cashier, query):
    assert_error(client.get(f"/api/sales?{query}", headers=cashier), 400, "VALIDATION_ERROR")


def test_unknown_sale_is_404(client, cashier):
    assert_error(client.get("/api/sales/nope", headers=cashier), 404, "NOT_FOUND")


# ------------------------------------------------- refunds go back in the sale's tenders
def _refund(client, headers, sale_id, **body):
    resp = client.post(f"/api/sales/{sale_id}/refund", headers=headers, json=body)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["sale"]


def _stored_tenders(node, sale_id):
    return [(method, json.loads(tenders)) for method, tenders in sql(
        node, "SELECT method, tenders FROM refunds WHERE sale_id = ? ORDER BY created_ms, rowid",
        (sale_id,))]


def test_refund_of_a_card_sale_goes_back_to_the_card(client, node, cashier, manager):
    sale_id = sell(client, cashier, [("DAI-007", 1)],
                   [{"method": "card", "amount_cents": 349}]).get_json()["sale_id"]
    body = _refund(client, manager, sale_id)
    assert body["refund"]["method"] == "card"
    assert body["refund"]["tenders"] == [{"method": "card", "amount_cents": 349}]
    assert body["refunds"][0]["tenders"] == [{"method": "card", "amount_cents": 349}]
    assert _stored_tenders(node, sale_id) == [("card", [{"method": "card", "amount_cents": 349}])]
    (payload,), = sql(node, "SELECT payload FROM journal WHERE type = 'sale.refund'")
    assert json.loads(payload)["tenders"] == [{"method": "card", "amount_cents": 349}]
    (details,), = sql(node, "SELECT details FROM audit_log WHERE action = 'sale.refunded'")
    assert json.loads(details)["tenders"] == [{"method": "card", "amount_cents": 349}]
    # The drawer pays out nothing for it.
    report = client.get("/api/reports/day", headers=manager).get_json()["report"]
    assert report["cash"]["refunded_cents"] == 0
    assert {p["method"]: p["refunded_cents"] for p in report["payments"]} == {"card": 349, "cash": 0}


def test_partial_refunds_of_a_split_sale_are_split_in_proportion_and_add_up(client, node,
                                                                            cashier, manager):
    # 3 x 289 = 867: card 500, cash 400 tendered (33 change: cash paid 367).
    sale = sell(client, cashier, [("BAK-003", 3)], [{"method": "card", "amount_cents": 500},
                                                   {"method": "cash", "amount_cents": 400}]).get_json()
    assert sale["total_cents"] == 867 and sale["change_cents"] == 33
    got = []
    for _ in range(3):
        body = _refund(client, manager, sale["sale_id"], lines=[{"sku": "BAK-003", "quantity": 1}])
        got.append(body["refund"]["tenders"])
    # 289 * 500/867 = 166.67, 289 * 367/867 = 122.33: the extra cent to the larger remainder;
    # then 166.5 / 122.5 (a tie): to the earlier payment (the card); the last one is the rest.
    assert got == [[{"method": "card", "amount_cents": 167}, {"method": "cash", "amount_cents": 122}],
                   [{"method": "card", "amount_cents": 167}, {"method": "cash", "amount_cents": 122}],
                   [{"method": "card", "amount_cents": 166}, {"method": "cash", "amount_cents": 123}]]
    assert [m for m, _ in _stored_tenders(node, sale["sale_id"])] == ["split"] * 3
    per_tender = {"card": 0, "cash": 0}
    for tenders in got:
        for t in tenders:
            per_tender[t["method"]] += t["amount_cents"]
    assert per_tender == {"card": 500, "cash": 367}  # exactly what each paid, never more


def test_void_pays_back_the_rest_in_the_sale_tenders(client, node, cashier, manager):
    sale = sell(client, cashier, [("DAI-007", 2)], [{"method": "card", "amount_cents": 300},
                                                   {"method": "cash", "amount_cents": 500}]).get_json()
    _refund(client, manager, sale["sale_id"], lines=[{"sku": "DAI-007", "quantity": 1}])
    resp = client.post(f"/api/sales/{sale['sale_id']}/void", headers=manager)
    assert resp.status_code == 201, resp.get_json()
    tenders = [t for _, ts in _stored_tenders(node, sale["sale_id"]) for t in ts]
    assert sum(t["amount_cents"] for t in tenders if t["method"] == "card") == 300
    assert sum(t["amount_cents"] for t in tenders if t["method"] == "cash") == 398


def test_manager_chooses_another_tender_and_the_rest_never_overpays_a_tender(client, node,
                                                                             cashier, manager):
    # 2 x 349 = 698: card 300, cash 398.
    sale = sell(client, cashier, [("DAI-007", 2)], [{"method": "card", "amount_cents": 300},
                                                   {"method": "cash", "amount_cents": 398}]).get_json()
    # The cashier asks, the manager's PIN approves: all of the first unit back in cash.
    body = _refund(client, cashier, sale["sale_id"], lines=[{"sku": "DAI-007", "quantity": 1}],
                   refund_to="cash", approver=MANAGER_OK)
    assert body["refund"]["tenders"] == [{"method": "cash", "amount_cents": 349}]
    (user, details), = sql(node, "SELECT user, details FROM audit_log WHERE action = 'sale.refunded'")
    details = json.loads(details)
    assert (user, details["approver"], details["refund_to"]) == ("cashier", "manager", "cash")
    # The rest by default: cash has only 49 left to give back, the card takes the other 300.
    body = _refund(client, manager, sale["sale_id"])
    assert body["refund"]["tenders"] == [{"method": "card", "amount_cents": 300},
                                         {"method": "cash", "amount_cents": 49}]


def test_refund_to_card_of_a_cash_sale_when_the_manager_says_so(client, node, cashier, manager):
    sale_id = sell(client, cashier, [("DAI-007", 1)], 500).get_json()["sale_id"]
    body = _refund(client, manager, sale_id, refund_to="card")
    assert body["refund"]["method"] == "card"
    report = client.get("/api/reports/day", headers=manager).get_json()["report"]
    assert report["cash"]["refunded_cents"] == 0
    assert report["cash"]["expected_cents"] == 349
