"""A master whose process stood still renews its lease only once a peer has answered a
heartbeat it sent after waking (cluster.ClusterRuntime._renew_lease), with a fake clock.

Chaos seed 3000 (session 4): the master woke from SIGSTOP, heard only heartbeats that had
waited in its sockets, was then left alone (its one reachable peer was killed) and, one
failover timeout later, renewed its lease and journaled at its old term for 8 s.
"""

from __future__ import annotations

from types import SimpleNamespace

from app.services.cluster import runtime as cluster_module
from app.services.cluster.election import Epoch, Heartbeat


def test_a_stalled_master_renews_its_lease_only_after_a_fresh_answer(node, monkeypatch):
    clock = {"now": 5_000_000}
    monkeypatch.setattr(cluster_module, "now_ms", lambda: clock["now"])
    monkeypatch.setattr(node.config, "cluster_secret", "test-secret")
    runtime = cluster_module.ClusterRuntime(node, emit_nodes=lambda *a: None,
                                            emit_browsers=lambda *a: None)
    node.ledger.sequencing = True
    heard: list[int] = []  # the election side of a heartbeat is not under test here
    monkeypatch.setattr(runtime, "_take_heartbeat",
                        lambda body, address, link: heard.append(body["hb"]["device_id"]))
    link = SimpleNamespace(address="127.0.0.1:9", device_id=2, stop=lambda: None)
    runtime.links = {link.address: link}
    timeout = runtime.cfg.failover_timeout_ms
    epoch = Epoch(*node.ledger.epoch)
    peer = runtime.seal({"hb": Heartbeat(2, epoch, "client", node.device_id, 0, epoch,
                                         node.schema_version, True).to_dict(), "port": 9})

    def lease_after(step_ms: int) -> float | None:
        clock["now"] += step_ms
        runtime._renew_lease()
        return node.ledger.lease_until

    first = lease_after(0)
    assert first == clock["now"] / 1000 + runtime.cfg.failover_timeout
    assert lease_after(500) > first                      # ticking normally: renewed
    held = node.ledger.lease_until
    assert lease_after(timeout + 700) == held            # stood still: fenced
    assert lease_after(timeout - 900) == held            # fenced
    assert lease_after(1000) == held                     # fence over, nobody answered yet
    runtime._on_reply(peer, link, stall_gen=runtime._stall_gen - 1)  # waited in a socket
    assert lease_after(500) == held
    runtime._on_reply(peer, link, stall_gen=runtime._stall_gen)      # answers us since
    assert lease_after(500) == clock["now"] / 1000 + runtime.cfg.failover_timeout
    assert heard == [2, 2]
