"""Fixtures for the API tests (Flask test client on a temp SQLite), in the flaskr style.

`app` -> `client` -> Bearer headers per role. The node is built with
`create_app(Config(data_dir=tmp_path, cluster=False, testing=True))`: a node that is
its own master at once.

Speed: the demo seed (`app.services.shop.seed.seed_demo`) and the three logins (the PIN KDF
is scrypt, ~45 ms a check) are done ONCE per test session into a template database;
every test then gets its own copy of that file in its own tmp_path and a freshly
created app on it. So each test starts from the same seeded shop, tests never see
each other's writes, and the Bearer tokens minted in the template are valid in every
copy (sessions live in the database; only the token's sha256 is stored there).
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.config import Config
from app.services.node import Node
from app.services.shop.seed import seed_demo

DEMO_PINS = {"admin": "123456", "manager": "234567", "cashier": "0000"}
# Every test's database is a copy of one template: its PIN hashes are keyed with the
# pepper derived from this secret (app/utils/shop_secrets.py), so every copy uses it too.
TEST_CLUSTER_SECRET = "integration-tests-cluster-secret"
DB_NAME = "lanpos.db"

# Tables whose content is domain state: bad input must not change any of them.
STATE_TABLES = ("journal", "outbox", "products", "categories", "stock_movements", "sales",
                "sale_lines", "payments", "refunds", "users", "conflicts")


@dataclass
class Template:
    db_file: Path
    sessions: dict[str, dict[str, Any]]  # role -> login response (token, csrf_token, user)


def _copy_db(src: str | Path, dst: str | Path) -> None:
    """A consistent single-file copy of a live WAL database (sqlite3 backup API)."""
    source = sqlite3.connect(str(src))
    target = sqlite3.connect(str(dst))
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def make_config(data_dir: str | Path, **overrides: Any) -> Config:
    overrides.setdefault("cluster_secret", TEST_CLUSTER_SECRET)
    return Config(data_dir=str(data_dir), cluster=False, testing=True, **overrides)


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """One seeded shop with admin/manager/cashier logged in, saved as a database file."""
    data_dir = tmp_path_factory.mktemp("template")
    app = create_app(make_config(data_dir))
    node: Node = app.extensions["lanpos_node"]
    seed_demo(node)
    client = app.test_client()
    sessions = {}
    for username, pin in DEMO_PINS.items():
        resp = client.post("/api/auth/login", json={"username": username, "pin": pin})
        assert resp.status_code == 200, resp.get_json()
        sessions[username] = resp.get_json()
    snapshot = tmp_path_factory.mktemp("snapshot") / DB_NAME
    _copy_db(node.db.path, snapshot)
    node.db.dispose()
    return Template(db_file=snapshot, sessions=sessions)


@pytest.fixture
def data_dir(tmp_path: Path, template: Template) -> Path:
    """This test's data dir, holding a private copy of the seeded template database."""
    path = tmp_path / "node"
    path.mkdir()
    shutil.copyfile(template.db_file, path / DB_NAME)
    return path


@pytest.fixture
def app(data_dir: Path) -> Flask:
    app = create_app(make_config(data_dir))
    yield app
    app.extensions["lanpos_node"].db.dispose()


@pytest.fixture
def node(app: Flask) -> Node:
    return app.extensions["lanpos_node"]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def app_factory(tmp_path: Path) -> Callable[..., Flask]:
    """Build extra apps (fresh, unseeded data dirs unless one is given); all disposed at the end."""
    made: list[Flask] = []

    def factory(data_dir: str | Path | None = None, **overrides: Any) -> Flask:
        directory = Path(data_dir) if data_dir is not None else tmp_path / f"fresh{len(made)}"
        app = create_app(make_config(directory, **overrides))
        made.append(app)
        return app

    yield factory
    for app in made:
        app.extensions["lanpos_node"].db.dispose()


# --------------------------------------------------------------------------- auth
def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def tokens(template: Template) -> dict[str, str]:
    return {role: s["token"] for role, s in template.sessions.items()}


@pytest.fixture
def csrf_tokens(template: Template) -> dict[str, str]:
    return {role: s["csrf_token"] for role, s in template.sessions.items()}


@pytest.fixture
def cashier(tokens: dict[str, str]) -> dict[str, str]:
    return bearer(tokens["cashier"])


@pytest.fixture
def manager(tokens: dict[str, str]) -> dict[str, str]:
    return bearer(tokens["manager"])


@pytest.fixture
def admin(tokens: dict[str, str]) -> dict[str, str]:
    return bearer(tokens["admin"])


def login(client: FlaskClient, username: str, pin: str) -> dict[str, Any]:
    """Log in through the API (costs one PIN KDF); returns the JSON body."""
    resp = client.post("/api/auth/login", json={"username": username, "pin": pin})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


class FakeClock:
    """Replaces `node.clock` (users.py reads it for lockout and session expiry)."""

    def __init__(self, start_ms: int | None = None):
        self.now = start_ms if start_ms is not None else int(time.time() * 1000)

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


@pytest.fixture
def clock(node: Node) -> FakeClock:
    fake = FakeClock()
    node.clock = fake
    return fake


# ------------------------------------------------------------------------ asserts
def assert_error(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The one error shape: {"success": false, "error": {"code", "message"[, "details"]}}."""
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True)[:500])
    assert resp.is_json, resp.content_type
    body = resp.get_json()
    assert body["success"] is False
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert set(error) <= {"code", "message", "details"}
    if "details" in error:
        assert isinstance(error["details"], dict)
    if code is not None:
        assert error["code"] == code, error
    # No stack trace ever reaches a client.
    assert "Traceback" not in resp.get_data(as_text=True)
    return error


def state(node: Node) -> dict[str, Any]:
    """A fingerprint of all domain state: row counts plus every product's and user's row."""
    con = sqlite3.connect(node.db.path)
    try:
        out: dict[str, Any] = {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # noqa: S608
                               for t in STATE_TABLES}
        # Wrong PINs are journaled (every till counts them) but change no domain state.
        out["journal"] = con.execute(
            "SELECT COUNT(*) FROM journal WHERE type NOT IN ('user.login_failed', "
            "'user.unlock')").fetchone()[0]
        out["product_rows"] = con.execute("SELECT * FROM products ORDER BY sku").fetchall()
        out["user_rows"] = con.execute("SELECT * FROM users ORDER BY username").fetchall()
        out["sale_rows"] = con.execute("SELECT * FROM sales ORDER BY sale_id").fetchall()
        out["stock_total"] = con.execute("SELECT COALESCE(SUM(stock), 0) FROM products").fetchone()[0]
    finally:
        con.close()
    return out


def stock_of(client: FlaskClient, headers: dict[str, str], sku: str) -> int:
    resp = client.get(f"/api/products/{sku}", headers=headers)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["product"]["stock"]


def movement_sum(node: Node, sku: str) -> int:
    con = sqlite3.connect(node.db.path)
    try:
        return con.execute("SELECT COALESCE(SUM(delta), 0) FROM stock_movements WHERE sku = ?",
                           (sku,)).fetchone()[0]
    finally:
        con.close()


def sql(node: Node, query: str, params: tuple = ()) -> list[tuple]:
    """Read the node's database directly (what an auditor with the file would see)."""
    con = sqlite3.connect(node.db.path)
    try:
        return con.execute(query, params).fetchall()
    finally:
        con.close()


def sell(client: FlaskClient, headers: dict[str, str], lines: list[tuple[str, int]] | list[dict],
         pay: int | list[dict] | None = None, **extra: Any):
    """POST /api/sales. `pay`: cash amount, or a payments list; default: exact cash of a big note."""
    body_lines = [line if isinstance(line, dict) else {"sku": line[0], "quantity": line[1]}
                  for line in lines]
    if pay is None:
        payments = [{"method": "cash", "amount_cents": 1_000_000}]
    elif isinstance(pay, int):
        payments = [{"method": "cash", "amount_cents": pay}]
    else:
        payments = pay
    return client.post("/api/sales", headers=headers,
                       json={"lines": body_lines, "payments": payments, **extra})

