"""Socket.IO for browsers: authenticate on connect, then the node pushes live state.

Flask's before_request does not run for Socket.IO events, so the connect handler
checks the token itself (Flask-SocketIO docs).
"""

from __future__ import annotations

from flask import current_app, request
from flask_socketio import join_room

from app.extensions import socketio
from app.routes.guards import SESSION_COOKIE
from app.services import users as users_service
from app.utils.errors import ApiError

BROWSERS = "browsers"


def register() -> None:
    @socketio.on("connect")
    def _connect(auth=None):
        n = current_app.extensions["lanpos_node"]
        token = (auth or {}).get("token") if isinstance(auth, dict) else None
        token = token or request.cookies.get(SESSION_COOKIE)
        if not token:
            return False
        try:
            users_service.authenticate(n, token)
        except ApiError:
            return False
        join_room(BROWSERS)
        status = n.status()
        socketio.emit("cluster_status", {**status, "outbox_pending": n.ledger.outbox_pending()},
                      to=request.sid)
        return True


NODES = "nodes"


def register_node_namespace() -> None:
    """Node-to-node traffic on /node: signed connect, heartbeats, submissions."""
    from app.services.cluster import NODE_NS

    def runtime():
        return current_app.extensions["lanpos_node"].cluster

    @socketio.on("connect", namespace=NODE_NS)
    def _node_connect(auth=None):
        rt = runtime()
        if rt is None or not rt.on_node_connect(auth, request.remote_addr or "?"):
            return False
        join_room(NODES, namespace=NODE_NS)
        return True

    @socketio.on("heartbeat", namespace=NODE_NS)
    def _heartbeat(envelope):
        rt = runtime()
        return rt.on_heartbeat(envelope, request.remote_addr or "?") if rt else None

    @socketio.on("submit", namespace=NODE_NS)
    def _submit(envelope):
        rt = runtime()
        return rt.on_submit(envelope, request.remote_addr or "?") if rt else None
