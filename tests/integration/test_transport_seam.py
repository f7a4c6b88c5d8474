"""The cluster runtime reaches its peers only through its `Transport`
(app/services/cluster/transport.py): three tills' runtimes, linked by an in-memory
transport (tests/memory_transport.py) and driven by one fake clock, elect a master, hear
its journal pushes and fail over when it is killed, with no socket and no job thread
(only the runtime's own promote and sync-round threads)."""

from __future__ import annotations

import time
from collections.abc import Callable

from app.services.cluster.runtime import ClusterRuntime
from app.services.node import Node
from tests.ledgers import product_event
from tests.memory_transport import MemoryNetwork, MemoryTransport

TICK_MS = 200


def eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """The runtime's own threads (promote, sync rounds) finish their work."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.01)


def make_tills(app_factory, count: int):
    network = MemoryNetwork()
    clock = {"now": 1_000_000}
    addresses = [f"127.0.0.1:{7000 + n}" for n in range(1, count + 1)]
    tills: dict[int, tuple[Node, ClusterRuntime]] = {}
    for n, address in enumerate(addresses, start=1):
        node = app_factory(device_id=n, host="127.0.0.1", port=7000 + n,
                           peers=[a for a in addresses if a != address]
                           ).extensions["lanpos_node"]
        node.journal.sequencer.stop()  # a node without a cluster starts as its own master
        transport = MemoryTransport(network, address, node.config.cluster_secret, n)
        runtime = ClusterRuntime(node, transport, emit_browsers=lambda *a: None,
                                 clock=lambda: clock["now"])
        node.cluster = runtime
        network.register(address, runtime.rpc, node.journal)
        tills[n] = (node, runtime)
    for node, runtime in tills.values():
        runtime.join()
        node.journal.attach_cluster(runtime)
    return network, clock, tills


def tick_all(network, clock, runtimes, times: int = 1) -> None:
    for _ in range(times):
        clock["now"] += TICK_MS
        network.connect_all()
        for runtime in runtimes:
            runtime.heartbeat_tick()


def masters(runtimes) -> set[int | None]:
    return {runtime.core.master_id if runtime.core.role == "client" else runtime.device_id
            for runtime in runtimes}


def test_three_runtimes_elect_push_and_fail_over_through_the_transport(app_factory):
    network, clock, tills = make_tills(app_factory, 3)
    runtimes = [runtime for _node, runtime in tills.values()]
    node1 = tills[1][0]
    # Every link came up at join and sent a heartbeat through the transport at once.
    assert all(network.sent[(f"127.0.0.1:700{a}", f"127.0.0.1:700{b}", "heartbeat")] >= 1
               for a in (1, 2, 3) for b in (1, 2, 3) if a != b)

    # Nobody is master: after a failover timeout without one, the lowest id claims it.
    timeout_ticks = node1.config.failover_timeout_ms // TICK_MS + 2
    tick_all(network, clock, runtimes, timeout_ticks)
    eventually(lambda: node1.journal.sequencer.active, "till 1 sequences")
    tick_all(network, clock, runtimes, 2)
    assert masters(runtimes) == {1}
    assert [runtime.status_view.state() for runtime in runtimes] == ["online"] * 3

    # What the master journals reaches the others as its push (`sync_update`).
    node1.journal.execute(product_event(node1.journal, sku="SEAM", stock=3))
    position = node1.journal.store.position()
    for n in (2, 3):
        eventually(lambda n=n: tills[n][0].journal.store.position() == position,
                   f"till {n} has the master's entry")
        assert network.sent[("127.0.0.1:7001", f"127.0.0.1:700{n}", "sync_update")] >= 1

    # kill -9 of the master: its links drop at once, till 2 takes over at a higher epoch.
    epoch_before = tills[2][1].core.epoch
    network.kill("127.0.0.1:7001")
    survivors = runtimes[1:]
    tick_all(network, clock, survivors, timeout_ticks)
    eventually(lambda: tills[2][0].journal.sequencer.active, "till 2 sequences")
    tick_all(network, clock, survivors, 2)
    assert masters(survivors) == {2}
    assert tills[2][1].core.epoch > epoch_before
    assert tills[3][1].core.epoch == tills[2][1].core.epoch
    assert tills[2][0].journal.store.position()[0] == tills[3][0].journal.store.position()[0] == position[0]
    for runtime in runtimes:
        runtime.stop()


def test_a_status_view_changes_nothing(app_factory):
    """state(), status() and sync_status() only read: asking twice, or not at all, leaves
    the runtime and the journal as they were."""
    network, clock, tills = make_tills(app_factory, 2)
    runtimes = [runtime for _node, runtime in tills.values()]
    tick_all(network, clock, runtimes, 20)
    eventually(lambda: tills[1][0].journal.sequencer.active, "till 1 sequences")
    tick_all(network, clock, runtimes, 2)
    node2, runtime2 = tills[2]
    # A sale that went offline at till 2 and has reached the master since.
    node2.journal.write_path.last_offline_ms = 123
    before = (vars(runtime2.status_view).copy(), node2.journal.write_path.last_offline_ms)
    first = runtime2.status_view.status()
    assert runtime2.status_view.status() == first and runtime2.status_view.sync_status() == first["sync"]
    assert (vars(runtime2.status_view), node2.journal.write_path.last_offline_ms) == before
    assert first["state"] == "online"
    # The outbox drained while the master is linked: the heartbeat tick settles it.
    tick_all(network, clock, runtimes)
    assert node2.journal.write_path.last_offline_ms == 123  # the journal's fact is left alone
    assert runtime2.status_view.state() == "online"
    for runtime in runtimes:
        runtime.stop()
