"""The production `Transport`: Socket.IO websockets between tills, signed HTTP for pages.

Each link is one python-socketio client to a peer's `/node` namespace, reconnecting by
itself; the peer's server side is `app/routes/sockets.py`, which hands what arrives to the
runtime's `NodeEndpoint` (`node_rpc.NodeRpc`). Journal pages, snapshots and audit chains
are signed GETs of the peer's /api/sync/* routes (`journal.replication.HttpPeer`, one
keep-alive session per peer). Broadcasts to the peers linked to our own server go through
the Socket.IO server, which only the wiring knows (`broadcast` is handed in).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import socketio

from app.config import Config
from app.services.cluster.transport import AckCallback, ChannelEvents, Envelope
from app.services.journal.replication import HttpPeer
from app.services.journal.write_path import LinkDown
from app.utils.signing import cluster_id, open_sealed, seal

log = logging.getLogger(__name__)
NODE_NS = "/node"
# Messages a peer pushes to the links that reach it.
PUSHED_EVENTS = ("sync_update", "critical_event")


class SocketIoTransport:
    """`Transport` over Socket.IO and signed HTTP, sealing with the cluster secret."""

    def __init__(self, secret: str, device_id: int,
                 broadcast: Callable[[str, Envelope], None]):
        self.secret = secret
        self.device_id = device_id
        self.cluster_id = cluster_id(secret)
        self._broadcast = broadcast
        self._http_peers: dict[str, HttpPeer] = {}
        self._http_lock = threading.Lock()

    @classmethod
    def for_config(cls, cfg: Config, broadcast: Callable[[str, Envelope], None]
                   ) -> SocketIoTransport:
        return cls(cfg.cluster_secret or "", cfg.device_id, broadcast)

    def open(self, address: str, events: ChannelEvents) -> SocketIoChannel:
        return SocketIoChannel(self, address, events)

    def broadcast(self, event: str, envelope: Envelope) -> None:
        self._broadcast(event, envelope)

    def seal(self, body: dict[str, Any]) -> Envelope:
        return seal(self.secret, body)

    def open_sealed(self, envelope: object) -> dict[str, Any] | None:
        return open_sealed(self.secret, envelope)

    def connect_auth(self) -> Envelope:
        return self.seal({"device_id": self.device_id, "ts": int(time.time() * 1000),
                          "cluster_id": self.cluster_id})

    def http(self, address: str) -> HttpPeer:
        """Signed HTTP to one peer's /api/sync/* routes (one keep-alive session each)."""
        with self._http_lock:
            peer = self._http_peers.get(address)
            if peer is None:
                peer = self._http_peers[address] = HttpPeer(address, self.secret, self.device_id)
            return peer


class _InlineAckClient(socketio.Client):
    """A Socket.IO client that runs acks on its reader thread.

    python-engineio's client starts a new thread for every message it reads. An ack only
    hands its arguments to a callback (a heartbeat reply; or it wakes the thread waiting
    in `call`), so it runs where it was read; events (pushes) still get their thread. A
    master of 16 tills reads 30 heartbeat acks a second: their threads were most of its
    idle CPU (issue 13: 2.35 % -> 1.65 % of a core, measured per thread with psutil).
    """

    def _engineio_client_class(self) -> type:
        base = super()._engineio_client_class()

        class _Eio(base):  # type: ignore[misc, valid-type]
            def _trigger_event(self, event: str, *args: object, **kwargs: object) -> object:
                # A Socket.IO ACK packet is encoded as "3..." (packet type 3).
                if event == "message" and args and isinstance(args[0], str) \
                        and args[0][:1] == "3":
                    kwargs["run_async"] = False
                return super()._trigger_event(event, *args, **kwargs)

        return _Eio


class SocketIoChannel:
    """Our websocket client to one peer's /node namespace, reconnecting by itself."""

    def __init__(self, transport: SocketIoTransport, address: str, events: ChannelEvents):
        self.transport = transport
        self.address = address
        self.events = events
        self._connected = False
        self._stop = threading.Event()
        # The connecting thread lives only while the link is down (15 fewer idle threads
        # per till at 16 tills); a drop starts a new one.
        self._runner_lock = threading.Lock()
        self._runner_alive = False
        # websocket-client checks the UTF-8 of every text frame in pure Python (a quarter
        # of a till's CPU while journal pages stream in); the frame is decoded as UTF-8
        # right after anyway (`WebSocket.recv`), in C, which refuses the same bytes.
        self.sio = _InlineAckClient(reconnection=False, logger=False, engineio_logger=False,
                                    websocket_extra_options={"skip_utf8_validation": True})
        self.sio.on("connect", self._on_connect, namespace=NODE_NS)
        self.sio.on("disconnect", self._on_disconnect, namespace=NODE_NS)
        for event in PUSHED_EVENTS:
            self.sio.on(event, self._pushed_handler(event), namespace=NODE_NS)

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self) -> None:
        self._spawn_runner()

    def _spawn_runner(self) -> None:
        with self._runner_lock:
            if self._runner_alive or self._stop.is_set():
                return
            self._runner_alive = True
        threading.Thread(target=self._run, name=f"link-{self.address}", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        try:
            self.sio.disconnect()
        except Exception:  # noqa: BLE001 - best effort at shutdown
            pass

    def _run(self) -> None:
        """Connect (again and again until it works), then end: `_on_disconnect` starts a
        new runner when the socket drops."""
        try:
            self._connect_until_up()
        finally:
            with self._runner_lock:
                self._runner_alive = False
        if not self._connected:  # dropped between the last check and the flag above
            self._spawn_runner()

    def _connect_until_up(self) -> None:
        while not self._stop.is_set():
            if not self._connected:
                try:
                    self.sio.connect(f"http://{self.address}", transports=["websocket"],
                                     namespaces=[NODE_NS], auth=self.transport.connect_auth,
                                     wait_timeout=2)
                except Exception as exc:  # noqa: BLE001 - peer down or refused us
                    log.debug("link %s: connect failed: %s", self.address, exc)
                    try:
                        self.sio.disconnect()
                    except Exception:  # noqa: BLE001
                        pass
                    self._stop.wait(0.3)
                    continue
            return  # connected (no thread polls an open link: 15 links polling every
            # 0.2 s were a third of an idle follower's CPU at 16 tills)

    def _on_connect(self) -> None:
        self._connected = True
        self.events.on_connect()

    def _on_disconnect(self, *_args: object) -> None:
        was = self._connected
        self._connected = False
        if was:
            self.events.on_disconnect()
        self._spawn_runner()

    def _pushed_handler(self, event: str) -> Callable[[object], None]:
        def handle(envelope: object = None, *_extra: object) -> None:
            self.events.on_message(event, envelope)
        return handle

    def emit(self, event: str, envelope: Envelope, callback: AckCallback | None = None) -> bool:
        if not self._connected:
            return False
        try:
            self.sio.emit(event, envelope, namespace=NODE_NS, callback=callback)
            return True
        except Exception:  # noqa: BLE001 - link dropped between check and emit
            return False

    def call(self, event: str, envelope: Envelope, timeout: float) -> object:
        if not self._connected:
            raise LinkDown("not connected")
        try:
            return self.sio.call(event, envelope, namespace=NODE_NS, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - timeout or disconnected
            raise LinkDown(f"{type(exc).__name__}") from exc

    def pages(self) -> HttpPeer:
        return self.transport.http(self.address)

    def audit_chain(self, device_id: int, after: int, limit: int) -> object:
        return self.transport.http(self.address).get(
            f"/api/sync/audit?device_id={device_id}&after={after}&limit={limit}")
