"""Start and stop the cluster machinery around a created app (placeholder until cluster.py)."""

from __future__ import annotations

from flask import Flask


def start_cluster(app: Flask) -> None:
    node = app.extensions["lanpos_node"]
    if not node.config.cluster:
        return
    from app.services.cluster import ClusterRuntime

    runtime = ClusterRuntime(node, app)
    node.cluster = runtime
    runtime.start()


def stop_cluster(app: Flask) -> None:
    node = app.extensions["lanpos_node"]
    if node.cluster is not None:
        node.cluster.stop()
