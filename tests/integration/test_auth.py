"""Login, lockout, sessions (expiry, logout, forged tokens), cookie + CSRF, users, roles."""

from __future__ import annotations

import pytest

from app.services import users as users_service
from tests.integration.conftest import (
    DEMO_PINS,
    assert_error,
    bearer,
    login,
    sell,
    sql,
    state,
)


def audit_actions(node, action: str) -> list[tuple]:
    return sql(node, "SELECT user, details FROM audit_log WHERE action = ? ORDER BY seq", (action,))


# ---------------------------------------------------------------------------- login
def test_login_returns_token_user_and_session_cookie(client, node):
    before = len(audit_actions(node, "login.success"))
    resp = client.post("/api/auth/login", json={"username": "manager", "pin": "2345"})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["success"] is True
    assert len(body["token"]) >= 32 and body["csrf_token"]
    assert body["user"] == {"username": "manager", "display_name": "Max Manager",
                            "role": "manager", "active": True}
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("lanpos_session=" + body["token"])
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    # The token works, and only its sha256 is stored.
    me = client.get("/api/auth/me", headers=bearer(body["token"]))
    assert me.status_code == 200 and me.get_json()["user"]["username"] == "manager"
    assert sql(node, "SELECT COUNT(*) FROM auth_sessions WHERE token_hash = ?", (body["token"],)) == [(0,)]
    assert len(audit_actions(node, "login.success")) == before + 1


@pytest.mark.parametrize("username,pin", [("cashier", "9999"), ("nobody", "0000")])
def test_wrong_pin_or_unknown_user_is_401_and_creates_no_session(client, node, username, pin):
    sessions = sql(node, "SELECT COUNT(*) FROM auth_sessions")
    failed = len(audit_actions(node, "login.failed"))
    before = state(node)
    resp = client.post("/api/auth/login", json={"username": username, "pin": pin})
    err = assert_error(resp, 401, "UNAUTHORIZED")
    assert err["message"] == "wrong username or PIN"  # same text: no user enumeration
    assert err["details"]["attempts_left"] == 4
    assert "Set-Cookie" not in resp.headers
    assert sql(node, "SELECT COUNT(*) FROM auth_sessions") == sessions
    assert state(node) == before
    rows = audit_actions(node, "login.failed")
    assert len(rows) == failed + 1 and rows[-1][0] == username


@pytest.mark.parametrize("body", [
    {"username": "cashier"},
    {"pin": "0000"},
    {"username": "cashier", "pin": 0},
    {"username": "cashier", "pin": "0000", "role": "admin"},
    {"username": "", "pin": "0000"},
])
def test_login_body_is_validated(client, body):
    assert_error(client.post("/api/auth/login", json=body), 400, "VALIDATION_ERROR")


def test_lockout_after_five_wrong_pins_then_works_after_the_window(client, node, clock):
    for attempt in range(1, 5):
        err = assert_error(client.post("/api/auth/login", json={"username": "cashier", "pin": "1111"}),
                           401, "UNAUTHORIZED")
        assert err["details"]["attempts_left"] == 5 - attempt
    err = assert_error(client.post("/api/auth/login", json={"username": "cashier", "pin": "1111"}),
                       423, "LOCKED")
    assert err["details"]["retry_after_s"] == 300
    # Locked: even the right PIN is refused, with the time left.
    clock.advance(100)
    err = assert_error(client.post("/api/auth/login", json={"username": "cashier", "pin": "0000"}),
                       423, "LOCKED")
    assert err["details"]["retry_after_s"] == 200
    clock.advance(199.5)
    err = assert_error(client.post("/api/auth/login", json={"username": "cashier", "pin": "0000"}),
                       423, "LOCKED")
    assert err["details"]["retry_after_s"] == 1  # rounded up, never 0 while locked
    assert audit_actions(node, "login.locked")
    # After the window: login works, and the counter starts afresh.
    clock.advance(1)
    assert login(client, "cashier", "0000")["user"]["role"] == "cashier"
    err = assert_error(client.post("/api/auth/login", json={"username": "cashier", "pin": "1111"}),
                       401, "UNAUTHORIZED")
    assert err["details"]["attempts_left"] == 4
    failed = audit_actions(node, "login.failed")
    assert any('"locked": true' in details.replace(":true", ": true") for _, details in failed)


def test_lockout_is_per_user(client, clock):
    for _ in range(5):
        client.post("/api/auth/login", json={"username": "cashier", "pin": "1111"})
    assert_error(client.post("/api/auth/login", json={"username": "cashier", "pin": "0000"}), 423)
    assert login(client, "manager", "2345")["user"]["username"] == "manager"


def test_lockout_counter_expires_with_the_lock_window(client, clock):
    """A wrong PIN after the lock ran out starts a new count of five."""
    for _ in range(5):
        client.post("/api/auth/login", json={"username": "cashier", "pin": "1111"})
    clock.advance(301)
    err = assert_error(client.post("/api/auth/login", json={"username": "cashier", "pin": "1111"}),
                       401, "UNAUTHORIZED")
    assert err["details"]["attempts_left"] == 4


# ------------------------------------------------------------------------ sessions
def test_me_needs_a_session(client, cashier):
    assert_error(client.get("/api/auth/me"), 401, "UNAUTHORIZED")
    assert client.get("/api/auth/me", headers=cashier).get_json()["user"]["role"] == "cashier"


def test_expired_token_is_refused(client, node, cashier, clock):
    assert client.get("/api/products", headers=cashier).status_code == 200
    clock.advance(node.config.session_ttl + 1)
    err = assert_error(client.get("/api/products", headers=cashier), 401, "UNAUTHORIZED")
    assert err["details"] == {"expired": True}
    before = state(node)
    assert_error(sell(client, cashier, [("BAK-001", 1)]), 401, "UNAUTHORIZED")
    assert state(node) == before


def test_short_session_ttl_expires(client, node, clock):
    node.config.session_ttl = 60
    token = login(client, "cashier", "0000")["token"]
    clock.advance(59)
    assert client.get("/api/auth/me", headers=bearer(token)).status_code == 200
    clock.advance(1)
    assert_error(client.get("/api/auth/me", headers=bearer(token)), 401, "UNAUTHORIZED")


@pytest.mark.parametrize("header", [
    "Bearer " + "A" * 43,
    "Bearer forged",
    "Bearer ",
    "Basic Y2FzaGllcjowMDAw",
    "bearer-lowercase",
])
def test_forged_or_malformed_token_is_401_and_changes_nothing(client, node, tokens, header):
    before = state(node)
    resp = client.post("/api/sales", headers={"Authorization": header},
                       json={"lines": [{"sku": "BAK-001", "quantity": 1}],
                             "payments": [{"method": "cash", "amount_cents": 100}]})
    assert_error(resp, 401, "UNAUTHORIZED")
    assert state(node) == before


def test_token_with_one_character_changed_is_refused(client, tokens):
    token = tokens["admin"]
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert_error(client.get("/api/auth/me", headers=bearer(forged)), 401)
    assert_error(client.get("/api/audit", headers=bearer(forged)), 401, "UNAUTHORIZED")


def test_no_credentials_is_401_on_every_protected_route(client):
    for method, path in [("get", "/api/products"), ("get", "/api/products/BAK-001"),
                         ("get", "/api/products/by-barcode/4004711101373"),
                         ("post", "/api/products"), ("patch", "/api/products/BAK-001"),
                         ("post", "/api/stock/receive"), ("post", "/api/stock/adjust"),
                         ("post", "/api/sales"), ("get", "/api/sales"), ("get", "/api/sales/x"),
                         ("post", "/api/sales/x/refund"), ("post", "/api/sales/x/void"),
                         ("post", "/api/users"), ("patch", "/api/users/cashier"),
                         ("get", "/api/audit"), ("get", "/api/audit/verify")]:
        resp = getattr(client, method)(path, json={})
        assert_error(resp, 401, "UNAUTHORIZED")


def test_logout_revokes_the_token(client, node):
    token = login(client, "cashier", "0000")["token"]
    resp = client.post("/api/auth/logout", headers=bearer(token))
    assert resp.status_code == 200 and resp.get_json() == {"success": True}
    assert "lanpos_session=;" in resp.headers["Set-Cookie"]
    assert_error(client.get("/api/auth/me", headers=bearer(token)), 401, "UNAUTHORIZED")
    assert_error(client.get("/api/products", headers=bearer(token)), 401, "UNAUTHORIZED")
    assert sql(node, "SELECT user FROM audit_log WHERE action = 'logout'") == [("cashier",)]
    # Logging out twice is harmless and audited once.
    assert client.post("/api/auth/logout", headers=bearer(token)).status_code == 200
    assert len(sql(node, "SELECT 1 FROM audit_log WHERE action = 'logout'")) == 1


def test_logout_of_one_session_keeps_the_others(client, cashier):
    token = login(client, "cashier", "0000")["token"]
    client.post("/api/auth/logout", headers=bearer(token))
    assert client.get("/api/auth/me", headers=cashier).status_code == 200


# ------------------------------------------------------------------ cookie + CSRF
def test_cookie_session_needs_csrf_header_for_writes(app, node):
    client = app.test_client()
    session = login(client, "cashier", "0000")  # sets the lanpos_session cookie
    # Reads work with the cookie alone.
    assert client.get("/api/products?limit=1").status_code == 200
    assert client.get("/api/auth/me").get_json()["user"]["username"] == "cashier"
    body = {"lines": [{"sku": "BAK-001", "quantity": 1}],
            "payments": [{"method": "cash", "amount_cents": 100}]}
    before = state(node)
    assert_error(client.post("/api/sales", json=body), 403, "CSRF_FAILED")
    assert_error(client.post("/api/sales", json=body, headers={"X-CSRF-Token": "wrong"}),
                 403, "CSRF_FAILED")
    csrf_of_other = login(app.test_client(), "manager", "2345")["csrf_token"]
    assert_error(client.post("/api/sales", json=body, headers={"X-CSRF-Token": csrf_of_other}),
                 403, "CSRF_FAILED")
    assert state(node) == before
    resp = client.post("/api/sales", json=body, headers={"X-CSRF-Token": session["csrf_token"]})
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["sale"]["cashier"] == "cashier"


def test_cookie_logout_ends_the_cookie_session(app):
    client = app.test_client()
    login(client, "cashier", "0000")
    assert client.post("/api/auth/logout").status_code == 200
    assert_error(client.get("/api/auth/me"), 401, "UNAUTHORIZED")


# --------------------------------------------------------------------------- users
def test_users_list_is_public_and_never_leaks_pins(client, node):
    resp = client.get("/api/users")
    assert resp.status_code == 200
    users = resp.get_json()["users"]
    assert {u["username"]: u["role"] for u in users} == {
        "admin": "admin", "manager": "manager", "cashier": "cashier"}
    for user in users:
        assert set(user) == {"username", "display_name", "role", "active"}
    text = resp.get_data(as_text=True)
    for (pin_hash,) in sql(node, "SELECT pin_hash FROM users"):
        assert pin_hash not in text
    assert "pbkdf2" not in text and "pin" not in text.lower()


def test_user_routes_are_admin_only(client, node, cashier, manager):
    before = state(node)
    for headers in (cashier, manager):
        assert_error(client.post("/api/users", headers=headers,
                                 json={"username": "eve", "role": "admin", "pin": "1111"}),
                     403, "FORBIDDEN")
        assert_error(client.patch("/api/users/cashier", headers=headers, json={"role": "admin"}),
                     403, "FORBIDDEN")
    assert state(node) == before


def test_admin_creates_a_user_who_can_log_in(client, node, admin):
    resp = client.post("/api/users", headers=admin, json={
        "username": "carl", "display_name": "Carl <b>Cashier</b>", "role": "cashier", "pin": "5678"})
    assert resp.status_code == 201
    assert resp.get_json()["user"] == {"username": "carl", "display_name": "Carl <b>Cashier</b>",
                                       "role": "cashier", "active": True}
    assert login(client, "carl", "5678")["user"]["role"] == "cashier"
    assert "carl" in {u["username"] for u in client.get("/api/users").get_json()["users"]}
    (pin_hash,), = sql(node, "SELECT pin_hash FROM users WHERE username = 'carl'")
    assert pin_hash.startswith("pbkdf2:sha256:") and "5678" not in pin_hash
    rows = sql(node, "SELECT user, details FROM audit_log WHERE action = 'user.created' "
                     "AND details LIKE '%carl%'")
    assert len(rows) == 1 and rows[0][0] == "admin" and "5678" not in rows[0][1]
    assert sql(node, "SELECT COUNT(*) FROM journal WHERE type = 'user.create' "
                     "AND payload LIKE '%carl%'") == [(1,)]


@pytest.mark.parametrize("body,status,code", [
    ({"username": "cashier", "role": "cashier", "pin": "1111"}, 409, "DUPLICATE_USER"),
    ({"username": "x", "role": "root", "pin": "1111"}, 400, "VALIDATION_ERROR"),
    ({"username": "x", "role": "cashier", "pin": "12"}, 400, "VALIDATION_ERROR"),
    ({"username": "x", "role": "cashier", "pin": "abcd"}, 400, "VALIDATION_ERROR"),
    ({"username": "x", "role": "cashier", "pin": 1234}, 400, "VALIDATION_ERROR"),
    ({"username": "x y", "role": "cashier", "pin": "1234"}, 400, "VALIDATION_ERROR"),
    ({"role": "cashier", "pin": "1234"}, 400, "VALIDATION_ERROR"),
])
def test_create_user_bad_input(client, node, admin, body, status, code):
    before = state(node)
    assert_error(client.post("/api/users", headers=admin, json=body), status, code)
    assert state(node) == before


def test_admin_changes_role(client, node, admin):
    token = login(client, "cashier", "0000")["token"]
    assert_error(client.get("/api/audit", headers=bearer(token)), 403, "FORBIDDEN")
    resp = client.patch("/api/users/cashier", headers=admin, json={"role": "manager"})
    assert resp.status_code == 200 and resp.get_json()["user"]["role"] == "manager"
    assert client.get("/api/audit", headers=bearer(token)).status_code == 200
    rows = sql(node, "SELECT user, details FROM audit_log WHERE action = 'user.updated'")
    assert rows and rows[-1][0] == "admin" and '"role":"manager"' in rows[-1][1].replace(" ", "")


def test_admin_resets_pin_and_old_sessions_end(client, admin):
    token = login(client, "cashier", "0000")["token"]
    resp = client.patch("/api/users/cashier", headers=admin, json={"pin": "4242"})
    assert resp.status_code == 200
    assert_error(client.get("/api/auth/me", headers=bearer(token)), 401)
    assert_error(client.post("/api/auth/login", json={"username": "cashier", "pin": "0000"}), 401)
    assert login(client, "cashier", "4242")["user"]["username"] == "cashier"


def test_admin_deactivates_user(client, node, admin):
    token = login(client, "cashier", "0000")["token"]
    resp = client.patch("/api/users/cashier", headers=admin, json={"active": False})
    assert resp.status_code == 200 and resp.get_json()["user"]["active"] is False
    assert_error(client.get("/api/auth/me", headers=bearer(token)), 401)
    assert_error(client.post("/api/auth/login", json={"username": "cashier", "pin": "0000"}), 401)
    assert "cashier" not in {u["username"] for u in client.get("/api/users").get_json()["users"]}


@pytest.mark.parametrize("username,body,status,code", [
    ("nobody", {"role": "manager"}, 404, "NOT_FOUND"),
    ("cashier", {}, 400, "VALIDATION_ERROR"),
    ("cashier", {"role": "boss"}, 400, "VALIDATION_ERROR"),
    ("cashier", {"pin": "1"}, 400, "VALIDATION_ERROR"),
    ("cashier", {"active": "no"}, 400, "VALIDATION_ERROR"),
    ("cashier", {"pin_hash": "x"}, 400, "VALIDATION_ERROR"),
])
def test_update_user_bad_input(client, node, admin, username, body, status, code):
    before = state(node)
    assert_error(client.patch(f"/api/users/{username}", headers=admin, json=body), status, code)
    assert state(node) == before


def test_admin_cannot_remove_the_last_admin(client, node, admin):
    before = state(node)
    assert_error(client.patch("/api/users/admin", headers=admin, json={"role": "manager"}),
                 409, "LAST_ADMIN")
    assert_error(client.patch("/api/users/admin", headers=admin, json={"active": False}),
                 409, "LAST_ADMIN")
    assert state(node) == before
    client.post("/api/users", headers=admin, json={"username": "boss", "role": "admin", "pin": "9876"})
    assert client.patch("/api/users/admin", headers=admin, json={"role": "manager"}).status_code == 200


# ------------------------------------------------------------------------- roles
@pytest.mark.parametrize("method,path,body", [
    ("post", "/api/products", {"sku": "NEW-X", "name": "x", "price_cents": 1}),
    ("get", "/api/audit", None),
    ("get", "/api/audit/verify", None),
    ("get", "/api/stock/BAK-001/movements", None),
])
def test_cashier_calling_a_manager_route_is_403(client, node, cashier, method, path, body):
    before = state(node)
    kwargs = {"json": body} if body is not None else {}
    err = assert_error(getattr(client, method)(path, headers=cashier, **kwargs), 403, "FORBIDDEN")
    assert err["details"] == {"required_role": "manager"}
    assert state(node) == before


@pytest.mark.parametrize("path,body", [
    ("/api/stock/receive", {"sku": "BAK-001", "quantity": 5}),
    ("/api/stock/adjust", {"sku": "BAK-001", "quantity": -1, "reason": "broken"}),
    ("/api/products/BAK-001", {"base_version": 1, "price_cents": 1}),
])
def test_cashier_manager_actions_without_approval_are_403(client, node, cashier, path, body):
    before = state(node)
    call = client.patch if path.startswith("/api/products/") else client.post
    assert_error(call(path, headers=cashier, json=body), 403, "FORBIDDEN")
    assert state(node) == before


def test_cashier_cannot_refund_or_void(client, node, cashier):
    sale_id = sell(client, cashier, [("BAK-001", 2)]).get_json()["sale_id"]
    before = state(node)
    assert_error(client.post(f"/api/sales/{sale_id}/refund", headers=cashier), 403, "FORBIDDEN")
    assert_error(client.post(f"/api/sales/{sale_id}/void", headers=cashier), 403, "FORBIDDEN")
    assert state(node) == before


# --------------------------------------------------------------------- --admin-pin
def test_ensure_admin_is_idempotent(app_factory):
    app = app_factory()
    node = app.extensions["lanpos_node"]
    assert users_service.ensure_admin(node, "4321") is True
    assert users_service.ensure_admin(node, "4321") is False
    assert users_service.ensure_admin(node, "9999") is False  # a second PIN changes nothing
    assert sql(node, "SELECT username, role FROM users") == [("admin", "admin")]
    assert len(sql(node, "SELECT 1 FROM audit_log WHERE action = 'user.created'")) == 1
    assert len(sql(node, "SELECT 1 FROM journal WHERE type = 'user.create'")) == 1
    client = app.test_client()
    assert login(client, "admin", "4321")["user"]["role"] == "admin"
    assert_error(client.post("/api/auth/login", json={"username": "admin", "pin": "9999"}), 401)


def test_ensure_admin_rejects_a_bad_pin(app_factory):
    node = app_factory().extensions["lanpos_node"]
    with pytest.raises(Exception) as info:
        users_service.ensure_admin(node, "12")
    assert getattr(info.value, "code", None) == "VALIDATION_ERROR"
    assert sql(node, "SELECT COUNT(*) FROM users") == [(0,)]


def test_demo_pins_are_the_documented_ones(client):
    for username, pin in DEMO_PINS.items():
        assert login(client, username, pin)["user"]["role"] == username


def test_many_failed_logins_from_one_client_are_429(client, node, clock):
    """Beyond the per-user lockout: 20 failures from one address in a minute -> 429."""
    for i in range(20):
        assert_error(client.post("/api/auth/login", json={"username": f"guess{i}", "pin": "1111"}),
                     401, "UNAUTHORIZED")
    failures = sql(node, "SELECT COUNT(*) FROM login_failures")
    err = assert_error(client.post("/api/auth/login", json={"username": "cashier", "pin": "0000"}),
                       429, "TOO_MANY_REQUESTS")
    assert 1 <= err["details"]["retry_after_s"] <= 60
    assert sql(node, "SELECT COUNT(*) FROM login_failures") == failures  # not even checked
    # Another address is not affected.
    other = client.post("/api/auth/login", json={"username": "cashier", "pin": "0000"},
                        environ_base={"REMOTE_ADDR": "10.0.0.7"})
    assert other.status_code == 200
    clock.advance(err["details"]["retry_after_s"])
    assert login(client, "cashier", "0000")["user"]["username"] == "cashier"
