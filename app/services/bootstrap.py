"""Start and stop the cluster machinery around a created app (one wiring place)."""

from __future__ import annotations

from flask import Flask

from app.extensions import socketio
from app.routes.sockets import BROWSERS, NODES
from app.services.cluster import NODE_NS, ClusterRuntime


def start_cluster(app: Flask) -> ClusterRuntime | None:
    node = app.extensions["lanpos_node"]
    if not node.config.cluster:
        return None

    def emit_nodes(event: str, data: dict) -> None:
        socketio.emit(event, data, to=NODES, namespace=NODE_NS)

    def emit_browsers(event: str, data: dict) -> None:
        socketio.emit(event, data, to=BROWSERS)

    runtime = ClusterRuntime(node, emit_nodes=emit_nodes, emit_browsers=emit_browsers)
    node.cluster = runtime
    relay = node.ledger.notify

    def notify(notices: list) -> None:
        relay(notices)
        for name, data in notices:
            if name == "critical_event":
                runtime.broadcast_critical(data)

    node.ledger.notify = notify
    runtime.start()
    return runtime


def stop_cluster(app: Flask) -> None:
    node = app.extensions["lanpos_node"]
    if node.cluster is not None:
        node.cluster.stop()
