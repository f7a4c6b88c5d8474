"""The one wiring module: starts and stops the cluster machinery and housekeeping.

It alone knows Flask, the routes and the three service packages together.
"""

from __future__ import annotations

import logging

from flask import Flask

from app.extensions import socketio
from app.routes.sockets import BROWSERS, NODES, sweep_session_sockets
from app.services.cluster.jobs import MonotonicJobs
from app.services.cluster.runtime import ClusterRuntime
from app.services.cluster.socketio_transport import NODE_NS, SocketIoTransport
from app.services.shop import users

log = logging.getLogger(__name__)
# Seconds between housekeeping runs: a browser socket outlives its session's expiry by
# at most this long (revocations and logouts end sockets at once).
HOUSEKEEPING_INTERVAL = 15.0


def housekeeping(app: Flask) -> None:
    """Purge ended sessions and failure rows that no longer count; end the browser
    sockets of sessions that ended (expiry)."""
    node = app.extensions["lanpos_node"]
    sweep_session_sockets(node)
    purged = users.housekeeping(node)
    if any(purged.values()):
        log.info("housekeeping purged %s", purged)


def start_housekeeping(app: Flask) -> MonotonicJobs:
    """The periodic housekeeping job, with or without clustering (stopped by stop_cluster)."""
    jobs = MonotonicJobs()
    jobs.every(HOUSEKEEPING_INTERVAL, lambda: housekeeping(app), "housekeeping")
    app.extensions["lanpos_housekeeping"] = jobs
    return jobs


def start_cluster(app: Flask) -> ClusterRuntime | None:
    node = app.extensions["lanpos_node"]
    start_housekeeping(app)
    if not node.config.cluster:
        return None

    def emit_nodes(event: str, data: dict) -> None:
        socketio.emit(event, data, to=NODES, namespace=NODE_NS)

    def emit_browsers(event: str, data: dict) -> None:
        socketio.emit(event, data, to=BROWSERS)

    # The cluster reaches its peers only through this transport (cluster/transport.py):
    # Socket.IO links and signed HTTP here, an in-memory one in tests.
    transport = SocketIoTransport.for_config(node.config, broadcast=emit_nodes)
    runtime = ClusterRuntime(node, transport, emit_browsers=emit_browsers)
    node.cluster = runtime

    def broadcast_critical(notices: list) -> None:
        for name, data in notices:
            if name == "critical_event":
                runtime.rpc.broadcast_critical(data)

    node.journal.subscribe(broadcast_critical)
    runtime.start()  # grants the first lease
    # From now on the write path reads lease, isolation and master link from the runtime.
    node.journal.attach_cluster(runtime)
    return runtime


def stop_cluster(app: Flask) -> None:
    node = app.extensions["lanpos_node"]
    jobs = app.extensions.pop("lanpos_housekeeping", None)
    if jobs is not None:
        jobs.stop()
    if node.cluster is not None:
        node.cluster.stop()
