"""Audit log against a damaged or altered database (issue 12, DESIGN invariant 6).

Every case edits a real node's SQLite file with the `sqlite3` module, as someone holding
the file would, then checks the API (verify, list, CSV export) and `python -m app
verify-audit` (exit 0 ok, 1 broken, 2 could not verify). Divergence between tills is
checked here at the service level (two nodes, the copy handed over directly) and with
real processes in tests/cluster/test_audit_divergence.py.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.services import audit
from app.utils.canonical import canonical_json
from app.utils.hashchain import GENESIS, entry_hash
from tests.integration.conftest import sell, sql

REPO = Path(__file__).resolve().parents[2]


def tamper(node, *statements: tuple[str, tuple]) -> None:
    """Edit the database behind the node's back, in one transaction."""
    con = sqlite3.connect(node.db.path)
    try:
        for statement, params in statements:
            con.execute(statement, params)
        con.commit()
    finally:
        con.close()


def verify(client, headers) -> dict[str, Any]:
    resp = client.get("/api/audit/verify", headers=headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    body = resp.get_json()
    assert body["success"] is True
    return body


def cli(data_dir, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", "verify-audit", "--data-dir", str(data_dir),
                           *extra], cwd=REPO, capture_output=True, text=True, timeout=60)


def a_sale_entry(client, node, manager) -> int:
    assert sell(client, manager, [("BAK-001", 1)]).status_code == 201
    return sql(node, "SELECT MAX(seq) FROM audit_log WHERE action = 'sale.created'")[0][0]


def assert_broken(client, manager, data_dir, seq: Any, reason: str) -> dict[str, Any]:
    """Broken through the API and the CLI, at `seq` for `reason`."""
    result = verify(client, manager)
    assert result["ok"] is False, result
    assert result["broken_at"]["device_id"] == 1
    assert (result["broken_at"]["seq"], result["broken_at"]["reason"]) == (seq, reason), result
    out = cli(data_dir)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"BROKEN at seq {seq} ({reason})" in out.stdout and "FAILED" in out.stdout
    assert "Traceback" not in out.stderr
    return result


def listed(client, manager, **query: Any) -> list[dict[str, Any]]:
    resp = client.get("/api/audit", headers=manager, query_string={"limit": 1000, **query})
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    return resp.get_json()["entries"]


def exported(client, manager) -> str:
    resp = client.get("/api/audit/export.csv", headers=manager)
    assert resp.status_code == 200
    return resp.get_data(as_text=True)


# ------------------------------------------------------------- damaged rows
def test_details_that_are_not_json_are_a_break_not_a_crash(client, node, manager, data_dir):
    seq = a_sale_entry(client, node, manager)
    tamper(node, ("UPDATE audit_log SET details = ? WHERE device_id = 1 AND seq = ?",
                  ('{"sale_id": "S1", "total_', seq)))
    assert_broken(client, manager, data_dir, seq, "details_invalid_json")
    row = next(e for e in listed(client, manager) if e["seq"] == seq)
    assert row["details"] == '{"sale_id": "S1", "total_'  # shown as stored, flagged
    assert row["damaged"] == {"details": "details_invalid_json"}
    csv_text = exported(client, manager)
    assert '"{""sale_id"": ""S1"", ""total_"' in csv_text and "details:details_invalid_json" in csv_text


@pytest.mark.parametrize("stored", [3.5, "three", b"\x03"], ids=["real", "text", "blob"])
def test_a_seq_that_is_not_an_integer_is_a_break_not_a_crash(client, node, manager, data_dir,
                                                             stored):
    tamper(node, ("UPDATE audit_log SET seq = ? WHERE device_id = 1 AND seq = 4", (stored,)))
    result = verify(client, manager)
    assert result["ok"] is False
    assert result["broken_at"]["reason"] == "seq_not_integer", result
    assert result["broken_at"]["stored_seq"] == {3.5: "3.5", "three": "three",
                                                 b"\x03": "x'03'"}[stored]
    out = cli(data_dir)
    assert out.returncode == 1 and "(seq_not_integer)" in out.stdout, out.stdout + out.stderr
    flagged = [e for e in listed(client, manager) if e.get("damaged")]
    assert [e["damaged"] for e in flagged] == [{"seq": "not_integer"}]
    assert "seq:not_integer" in exported(client, manager)


@pytest.mark.parametrize("head", ["garbage", "12", "x,y", "3,abc", ""])
def test_a_malformed_head_is_a_break_and_the_till_keeps_selling(client, node, manager, data_dir,
                                                                head):
    tamper(node, ("UPDATE node_state SET value = ? WHERE key = 'audit_head:1'", (head,)))
    last = sql(node, "SELECT MAX(seq) FROM audit_log WHERE device_id = 1")[0][0]
    assert_broken(client, manager, data_dir, last, "head_malformed")
    # Writing goes on; the chain continues after a gap, so the damage stays visible.
    assert sell(client, manager, [("BAK-001", 1)]).status_code == 201
    result = verify(client, manager)
    assert result["ok"] is False and result["broken_at"] == {
        "device_id": 1, "seq": last + 1, "reason": "missing_seq"}


def test_a_malformed_head_key_is_reported(client, node, manager, data_dir):
    tamper(node, ("INSERT INTO node_state (key, value) VALUES ('audit_head:x', '1,2')", ()))
    result = verify(client, manager)
    assert result["ok"] is False
    assert {"device_id": "audit_head:x", "entries": 0, "ok": False,
            "broken_at": {"seq": 1, "reason": "head_malformed"}} in result["devices"]
    assert cli(data_dir).returncode == 1


# ------------------------------------------------------------ stored bytes
@pytest.mark.parametrize("variant", ["duplicate_key", "key_order", "whitespace"])
def test_only_the_canonical_stored_text_verifies(client, node, manager, data_dir, variant):
    """Texts that parse to the value that was hashed, but are not its canonical text:
    a duplicate key (a reader taking the first sees total 0), another key order, spaces."""
    seq = a_sale_entry(client, node, manager)
    (text,), = sql(node, "SELECT details FROM audit_log WHERE device_id = 1 AND seq = ?", (seq,))
    value = json.loads(text)
    assert text == canonical_json(value)  # stored as the canonical text
    if variant == "duplicate_key":
        other = '{"total_cents":0,' + text[1:]
    elif variant == "key_order":
        other = json.dumps(dict(reversed(list(value.items()))), separators=(",", ":"),
                           ensure_ascii=False)
    else:
        other = json.dumps(value, sort_keys=True, ensure_ascii=False)
    assert other != text and json.loads(other) == value
    tamper(node, ("UPDATE audit_log SET details = ? WHERE device_id = 1 AND seq = ?", (other, seq)))
    assert_broken(client, manager, data_dir, seq, "details_not_canonical")
    row = next(e for e in listed(client, manager) if e["seq"] == seq)
    assert row["details"] == other and row["damaged"] == {"details": "details_not_canonical"}


def test_unicode_details_are_stored_as_the_hashed_text(client, node, manager):
    resp = client.post("/api/stock/adjust", headers=manager,
                       json={"sku": "BAK-001", "quantity": -1, "reason": "Brötchen zerdrückt €"})
    assert resp.status_code == 201, resp.get_json()
    (text,), = sql(node, "SELECT details FROM audit_log WHERE action = 'stock.adjusted'")
    assert "Brötchen zerdrückt €" in text and text == canonical_json(json.loads(text))
    assert verify(client, manager)["ok"] is True


# ------------------------------------------------------------- heads
def test_cutting_the_last_rows_together_with_the_head_is_detected(client, node, manager, data_dir):
    last = sql(node, "SELECT MAX(seq) FROM audit_log WHERE device_id = 1")[0][0]
    tamper(node, ("DELETE FROM audit_log WHERE device_id = 1 AND seq > ?", (last - 2,)),
           ("DELETE FROM node_state WHERE key = 'audit_head:1'", ()))
    assert_broken(client, manager, data_dir, last - 2, "head_missing")


def test_a_head_moved_back_is_detected(client, node, manager, data_dir):
    (h3,), = sql(node, "SELECT hash FROM audit_log WHERE device_id = 1 AND seq = 3")
    tamper(node, ("UPDATE node_state SET value = ? WHERE key = 'audit_head:1'", (f"3,{h3}",)))
    assert_broken(client, manager, data_dir, 4, "head_moved")


def test_a_head_naming_another_hash_is_detected(client, node, manager, data_dir):
    last = sql(node, "SELECT MAX(seq) FROM audit_log WHERE device_id = 1")[0][0]
    tamper(node, ("UPDATE node_state SET value = ? WHERE key = 'audit_head:1'", (f"{last},{'a' * 64}",)))
    assert_broken(client, manager, data_dir, last, "head_moved")


@pytest.mark.parametrize("also_identity", [False, True], ids=["chain_and_head", "and_identity"])
def test_a_wiped_own_chain_is_detected(client, node, manager, data_dir, also_identity):
    statements = [("DELETE FROM audit_log WHERE device_id = 1", ()),
                  ("DELETE FROM node_state WHERE key = 'audit_head:1'", ())]
    if also_identity:
        statements.append(("DELETE FROM node_state WHERE key = 'audit_device'", ()))
    tamper(node, *statements)
    result = verify(client, manager)  # the API knows its own device from its config
    assert result["ok"] is False
    assert result["broken_at"] == {"device_id": 1, "seq": 1, "reason": "chain_missing"}
    out = cli(data_dir)
    assert out.returncode == 1, out.stdout + out.stderr
    if also_identity:
        assert "own device id is not recorded" in out.stdout
        named = cli(data_dir, "--device-id", "1")
        assert named.returncode == 1 and "BROKEN at seq 1 (chain_missing)" in named.stdout
    else:
        assert "BROKEN at seq 1 (chain_missing)" in out.stdout


def test_verify_audit_cli_says_could_not_verify(tmp_path, data_dir, node):
    assert cli(tmp_path / "nowhere").returncode == 2
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "lanpos.db").write_bytes(b"this is not a database" * 100)
    out = cli(junk)
    assert out.returncode == 2 and "could not verify" in out.stderr and "Traceback" not in out.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    sqlite3.connect(empty / "lanpos.db").close()
    assert cli(empty).returncode == 2
    tamper(node, ("UPDATE alembic_version SET version_num = '0001'", ()))
    out = cli(data_dir)
    assert out.returncode == 2 and "schema 0001" in out.stderr


# ----------------------------------------------------------- migration 0005
def test_0005_stores_existing_details_as_canonical_text_without_changing_hashes(tmp_path):
    from alembic import command

    from app.models.db import Database
    from app.models.migrate import alembic_config

    db = Database(str(tmp_path / "lanpos.db"))
    command.upgrade(alembic_config(db.engine), "0004")
    rows, heads = [], []
    for device in (1, 2):  # 1: this till (with its head); 2: a copy (no head before 0005)
        prev = GENESIS
        for seq in (1, 2, 3):
            details = {"z": seq, "a": "Brötchen €", "nested": {"b": [1, {"y": None, "x": True}]}}
            entry = audit.canonical_entry(device, seq, 1000 + seq, "anna", "sale.created", details)
            digest = entry_hash(prev, entry)
            rows.append((device, seq, 1000 + seq, "anna", "sale.created", json.dumps(details),
                         prev, digest))  # as the code before 0005 stored it
            prev = digest
        if device == 1:
            heads.append(("audit_head:1", f"3,{prev}"))
    rows.append((1, 4, 1004, None, "x", "{not json", rows[2][7], "f" * 64))  # left as is
    con = sqlite3.connect(db.path)
    con.executemany("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    con.executemany("INSERT INTO node_state VALUES (?, ?)", heads)
    con.commit()
    con.close()
    db.migrate()
    after = sqlite3.connect(db.path)
    try:
        stored = after.execute("SELECT device_id, seq, details, hash FROM audit_log "
                               "ORDER BY device_id, seq").fetchall()
        state = dict(after.execute("SELECT key, value FROM node_state WHERE key LIKE 'audit_%'"))
    finally:
        after.close()
    assert [h for *_, h in stored] == [r[7] for r in sorted(rows)]  # no hash changed
    for device, seq, text, _h in stored:
        if (device, seq) != (1, 4):
            assert text == canonical_json(json.loads(text)) and "Brötchen €" in text
    assert stored[3][2] == "{not json"
    assert state["audit_head:2"] == f"3,{stored[-1][3]}"  # the copy got its head
    with db.read() as session:
        result = audit.verify_all(session, 2)
    per = {d["device_id"]: d for d in result["devices"]}
    assert per[2]["ok"] is True and per[2]["entries"] == 3
    assert per[1]["broken_at"] == {"seq": 4, "reason": "details_invalid_json"}
    db.dispose()


# ------------------------------------------------- divergence (service level)
def chain_page(node, device: int, after: int) -> dict[str, Any]:
    """What `/api/sync/audit?device_id=&after=` answers, from the peer's database."""
    with node.db.read() as session:
        return {"entries": audit.export_chain(session, device, after, 2000),
                "head": audit.chain_head(session, device)}


def pull(into, peer, device: int) -> dict[str, Any]:
    """One `AuditCopier.pull_audit` step (cluster/audit_copy.py) for one peer, without the network."""
    with into.db.read() as session:
        last = audit.chain_head(session, device)
    page = chain_page(peer, device, max((last["seq"] if last else 0) - 1, 0))
    with into.db.write() as session:
        return audit.take_peer_chain(session, into.audit, device, page)


def rehash_without(path: str, device: int, drop_seq: int) -> None:
    """Remove one entry of a chain and re-hash the rest, head included (no key is needed)."""
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT seq, ts_ms, user, action, details FROM audit_log "
                           "WHERE device_id = ? ORDER BY seq", (device,)).fetchall()
        con.execute("DELETE FROM audit_log WHERE device_id = ?", (device,))
        prev, seq = GENESIS, 0
        for old_seq, ts, user, action, details in rows:
            if old_seq == drop_seq:
                continue
            seq += 1
            entry = audit.canonical_entry(device, seq, ts, user, action, json.loads(details))
            digest = entry_hash(prev, entry)
            con.execute("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (device, seq, ts, user, action, details, prev, digest))
            prev = digest
        con.execute("UPDATE node_state SET value = ? WHERE key = ?",
                    (f"{seq},{prev}", f"audit_head:{device}"))
        con.commit()
    finally:
        con.close()


def test_a_rehashed_peer_chain_is_reported_once_and_the_copy_kept(app, node, manager, app_factory):
    till2 = app_factory(device_id=2).extensions["lanpos_node"]
    till1 = node
    with till2.db.write() as session:
        for i in range(3):
            till2.audit.record(session, "test.entry", None, {"i": i})
    assert pull(till1, till2, 2)["added"] == 4
    copy_before = sql(till1, "SELECT seq, hash FROM audit_log WHERE device_id = 2 ORDER BY seq")
    rehash_without(till2.db.path, 2, drop_seq=2)
    with till2.db.write() as session:  # the till carries on after the forgery
        till2.audit.record(session, "test.entry", None, {"i": 3})
    with till2.db.read() as session:  # locally the forgery is perfect
        assert audit.verify_all(session, 2)["ok"] is True

    first = pull(till1, till2, 2)
    assert first["diverged"] == "rewritten" and first.get("recorded") is True
    again = pull(till1, till2, 2)
    assert again["diverged"] == "rewritten" and not again.get("recorded")
    reports = sql(till1, "SELECT device_id, details FROM audit_log WHERE action = 'audit.diverged'")
    assert len(reports) == 1 and reports[0][0] == 1
    details = json.loads(reports[0][1])
    assert details["device_id"] == 2 and details["reason"] == "rewritten"
    assert (details["our_seq"], details["our_hash"]) == copy_before[-1]
    assert sql(till1, "SELECT seq, hash FROM audit_log WHERE device_id = 2 ORDER BY seq") == copy_before

    client1 = app.test_client()
    result = verify(client1, manager)
    dev2 = next(d for d in result["devices"] if d["device_id"] == 2)
    assert result["ok"] is False and dev2["ok"] is False
    assert dev2["broken_at"]["reason"] == "diverged" and dev2["broken_at"]["diverged"] == "rewritten"
    assert dev2["diverged"][0]["reported_by"] == 1

    # The altered till learns it from the copy of till 1's chain.
    assert pull(till2, till1, 1)["added"] >= 1
    with till2.db.read() as session:
        own = audit.verify_all(session, 2)
    mine = next(d for d in own["devices"] if d["device_id"] == 2)
    assert own["ok"] is False and mine["broken_at"]["reason"] == "diverged"


@pytest.mark.parametrize("how", ["wiped", "truncated"])
def test_a_wiped_or_truncated_peer_chain_is_reported(node, app_factory, how):
    till2 = app_factory(device_id=2).extensions["lanpos_node"]
    with till2.db.write() as session:
        for i in range(3):
            till2.audit.record(session, "test.entry", None, {"i": i})
    assert pull(node, till2, 2)["added"] == 4
    if how == "wiped":
        statements = [("DELETE FROM audit_log WHERE device_id = 2", ()),
                      ("DELETE FROM node_state WHERE key = 'audit_head:2'", ())]
    else:  # cut the last two entries and move the head back: consistent locally
        (h2,), = sql(till2, "SELECT hash FROM audit_log WHERE device_id = 2 AND seq = 2")
        statements = [("DELETE FROM audit_log WHERE device_id = 2 AND seq > 2", ()),
                      ("UPDATE node_state SET value = ? WHERE key = 'audit_head:2'", (f"2,{h2}",))]
    tamper(till2, *statements)
    result = pull(node, till2, 2)
    assert result["diverged"] == how and result.get("recorded") is True
    with node.db.read() as session:
        verdict = audit.verify_all(session, 1)
    dev2 = next(d for d in verdict["devices"] if d["device_id"] == 2)
    assert dev2["entries"] == 4 and dev2["broken_at"]["diverged"] == how


def test_a_peer_entry_that_does_not_hash_is_reported(node, app_factory):
    till2 = app_factory(device_id=2).extensions["lanpos_node"]
    assert pull(node, till2, 2)["added"] == 1
    with till2.db.write() as session:
        till2.audit.record(session, "test.entry", None, {"i": 1})
    tamper(till2, ("UPDATE audit_log SET details = '{\"i\":2}' WHERE device_id = 2 AND seq = 2", ()))
    result = pull(node, till2, 2)
    assert (result["added"], result["diverged"], result.get("recorded")) == (0, "invalid_entry", True)


def test_a_damaged_z_close_entry_is_a_break_and_the_day_report_still_answers(client, node, manager,
                                                                          data_dir):
    day = client.get("/api/reports/day", headers=manager).get_json()["report"]["date"]
    assert client.post("/api/reports/day/close", headers=manager, json={"date": day}).status_code == 201
    seq = sql(node, "SELECT MAX(seq) FROM audit_log WHERE action = 'report.z_closed'")[0][0]
    tamper(node, ("UPDATE audit_log SET details = ? WHERE device_id = 1 AND seq = ?",
                  ('{"date": "' + day, seq)))
    report = client.get("/api/reports/day", headers=manager, query_string={"date": day})
    assert report.status_code == 200, report.get_data(as_text=True)[:300]
    assert_broken(client, manager, data_dir, seq, "details_invalid_json")
