"""Issue 2, "Bad input": each gets the JSON error shape, a fitting status, and changes nothing.

Every case snapshots the domain state (row counts of every derived table, the journal
and the outbox, plus every product, user and sale row) before and after the request.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import assert_error, bearer, sell, sql, state, stock_of

ONE_MB = 1024 * 1024
SALE = {"lines": [{"sku": "BAK-001", "quantity": 1}],
        "payments": [{"method": "cash", "amount_cents": 100}]}

# (method, path, who, a valid body) for every route that takes a JSON body.
WRITE_ROUTES = [
    ("post", "/api/auth/login", None, {"username": "cashier", "pin": "0000"}),
    ("post", "/api/products", "manager", {"sku": "NEW-1", "name": "x", "price_cents": 1}),
    ("patch", "/api/products/BAK-001", "manager", {"base_version": 1, "price_cents": 40}),
    ("post", "/api/stock/receive", "manager", {"sku": "BAK-001", "quantity": 1}),
    ("post", "/api/stock/adjust", "manager", {"sku": "BAK-001", "quantity": -1, "reason": "x"}),
    ("post", "/api/sales", "cashier", SALE),
    ("post", "/api/sales/{sale}/refund", "manager", {"lines": [{"sku": "BAK-001", "quantity": 1}]}),
    ("post", "/api/sales/{sale}/void", "manager", {"reason": "x"}),
    ("post", "/api/users", "admin", {"username": "neu", "role": "cashier", "pin": "1111"}),
    ("patch", "/api/users/cashier", "admin", {"display_name": "C"}),
]
ROUTE_IDS = [f"{m.upper()} {p}" for m, p, _, _ in WRITE_ROUTES]


@pytest.fixture
def call(client, node, tokens, cashier):
    """call(route, **kwargs) -> response; the sale for refund/void routes exists beforehand."""
    sale_id = sell(client, cashier, [("BAK-001", 2)]).get_json()["sale_id"]

    def _call(route, **kwargs):
        method, path, who, _ = route
        headers = dict(kwargs.pop("headers", {}))
        if who is not None:
            headers.update(bearer(tokens[who]))
        return getattr(client, method)(path.format(sale=sale_id), headers=headers, **kwargs)

    return _call


@pytest.mark.parametrize("route", WRITE_ROUTES, ids=ROUTE_IDS)
def test_valid_body_works(call, route):
    """The control: the same routes accept the valid body (so the refusals below are real)."""
    resp = call(route, json=route[3])
    assert resp.status_code in (200, 201), resp.get_json()


@pytest.mark.parametrize("route", WRITE_ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("raw", ['{"sku": "BAK-001",', "{'sku': 1}", "not json", '{"a": 1}}',
                                 "[" * 50_000 + "]" * 50_000, '{"a": ' + "9" * 5000 + "}"])
def test_malformed_json(call, node, route, raw):
    before = state(node)
    resp = call(route, data=raw, content_type="application/json")
    assert_error(resp, 400, "MALFORMED_JSON")
    assert state(node) == before


@pytest.mark.parametrize("route", WRITE_ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_wrong_content_type(call, node, route, content_type):
    before = state(node)
    resp = call(route, data=json.dumps(route[3]), content_type=content_type)
    assert_error(resp, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert state(node) == before


@pytest.mark.parametrize("route", WRITE_ROUTES, ids=ROUTE_IDS)
def test_one_megabyte_body_is_413(call, node, route):
    before = state(node)
    body = json.dumps({**route[3], "padding": "x" * ONE_MB})
    err = assert_error(call(route, data=body, content_type="application/json"), 413, "PAYLOAD_TOO_LARGE")
    assert "too large" in err["message"]
    assert state(node) == before


@pytest.mark.parametrize("route", WRITE_ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("raw", ["[]", '"text"', "42", "true", "null"])
def test_body_that_is_not_an_object(call, node, route, raw):
    before = state(node)
    err = assert_error(call(route, data=raw, content_type="application/json"), 400)
    assert err["code"] in ("VALIDATION_ERROR", "MALFORMED_JSON")
    assert state(node) == before


@pytest.mark.parametrize("route", WRITE_ROUTES, ids=ROUTE_IDS)
def test_unknown_field_is_refused(call, node, route):
    before = state(node)
    assert_error(call(route, json={**route[3], "is_admin": True}), 400, "VALIDATION_ERROR")
    assert state(node) == before


# ----------------------------------------------------------------- sales body
def _sale(lines=None, payments=None, **extra):
    body = {"lines": lines if lines is not None else SALE["lines"],
            "payments": payments if payments is not None else SALE["payments"]}
    body.update(extra)
    return body


@pytest.mark.parametrize("body", [
    {"payments": SALE["payments"]},
    {"lines": SALE["lines"]},
    _sale(lines=[]),
    _sale(payments=[]),
    _sale(lines=[{"quantity": 1}]),
    _sale(lines=[{"sku": "BAK-001"}]),
    _sale(payments=[{"amount_cents": 100}]),
    _sale(payments=[{"method": "cash"}]),
    _sale(lines=[None]),
    _sale(lines={"sku": "BAK-001", "quantity": 1}),
], ids=["no lines", "no payments", "empty lines", "empty payments", "line without sku",
        "line without quantity", "payment without method", "payment without amount",
        "null line", "lines not a list"])
def test_sale_missing_fields(client, node, cashier, body):
    before = state(node)
    err = assert_error(client.post("/api/sales", headers=cashier, json=body), 400, "VALIDATION_ERROR")
    assert err["details"]["errors"]
    assert state(node) == before


@pytest.mark.parametrize("quantity", [0, -1, -100, 1.5, 0.5, 1.0, "1", True, None, 10_001,
                                      10**6, 10**30, 1e400],
                         ids=lambda q: repr(q)[:12])
def test_sale_bad_quantity(client, node, cashier, quantity):
    before = state(node)
    err = assert_error(client.post("/api/sales", headers=cashier,
                                   json=_sale(lines=[{"sku": "BAK-001", "quantity": quantity}])),
                       400, "VALIDATION_ERROR")
    assert err["details"]["errors"][0]["field"] == "lines.0.quantity"
    assert state(node) == before


@pytest.mark.parametrize("amount", [1.5, 100.0, 0.35, "100", "1,00", None, True, -100, 0, 10**12,
                                    float("nan")],
                         ids=lambda a: repr(a)[:12])
def test_sale_float_or_string_money(client, node, cashier, amount):
    before = state(node)
    body = json.dumps(_sale(payments=[{"method": "cash", "amount_cents": amount}]))
    resp = client.post("/api/sales", headers=cashier, data=body, content_type="application/json")
    err = assert_error(resp, 400, "VALIDATION_ERROR")
    assert err["details"]["errors"][0]["field"] == "payments.0.amount_cents"
    assert state(node) == before


@pytest.mark.parametrize("field,value", [("cart_discount_cents", 1.5), ("cart_discount_cents", "5"),
                                         ("price_cents", 1.99), ("price_cents", "199")])
def test_float_or_string_money_elsewhere(client, node, manager, field, value):
    before = state(node)
    if field == "cart_discount_cents":
        resp = client.post("/api/sales", headers=manager, json=_sale(**{field: value}))
    else:
        resp = client.post("/api/products", headers=manager,
                           json={"sku": "M-1", "name": "m", field: value})
    assert_error(resp, 400, "VALIDATION_ERROR")
    assert state(node) == before


@pytest.mark.parametrize("method", ["bitcoin", "CASH", "", None, 1])
def test_sale_unknown_payment_method(client, node, cashier, method):
    before = state(node)
    assert_error(client.post("/api/sales", headers=cashier,
                             json=_sale(payments=[{"method": method, "amount_cents": 100}])),
                 400, "VALIDATION_ERROR")
    assert state(node) == before


def test_sale_unknown_sku(client, node, cashier):
    before = state(node)
    err = assert_error(client.post("/api/sales", headers=cashier, json=_sale(lines=[
        {"sku": "BAK-001", "quantity": 1}, {"sku": "NO-SUCH-SKU", "quantity": 1}])), 404, "UNKNOWN_SKU")
    assert err["details"]["sku"] == "NO-SUCH-SKU"
    assert state(node) == before


@pytest.mark.parametrize("sku", ["BAK-001' OR '1'='1", "<b>x</b>", "", "x" * 65, "a b", 7])
def test_sale_sku_that_cannot_be_a_sku(client, node, cashier, sku):
    before = state(node)
    assert_error(client.post("/api/sales", headers=cashier,
                             json=_sale(lines=[{"sku": sku, "quantity": 1}])), 400, "VALIDATION_ERROR")
    assert state(node) == before


def test_payment_short_of_total(client, node, cashier):
    before = state(node)
    err = assert_error(client.post("/api/sales", headers=cashier, json=_sale(
        lines=[{"sku": "DAI-007", "quantity": 2}], payments=[{"method": "cash", "amount_cents": 697}])),
        400, "PAYMENT_SHORT")
    assert err["details"] == {"total_cents": 698, "paid_cents": 697}
    assert state(node) == before


def test_too_many_lines_or_payments(client, node, cashier):
    before = state(node)
    assert_error(client.post("/api/sales", headers=cashier, json=_sale(
        lines=[{"sku": "BAK-001", "quantity": 1}] * 201)), 400, "VALIDATION_ERROR")
    assert_error(client.post("/api/sales", headers=cashier, json=_sale(
        payments=[{"method": "cash", "amount_cents": 10}] * 11)), 400, "VALIDATION_ERROR")
    assert state(node) == before


# ---------------------------------------------------------------- barcodes
@pytest.mark.parametrize("barcode", ["4004711101374", "4006381333932", "036000291453", "96385075"])
def test_barcode_with_wrong_check_digit(client, node, manager, cashier, barcode):
    before = state(node)
    err = assert_error(client.post("/api/products", headers=manager, json={
        "sku": "BC-1", "name": "x", "price_cents": 1, "barcode": barcode}), 400, "INVALID_BARCODE")
    assert err["details"] == {"field": "barcode", "barcode": barcode}
    assert_error(client.patch("/api/products/BAK-001", headers=manager,
                              json={"base_version": 1, "barcode": barcode}), 400, "INVALID_BARCODE")
    assert_error(client.get(f"/api/products/by-barcode/{barcode}", headers=cashier), 400,
                 "INVALID_BARCODE")
    assert state(node) == before


# ------------------------------------------------------------ SQL and HTML
NASTY = [
    "Robert'); DROP TABLE products;--",
    "<script>alert('x')</script>",
    "<img src=x onerror=alert(1)> & \"quotes\" 100% _under_",
    "1; DELETE FROM sales WHERE 1=1; --",
]


@pytest.mark.parametrize("text", NASTY)
def test_sql_and_html_in_text_fields_are_stored_and_returned_verbatim(client, node, manager, admin,
                                                                      cashier, text):
    products_before = sql(node, "SELECT COUNT(*) FROM products")[0][0]
    resp = client.post("/api/products", headers=manager, json={
        "sku": "NASTY-1", "name": text, "category": text, "price_cents": 100, "stock": 3})
    assert resp.status_code == 201
    assert resp.content_type == "application/json"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.get_json()["product"]["name"] == text
    assert resp.get_json()["product"]["category"] == text
    # Stored as the very same text (parameters, never string-built SQL); nothing was dropped.
    assert sql(node, "SELECT name FROM products WHERE sku = 'NASTY-1'") == [(text,)]
    assert sql(node, "SELECT COUNT(*) FROM products")[0][0] == products_before + 1
    got = client.get("/api/products/NASTY-1", headers=cashier)
    assert got.get_json()["product"]["name"] == text and got.content_type == "application/json"
    found = client.get("/api/products", headers=cashier, query_string={"search": text}).get_json()
    assert [p["sku"] for p in found["products"]] == ["NASTY-1"]
    # The same in the other free-text fields.
    assert client.post("/api/stock/adjust", headers=manager, json={
        "sku": "NASTY-1", "quantity": -1, "reason": text}).status_code == 201
    assert sql(node, "SELECT reason FROM stock_movements WHERE sku = 'NASTY-1' "
                     "AND kind = 'adjust'") == [(text,)]
    movements = client.get("/api/stock/NASTY-1/movements", headers=manager).get_json()["movements"]
    assert movements[0]["reason"] == text
    assert client.post("/api/users", headers=admin, json={
        "username": "nasty", "display_name": text, "role": "cashier", "pin": "1111"}).status_code == 201
    users = {u["username"]: u["display_name"] for u in client.get("/api/users").get_json()["users"]}
    assert users["nasty"] == text
    sale = sell(client, cashier, [("NASTY-1", 1)]).get_json()["sale"]
    assert sale["lines"][0]["name"] == text
    assert client.post(f"/api/sales/{sale['sale_id']}/void", headers=manager,
                       json={"reason": text}).status_code == 201
    voided = sql(node, "SELECT details FROM audit_log WHERE action = 'sale.voided'")
    assert json.loads(voided[-1][0])["reason"] == text
    assert stock_of(client, cashier, "NASTY-1") == 2
    # Every table is still there and the shop still sells.
    assert sql(node, "SELECT COUNT(*) FROM sales") == [(1,)]
    assert sell(client, cashier, [("BAK-001", 1)]).status_code == 201


def test_audit_text_filter_treats_wildcards_as_text(client, manager):
    body = client.get("/api/audit", headers=manager, query_string={"q": "%"}).get_json()
    assert body["entries"] == []  # no audit detail contains a literal percent sign yet


# ------------------------------------------------------------- auth failures
def test_wrong_pin_changes_nothing(client, node):
    before = state(node)
    assert_error(client.post("/api/auth/login", json={"username": "manager", "pin": "0000"}),
                 401, "UNAUTHORIZED")
    assert state(node) == before


def test_wrong_approver_pin_changes_nothing(client, node, cashier):
    sale_id = sell(client, cashier, [("BAK-001", 1)]).get_json()["sale_id"]
    before = state(node)
    assert_error(client.post(f"/api/sales/{sale_id}/void", headers=cashier,
                             json={"approver": {"username": "manager", "pin": "0000"}}),
                 401, "UNAUTHORIZED")
    assert state(node) == before


def test_expired_token_changes_nothing(client, node, manager, clock):
    clock.advance(node.config.session_ttl)
    before = state(node)
    err = assert_error(client.post("/api/stock/receive", headers=manager,
                                   json={"sku": "BAK-001", "quantity": 5}), 401, "UNAUTHORIZED")
    assert err["details"] == {"expired": True}
    assert state(node) == before


def test_forged_token_changes_nothing(client, node):
    before = state(node)
    assert_error(client.post("/api/products", headers=bearer("x" * 43),
                             json={"sku": "F-1", "name": "f", "price_cents": 1}), 401, "UNAUTHORIZED")
    assert state(node) == before


def test_cashier_on_manager_route_changes_nothing(client, node, cashier):
    before = state(node)
    assert_error(client.post("/api/products", headers=cashier,
                             json={"sku": "F-1", "name": "f", "price_cents": 1}), 403, "FORBIDDEN")
    assert_error(client.post("/api/stock/receive", headers=cashier,
                             json={"sku": "BAK-001", "quantity": 5}), 403, "FORBIDDEN")
    assert state(node) == before


# ------------------------------------------------------------- HTTP level
def test_unknown_api_route_and_wrong_method_are_json(client, cashier):
    assert_error(client.get("/api/nothing-here", headers=cashier), 404, "NOT_FOUND")
    assert_error(client.delete("/api/sales", headers=cashier), 405, "METHOD_NOT_ALLOWED")
    assert_error(client.put("/api/products/BAK-001", headers=cashier, json={}), 405)


# ------------------------------------------- issue 12: null fields, bounds, sockets
@pytest.mark.parametrize("field", ["name", "price_cents", "tax_rate_bp", "low_stock_threshold",
                                   "active"])
def test_product_edit_with_null_for_a_required_field_is_400(client, node, manager, field):
    before = state(node)
    err = assert_error(client.patch("/api/products/BAK-001", headers=manager,
                                    json={"base_version": 1, field: None}), 400, "VALIDATION_ERROR")
    assert err["details"]["errors"][0]["field"] == field
    assert state(node) == before


@pytest.mark.parametrize("field", ["display_name", "role", "active"])
def test_user_edit_with_null_for_a_required_field_is_400(client, node, admin, field):
    before = state(node)
    err = assert_error(client.patch("/api/users/cashier", headers=admin, json={field: None}),
                       400, "VALIDATION_ERROR")
    assert err["details"]["errors"][0]["field"] == field
    assert state(node) == before


def test_product_edit_null_still_clears_the_optional_fields(client, manager):
    """The control: barcode and category may be cleared with null (they are optional)."""
    resp = client.patch("/api/products/BAK-001", headers=manager,
                        json={"base_version": 1, "barcode": None, "category": None})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["product"]["barcode"] is None
    assert resp.get_json()["product"]["category"] is None


@pytest.mark.parametrize("cursor", [f"{2**63}.1.1", f"1.{2**63}.1", f"1.1.{2**63}",
                                    f"1.1.{10**30}", "-1.1.1", "1.1.-5"])
def test_audit_cursor_out_of_range_is_400(client, node, manager, cursor):
    before = state(node)
    err = assert_error(client.get("/api/audit", headers=manager, query_string={"before": cursor}),
                       400, "VALIDATION_ERROR")
    assert err["details"] == {"field": "before"}
    assert state(node) == before


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "1969-12-31"])
def test_report_day_outside_the_calendar_range_is_400(client, node, manager, day):
    before = state(node)
    err = assert_error(client.get("/api/reports/day", headers=manager, query_string={"date": day}),
                       400, "VALIDATION_ERROR")
    assert err["details"] == {"field": "date"}
    assert "between" in err["message"]
    assert state(node) == before


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
def test_z_close_of_a_day_outside_the_calendar_range_is_400(client, node, manager, day):
    before = state(node)
    audit_rows = sql(node, "SELECT COUNT(*) FROM audit_log")
    err = assert_error(client.post("/api/reports/day/close", headers=manager, json={"date": day}),
                       400, "VALIDATION_ERROR")
    assert err["details"] == {"field": "date"}
    assert "between" in err["message"]
    assert state(node) == before
    assert sql(node, "SELECT COUNT(*) FROM audit_log") == audit_rows


def test_movements_of_an_unknown_sku_are_404(client, node, manager):
    err = assert_error(client.get("/api/stock/NO-SUCH-SKU/movements", headers=manager), 404,
                       "UNKNOWN_SKU")
    assert err["details"] == {"sku": "NO-SUCH-SKU"}
    assert client.get("/api/stock/BAK-001/movements", headers=manager).status_code == 200


def _refusals(node, action):
    return [json.loads(d) for (d,) in sql(
        node, "SELECT details FROM audit_log WHERE action = ? ORDER BY ts_ms, seq", (action,))]


def _from(app, address):
    """A Flask test client whose requests (and so sockets) come from `address`."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _fake_refusal_clock(node):
    from app.services.refusals import RefusalLimiter
    from tests.integration.conftest import FakeClock

    clock = FakeClock(start_ms=1_000_000)
    node.refusals = RefusalLimiter(clock=clock)
    return clock


@pytest.mark.parametrize("auth", [{"token": 12345}, {"token": ["x"]}, {"token": "\ud800"},
                                  {"token": "ab\ud83d"}, "a-token-as-a-bare-string"],
                         ids=["int token", "list token", "lone surrogate",
                              "half a surrogate pair", "bare string"])
def test_browser_socket_with_malformed_auth_is_refused_and_audited_once_a_minute(
        app, node, caplog, auth):
    from app.extensions import socketio

    clock = _fake_refusal_clock(node)
    before = state(node)
    with caplog.at_level("WARNING"):
        for _ in range(3):
            assert not socketio.test_client(app, auth=auth,
                                            flask_test_client=_from(app, "10.0.0.66")).is_connected()
        assert not socketio.test_client(app, auth=auth,
                                        flask_test_client=_from(app, "10.0.0.67")).is_connected()
        assert [r["from"] for r in _refusals(node, "socket.refused")] == ["10.0.0.66", "10.0.0.67"]
        clock.advance(61)
        assert not socketio.test_client(app, auth=auth,
                                        flask_test_client=_from(app, "10.0.0.66")).is_connected()
    refused = _refusals(node, "socket.refused")
    assert [r["from"] for r in refused] == ["10.0.0.66", "10.0.0.67", "10.0.0.66"]
    assert all(r["reason"] for r in refused)
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)
    assert state(node) == before


def test_browser_socket_with_a_good_token_still_connects(app, tokens):
    from app.extensions import socketio

    sock = socketio.test_client(app, auth={"token": tokens["cashier"]})
    assert sock.is_connected()
    assert any(m["name"] == "cluster_status" for m in sock.get_received())
    sock.disconnect()


@pytest.fixture
def runtime(node):
    """A cluster runtime on the test node, not started (no threads, no peers)."""
    from app.services.cluster.runtime import ClusterRuntime
    from app.services.cluster.socketio_transport import SocketIoTransport

    transport = SocketIoTransport.for_config(node.config, broadcast=lambda *_: None)
    rt = ClusterRuntime(node, transport, emit_browsers=lambda *_: None)
    node.cluster = rt
    yield rt
    node.cluster = None


@pytest.mark.parametrize("auth", [{"body": "{}", "sig": "\ud800"},
                                  {"body": "\ud800", "sig": "00"},
                                  {"body": '{"device_id": 2}', "sig": 5},
                                  {"token": 12345}, "\udfff"],
                         ids=["surrogate sig", "surrogate body", "number sig", "int token",
                              "bare surrogate"])
def test_node_socket_with_malformed_auth_is_refused_and_audited_once_a_minute(
        app, node, runtime, caplog, auth):
    from app.extensions import socketio
    from app.services.cluster.socketio_transport import NODE_NS

    clock = _fake_refusal_clock(node)
    before = state(node)
    with caplog.at_level("WARNING"):
        for _ in range(3):
            assert not socketio.test_client(app, namespace=NODE_NS, auth=auth).is_connected(NODE_NS)
        assert len(_refusals(node, "node.refused")) == 1
        clock.advance(61)
        assert not socketio.test_client(app, namespace=NODE_NS, auth=auth).is_connected(NODE_NS)
    assert len(_refusals(node, "node.refused")) == 2
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)
    assert state(node) == before


def test_node_heartbeat_without_an_envelope_is_refused(app, node, runtime, caplog):
    """A peer that connected properly, then emits `heartbeat` with no argument."""
    from app.extensions import socketio
    from app.services.cluster.socketio_transport import NODE_NS

    _fake_refusal_clock(node)
    sock = socketio.test_client(app, namespace=NODE_NS, auth=runtime.transport.connect_auth())
    assert sock.is_connected(NODE_NS)
    with caplog.at_level("WARNING"):
        for _ in range(3):
            assert sock.emit("heartbeat", namespace=NODE_NS, callback=True) == []  # no answer
    assert [r["reason"] for r in _refusals(node, "node.refused")] == [
        "unsigned or wrongly signed heartbeat"]
    assert not any(r.exc_info for r in caplog.records)
    sock.disconnect(namespace=NODE_NS)


class _AckingLink:
    """A peer link whose peer answers every heartbeat with the given ack arguments, the way
    python-socketio calls an emit's callback: `callback(*ack_arguments)`."""

    def __init__(self, address, ack_args):
        self.address, self.ack_args, self.device_id, self.sent = address, ack_args, None, 0

    def emit(self, event, data, callback=None):
        self.sent += 1
        callback(*self.ack_args)
        return True


@pytest.mark.parametrize("ack_args", [(), ("one", "two")], ids=["empty ack", "two arguments"])
def test_peer_answering_heartbeats_with_a_bad_ack_is_refused_once_a_minute(
        node, runtime, caplog, ack_args):
    clock = _fake_refusal_clock(node)
    rogue, other = _AckingLink("10.0.0.66:5000", ack_args), _AckingLink("10.0.0.67:5000", ack_args)
    envelope = runtime.transport.seal({"hb": {}})
    with caplog.at_level("WARNING"):
        for _ in range(329):
            runtime.heartbeats.send([rogue], envelope)
        runtime.heartbeats.send([other], envelope)
        assert [r["from"] for r in _refusals(node, "node.refused")] == [rogue.address, other.address]
        clock.advance(59)
        runtime.heartbeats.send([rogue], envelope)
        assert len(_refusals(node, "node.refused")) == 2
        clock.advance(2)
        runtime.heartbeats.send([rogue], envelope)
    refused = _refusals(node, "node.refused")
    assert [r["from"] for r in refused] == [rogue.address, other.address, rogue.address]
    assert f"{len(ack_args)} arguments" in refused[0]["reason"]
    assert rogue.sent == 331
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)
