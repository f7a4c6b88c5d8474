"""The audit log: what is recorded, the query API, the hash chain, and tampering detection."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from app.models.db import SCHEMA_VERSION
from tests.integration.conftest import assert_error, bearer, login, sell, sql

REPO = Path(__file__).resolve().parents[2]


def actions(node) -> list[str]:
    return [a for (a,) in sql(node, "SELECT action FROM audit_log ORDER BY seq")]


def verify(client, headers) -> dict:
    resp = client.get("/api/audit/verify", headers=headers)
    assert resp.status_code == 200
    return resp.get_json()


def tamper(node, statement: str, params: tuple = ()) -> None:
    """Edit the audit table behind the node's back, as someone with the file would."""
    con = sqlite3.connect(node.db.path)
    try:
        con.execute(statement, params)
        con.commit()
    finally:
        con.close()


def run_verify_cli(data_dir) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", "verify-audit", "--data-dir", str(data_dir)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


# ------------------------------------------------------------- what is recorded
def test_every_kind_of_change_is_audited(client, node, cashier, manager, admin):
    start = len(actions(node))
    assert_error(client.post("/api/auth/login", json={"username": "cashier", "pin": "9999"}), 401)
    login(client, "cashier", "0000")
    sale_id = sell(client, cashier, [("BAK-003", 2)]).get_json()["sale_id"]
    client.post(f"/api/sales/{sale_id}/refund", headers=manager,
                json={"lines": [{"sku": "BAK-003", "quantity": 1}]})
    client.post(f"/api/sales/{sale_id}/void", headers=manager)
    client.patch("/api/products/BAK-001", headers=manager, json={"base_version": 1, "price_cents": 40})
    client.post("/api/stock/adjust", headers=manager, json={"sku": "BAK-001", "quantity": -1,
                                                             "reason": "dropped"})
    client.post("/api/stock/receive", headers=manager, json={"sku": "BAK-001", "quantity": 5})
    client.post("/api/users", headers=admin, json={"username": "neu", "role": "cashier", "pin": "1111"})
    client.patch("/api/users/neu", headers=admin, json={"role": "manager", "pin": "616161"})
    new = actions(node)[start:]
    for action in ("login.failed", "login.success", "sale.created", "sale.refunded", "sale.voided",
                   "price.changed", "stock.adjusted", "stock.received", "user.created", "user.updated"):
        assert action in new, (action, new)
    rows = {a: (u, json.loads(d)) for a, u, d in sql(
        node, "SELECT action, user, details FROM audit_log ORDER BY seq")}
    assert rows["login.failed"][0] == "cashier" and rows["login.failed"][1]["attempts"] == 1
    assert rows["sale.created"][0] == "cashier" and rows["sale.created"][1]["sale_id"] == sale_id
    assert rows["sale.voided"][0] == "manager"
    assert rows["price.changed"][1]["old_price_cents"] == 35
    assert rows["price.changed"][1]["changes"] == {"price_cents": 40}
    assert rows["stock.adjusted"][1] == {**rows["stock.adjusted"][1], "sku": "BAK-001",
                                         "quantity": -1, "reason": "dropped"}
    assert rows["user.updated"][0] == "admin" and rows["user.updated"][1]["role"] == "manager"
    # Audit entries never hold a PIN or a PIN hash.
    text = " ".join(d for (d,) in sql(node, "SELECT details FROM audit_log"))
    assert "1111" not in text and "pbkdf2" not in text


def test_node_start_is_audited(node, app_factory, data_dir):
    starts = sql(node, "SELECT details FROM audit_log WHERE action = 'node.started'")
    assert len(starts) == 2  # the template's first start, and this test's app
    details = json.loads(starts[-1][0])
    assert details["schema_version"] == SCHEMA_VERSION and details["cluster"] is False
    node.db.dispose()
    again = app_factory(data_dir).extensions["lanpos_node"]
    assert len(sql(again, "SELECT 1 FROM audit_log WHERE action = 'node.started'")) == 3


# ------------------------------------------------------------------ query API
def test_audit_list_newest_first_with_filters(client, node, manager):
    sell(client, bearer(login(client, "cashier", "0000")["token"]), [("BAK-001", 1)])
    body = client.get("/api/audit?limit=5", headers=manager).get_json()
    entries = body["entries"]
    assert len(entries) == 5 and body["next"]
    keys = [(e["ts_ms"], e["device_id"], e["seq"]) for e in entries]
    assert keys == sorted(keys, reverse=True)
    assert {"device_id", "seq", "ts_ms", "user", "action", "details", "hash", "prev_hash"} <= set(entries[0])
    page2 = client.get(f"/api/audit?limit=5&before={body['next']}", headers=manager).get_json()["entries"]
    assert not {e["seq"] for e in page2} & {e["seq"] for e in entries}
    only = client.get("/api/audit?action=sale.created", headers=manager).get_json()["entries"]
    assert [e["action"] for e in only] == ["sale.created"] and only[0]["user"] == "cashier"
    by_user = client.get("/api/audit?user=cashier", headers=manager).get_json()["entries"]
    assert by_user and all(e["user"] == "cashier" for e in by_user)
    wild = client.get("/api/audit?action=login.*", headers=manager).get_json()["entries"]
    assert wild and all(e["action"].startswith("login.") for e in wild)
    assert client.get("/api/audit?device_id=2", headers=manager).get_json()["entries"] == []
    ts = only[0]["ts_ms"]
    window = client.get(f"/api/audit?since={ts}&until={ts + 1}&action=sale.created",
                        headers=manager).get_json()["entries"]
    assert [e["seq"] for e in window] == [only[0]["seq"]]
    assert client.get(f"/api/audit?until={ts}&action=sale.created",
                      headers=manager).get_json()["entries"] == []


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "since=yesterday", "until=-1",
                                   "device_id=x", "before=garbage"])
def test_audit_list_bad_query_is_400(client, manager, query):
    assert_error(client.get(f"/api/audit?{query}", headers=manager), 400, "VALIDATION_ERROR")


def test_audit_csv_export(client, manager):
    resp = client.get("/api/audit/export.csv", headers=manager)
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    lines = resp.get_data(as_text=True).strip().splitlines()
    assert lines[0] == "device_id,seq,ts_ms,user,action,details,hash,damaged"
    assert len(lines) > 5


# -------------------------------------------------------------------- verify
def test_verify_ok(client, node, manager):
    result = verify(client, manager)
    total = sql(node, "SELECT COUNT(*) FROM audit_log")[0][0]
    assert result["ok"] is True and result["entries"] == total
    assert "broken_at" not in result
    assert result["devices"] == [{"device_id": 1, "entries": total, "ok": True, "broken_at": None}]


def test_verify_detects_an_updated_row(client, node, manager):
    sell(client, manager, [("BAK-001", 1)])
    (seq,), = sql(node, "SELECT seq FROM audit_log WHERE action = 'sale.created'")
    tamper(node, "UPDATE audit_log SET details = ? WHERE device_id = 1 AND seq = ?",
           (json.dumps({"sale_id": "nothing to see", "total_cents": 0}), seq))
    result = verify(client, manager)
    assert result["ok"] is False
    assert result["broken_at"] == {"device_id": 1, "seq": seq, "reason": "hash_mismatch"}


@pytest.mark.parametrize("column,value", [("user", "someone-else"), ("ts_ms", 0),
                                          ("action", "login.success")])
def test_verify_detects_other_edited_columns(client, node, manager, column, value):
    tamper(node, f"UPDATE audit_log SET {column} = ? WHERE device_id = 1 AND seq = 3", (value,))
    result = verify(client, manager)
    assert result["ok"] is False and result["broken_at"]["seq"] == 3


def test_verify_detects_a_deleted_middle_row(client, node, manager):
    (count,), = sql(node, "SELECT COUNT(*) FROM audit_log")
    middle = count // 2
    tamper(node, "DELETE FROM audit_log WHERE device_id = 1 AND seq = ?", (middle,))
    result = verify(client, manager)
    assert result["ok"] is False
    assert result["broken_at"] == {"device_id": 1, "seq": middle, "reason": "missing_seq"}


def test_verify_detects_a_deleted_last_row_even_after_more_writes(client, node, manager):
    (last,), = sql(node, "SELECT MAX(seq) FROM audit_log")
    tamper(node, "DELETE FROM audit_log WHERE device_id = 1 AND seq = ?", (last,))
    result = verify(client, manager)
    assert result["ok"] is False
    assert result["broken_at"] == {"device_id": 1, "seq": last, "reason": "truncated"}
    # New entries must not paper over the cut (they continue after the recorded head).
    login(client, "cashier", "0000")
    sell(client, manager, [("BAK-001", 1)])
    result = verify(client, manager)
    assert result["ok"] is False and result["broken_at"]["seq"] == last


def test_verify_detects_a_swapped_pair_of_rows(client, node, manager):
    tamper(node, "UPDATE audit_log SET seq = -1 WHERE device_id = 1 AND seq = 2")
    tamper(node, "UPDATE audit_log SET seq = 2 WHERE device_id = 1 AND seq = 3")
    tamper(node, "UPDATE audit_log SET seq = 3 WHERE device_id = 1 AND seq = -1")
    result = verify(client, manager)
    assert result["ok"] is False and result["broken_at"]["seq"] == 2


# ------------------------------------------------------------------------ CLI
def test_verify_audit_cli_exit_codes(client, node, manager, data_dir):
    sell(client, manager, [("BAK-001", 1)])
    ok = run_verify_cli(data_dir)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "audit log verified: OK" in ok.stdout
    assert "device 1:" in ok.stdout and "ok" in ok.stdout
    (seq,), = sql(node, "SELECT seq FROM audit_log WHERE action = 'sale.created'")
    tamper(node, "UPDATE audit_log SET details = '{}' WHERE device_id = 1 AND seq = ?", (seq,))
    broken = run_verify_cli(data_dir)
    assert broken.returncode != 0
    assert f"BROKEN at seq {seq}" in broken.stdout and "FAILED" in broken.stdout


def test_verify_audit_cli_detects_deletions(node, data_dir):
    tamper(node, "DELETE FROM audit_log WHERE device_id = 1 AND seq = 2")
    result = run_verify_cli(data_dir)
    assert result.returncode != 0 and "BROKEN at seq 2 (missing_seq)" in result.stdout


def test_verify_audit_cli_without_database(tmp_path):
    result = run_verify_cli(tmp_path / "empty")
    assert result.returncode != 0 and "no database" in result.stderr


# ------------------------------------------------------- a real node process
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_node_audits_start_and_stop(tmp_path):
    """`python -m app run` (one till, no peers): start and SIGTERM both leave audit entries."""
    port = _free_port()
    data = tmp_path / "till1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "run", "--device-id", "1", "--port", str(port),
         "--host", "127.0.0.1", "--data-dir", str(data), "--no-discovery",
         "--failover-timeout", "0.5", "--heartbeat-interval", "0.1"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "POS_ADMIN_PIN": "432198"})
    try:
        deadline = time.monotonic() + 30
        token = None
        while time.monotonic() < deadline and token is None:
            try:
                resp = requests.post(f"http://127.0.0.1:{port}/api/auth/login",
                                     json={"username": "admin", "pin": "432198"}, timeout=2)
                if resp.status_code == 200:
                    token = resp.json()["token"]
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        assert token, "the node did not come up with its --admin-pin user"
        health = requests.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
        assert health["role"] == "master" and health["schema_version"] == SCHEMA_VERSION
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    con = sqlite3.connect(data / "lanpos.db")
    try:
        found = [a for (a,) in con.execute("SELECT action FROM audit_log ORDER BY seq")]
    finally:
        con.close()
    assert found[0] == "node.started" and found[-1] == "node.stopped"
    assert "user.created" in found and "login.success" in found
    assert run_verify_cli(data).returncode == 0
