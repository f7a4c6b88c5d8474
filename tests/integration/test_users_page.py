"""What the back office's Users page reads and hears (issue 17): `GET /api/users?all=1`
(admin only: inactive users too, with their wrong-PIN state) and the `user_changed`
notice every user event sends to the browsers."""

from __future__ import annotations

import pytest

from app.services.shop import lockout
from tests.integration.conftest import assert_error


def listed(client, headers) -> dict[str, dict]:
    resp = client.get("/api/users?all=1", headers=headers)
    assert resp.status_code == 200, resp.get_json()
    return {u["username"]: u for u in resp.get_json()["users"]}


def test_admin_lists_every_user_with_inactive_ones_and_wrong_pin_state(client, admin, clock):
    assert client.patch("/api/users/cashier", headers=admin, json={"active": False}).status_code == 200
    users = listed(client, admin)
    assert set(users) == {"admin", "manager", "cashier"}
    assert users["cashier"]["active"] is False
    assert users["manager"] == {"username": "manager", "display_name": users["manager"]["display_name"],
                                "role": "manager", "active": True, "failures": 0, "retry_after_ms": 0}
    # The plain list (login tiles, approver dialog) still leaves inactive users out.
    plain = client.get("/api/users", headers=admin).get_json()["users"]
    assert "cashier" not in {u["username"] for u in plain}

    for attempt in range(1, lockout.FREE_FAILURES + 2):
        resp = client.post("/api/auth/login", json={"username": "manager", "pin": "999999"})
        assert resp.status_code == (401 if attempt <= lockout.FREE_FAILURES else 423)
    users = listed(client, admin)
    assert users["manager"]["failures"] == lockout.FREE_FAILURES + 1
    assert users["manager"]["retry_after_ms"] == lockout.delay_ms(lockout.FREE_FAILURES + 1)
    clock.advance(lockout.delay_ms(lockout.FREE_FAILURES + 1) / 1000)
    assert listed(client, admin)["manager"]["retry_after_ms"] == 0
    assert listed(client, admin)["manager"]["failures"] == lockout.FREE_FAILURES + 1

    resp = client.post("/api/users/manager/unlock", headers=admin)
    assert resp.status_code == 200
    assert resp.get_json()["user"]["failures_cleared"] == lockout.FREE_FAILURES + 1
    assert listed(client, admin)["manager"]["failures"] == 0


@pytest.mark.parametrize("who,status,code", [("manager", 403, "FORBIDDEN"), ("cashier", 403, "FORBIDDEN"),
                                             (None, 401, "UNAUTHORIZED")])
def test_only_an_admin_lists_every_user(client, request, who, status, code):
    headers = request.getfixturevalue(who) if who else {}
    assert_error(client.get("/api/users?all=1", headers=headers), status, code)


def test_every_user_event_tells_the_browsers_which_user_changed(client, node, admin):
    heard: list[tuple[str, dict]] = []
    node.journal.subscribe(heard.extend)

    def changed() -> list[str]:
        names = [data["username"] for name, data in heard if name == "user_changed"]
        heard.clear()
        return names

    assert client.post("/api/users", headers=admin, json={
        "username": "dora", "display_name": "Dora", "role": "cashier", "pin": "4321"}).status_code == 201
    assert changed() == ["dora"]
    assert client.patch("/api/users/dora", headers=admin, json={"display_name": "Dora D."}).status_code == 200
    assert changed() == ["dora"]
    assert client.patch("/api/users/dora", headers=admin, json={"active": False}).status_code == 200
    assert changed() == ["dora"]
    assert client.patch("/api/users/dora", headers=admin, json={"active": True}).status_code == 200
    assert changed() == ["dora"]
    assert client.post("/api/auth/login", json={"username": "dora", "pin": "0000"}).status_code == 401
    assert changed() == ["dora"]
    assert client.post("/api/users/dora/unlock", headers=admin).status_code == 200
    assert changed() == ["dora"]
    # A refused change (the last admin) tells nobody anything.
    assert_error(client.patch("/api/users/admin", headers=admin, json={"active": False}), 409, "LAST_ADMIN")
    assert changed() == []
    assert client.post("/api/auth/login", json={"username": "dora", "pin": "4321"}).status_code == 200
