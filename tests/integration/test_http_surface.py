"""The pages and the HTTP surface (issue 12): what a guest on the shop's LAN, or a web page
in a cashier's browser, can reach.

Flask test client (its requests say `Host: localhost`, one of the till's own names), except
the last test, which needs a real `python -m app run` process (its command line, its start).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import psutil
import pytest
import requests

from app.config import add_run_arguments, load_config
from app.routes.backoffice_pages import PAGES
from app.routes.guards import SESSION_COOKIE
from app.utils.shop_secrets import SecretFileError
from tests.integration.conftest import DEMO_PINS, assert_error, bearer, sql

REPO = Path(__file__).resolve().parents[2]
CSP = "default-src 'self'; frame-ancestors 'none'"
PAGE_PATHS = ["/till"] + [f"/backoffice/{name}" for name in PAGES]
SOCKET_HANDSHAKE = "/socket.io/?EIO=4&transport=polling"


def _assert_security_headers(resp) -> None:
    assert resp.headers.get("Content-Security-Policy") == CSP, resp.headers
    assert resp.headers.get("X-Frame-Options") == "DENY"
    assert resp.headers.get("Referrer-Policy") == "no-referrer"
    assert resp.headers.get("X-Content-Type-Options") == "nosniff"


# --------------------------------------------------------------- headers and pages
@pytest.mark.parametrize("path", [*PAGE_PATHS, "/", "/health", "/api/users", "/api/products",
                                  "/api/nope", "/nope", "/static/js/till.js", SOCKET_HANDSHAKE])
def test_every_response_carries_the_security_headers(client, path):
    resp = client.get(path)
    assert resp.status_code in (200, 302, 401, 404), (path, resp.status_code)
    _assert_security_headers(resp)


class _InlineFinder(HTMLParser):
    """Everything in a page that `default-src 'self'` would block."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "style":
            self.problems.append("<style> element")
        if tag == "script":
            self._in_script = "src" not in values
            if values.get("src") and not values["src"].startswith("/static/"):
                self.problems.append(f"script from {values['src']}")
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"inline handler {name}= on <{tag}>")
            if name == "style":
                self.problems.append(f"style= attribute on <{tag}>")
            if name in ("href", "src", "action") and value and \
                    re.match(r"\s*(javascript|data|blob|https?):", value, re.I):
                self.problems.append(f"{name}={value!r} on <{tag}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("inline <script> code")


@pytest.mark.parametrize("path", PAGE_PATHS)
def test_pages_hold_nothing_the_content_security_policy_blocks(client, path):
    resp = client.get(path)
    assert resp.status_code == 200
    finder = _InlineFinder()
    finder.feed(resp.get_data(as_text=True))
    assert finder.problems == []


# ------------------------------------------------------------------- Host header
@pytest.mark.parametrize("host", ["evil.example", "evil.example:5000", "localhost.evil.example",
                                  "192.0.2.254:5000", "[2001:db8::1]:5000", ""])
def test_a_host_that_is_not_the_tills_is_refused_everywhere(client, host):
    """DNS rebinding: a page from evil.example re-pointed at the till still says its name."""
    for path in ("/till", "/api/users", "/health", SOCKET_HANDSHAKE):
        resp = client.get(path, headers={"Host": host})
        assert_error(resp, 421, "MISDIRECTED_REQUEST")
        _assert_security_headers(resp)


def _an_interface_address() -> str:
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == socket.AF_INET and not addr.address.startswith("127."):
                return addr.address
    return "127.0.0.1"


def test_the_tills_own_names_and_addresses_are_served(app_factory):
    app = app_factory(host="10.99.0.7", allowed_hosts=["till.shop.lan"])
    client = app.test_client()
    hosts = ["localhost", "localhost:5000", "LOCALHOST", "127.0.0.1:5000", "127.0.0.2:5001",
             "[::1]:5000", "::1", "10.99.0.7:5000",  # the bind address
             socket.gethostname(), f"{socket.gethostname()}.local:5000",
             f"{_an_interface_address()}:5000", "till.shop.lan", "Till.Shop.Lan.:80"]
    for host in hosts:
        resp = client.get("/health", headers={"Host": host})
        assert resp.status_code == 200, (host, resp.get_json())
    # The name given to one till is no other till's.
    assert_error(app_factory().test_client().get("/health", headers={"Host": "till.shop.lan"}),
                 421, "MISDIRECTED_REQUEST")


# --------------------------------------------------------------- Socket.IO origin
def test_a_browser_socket_from_another_origin_is_refused(client):
    resp = client.get(SOCKET_HANDSHAKE, headers={"Origin": "http://evil.example"})
    assert resp.status_code == 400
    assert b"Not an accepted origin" in resp.data
    # Also an origin that names another of the till's own hosts: not the page's origin.
    assert client.get(SOCKET_HANDSHAKE, headers={"Origin": "http://127.0.0.1"}).status_code == 400
    assert client.get(SOCKET_HANDSHAKE, headers={"Origin": "null"}).status_code == 400


def test_the_tills_own_origin_and_other_tills_clients_may_open_a_socket(client):
    own = client.get(SOCKET_HANDSHAKE, headers={"Origin": "http://localhost"})
    assert own.status_code == 200 and b'"sid"' in own.data
    by_address = client.get(SOCKET_HANDSHAKE, headers={"Host": "127.0.0.1:5000",
                                                       "Origin": "http://127.0.0.1:5000"})
    assert by_address.status_code == 200 and b'"sid"' in by_address.data
    # python-socketio (another till) sends no Origin at all.
    peer = client.get(SOCKET_HANDSHAKE)
    assert peer.status_code == 200 and b'"sid"' in peer.data


# ----------------------------------------------------------------- who sees what
def test_users_without_login_are_login_tiles_only(client, manager, cashier):
    tiles = client.get("/api/users")
    assert tiles.status_code == 200
    users = tiles.get_json()["users"]
    assert {u["username"] for u in users} >= {"admin", "manager", "cashier"}
    assert all(set(u) == {"username", "display_name"} for u in users), users
    for headers in (manager, cashier):
        full = client.get("/api/users", headers=headers).get_json()["users"]
        roles = {u["username"]: u["role"] for u in full}
        assert roles["manager"] == "manager" and roles["admin"] == "admin"
        assert all(u["active"] is True for u in full)
    assert_error(client.get("/api/users", headers=bearer("not-a-session")), 401)
    # A stale session cookie (the browser sends it to the login screen too): tiles, no 401.
    client.set_cookie(SESSION_COOKIE, "expired-session")
    stale = client.get("/api/users")
    assert stale.status_code == 200
    assert all(set(u) == {"username", "display_name"} for u in stale.get_json()["users"])


PEER_STATUS = {
    "device_id": 1, "role": "master", "master_id": 1, "epoch": [3, 1], "state": "online",
    "nodes": [{"device_id": 1, "address": "10.1.2.3:5000", "alive": True, "self": True},
              {"device_id": 2, "address": "10.1.2.4:5000", "alive": False}],
    "sync": {"last_error": "connect to 10.1.2.4:5000 refused", "failed_syncs": 4},
}


def test_cluster_details_need_a_manager(client, node, manager, cashier, monkeypatch):
    monkeypatch.setattr(node, "status", lambda: dict(PEER_STATUS))
    for headers in ({}, cashier):
        resp = client.get("/api/cluster", headers=headers)
        assert resp.status_code == 200
        body = resp.get_json()
        assert {k: body[k] for k in ("role", "master_id", "epoch", "state", "device_id")} == {
            "role": "master", "master_id": 1, "epoch": [3, 1], "state": "online", "device_id": 1}
        assert isinstance(body["outbox_pending"], int)
        assert "nodes" not in body and "sync" not in body
        assert "10.1.2" not in resp.get_data(as_text=True)
    full = client.get("/api/cluster", headers=manager).get_json()
    assert [n["address"] for n in full["nodes"]] == ["10.1.2.3:5000", "10.1.2.4:5000"]
    assert full["sync"]["last_error"].startswith("connect to")
    # A stale token is told so (the till page clears its session on this 401).
    assert_error(client.get("/api/cluster", headers=bearer("expired")), 401)
    # /health stays open.
    assert client.get("/health").status_code == 200


# ------------------------------------------------------------------ starting
def test_a_starting_till_says_so_and_a_login_then_is_not_a_failure(client, node):
    failures_before = _login_failures(Path(node.db.path))
    audit_before = sql(node, "SELECT COUNT(*) FROM audit_log WHERE action LIKE 'login.%'")
    node.ready.clear()
    health = client.get("/health")
    assert health.status_code == 503
    assert health.get_json()["state"] == "starting" and health.get_json()["status"] == "starting"
    for _ in range(3):
        error = assert_error(client.post("/api/auth/login",
                                         json={"username": "cashier", "pin": DEMO_PINS["cashier"]}),
                             503, "STARTING")
        assert error["details"]["retry_after_s"] >= 1
    assert _login_failures(Path(node.db.path)) == failures_before
    assert sql(node, "SELECT COUNT(*) FROM audit_log WHERE action LIKE 'login.%'") == audit_before
    node.ready.set()
    ok = client.get("/health")
    assert ok.status_code == 200 and ok.get_json()["status"] == "ok"
    assert ok.get_json()["state"] == "online"
    resp = client.post("/api/auth/login", json={"username": "cashier", "pin": DEMO_PINS["cashier"]})
    assert resp.status_code == 200, resp.get_json()


# ----------------------------------------------------------------- secrets
def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lanpos run")
    add_run_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize("flag, hint", [("--cluster-secret", "--cluster-secret-file"),
                                        ("--admin-pin", "--admin-pin-file")])
def test_a_secret_on_the_command_line_is_refused_with_the_way_to_do_it(flag, hint, capsys):
    with pytest.raises(SystemExit) as exc:
        _parse(["--device-id", "1", flag, "s3cret-value-123456"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and hint in err and "ps" in err


def _secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text + "\n", encoding="utf-8")
    os.chmod(path, mode)
    return path


def test_secrets_come_from_0600_files_or_the_environment(tmp_path):
    secret = _secret_file(tmp_path / "secret", "a" * 40)
    pin = _secret_file(tmp_path / "pin", "482913")
    cfg = load_config(_parse(["--cluster-secret-file", str(secret), "--admin-pin-file", str(pin)]),
                      env={"POS_CLUSTER_SECRET": "from-the-environment-1234"})
    assert cfg.cluster_secret_file == str(secret) and cfg.cluster_secret is None
    assert cfg.admin_pin == "482913"
    env_cfg = load_config(_parse([]), env={"POS_CLUSTER_SECRET": "from-the-environment-1234",
                                           "POS_ADMIN_PIN": "482913"})
    assert env_cfg.cluster_secret == "from-the-environment-1234" and env_cfg.admin_pin == "482913"
    assert load_config(_parse([]), env={}).admin_pin is None
    readable = _secret_file(tmp_path / "pin-readable", "482913", 0o640)
    with pytest.raises(SecretFileError, match="chmod 600"):
        load_config(_parse(["--admin-pin-file", str(readable)]), env={})


def test_allowed_hosts_from_flags_or_environment():
    assert load_config(_parse(["--allowed-host", "till1.shop", "--allowed-host", "pos.lan"]),
                       env={}).allowed_hosts == ["till1.shop", "pos.lan"]
    assert load_config(_parse([]), env={"POS_ALLOWED_HOSTS": "a.lan, b.lan"}).allowed_hosts == \
        ["a.lan", "b.lan"]


# ------------------------------------------------------------- a real process
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_node_keeps_its_secrets_off_the_command_line_and_says_starting(tmp_path):
    """`ps` shows no secret and no PIN; until the admin user is journaled /health says
    "starting" and a login answers 503 STARTING (never a counted failure); then the
    first login with the PIN works."""
    secret = "s" * 8 + os.urandom(16).hex()
    pin = "482913"
    secret_file = _secret_file(tmp_path / "cluster_secret", secret)
    pin_file = _secret_file(tmp_path / "admin_pin", pin)
    port = _free_port()
    data = tmp_path / "till1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "run", "--device-id", "1", "--port", str(port),
         "--host", "127.0.0.1", "--data-dir", str(data), "--no-discovery",
         "--cluster-secret-file", str(secret_file), "--admin-pin-file", str(pin_file),
         "--failover-timeout", "3", "--log-level", "WARNING"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("POS_")})
    base = f"http://127.0.0.1:{port}"
    seen: list[tuple[int, str]] = []
    refused_while_starting = 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            try:
                r = requests.get(base + "/health", timeout=2)
            except requests.ConnectionError:
                time.sleep(0.05)
                continue
            state = r.json()["state"]
            if not seen or seen[-1] != (r.status_code, state):
                seen.append((r.status_code, state))
            if r.status_code == 200:
                break
            assert (r.status_code, state) == (503, "starting")
            login = requests.post(base + "/api/auth/login",
                                  json={"username": "admin", "pin": pin}, timeout=5)
            # 503 STARTING, or 200 if setup finished since the probe: never a 401.
            assert login.status_code in (200, 503), login.text
            if login.status_code == 503:
                assert login.json()["error"]["code"] == "STARTING"
                refused_while_starting += 1
            time.sleep(0.05)
        assert seen and seen[0] == (503, "starting"), seen
        assert seen[-1][0] == 200, seen
        assert refused_while_starting >= 1
        # What `ps` shows every user of the machine, read while the node runs.
        with open(f"/proc/{proc.pid}/cmdline", "rb") as fh:
            cmdline = fh.read().decode()
        assert str(secret_file) in cmdline and "--admin-pin-file" in cmdline
        assert secret not in cmdline and pin not in cmdline
        first = requests.post(base + "/api/auth/login", json={"username": "admin", "pin": pin},
                              timeout=5)
        assert first.status_code == 200, first.text
        # The node signs with the secret from the file (and made no other in the data dir).
        assert not (data / "cluster_secret").exists()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert _login_failures(data / "lanpos.db") == []


def _login_failures(db: Path) -> list:
    """Every trace a failed login leaves: audit entries, journaled failures, counters."""
    con = sqlite3.connect(db)
    try:
        found = list(con.execute("SELECT action FROM audit_log WHERE action LIKE 'login.%' "
                                 "AND action != 'login.success'"))
        found += con.execute("SELECT type FROM journal WHERE type LIKE '%fail%'").fetchall()
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master")}
        if "login_failures" in tables:
            found += con.execute("SELECT * FROM login_failures").fetchall()
    finally:
        con.close()
    return found
