"""Login, lockout, sessions (expiry, logout, forged tokens), cookie + CSRF, users, roles."""

from __future__ import annotations

import pytest

from app.services.shop import users as users_service
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
    resp = client.post("/api/auth/login", json={"username": "manager", "pin": "234567"})
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
    assert err["details"]["attempts_left"] == 2
    assert "Set-Cookie" not in resp.headers
    assert sql(node, "SELECT COUNT(*) FROM auth_sessions") == sessions
    assert state(node) == before
    # A known user's failure is journaled (every till counts it); an unknown name's is not.
    journaled = 1 if username == "cashier" else 0
    assert sql(node, "SELECT COUNT(*) FROM journal WHERE type = 'user.login_failed'") == [(journaled,)]
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


def wrong(client, username: str = "cashier", pin: str = "1111", **kwargs):
    return client.post("/api/auth/login", json={"username": username, "pin": pin}, **kwargs)


def test_back_off_after_three_free_failures_doubles_and_refused_attempts_do_not_count(
        client, node, clock):
    for attempt in range(1, 4):
        err = assert_error(wrong(client), 401, "UNAUTHORIZED")
        assert err["details"]["attempts_left"] == 3 - attempt
    # The 4th wrong PIN: a 1 s wait; the 5th (after it): 2 s; then 4 s.
    assert assert_error(wrong(client), 423, "LOCKED")["details"]["retry_after_s"] == 1
    journaled = sql(node, "SELECT COUNT(*) FROM journal WHERE type = 'user.login_failed'")
    assert journaled == [(4,)]
    # During the wait even the right PIN is refused, unchecked and not counted: hammering
    # does not renew or lengthen the wait.
    for _ in range(10):
        err = assert_error(wrong(client, pin="0000"), 423, "LOCKED")
        assert err["details"]["retry_after_s"] == 1
    assert sql(node, "SELECT COUNT(*) FROM journal WHERE type = 'user.login_failed'") == journaled
    assert audit_actions(node, "login.locked")
    clock.advance(1)
    assert assert_error(wrong(client), 423, "LOCKED")["details"]["retry_after_s"] == 2
    clock.advance(2)
    assert assert_error(wrong(client), 423, "LOCKED")["details"]["retry_after_s"] == 4
    clock.advance(3.5)
    assert assert_error(wrong(client, pin="0000"), 423)["details"]["retry_after_s"] == 1
    clock.advance(0.5)
    # After the wait the right PIN works, and the count starts afresh on every till.
    assert login(client, "cashier", "0000")["user"]["role"] == "cashier"
    assert sql(node, "SELECT COUNT(*) FROM journal WHERE type = 'user.unlock'") == [(1,)]
    assert assert_error(wrong(client), 401)["details"]["attempts_left"] == 2


def test_back_off_is_capped_at_fifteen_minutes(client, node, clock):
    """Nobody can lock a manager out for longer than the cap, however many wrong PINs."""
    for _ in range(30):
        resp = wrong(client, "manager")
        if resp.status_code == 423:
            clock.advance(resp.get_json()["error"]["details"]["retry_after_s"])
    err = assert_error(wrong(client, "manager"), 423, "LOCKED")
    assert err["details"]["retry_after_s"] == 15 * 60
    clock.advance(15 * 60)
    assert login(client, "manager", DEMO_PINS["manager"])["user"]["role"] == "manager"


def test_back_off_is_per_user(client, clock):
    for _ in range(4):
        wrong(client)
    assert_error(wrong(client, pin="0000"), 423)
    assert login(client, "manager", DEMO_PINS["manager"])["user"]["username"] == "manager"


def test_failures_journaled_by_another_till_count_here(client, node, clock):
    """Failures are counted per user across the cluster: events from till 2 (as the
    journal brings them) put the user in back-off here too."""
    from app.services.journal.events import Event

    events = [Event(event_id=f"{i:032x}", origin_device=2, origin_seq=i,
                    hlc=f"{clock.now:015d}.{i:05d}.00002", type="user.login_failed",
                    payload={"username": "manager", "purpose": "login", "device_id": 2,
                             "created_ms": clock.now - 1000 + i}, user="manager")
              for i in range(1, 5)]
    acks = node.journal.sequencer.sequence(events, from_device=2)
    assert [a["status"] for a in acks] == ["accepted"] * 4
    err = assert_error(client.post("/api/auth/login", json={
        "username": "manager", "pin": DEMO_PINS["manager"]}), 423, "LOCKED")
    assert err["details"]["retry_after_s"] == 1


def test_admin_unlocks_a_user_on_every_till(client, node, admin, manager, cashier, clock):
    for attempt in range(8):
        resp = wrong(client, "manager")
        if resp.status_code == 423 and attempt < 7:
            clock.advance(resp.get_json()["error"]["details"]["retry_after_s"])
    assert assert_error(wrong(client, "manager", "234567"), 423)["details"]["retry_after_s"] == 16
    # Only an admin may unlock.
    for headers in (manager, cashier):
        assert_error(client.post("/api/users/manager/unlock", headers=headers), 403, "FORBIDDEN")
    assert_error(client.post("/api/users/nobody/unlock", headers=admin), 404, "NOT_FOUND")
    resp = client.post("/api/users/manager/unlock", headers=admin)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["user"]["username"] == "manager"
    assert resp.get_json()["user"]["failures_cleared"] == 8
    # Journaled (every till applies it) and audited with who did it.
    assert sql(node, "SELECT user, payload FROM journal WHERE type = 'user.unlock'")[0][0] == "admin"
    rows = audit_actions(node, "user.unlocked")
    assert len(rows) == 1 and rows[0][0] == "admin" and '"username":"manager"' in rows[0][1].replace(" ", "")
    assert login(client, "manager", DEMO_PINS["manager"])["user"]["role"] == "manager"


def test_approver_pins_share_the_back_off_and_the_per_device_limit(client, node, cashier, clock):
    """A wrong manager PIN in an approval counts like a wrong login, and an approval box
    is no way around the back-off (it was a fixed lock before, and outside the limit)."""
    body = {"sku": "BAK-001", "quantity": 1, "approver": {"username": "manager", "pin": "1111"}}
    for _ in range(3):
        assert_error(client.post("/api/stock/receive", headers=cashier, json=body), 401)
    assert_error(client.post("/api/stock/receive", headers=cashier, json=body), 423, "LOCKED")
    # During the wait, logging in is refused too: one count per user.
    assert_error(client.post("/api/auth/login", json={
        "username": "manager", "pin": DEMO_PINS["manager"]}), 423, "LOCKED")
    assert sql(node, "SELECT COUNT(*) FROM journal WHERE type = 'user.login_failed' "
                     "AND payload LIKE '%approval%'") == [(4,)]
    # Approvals count toward the per-device limit of 20 failures a minute.
    for i in range(16):
        client.post("/api/sales", headers=cashier, json={
            "lines": [{"sku": "BAK-001", "quantity": 1}],
            "payments": [{"method": "cash", "amount_cents": 100000}],
            "approver": {"username": f"guess{i}", "pin": "1111"}})
    err = assert_error(client.post("/api/stock/receive", headers=cashier, json={
        **body, "approver": {"username": "admin", "pin": DEMO_PINS["admin"]}}),
        429, "TOO_MANY_REQUESTS")
    assert err["details"]["retry_after_s"] >= 1


def test_parallel_checks_of_one_users_pin_are_refused(node):
    """One PIN check per user at a time: parallel requests cannot all be checked against
    the same back-off state."""
    with users_service._one_check_per_user(node, "manager"):
        with pytest.raises(Exception) as info:
            users_service.login(node, "manager", DEMO_PINS["manager"])
        assert getattr(info.value, "status", None) == 429
        users_service.login(node, "cashier", DEMO_PINS["cashier"])  # other users are not held
    assert users_service.login(node, "manager", DEMO_PINS["manager"])["user"]["role"] == "manager"


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
    csrf_of_other = login(app.test_client(), "manager", "234567")["csrf_token"]
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
def test_users_list_is_public_and_never_leaks_pins(client, node, manager):
    resp = client.get("/api/users")
    assert resp.status_code == 200
    users = resp.get_json()["users"]
    # Without a login: the login tiles only (roles need a login, test_http_surface.py).
    assert {u["username"] for u in users} == {"admin", "manager", "cashier"}
    for user in users:
        assert set(user) == {"username", "display_name"}
    staff = client.get("/api/users", headers=manager)
    assert {u["username"]: u["role"] for u in staff.get_json()["users"]} == {
        "admin": "admin", "manager": "manager", "cashier": "cashier"}
    for user in staff.get_json()["users"]:
        assert set(user) == {"username", "display_name", "role", "active"}
    for text in (resp.get_data(as_text=True), staff.get_data(as_text=True)):
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
    assert pin_hash.startswith("scrypt-pep1$16384$8$1$") and "5678" not in pin_hash
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
    # A promotion to manager comes with a PIN of 6+ digits (a hash does not tell the length).
    before = state(node)
    err = assert_error(client.patch("/api/users/cashier", headers=admin, json={"role": "manager"}),
                       400, "PIN_TOO_SHORT")
    assert err["details"]["min_digits"] == 6
    assert state(node) == before
    resp = client.patch("/api/users/cashier", headers=admin, json={"role": "manager", "pin": "505050"})
    assert resp.status_code == 200 and resp.get_json()["user"]["role"] == "manager"
    assert_error(client.get("/api/auth/me", headers=bearer(token)), 401)  # a new PIN: log in again
    token = login(client, "cashier", "505050")["token"]
    assert client.get("/api/audit", headers=bearer(token)).status_code == 200
    rows = sql(node, "SELECT user, details FROM audit_log WHERE action = 'user.updated'")
    assert rows and rows[-1][0] == "admin" and '"role":"manager"' in rows[-1][1].replace(" ", "")
    assert "505050" not in rows[-1][1]


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
    client.post("/api/users", headers=admin, json={"username": "boss", "role": "admin", "pin": "987654"})
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
    assert users_service.ensure_admin(node, "432198") is True
    assert users_service.ensure_admin(node, "432198") is False
    assert users_service.ensure_admin(node, "999999") is False  # a second PIN changes nothing
    assert sql(node, "SELECT username, role FROM users") == [("admin", "admin")]
    assert len(sql(node, "SELECT 1 FROM audit_log WHERE action = 'user.created'")) == 1
    assert len(sql(node, "SELECT 1 FROM journal WHERE type = 'user.create'")) == 1
    client = app.test_client()
    assert login(client, "admin", "432198")["user"]["role"] == "admin"
    assert_error(client.post("/api/auth/login", json={"username": "admin", "pin": "999999"}), 401)


def test_ensure_admin_rejects_a_bad_pin(app_factory):
    node = app_factory().extensions["lanpos_node"]
    with pytest.raises(Exception) as info:
        users_service.ensure_admin(node, "12")
    assert getattr(info.value, "code", None) == "VALIDATION_ERROR"
    with pytest.raises(Exception) as info:
        users_service.ensure_admin(node, "1234")  # an admin's PIN has 6+ digits
    assert getattr(info.value, "code", None) == "PIN_TOO_SHORT"
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


# ------------------------------------------------------------- PIN length by role
@pytest.mark.parametrize("role,pin,status", [
    ("cashier", "4444", 201), ("manager", "4444", 400), ("manager", "44444", 400),
    ("manager", "444444", 201), ("admin", "4444", 400), ("admin", "4444444", 201),
])
def test_managers_and_admins_need_six_digit_pins(client, node, admin, role, pin, status):
    resp = client.post("/api/users", headers=admin, json={"username": "new", "role": role, "pin": pin})
    if status == 400:
        err = assert_error(resp, 400, "PIN_TOO_SHORT")
        assert err["details"] == {"field": "pin", "min_digits": 6, "role": role}
    else:
        assert resp.status_code == 201, resp.get_json()
        assert login(client, "new", pin)["user"]["role"] == role


def test_a_managers_pin_reset_needs_six_digits_unless_the_shop_turns_it_off(client, node, admin):
    assert_error(client.patch("/api/users/manager", headers=admin, json={"pin": "4242"}),
                 400, "PIN_TOO_SHORT")
    node.config.strong_pins_for_managers = False
    assert client.patch("/api/users/manager", headers=admin, json={"pin": "4242"}).status_code == 200
    assert login(client, "manager", "4242")["user"]["role"] == "manager"


# ------------------------------------------- sessions end on every till, sockets too
def _remote_user_update(node, username: str, changes: dict, device: int = 2):
    """A user.update made at another till, as the journal brings it here."""
    from app.services.journal.events import Event

    ev = Event(event_id=f"{device:02d}{node.clock():030d}", origin_device=device, origin_seq=1,
               hlc=f"{node.clock():015d}.00000.{device:05d}", type="user.update",
               payload={"username": username, "changes": changes, "created_ms": node.clock()},
               user="admin")
    assert node.journal.sequencer.sequence([ev], from_device=device)[0]["status"] == "accepted"


@pytest.mark.parametrize("changes", [
    {"pin_hash": "scrypt-pep1$16384$8$1$AAAA$AAAA"}, {"active": False}, {"role": "cashier"},
])
def test_a_reset_deactivation_or_demotion_from_another_till_ends_sessions_here(
        client, node, manager, cashier, changes):
    """The applier ends the sessions (every till applies the journal), not the route at
    the till where the admin clicked."""
    assert client.get("/api/auth/me", headers=manager).status_code == 200
    _remote_user_update(node, "manager", changes)
    assert_error(client.get("/api/auth/me", headers=manager), 401, "UNAUTHORIZED")
    assert client.get("/api/auth/me", headers=cashier).status_code == 200  # others stay


def test_a_promotion_or_rename_keeps_sessions(client, node, cashier):
    _remote_user_update(node, "cashier", {"display_name": "Cleo C."})
    _remote_user_update(node, "cashier", {"role": "manager"})
    assert client.get("/api/auth/me", headers=cashier).get_json()["user"]["role"] == "manager"


def test_replaying_the_journal_never_ends_a_session_begun_after_the_reset(client, node, admin):
    assert client.patch("/api/users/cashier", headers=admin, json={"pin": "4242"}).status_code == 200
    token = login(client, "cashier", "4242")["token"]
    with node.db.write() as session:  # what a dropped journal tail or a refused event does
        node.journal.derived.rebuild(session)
    assert client.get("/api/auth/me", headers=bearer(token)).status_code == 200


def _socket(app, token: str):
    from app.extensions import socketio

    sock = socketio.test_client(app, auth={"token": token})
    assert sock.is_connected()
    return sock


def test_logout_disconnects_the_sessions_socket(app, client):
    token = login(client, "cashier", "0000")["token"]
    other = login(client, "cashier", "0000")["token"]
    sock, kept = _socket(app, token), _socket(app, other)
    assert client.post("/api/auth/logout", headers=bearer(token)).status_code == 200
    assert not sock.is_connected()
    assert kept.is_connected()  # another session of the same user keeps its socket
    kept.disconnect()


def test_a_revocation_from_the_journal_disconnects_the_users_sockets(app, client, node):
    token = login(client, "manager", DEMO_PINS["manager"])["token"]
    cashier_sock = _socket(app, login(client, "cashier", "0000")["token"])
    sock = _socket(app, token)
    _remote_user_update(node, "manager", {"active": False})
    assert not sock.is_connected()
    assert cashier_sock.is_connected()
    cashier_sock.disconnect()


def test_an_expired_sessions_socket_is_ended_by_housekeeping(app, client, node, clock):
    from app.wiring import housekeeping

    node.config.session_ttl = 60
    sock = _socket(app, login(client, "cashier", "0000")["token"])
    housekeeping(app)
    assert sock.is_connected()
    clock.advance(61)
    housekeeping(app)
    assert not sock.is_connected()


def test_housekeeping_purges_ended_sessions_and_failures_that_no_longer_count(
        client, node, clock, cashier):
    live = login(client, "manager", DEMO_PINS["manager"])["token"]
    ended = login(client, "cashier", "0000")["token"]
    client.post("/api/auth/logout", headers=bearer(ended))
    for _ in range(2):
        client.post("/api/auth/login", json={"username": "admin", "pin": "000000"})
    client.post("/api/auth/login", json={"username": "manager", "pin": "000000"})
    clock.advance(1)
    login(client, "manager", DEMO_PINS["manager"])  # clears the manager's failure
    sessions = sql(node, "SELECT COUNT(*) FROM auth_sessions")[0][0]
    purged = users_service.housekeeping(node)
    assert purged == {"sessions": 1, "failures": 1}  # the logout; the cleared failure
    assert sql(node, "SELECT COUNT(*) FROM auth_sessions") == [(sessions - 1,)]
    assert sql(node, "SELECT username, kind FROM login_failures WHERE username = 'admin'") == [
        ("admin", "failed"), ("admin", "failed")]
    clock.advance(24 * 3600 + 1)  # failures older than a day no longer count; sessions expire
    purged = users_service.housekeeping(node)
    assert purged["failures"] == 3 and purged["sessions"] >= 2
    assert sql(node, "SELECT COUNT(*) FROM login_failures") == [(0,)]
    assert_error(client.get("/api/auth/me", headers=bearer(live)), 401)


def test_pin_checks_run_with_no_database_write_lock_held(client, node, monkeypatch):
    """The KDF (tens of ms of CPU) must not hold the one write lock every sale needs."""
    import threading

    from app.utils import pin_hash

    seen: list[bool] = []
    real = pin_hash.verify_pin

    def probe(*args, **kwargs):
        got: list[bool] = []

        def other_writer() -> None:  # as a checkout on another request thread would
            if node.db.write_lock.acquire(timeout=2):
                node.db.write_lock.release()
                got.append(True)

        t = threading.Thread(target=other_writer)
        t.start()
        t.join()
        seen.append(bool(got))
        return real(*args, **kwargs)

    monkeypatch.setattr(pin_hash, "verify_pin", probe)
    assert login(client, "cashier", "0000")["user"]["role"] == "cashier"
    assert_error(client.post("/api/auth/login", json={"username": "cashier", "pin": "9999"}), 401)
    assert seen == [True, True]


# ---------------------------------------------------------------- peppered hashes
def _all_pin_hashes(path) -> list[str]:
    import json
    import sqlite3

    con = sqlite3.connect(str(path))
    try:
        hashes = [h for (h,) in con.execute("SELECT pin_hash FROM users")]
        for table in ("journal", "outbox"):
            for (payload,) in con.execute(f"SELECT payload FROM {table} WHERE type LIKE 'user.%'"):  # noqa: S608
                p = json.loads(payload)
                for value in (p.get("pin_hash"), (p.get("changes") or {}).get("pin_hash")):
                    if value is not None:
                        hashes.append(value)
    finally:
        con.close()
    return hashes


def test_a_copy_of_the_database_alone_holds_no_checkable_pin_hash(client, node, admin, tmp_path):
    from werkzeug.security import check_password_hash

    from app.utils import pin_hash
    from app.utils.shop_secrets import pin_pepper

    assert client.patch("/api/users/cashier", headers=admin, json={"pin": "4242"}).status_code == 200
    copy = tmp_path / "stolen.db"
    shutil_copy(node.db.path, copy)
    hashes = _all_pin_hashes(copy)
    assert len(hashes) >= 5  # 3 users + their journaled creates + the reset
    wrong_pepper = pin_pepper("an attacker's guess at the secret")
    for stored in hashes:
        assert pin_hash.is_peppered(stored), stored
        for pin in ("0000", "4242", DEMO_PINS["manager"], DEMO_PINS["admin"]):
            assert not pin_hash.verify_pin(wrong_pepper, stored, pin)
            with pytest.raises(ValueError):  # not even a format a cracking tool knows
                check_password_hash(stored, pin)
    # With the shop's secret (the 0600 file beside the database) the till checks them.
    assert pin_hash.verify_pin(node.pepper, hashes[hashes.index(
        sql(node, "SELECT pin_hash FROM users WHERE username = 'cashier'")[0][0])], "4242")


def shutil_copy(src, dst) -> None:
    from tests.integration.conftest import _copy_db

    _copy_db(src, dst)


def test_legacy_hashes_are_wrapped_at_start_identically_on_every_till_and_upgraded_at_login(
        app_factory, tmp_path):
    import json
    import shutil
    import sqlite3

    from werkzeug.security import generate_password_hash

    from app.utils import pin_hash

    directory = tmp_path / "legacy"
    directory.mkdir()
    seed_app = app_factory(tmp_path / "seed")
    seed_node = seed_app.extensions["lanpos_node"]
    seed_node.db.dispose()
    # Build an earlier release's database by hand: legacy hashes in journal and users.
    legacy = {"admin": generate_password_hash("1234", method="pbkdf2:sha256:60000"),
              "carl": generate_password_hash("5678", method="pbkdf2:sha256:60000")}
    carl_new = generate_password_hash("8765", method="pbkdf2:sha256:60000")
    shutil.copyfile(seed_node.db.path, directory / "lanpos.db")
    con = sqlite3.connect(str(directory / "lanpos.db"))
    for gseq, (username, role) in enumerate((("admin", "admin"), ("carl", "cashier")), start=1):
        payload = {"username": username, "display_name": username, "role": role,
                   "pin_hash": legacy[username], "created_ms": 1}
        con.execute("INSERT INTO journal (gseq, epoch_number, epoch_master, event_id, "
                    "origin_device, origin_seq, hlc, type, payload, user, base_version, mode, "
                    "recorded_ms) VALUES (?, 1, 1, ?, 1, ?, ?, 'user.create', ?, 'system', "
                    "NULL, 'online', 1)", (gseq, f"{gseq:032x}", gseq,
                                            f"{gseq:015d}.00000.00001", json.dumps(payload)))
        con.execute("INSERT INTO users (username, display_name, role, pin_hash, active, version) "
                    "VALUES (?, ?, ?, ?, 1, ?)", (username, username, role,
                                                  carl_new if username == "carl" else legacy[username],
                                                  2 if username == "carl" else 1))
    con.execute("INSERT INTO journal (gseq, epoch_number, epoch_master, event_id, origin_device, "
                "origin_seq, hlc, type, payload, user, base_version, mode, recorded_ms) VALUES "
                "(3, 1, 1, ?, 1, 3, ?, 'user.update', ?, 'admin', NULL, 'online', 1)",
                (f"{3:032x}", f"{3:015d}.00000.00001",
                 json.dumps({"username": "carl", "changes": {"pin_hash": carl_new},
                             "created_ms": 1})))
    con.commit()
    con.close()
    copy = tmp_path / "legacy2"
    copy.mkdir()
    shutil.copyfile(directory / "lanpos.db", copy / "lanpos.db")

    app = app_factory(directory)
    node = app.extensions["lanpos_node"]
    app_factory(copy).extensions["lanpos_node"].db.dispose()
    hashes = _all_pin_hashes(directory / "lanpos.db")
    assert len(hashes) == 5 and all(h.startswith("wrap-pep1$pbkdf2:sha256:60000$") for h in hashes)
    for legacy_hash in (*legacy.values(), carl_new):
        assert legacy_hash.split("$")[2] not in str(hashes)  # no legacy digest left readable
    # Every till rewrote its copy to the same bytes: journals stay identical.
    query = "SELECT gseq, event_id, payload FROM journal ORDER BY gseq"
    with sqlite3.connect(str(directory / "lanpos.db")) as a, sqlite3.connect(str(copy / "lanpos.db")) as b:
        assert a.execute(query).fetchall() == b.execute(query).fetchall()
    # The wrapped hash still checks the PIN; a login upgrades it to scrypt (journaled).
    client = app.test_client()
    assert_error(client.post("/api/auth/login", json={"username": "carl", "pin": "5678"}), 401)
    token = login(client, "carl", "8765")["token"]
    (stored,), = sql(node, "SELECT pin_hash FROM users WHERE username = 'carl'")
    assert stored.startswith("scrypt-pep1$") and pin_hash.verify_pin(node.pepper, stored, "8765")
    assert sql(node, "SELECT COUNT(*) FROM journal WHERE type = 'user.update' "
                     "AND payload LIKE '%scrypt-pep1%'") == [(1,)]
    assert client.get("/api/auth/me", headers=bearer(token)).status_code == 200  # not revoked
    assert login(client, "carl", "8765")["user"]["username"] == "carl"
    # A second start finds nothing left to wrap.
    assert users_service.pepper_stored_hashes(node) == 0
