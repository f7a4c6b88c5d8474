"""Issue 3 with real processes: agreement, kill -9 failover, rejoin, reclaim, wrong secret."""

from __future__ import annotations

import time

import pytest

from tests.cluster.harness import Cluster, NodeProc, free_port

pytestmark = pytest.mark.cluster

FAILOVER = 2.0
HEARTBEAT = 0.5


def test_three_tills_agree_on_master_1_and_list_each_other(make_cluster):
    cluster = make_cluster(3)
    assert cluster.wait_master(expected=1) == 1
    view = cluster[3].cluster()
    assert view["role"] == "client" and view["master_id"] == 1
    assert [n["device_id"] for n in view["nodes"]] == [1, 2, 3]
    assert all(n["alive"] for n in view["nodes"])
    assert {n["device_id"]: n["role"] for n in view["nodes"]}[1] == "master"
    assert cluster[1].health()["role"] == "master"


def test_every_till_holds_a_verified_copy_of_every_other_tills_audit_chain(make_cluster):
    cluster = make_cluster(3)
    deadline = time.monotonic() + 12
    devices: set = set()
    while time.monotonic() < deadline:
        devices = {d for (d,) in cluster[3].query("SELECT DISTINCT device_id FROM audit_log")}
        if devices == {1, 2, 3}:
            break
        time.sleep(0.3)
    assert devices == {1, 2, 3}
    verify = cluster[3].call("GET", "/api/audit/verify", user="manager").json()
    assert verify["ok"] is True
    assert {d["device_id"] for d in verify["devices"]} == {1, 2, 3}
    mine = cluster[1].query("SELECT seq, hash FROM audit_log WHERE device_id=1 ORDER BY seq LIMIT 5")
    copy = cluster[3].query("SELECT seq, hash FROM audit_log WHERE device_id=1 ORDER BY seq LIMIT 5")
    assert mine == copy


def test_kill_master_then_next_lowest_takes_over_and_old_master_rejoins_as_client(make_cluster):
    cluster = make_cluster(3)
    epoch_before = tuple(cluster[1].health()["epoch"])
    killed_at = time.monotonic()
    cluster[1].kill()
    master = cluster.wait_master(expected=2, timeout=FAILOVER + 2 * HEARTBEAT + 1)
    took = time.monotonic() - killed_at
    assert master == 2
    assert took <= FAILOVER + 2 * HEARTBEAT, f"failover took {took:.2f}s"
    epoch_after = tuple(cluster[2].health()["epoch"])
    assert epoch_after > epoch_before and epoch_after[1] == 2

    cluster[1].start().wait_up()
    cluster.wait_master(expected=2, timeout=10)
    time.sleep(2 * FAILOVER)  # reclaim "never": it stays a client
    assert cluster.wait_master(timeout=5) == 2
    assert cluster[1].health()["role"] == "client"
    actions = {row[0] for row in cluster[1].query("SELECT action FROM audit_log")}
    assert {"election.follow", "node.started"} <= actions


def test_reclaim_auto_hands_the_role_back_after_the_delay(make_cluster):
    cluster = make_cluster(3, reclaim="auto", reclaim_delay=2.0)
    cluster[1].kill()
    cluster.wait_master(expected=2, timeout=5)
    cluster[1].start().wait_up()
    assert cluster.wait_master(expected=1, timeout=15) == 1
    assert cluster[2].health()["role"] == "client"
    epochs = {tuple(n.health()["epoch"]) for n in cluster.alive()}
    assert len(epochs) == 1 and epochs.pop()[1] == 1


def test_node_with_the_wrong_secret_is_refused_and_never_counted(make_cluster, tmp_path):
    cluster = make_cluster(3)
    port = free_port()
    intruder = NodeProc(4, port, str(tmp_path / "intruder"),
                        peers=[f"127.0.0.1:{p}" for p in cluster.ports.values()],
                        secret="not-the-cluster-secret")
    intruder.start()
    try:
        intruder.wait_up()
        time.sleep(3 * HEARTBEAT + FAILOVER)
        for node in cluster.alive():
            ids = [n["device_id"] for n in node.cluster()["nodes"]]
            assert 4 not in ids
        assert cluster.wait_master(expected=1, timeout=2) == 1
        refused = cluster[1].query("SELECT details FROM audit_log WHERE action='node.refused'")
        assert refused, "the refused node must be audited"
        # And the intruder cannot read the journal either.
        r = intruder.http.get(cluster[1].url + "/api/sync/changes?since=0")
        assert r.status_code == 401 and r.json()["error"]["code"] == "NODE_UNAUTHORIZED"
    finally:
        intruder.kill()


def test_a_till_links_back_to_a_till_that_only_it_was_not_told_about(tmp_path):
    """Till 1 starts with no peers; till 2 knows till 1. Till 1 learns till 2 from its
    heartbeats and links back (regression: reading the heartbeat's audit_seq had turned
    the learning branch into the else of that check, so a till never linked back)."""
    cluster = Cluster(2, str(tmp_path / "c"))
    cluster[1].peers = []
    try:
        cluster.start()
        want = f"127.0.0.1:{cluster[2].port}"
        deadline = time.monotonic() + 15
        nodes: list = []
        while time.monotonic() < deadline:
            nodes = cluster[1].cluster()["nodes"]
            if any(n["device_id"] == 2 and n["alive"] and n["address"] == want for n in nodes):
                break
            time.sleep(0.3)
        assert any(n["device_id"] == 2 and n["address"] == want for n in nodes), nodes
    finally:
        cluster.stop()
