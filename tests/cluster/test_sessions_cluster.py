"""Logins across tills: a PIN reset ends the user's sessions (and their browser sockets)
on every till, and wrong PINs are counted per user across the cluster."""

from __future__ import annotations

import threading
import time

import socketio

from tests.cluster.harness import DEMO_PINS


def _poll(check, timeout: float = 5.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


def test_a_pin_reset_on_till_1_ends_the_session_and_its_socket_on_till_2(make_cluster):
    cluster = make_cluster(2)
    till1, till2 = cluster[1], cluster[2]
    token = till2.token("cashier")
    me = till2.url + "/api/auth/me"
    assert till2.http.get(me, headers={"Authorization": "Bearer " + token}, timeout=2).status_code == 200

    ended = threading.Event()
    sock = socketio.Client(reconnection=False)
    sock.on("disconnect", lambda *_: ended.set())
    sock.connect(till2.url, auth={"token": token}, wait_timeout=5)
    assert sock.connected

    r = till1.call("PATCH", "/api/users/cashier", user="admin", json={"pin": "4242"})
    assert r.status_code == 200, r.text

    def refused() -> bool:
        return till2.http.get(me, headers={"Authorization": "Bearer " + token},
                              timeout=2).status_code == 401

    assert _poll(refused), "till 2 still accepts a session whose PIN was reset on till 1"
    assert ended.wait(5), "till 2 kept the socket of the ended session open"
    sock.disconnect()
    # The new PIN works on till 2 (the journal brought it), the old one does not.
    login = till2.url + "/api/auth/login"
    assert till2.http.post(login, json={"username": "cashier", "pin": "0000"},
                           timeout=5).status_code == 401
    assert till2.http.post(login, json={"username": "cashier", "pin": "4242"},
                           timeout=5).status_code == 200


def test_wrong_pins_typed_at_till_1_put_the_user_in_back_off_at_till_2(make_cluster):
    cluster = make_cluster(2)
    till1, till2 = cluster[1], cluster[2]
    # Six wrong PINs at till 1, each after the wait the one before set (0, 0, 0, 1, 2 s):
    # the sixth sets a 4 s wait.
    waits = []
    for attempt in range(6):
        r = till1.http.post(till1.url + "/api/auth/login",
                            json={"username": "manager", "pin": "000000"}, timeout=5)
        assert r.status_code in (401, 423), r.text
        wait = r.json()["error"]["details"].get("retry_after_s", 0) if r.status_code == 423 else 0
        waits.append(wait)
        if attempt < 5:
            time.sleep(wait)
    assert waits[:5] == [0, 0, 0, 1, 2] and waits[5] == 4, waits
    assert _poll(lambda: till2.query("SELECT COUNT(*) FROM login_failures "
                                     "WHERE kind = 'failed'") == [(6,)], timeout=2.0)
    # Till 2 counts till 1's failures: even the right PIN waits, and is not checked.
    r = till2.http.post(till2.url + "/api/auth/login",
                        json={"username": "manager", "pin": DEMO_PINS["manager"]}, timeout=5)
    assert r.status_code == 423, r.text
    assert 1 <= r.json()["error"]["details"]["retry_after_s"] <= 4
    # An admin at till 2 unlocks; the manager logs in at once at till 1.
    r = till2.call("POST", "/api/users/manager/unlock", user="admin")
    assert r.status_code == 200, r.text

    def works_at_till1() -> bool:
        return till1.http.post(till1.url + "/api/auth/login", json={
            "username": "manager", "pin": DEMO_PINS["manager"]}, timeout=5).status_code == 200

    assert _poll(works_at_till1, timeout=2.0, interval=0.1)
