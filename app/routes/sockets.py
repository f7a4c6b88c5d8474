"""Socket.IO for browsers: authenticate on connect, then the node pushes live state.

Flask's before_request does not run for Socket.IO events, so the connect handler
checks the token itself (Flask-SocketIO docs).
"""

from __future__ import annotations

import logging
import threading

from flask import current_app, request
from flask_socketio import join_room

from app.extensions import socketio
from app.routes.guards import SESSION_COOKIE
from app.services import refusals
from app.services.cluster.socketio_transport import NODE_NS
from app.services.node import Node
from app.services.shop import users as users_service
from app.utils.errors import ApiError

BROWSERS = "browsers"
log = logging.getLogger(__name__)


class SessionSockets:
    """Which browser sockets each login session holds (token sha256 -> sids), so that a
    socket ends with its session: logout, revocation (from the journal), expiry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sids: dict[str, set[str]] = {}
        self._user: dict[str, str] = {}
        self._digest_of: dict[str, str] = {}

    def add(self, digest: str, username: str, sid: str) -> None:
        with self._lock:
            self._sids.setdefault(digest, set()).add(sid)
            self._user[digest] = username
            self._digest_of[sid] = digest

    def remove_sid(self, sid: str) -> None:
        with self._lock:
            digest = self._digest_of.pop(sid, None)
            sids = self._sids.get(digest) if digest is not None else None
            if sids is not None:
                sids.discard(sid)
                if not sids:
                    del self._sids[digest]
                    self._user.pop(digest, None)

    def digests(self, username: str | None = None) -> list[str]:
        with self._lock:
            return [d for d in self._sids if username is None or self._user.get(d) == username]

    def take(self, digest: str) -> set[str]:
        with self._lock:
            sids = self._sids.pop(digest, set())
            self._user.pop(digest, None)
            for sid in sids:
                self._digest_of.pop(sid, None)
            return sids


SESSION_SOCKETS = SessionSockets()


def end_session_sockets(digest: str) -> int:
    """Disconnect every browser socket of one session; returns how many."""
    sids = SESSION_SOCKETS.take(digest)
    for sid in sids:
        try:
            socketio.server.disconnect(sid, namespace="/")
        except Exception:  # noqa: BLE001 - already gone; never fail a logout for it
            log.debug("socket %s was already gone", sid)
    return len(sids)


def sweep_session_sockets(node: Node, username: str | None = None) -> int:
    """End the sockets whose session ended (revoked, expired, user inactive): after a
    revocation applied from the journal (for that user), and periodically (expiry)."""
    ended = users_service.ended_sessions(node, SESSION_SOCKETS.digests(username))
    return sum(end_session_sockets(digest) for digest in ended)


def register() -> None:
    @socketio.on("connect")
    def _connect(auth=None):
        n = current_app.extensions["lanpos_node"]
        problem = malformed_auth(auth)
        if problem is not None:
            refusals.refuse(n, "socket.refused", request.remote_addr or "?", problem)
            return False
        token = auth.get("token") if isinstance(auth, dict) else None
        token = token or request.cookies.get(SESSION_COOKIE)
        if not token:
            return False
        try:
            user, _csrf = users_service.authenticate(n, token)
        except ApiError:
            return False
        SESSION_SOCKETS.add(users_service.token_digest(token), user["username"], request.sid)
        join_room(BROWSERS)
        # The pill's summary; peer addresses and sync errors are for managers (/api/cluster).
        socketio.emit("cluster_status", n.status_summary(), to=request.sid)
        return True

    @socketio.on("disconnect")
    def _disconnect(*_reason):
        SESSION_SOCKETS.remove_sid(request.sid)


def malformed_auth(auth: object) -> str | None:
    """Why a browser's connect payload cannot be a session token, or None if it may be one.

    Absent auth or token is fine (the session cookie may log the socket in); anything else
    must be `{"token": <printable ASCII text>}`, as the tokens the login hands out are.
    """
    if auth is None:
        return None
    if not isinstance(auth, dict):
        return f"connect auth is {type(auth).__name__}, not an object"
    token = auth.get("token")
    if token is None:
        return None
    if not isinstance(token, str):
        return f"token is {type(token).__name__}, not text"
    if len(token) > MAX_TOKEN_CHARS or not (token.isascii() and token.isprintable()):
        return "token is not printable ASCII of at most 256 characters"
    return None


MAX_TOKEN_CHARS = 256
NODES = "nodes"


def register_node_namespace() -> None:
    """Node-to-node traffic on /node: signed connect, heartbeats, submissions."""

    def runtime():
        return current_app.extensions["lanpos_node"].cluster

    @socketio.on("connect", namespace=NODE_NS)
    def _node_connect(auth=None):
        rt = runtime()
        if rt is None or not rt.rpc.on_node_connect(auth, request.remote_addr or "?"):
            return False
        join_room(NODES, namespace=NODE_NS)
        return True

    # A peer picks how many arguments it sends: a missing envelope is a bad one (refused
    # and audited by the runtime), never a TypeError traceback.
    @socketio.on("heartbeat", namespace=NODE_NS)
    def _heartbeat(envelope=None, *_extra):
        rt = runtime()
        return rt.rpc.on_heartbeat(envelope, request.remote_addr or "?") if rt else None

    @socketio.on("submit", namespace=NODE_NS)
    def _submit(envelope=None, *_extra):
        rt = runtime()
        return rt.rpc.on_submit(envelope, request.remote_addr or "?") if rt else None
