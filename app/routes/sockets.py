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
