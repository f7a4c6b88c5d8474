"""The runtime wires the lease fence (cluster/lease.py) to the journal and the heartbeat
replies: a master whose process stood still renews its lease only once a peer has answered
a heartbeat it sent after waking. The rules themselves are unit-tested on a fake clock in
tests/unit/test_lease.py; here the runtime gets a fake clock as an argument.

Chaos seed 3000 (session 4): the master woke from SIGSTOP, heard only heartbeats that had
waited in its sockets, was then left alone (its one reachable peer was killed) and, one
failover timeout later, renewed its lease and journaled at its old term for 8 s.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

from sqlalchemy import text

from app.services.cluster.election import Heartbeat
from app.services.cluster.runtime import ClusterRuntime
from app.services.cluster.socketio_transport import SocketIoTransport


def test_a_stalled_master_renews_its_lease_only_after_a_fresh_answer(node, monkeypatch):
    clock = {"now": 5_000_000}
    monkeypatch.setattr(node.config, "cluster_secret", "test-secret")
    transport = SocketIoTransport.for_config(node.config, broadcast=lambda *a: None)
    runtime = ClusterRuntime(node, transport, emit_browsers=lambda *a: None,
                             clock=lambda: clock["now"])
    timeout = runtime.cfg.failover_timeout_ms
    # The election is not under test here: this till already won it (the core's actions,
    # which the runtime would carry out, are left undone), so the peer's heartbeats below
    # change no role and start no thread.
    won = runtime.core.tick(clock["now"] + 10 * timeout)
    clock["now"] += 10 * timeout
    assert runtime.core.role == "master", won
    node.journal.sequencer.active = True
    link = SimpleNamespace(address="127.0.0.1:9", device_id=2, connected=False, stop=lambda: None)
    runtime.links.put(link)
    epoch = runtime.core.epoch
    peer = runtime.transport.seal({"hb": Heartbeat(2, epoch, "client", node.device_id, 0, epoch,
                                         node.schema_version, True).to_dict(), "port": 9})

    node.journal.attach_cluster(runtime)  # what the wiring does once the runtime has started

    def lease_after(step_ms: int) -> int | None:
        clock["now"] += step_ms
        runtime.heartbeats.renew_lease()
        return runtime.lease.lease_until_ms

    first = lease_after(0)
    assert first == clock["now"] + timeout
    assert node.journal.sequencer.may_sequence()                    # the journal reads the live lease
    assert lease_after(500) > first                      # ticking normally: renewed
    held = runtime.lease.lease_until_ms
    assert lease_after(timeout + 700) == held            # stood still: fenced
    assert not node.journal.sequencer.may_sequence()                # the journal sees it lapsed
    assert lease_after(timeout - 900) == held            # fenced
    assert lease_after(1000) == held                     # fence over, nobody answered yet
    runtime.heartbeats.on_reply(peer, link, stall_gen=runtime.lease.sent_generation - 1)  # waited in a socket
    assert lease_after(500) == held
    runtime.heartbeats.on_reply(peer, link, stall_gen=runtime.lease.sent_generation)      # answers us since
    assert lease_after(500) == clock["now"] + timeout
    assert node.journal.sequencer.may_sequence()
    assert runtime.core.role == "master"
    assert [(p.device_id, p.last_seen) for p in runtime.core.peers(clock["now"])] == [
        (2, clock["now"] - 500)]                         # both replies reached the election
    with node.db.read() as session:
        stalls = [json.loads(d) for (d,) in session.execute(
            text("SELECT details FROM audit_log WHERE action = 'node.stalled'"))]
    assert stalls == [{"gap_ms": timeout + 700, "was_sequencing": True}]
