"""/health, products (list, search, get, by barcode, create, edit with base_version), stock."""

from __future__ import annotations

import sqlite3

import pytest

from app.models.db import SCHEMA_VERSION
from tests.integration.conftest import (
    assert_error,
    bearer,
    login,
    movement_sum,
    sell,
    sql,
    state,
    stock_of,
)


# ----------------------------------------------------------------------- health
def test_health_is_public_and_complete(client):
    resp = client.get("/health")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["status"] == "ok"
    assert body["device_id"] == 1
    assert body["role"] == "master" and body["master_id"] == 1
    assert body["epoch"][0] >= 1 and body["epoch"][1] == 1
    assert body["schema_version"] == SCHEMA_VERSION


# ----------------------------------------------------------------------- reading
def test_list_products_with_stock(client, cashier):
    resp = client.get("/api/products", headers=cashier)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["total"] == 81 and body["limit"] == 50 and body["offset"] == 0
    assert len(body["products"]) == 50
    names = [p["name"].lower() for p in body["products"]]
    assert names == sorted(names)
    first = body["products"][0]
    assert {"sku", "name", "barcode", "category", "price_cents", "tax_rate_bp", "active",
            "version", "stock"} <= set(first)
    assert isinstance(first["stock"], int) and isinstance(first["price_cents"], int)


def test_paging_covers_every_product_once(client, cashier):
    seen = []
    for offset in range(0, 100, 30):
        body = client.get(f"/api/products?limit=30&offset={offset}", headers=cashier).get_json()
        seen += [p["sku"] for p in body["products"]]
    assert len(seen) == 81 == len(set(seen))


def test_search_by_name_sku_and_barcode(client, cashier):
    def skus(query):
        resp = client.get("/api/products", headers=cashier, query_string=query)
        assert resp.status_code == 200
        return {p["sku"] for p in resp.get_json()["products"]}

    assert skus({"search": "MILK"}) == {"DAI-001", "DAI-002", "SNK-001"}
    assert skus({"search": "BAK-003"}) == {"BAK-003"}
    assert skus({"search": "4004711104114"}) == {"BAK-003"}
    # LIKE wildcards are literal text: "%" matches the names that contain a percent sign.
    assert skus({"search": "%"}) == {"DAI-001", "DAI-002", "SNK-002"}
    assert skus({"search": "_"}) == set()
    assert skus({"search": "'; DROP TABLE products; --"}) == set()
    assert skus({"category": "Bakery"}) == {f"BAK-00{i}" for i in range(1, 10)}
    assert skus({"category": "Bakery", "search": "bread"}) == {"BAK-001", "BAK-003", "BAK-004",
                                                               "BAK-006"}
    assert skus({"category": "No such"}) == set()


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=abc", "offset=-1", "offset=1.5"])
def test_list_products_bad_paging_is_400(client, cashier, query):
    assert_error(client.get(f"/api/products?{query}", headers=cashier), 400, "VALIDATION_ERROR")


def test_get_product_and_by_barcode(client, cashier):
    resp = client.get("/api/products/BAK-009", headers=cashier)
    assert resp.status_code == 200
    product = resp.get_json()["product"]
    assert product["name"] == "Cinnamon bun" and product["stock"] == 2
    assert product["price_cents"] == 189 and product["tax_rate_bp"] == 700
    assert product["category"] == "Bakery" and product["version"] == 1
    by_code = client.get(f"/api/products/by-barcode/{product['barcode']}", headers=cashier)
    assert by_code.status_code == 200 and by_code.get_json()["product"] == product


def test_unknown_product_and_barcode_are_404(client, cashier):
    err = assert_error(client.get("/api/products/NOPE-1", headers=cashier), 404, "UNKNOWN_SKU")
    assert err["details"] == {"sku": "NOPE-1"}
    assert_error(client.get("/api/products/by-barcode/4006381333931", headers=cashier),
                 404, "UNKNOWN_BARCODE")


@pytest.mark.parametrize("code", ["4004711101374", "4004711101", "abcdefghijklm"])
def test_barcode_lookup_with_wrong_check_digit_is_400(client, cashier, code):
    """A misread scan is reported as such, not as a missing product."""
    err = assert_error(client.get(f"/api/products/by-barcode/{code}", headers=cashier),
                       400, "INVALID_BARCODE")
    assert err["details"]["barcode"] == code


def test_categories(client, cashier):
    resp = client.get("/api/categories", headers=cashier)
    cats = {c["name"]: c["products"] for c in resp.get_json()["categories"]}
    assert len(cats) == 9 and cats["Bakery"] == 9


# ----------------------------------------------------------------------- create
def test_create_product_with_initial_stock(client, node, manager, cashier):
    resp = client.post("/api/products", headers=manager, json={
        "sku": "TEA-100", "name": "Green tea", "price_cents": 349, "barcode": "4006381333931",
        "category": "Tea", "tax_rate_bp": 700, "stock": 12})
    assert resp.status_code == 201
    product = resp.get_json()["product"]
    assert product == {**product, "sku": "TEA-100", "name": "Green tea", "price_cents": 349,
                       "barcode": "4006381333931", "category": "Tea", "tax_rate_bp": 700,
                       "stock": 12, "version": 1, "active": True}
    assert stock_of(client, cashier, "TEA-100") == 12
    assert movement_sum(node, "TEA-100") == 12
    assert sql(node, "SELECT kind, delta FROM stock_movements WHERE sku = 'TEA-100'") == [("receive", 12)]
    assert sql(node, "SELECT user FROM audit_log WHERE action = 'product.created' "
                     "AND details LIKE '%TEA-100%'") == [("manager",)]
    assert "Tea" in {c["name"] for c in client.get("/api/categories", headers=cashier)
                     .get_json()["categories"]}


def test_create_product_defaults(client, manager):
    resp = client.post("/api/products", headers=manager,
                       json={"sku": "MIN-1", "name": "Minimal", "price_cents": 0})
    assert resp.status_code == 201
    p = resp.get_json()["product"]
    assert (p["stock"], p["tax_rate_bp"], p["barcode"], p["category"]) == (0, 0, None, None)


@pytest.mark.parametrize("body,status,code", [
    ({"sku": "BAK-001", "name": "dup", "price_cents": 1}, 409, "DUPLICATE_SKU"),
    ({"sku": "D-2", "name": "dup", "price_cents": 1, "barcode": "4004711101373"}, 409, "DUPLICATE_BARCODE"),
    ({"sku": "D-3", "name": "x", "price_cents": 1, "barcode": "4006381333932"}, 400, "INVALID_BARCODE"),
    ({"sku": "D-3", "name": "x", "price_cents": 1, "barcode": "036000291453"}, 400, "INVALID_BARCODE"),
    ({"sku": "D-4", "name": "x", "price_cents": 1.5}, 400, "VALIDATION_ERROR"),
    ({"sku": "D-4", "name": "x", "price_cents": "150"}, 400, "VALIDATION_ERROR"),
    ({"sku": "D-4", "name": "x", "price_cents": -1}, 400, "VALIDATION_ERROR"),
    ({"sku": "D-4", "name": "x", "price_cents": True}, 400, "VALIDATION_ERROR"),
    ({"sku": "D 4", "name": "x", "price_cents": 1}, 400, "VALIDATION_ERROR"),
    ({"sku": "D-4", "name": "", "price_cents": 1}, 400, "VALIDATION_ERROR"),
    ({"sku": "D-4", "name": "x"}, 400, "VALIDATION_ERROR"),
    ({"sku": "D-4", "name": "x", "price_cents": 1, "tax_rate_bp": 10001}, 400, "VALIDATION_ERROR"),
    ({"sku": "D-4", "name": "x", "price_cents": 1, "stock": -5}, 400, "VALIDATION_ERROR"),
    ({"sku": "D-4", "name": "x", "price_cents": 1, "stock": 2.5}, 400, "VALIDATION_ERROR"),
    ({"sku": "D-4", "name": "x", "price_cents": 1, "version": 7}, 400, "VALIDATION_ERROR"),
])
def test_create_product_bad_input_changes_nothing(client, node, manager, body, status, code):
    before = state(node)
    assert_error(client.post("/api/products", headers=manager, json=body), status, code)
    assert state(node) == before


def test_valid_upc_a_and_ean8_barcodes_are_accepted(client, manager):
    for sku, code in (("UPC-1", "036000291452"), ("EAN8-1", "96385074")):
        resp = client.post("/api/products", headers=manager,
                           json={"sku": sku, "name": sku, "price_cents": 1, "barcode": code})
        assert resp.status_code == 201, resp.get_json()


# ------------------------------------------------------------------------- edit
def test_patch_product_bumps_version_and_audits_price_change(client, node, manager, cashier):
    resp = client.patch("/api/products/BAK-001", headers=manager,
                        json={"base_version": 1, "price_cents": 39, "name": "Bread roll XL"})
    assert resp.status_code == 200
    p = resp.get_json()["product"]
    assert (p["price_cents"], p["name"], p["version"]) == (39, "Bread roll XL", 2)
    assert client.get("/api/products/BAK-001", headers=cashier).get_json()["product"]["price_cents"] == 39
    rows = sql(node, "SELECT user, details FROM audit_log WHERE action = 'price.changed'")
    assert len(rows) == 1 and rows[0][0] == "manager"
    assert '"old_price_cents":35' in rows[0][1].replace(" ", "")
    # New sales use the new price.
    assert sell(client, cashier, [("BAK-001", 2)]).get_json()["total_cents"] == 78


def test_patch_with_stale_base_version_is_409_naming_the_winner(client, node, admin, manager):
    first = client.patch("/api/products/BAK-002", headers=admin, json={"base_version": 1, "price_cents": 90})
    assert first.status_code == 200
    before = sql(node, "SELECT * FROM products WHERE sku = 'BAK-002'")
    err = assert_error(client.patch("/api/products/BAK-002", headers=manager,
                                     json={"base_version": 1, "price_cents": 80}), 409, "CONFLICT")
    details = err["details"]
    assert details["sku"] == "BAK-002"
    assert details["base_version"] == 1 and details["current_version"] == 2
    assert details["winner"]["user"] == "admin" and details["winner"]["event_id"]
    assert details["current"]["price_cents"] == 90
    assert details["yours"] == {"price_cents": 80}
    # The loser changed nothing; the rejection is recorded for the manager to see.
    assert sql(node, "SELECT * FROM products WHERE sku = 'BAK-002'") == before
    conflicts = client.get("/api/conflicts", headers=manager).get_json()["conflicts"]
    assert [c["kind"] for c in conflicts] == ["edit_rejected"]
    assert conflicts[0]["user"] == "manager" and conflicts[0]["sku"] == "BAK-002"


@pytest.mark.parametrize("sku,body,status,code", [
    ("BAK-001", {"price_cents": 1}, 400, "VALIDATION_ERROR"),
    ("BAK-001", {"base_version": 0, "price_cents": 1}, 400, "VALIDATION_ERROR"),
    ("BAK-001", {"base_version": "1", "price_cents": 1}, 400, "VALIDATION_ERROR"),
    ("BAK-001", {"base_version": 1, "price_cents": 0.99}, 400, "VALIDATION_ERROR"),
    ("BAK-001", {"base_version": 1, "barcode": "4004711101374"}, 400, "INVALID_BARCODE"),
    ("BAK-001", {"base_version": 1, "barcode": "4004711102745"}, 409, "DUPLICATE_BARCODE"),
    ("BAK-001", {"base_version": 1, "stock": 100}, 400, "VALIDATION_ERROR"),
    ("NOPE-9", {"base_version": 1, "price_cents": 1}, 404, "UNKNOWN_SKU"),
])
def test_patch_product_bad_input_changes_nothing(client, node, manager, sku, body, status, code):
    before = state(node)
    assert_error(client.patch(f"/api/products/{sku}", headers=manager, json=body), status, code)
    assert state(node) == before


def test_cashier_edits_price_with_manager_approval(client, node, cashier):
    before = state(node)
    assert_error(client.patch("/api/products/BAK-001", headers=cashier, json={
        "base_version": 1, "price_cents": 1, "approver": {"username": "cashier", "pin": "0000"}}),
        403, "FORBIDDEN")
    assert_error(client.patch("/api/products/BAK-001", headers=cashier, json={
        "base_version": 1, "price_cents": 1, "approver": {"username": "manager", "pin": "0001"}}),
        401, "UNAUTHORIZED")
    assert state(node) == before
    resp = client.patch("/api/products/BAK-001", headers=cashier, json={
        "base_version": 1, "price_cents": 30, "approver": {"username": "manager", "pin": "234567"}})
    assert resp.status_code == 200 and resp.get_json()["product"]["price_cents"] == 30


def test_deactivated_product_leaves_the_grid_and_cannot_be_sold(client, node, manager, cashier):
    assert client.patch("/api/products/BAK-001", headers=manager,
                        json={"base_version": 1, "active": False}).status_code == 200
    skus = {p["sku"] for p in client.get("/api/products?limit=500", headers=cashier)
            .get_json()["products"]}
    assert "BAK-001" not in skus
    all_skus = {p["sku"] for p in client.get("/api/products?limit=500&include_inactive=1",
                                             headers=cashier).get_json()["products"]}
    assert "BAK-001" in all_skus
    before = state(node)
    assert_error(sell(client, cashier, [("BAK-001", 1)]), 404, "UNKNOWN_SKU")
    assert state(node) == before


# ------------------------------------------------------------------------ stock
def test_receive_adds_a_movement(client, node, manager, cashier):
    resp = client.post("/api/stock/receive", headers=manager,
                       json={"sku": "BAK-009", "quantity": 10, "reason": "delivery 42"})
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["sku"] == "BAK-009" and body["stock"] == 12 and body["status"] == "online"
    assert stock_of(client, cashier, "BAK-009") == 12
    assert sql(node, "SELECT kind, delta, reason, user FROM stock_movements WHERE sku = 'BAK-009' "
                     "ORDER BY id") == [("receive", 2, "initial stock", "system"),
                                        ("receive", 10, "delivery 42", "manager")]
    assert sql(node, "SELECT COUNT(*) FROM audit_log WHERE action = 'stock.received'") == [(1,)]


def test_adjust_needs_a_reason_and_is_audited(client, node, manager, cashier):
    resp = client.post("/api/stock/adjust", headers=manager,
                       json={"sku": "DAI-003", "quantity": -3, "reason": "damaged in storage"})
    assert resp.status_code == 201 and resp.get_json()["stock"] == 27
    resp = client.post("/api/stock/adjust", headers=manager,
                       json={"sku": "DAI-003", "quantity": 1, "reason": "found one"})
    assert resp.get_json()["stock"] == 28
    rows = sql(node, "SELECT kind, delta, reason FROM stock_movements WHERE sku = 'DAI-003' "
                     "AND kind = 'adjust' ORDER BY id")
    assert rows == [("adjust", -3, "damaged in storage"), ("adjust", 1, "found one")]
    audit = sql(node, "SELECT user, details FROM audit_log WHERE action = 'stock.adjusted'")
    assert len(audit) == 2 and audit[0][0] == "manager" and "damaged in storage" in audit[0][1]


def test_cashier_receives_stock_with_manager_approval(client, cashier):
    resp = client.post("/api/stock/receive", headers=cashier, json={
        "sku": "BAK-001", "quantity": 5, "approver": {"username": "manager", "pin": "234567"}})
    assert resp.status_code == 201 and resp.get_json()["stock"] == 125


@pytest.mark.parametrize("path,body,status,code", [
    ("/api/stock/receive", {"sku": "BAK-001", "quantity": 0}, 400, "VALIDATION_ERROR"),
    ("/api/stock/receive", {"sku": "BAK-001", "quantity": -4}, 400, "VALIDATION_ERROR"),
    ("/api/stock/receive", {"sku": "BAK-001", "quantity": 1.5}, 400, "VALIDATION_ERROR"),
    ("/api/stock/receive", {"sku": "BAK-001", "quantity": "5"}, 400, "VALIDATION_ERROR"),
    ("/api/stock/receive", {"sku": "BAK-001", "quantity": 10**9}, 400, "VALIDATION_ERROR"),
    ("/api/stock/receive", {"sku": "NOPE-1", "quantity": 5}, 404, "UNKNOWN_SKU"),
    ("/api/stock/receive", {"quantity": 5}, 400, "VALIDATION_ERROR"),
    ("/api/stock/adjust", {"sku": "BAK-001", "quantity": -1}, 400, "VALIDATION_ERROR"),
    ("/api/stock/adjust", {"sku": "BAK-001", "quantity": -1, "reason": ""}, 400, "VALIDATION_ERROR"),
    ("/api/stock/adjust", {"sku": "BAK-001", "quantity": -1, "reason": "   "}, 400, "VALIDATION_ERROR"),
    ("/api/stock/adjust", {"sku": "BAK-001", "quantity": 0, "reason": "x"}, 400, "VALIDATION_ERROR"),
    ("/api/stock/adjust", {"sku": "NOPE-1", "quantity": 1, "reason": "x"}, 404, "UNKNOWN_SKU"),
])
def test_stock_bad_input_changes_nothing(client, node, manager, path, body, status, code):
    before = state(node)
    assert_error(client.post(path, headers=manager, json=body), status, code)
    assert state(node) == before


def test_stock_is_the_sum_of_movements(client, node, manager, cashier):
    client.post("/api/stock/receive", headers=manager, json={"sku": "DRK-001", "quantity": 4})
    client.post("/api/stock/adjust", headers=manager,
                json={"sku": "DRK-001", "quantity": -2, "reason": "leaking"})
    sale = sell(client, cashier, [("DRK-001", 5), ("DRK-002", 3)]).get_json()
    client.post(f"/api/sales/{sale['sale_id']}/refund", headers=manager,
                json={"lines": [{"sku": "DRK-001", "quantity": 2}]})
    other = sell(client, cashier, [("DRK-002", 1)]).get_json()
    client.post(f"/api/sales/{other['sale_id']}/void", headers=manager)
    assert stock_of(client, cashier, "DRK-001") == 96 + 4 - 2 - 5 + 2
    assert stock_of(client, cashier, "DRK-002") == 96 - 3
    # For every product: cached stock == SUM(movements) (never an overwritten number).
    rows = sql(node, "SELECT p.sku, p.stock, COALESCE(SUM(m.delta), 0) FROM products p "
                     "LEFT JOIN stock_movements m ON m.sku = p.sku GROUP BY p.sku")
    assert len(rows) == 81
    assert all(stock == total for _, stock, total in rows), [r for r in rows if r[1] != r[2]]
    movements = client.get("/api/stock/DRK-001/movements", headers=manager).get_json()
    assert movements["stock"] == 95
    assert [m["kind"] for m in movements["movements"]] == ["refund", "sale", "adjust", "receive", "receive"]


def test_manager_login_reads_movements(client):
    token = login(client, "manager", "234567")["token"]
    assert client.get("/api/stock/BAK-001/movements", headers=bearer(token)).status_code == 200


# ------------------------------------------------------- search: in-memory index
def _sql_search(node, term: str) -> list[str]:
    like = term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return [s for (s,) in sql(node, "SELECT sku FROM products WHERE active = 1 AND name_lower "
                                    "LIKE ? ESCAPE '\\' ORDER BY name_lower, sku", (f"%{like}%",))]


@pytest.mark.parametrize("term", ["a", "e", "ol", "MILK", "bread", " 1", "g", "%", "1 l",
                                  "ö", "tchen)", "zzz", "o", "5"])
def test_search_index_gives_what_sql_gives(client, node, cashier, term):
    expected = _sql_search(node, term)
    got, offset = [], 0
    while True:
        body = client.get("/api/products", headers=cashier,
                          query_string={"search": term, "limit": 7, "offset": offset}).get_json()
        assert body["total"] == len(expected)
        if not body["products"]:
            break
        got += [p["sku"] for p in body["products"]]
        offset += 7
    assert got == expected


def test_search_index_follows_catalog_changes(client, node, manager, cashier):
    def found(term):
        return [p["sku"] for p in client.get("/api/products", headers=cashier,
                                             query_string={"search": term}).get_json()["products"]]

    def generation():
        return int(sql(node, "SELECT value FROM node_state WHERE key = 'catalog_gen'")[0][0])

    assert found("croissant") == ["BAK-005"]
    gen = generation()
    client.post("/api/products", headers=manager, json={"sku": "CRO-2", "name": "Almond Croissant",
                                                         "price_cents": 199})
    assert found("croissant") == ["CRO-2", "BAK-005"] and generation() > gen
    client.patch("/api/products/BAK-005", headers=manager, json={"base_version": 1, "name": "Kipferl"})
    assert found("croissant") == ["CRO-2"] and found("kipferl") == ["BAK-005"]
    client.patch("/api/products/CRO-2", headers=manager, json={"base_version": 1, "active": False})
    assert found("croissant") == []
    client.patch("/api/products/CRO-2", headers=manager, json={"base_version": 2, "active": True})
    assert found("croissant") == ["CRO-2"]
    # Stock and price do not touch the index, yet the rows returned are current.
    gen = generation()
    client.post("/api/stock/receive", headers=manager, json={"sku": "CRO-2", "quantity": 4})
    client.patch("/api/products/CRO-2", headers=manager, json={"base_version": 3, "price_cents": 249})
    assert generation() == gen
    hit = client.get("/api/products", headers=cashier, query_string={"search": "croiss"}).get_json()
    assert [(p["sku"], p["stock"], p["price_cents"]) for p in hit["products"]] == [("CRO-2", 4, 249)]


def test_search_index_handles_newlines_in_names(client, manager, cashier):
    client.post("/api/products", headers=manager, json={"sku": "NL-1", "name": "two\nlines",
                                                         "price_cents": 1})
    for term in ("two", "lines", "two lines"):
        body = client.get("/api/products", headers=cashier, query_string={"search": term}).get_json()
        assert [p["sku"] for p in body["products"]] == ["NL-1"] and body["total"] == 1
    body = client.get("/api/products", headers=cashier, query_string={"search": "o\nl"}).get_json()
    assert body["total"] == 1  # a term with a newline goes the SQL way, which finds it too


def test_search_without_generation_triggers_falls_back_to_sql(app_factory, data_dir, node, cashier):
    for (name,) in sql(node, "SELECT name FROM sqlite_master WHERE type = 'trigger'"):
        con = sqlite3.connect(node.db.path)
        con.execute(f"DROP TRIGGER {name}")
        con.commit()
        con.close()
    node.db.dispose()
    client = app_factory(data_dir).test_client()
    body = client.get("/api/products", headers=cashier, query_string={"search": "milk"}).get_json()
    assert {p["sku"] for p in body["products"]} == {"DAI-001", "DAI-002", "SNK-001"}


# ------------------------------------------------ issue 12: who approved what
APPROVER = {"username": "manager", "pin": "234567"}


def _journaled(node, event_type):
    import json

    (payload, user), = sql(node, "SELECT payload, user FROM journal WHERE type = ? "
                                 "ORDER BY gseq DESC LIMIT 1", (event_type,))
    return json.loads(payload), user


def _audited(node, action):
    import json

    (details, user), = sql(node, "SELECT details, user FROM audit_log WHERE action = ? "
                                 "ORDER BY ts_ms DESC, seq DESC LIMIT 1", (action,))
    return json.loads(details), user


def test_price_edit_approved_with_a_manager_pin_records_the_approver(client, node, cashier):
    resp = client.patch("/api/products/BAK-001", headers=cashier,
                        json={"base_version": 1, "price_cents": 30, "approver": APPROVER})
    assert resp.status_code == 200, resp.get_json()
    payload, user = _journaled(node, "product.update")
    assert (payload["approver"], user) == ("manager", "cashier")
    details, user = _audited(node, "price.changed")
    assert (details["approver"], user) == ("manager", "cashier")


def test_price_edit_by_a_manager_records_no_approver(client, node, manager):
    assert client.patch("/api/products/BAK-001", headers=manager,
                        json={"base_version": 1, "price_cents": 30}).status_code == 200
    assert _journaled(node, "product.update")[0]["approver"] is None
    details, user = _audited(node, "price.changed")
    assert "approver" in details and details["approver"] is None and user == "manager"


@pytest.mark.parametrize("path,body,action,kind", [
    ("/api/stock/receive", {"sku": "BAK-001", "quantity": 4, "reason": "delivery"},
     "stock.received", "receive"),
    ("/api/stock/adjust", {"sku": "BAK-001", "quantity": -2, "reason": "broken"},
     "stock.adjusted", "adjust"),
])
def test_stock_change_approved_with_a_manager_pin_records_the_approver(
        client, node, cashier, manager, path, body, action, kind):
    resp = client.post(path, headers=cashier, json={**body, "approver": APPROVER})
    assert resp.status_code == 201, resp.get_json()
    payload, user = _journaled(node, f"stock.{kind}")
    assert (payload["approver"], user) == ("manager", "cashier")
    details, user = _audited(node, action)
    assert (details["approver"], user) == ("manager", "cashier")
    assert sql(node, "SELECT user, approved_by FROM stock_movements WHERE kind = ? "
                     "ORDER BY id DESC LIMIT 1", (kind,)) == [("cashier", "manager")]
    movements = client.get("/api/stock/BAK-001/movements", headers=manager).get_json()["movements"]
    assert (movements[0]["user"], movements[0]["approved_by"]) == ("cashier", "manager")
    # A manager acting on their own role: nobody else approved it.
    assert client.post(path, headers=manager, json=body).status_code == 201
    assert sql(node, "SELECT user, approved_by FROM stock_movements WHERE kind = ? "
                     "ORDER BY id DESC LIMIT 1", (kind,)) == [("manager", None)]


def test_another_till_derives_the_approver_from_the_journal(client, node, cashier, tmp_path):
    """The movement's approver comes from the journaled event: a till catching up in bulk
    (apply_many) records it too."""
    from tests.ledgers import journal_at

    for path, qty in (("receive", 3), ("adjust", -1)):
        assert client.post(f"/api/stock/{path}", headers=cashier, json={
            "sku": "BAK-001", "quantity": qty, "reason": "x", "approver": APPROVER}).status_code == 201
    other = journal_at(tmp_path / "other", 2)
    entries = node.journal.store.entries_since(0, 100_000)["entries"]
    assert not other.follower.receive_entries(entries).diverged
    with other.db.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT kind, user, approved_by FROM stock_movements "
                                    "WHERE sku = 'BAK-001' AND kind IN ('receive', 'adjust') "
                                    "ORDER BY id").all()
    assert [tuple(r) for r in rows][-2:] == [("receive", "cashier", "manager"),
                                            ("adjust", "cashier", "manager")]
