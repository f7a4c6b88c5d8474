"""A till whose audit chain stops extending what the other till copied is reported on
both tills (issue 12, DESIGN invariant 6): real node processes, the altered till's
database edited with `sqlite3` while it is stopped, checked through the API and
`python -m app verify-audit`. Every wait polls with a deadline."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from typing import Any, Callable

from tests.chaos.checker import broken_audit_devices
from tests.cluster.harness import ROOT, Cluster
from tests.integration.test_audit_tamper import rehash_without

DEADLINE = 30.0  # audit copies are pulled every 5 s


def poll(what: str, probe: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise TimeoutError(f"{what}: last seen {last!r}")


def head(node, device: int) -> int:
    return node.query("SELECT COALESCE(MAX(seq), 0) FROM audit_log WHERE device_id = ?",
                      (device,))[0][0]


def verdict(node, device: int) -> dict[str, Any] | None:
    """This till's verification of `device`'s chain (None while the till does not answer)."""
    try:
        resp = node.call("GET", "/api/audit/verify", user="manager", timeout=10)
    except Exception:  # noqa: BLE001 - a till coming up
        return None
    if resp.status_code != 200:
        return None
    return next((d for d in resp.json()["devices"] if d["device_id"] == device), None)


def diverged(node, device: int) -> dict[str, Any] | None:
    found = verdict(node, device)
    return found if found and (found["broken_at"] or {}).get("reason") == "diverged" else None


def cli(data_dir: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", "verify-audit", "--data-dir", data_dir],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def copied_and_stopped(c: Cluster) -> int:
    """Till 1 holds till 2's chain as far as it went; then till 2 stops. Returns that seq."""
    target = head(c[2], 2)
    poll("till 1 copies till 2's chain", lambda: head(c[1], 2) >= target)
    c[2].stop()
    return target


def assert_reported_everywhere(c: Cluster, reasons: set[str]) -> None:
    on1 = poll("till 1 reports till 2", lambda: diverged(c[1], 2))
    assert on1["ok"] is False and on1["broken_at"]["diverged"] in reasons, on1
    assert on1["diverged"][0]["reported_by"] == 1
    # Till 2 learns it from its copy of till 1's chain.
    on2 = poll("till 2 reports itself", lambda: diverged(c[2], 2))
    assert on2["broken_at"]["diverged"] == on1["broken_at"]["diverged"]
    for node in (c[1], c[2]):
        out = cli(node.data_dir)
        assert out.returncode == 1, out.stdout + out.stderr
        assert "device 2:" in out.stdout and "(diverged)" in out.stdout
        # The chaos checker reads this output to tell a wiped till's expected divergence
        # from any other break: its parser must read the CLI as it prints today.
        assert broken_audit_devices(out.stdout) == {2: "diverged"}, out.stdout
    # Reported once, not on every pull (till 2 has pulled since, so till 1 has too).
    assert c[1].query("SELECT COUNT(*) FROM audit_log WHERE action = 'audit.diverged'") == [(1,)]
    # Till 1's copy of till 2's chain is kept, and verifies as a chain.
    assert head(c[1], 2) >= 3


def test_a_rehashed_chain_is_reported_on_both_tills(make_cluster):
    c = make_cluster(2)
    copied_and_stopped(c)
    rehash_without(c[2].db_path, 2, drop_seq=2)  # one entry gone, the rest re-hashed
    forged = cli(c[2].data_dir)
    assert forged.returncode == 0, forged.stdout  # on its own, the forgery verifies
    c[2].start().wait_up()
    assert_reported_everywhere(c, {"rewritten", "truncated"})


def test_a_wiped_chain_is_reported_on_both_tills(make_cluster):
    c = make_cluster(2)
    copied_and_stopped(c)
    with closing(sqlite3.connect(c[2].db_path)) as con, con:
        con.execute("DELETE FROM audit_log WHERE device_id = 2")
        con.execute("DELETE FROM node_state WHERE key = 'audit_head:2'")
    c[2].start().wait_up()
    assert_reported_everywhere(c, {"truncated", "rewritten", "wiped"})
