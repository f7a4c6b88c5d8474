"""How the cluster reaches other tills: one interface, owned by the cluster (its consumer).

The runtime never touches a socket, an HTTP session or the cluster secret: everything it
sends to a peer or hears from one goes through a `Transport`. `socketio_transport.py`
implements it over Socket.IO websockets (node links, heartbeats, submits, pushes) and
signed HTTP (journal pages, snapshots, audit chains); a test or a simulator can put an
in-memory transport in its place (`tests/unit/test_transport_seam.py`). `app/wiring.py`
chooses the implementation and hands it to `ClusterRuntime`.

Messages between tills are sealed envelopes (`{"body": <JSON text>, "sig": <HMAC>}`,
`seal` / `open_sealed`); whatever arrives from a peer is untrusted (`object`) until
`open_sealed` has checked it.

Three parties:
- `Transport`: open a channel to a peer's address, broadcast to the peers connected to
  our own endpoint (the master's journal pushes), seal and open messages.
- `PeerChannel`: one outgoing link to one peer (it connects, and reconnects, by itself
  once started): emit with an ack (heartbeats), call and wait (submits), the peer's
  journal pages (pull, catch-up, snapshot) and its audit chain.
- `ChannelEvents` (implemented by `links.PeerLink`) hears what a channel sees;
  `NodeEndpoint` (implemented by `node_rpc.NodeRpc`) answers what peers send to us.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

# A sealed message as it travels: {"body": <JSON text>, "sig": <hex HMAC>}.
Envelope = dict[str, str]
# An emit's ack, called with the arguments the peer chose to answer with (any number).
AckCallback = Callable[..., None]


class PagePeer(Protocol):
    """A peer's signed /api/sync/* pages, as `journal.replication` reads them (pull,
    common prefix, losing-tail check, snapshot download, audit chain)."""

    address: str

    def get(self, path: str) -> dict[str, Any]:
        """The peer's JSON document at `path`; raises `SyncError`."""
        ...

    def download(self, path: str, dest: str, timeout: float = 120.0) -> dict[str, str]:
        ...


class ChannelEvents(Protocol):
    """What a channel tells the link that owns it (called on the transport's threads)."""

    def on_connect(self) -> None: ...

    def on_disconnect(self) -> None: ...

    def on_message(self, event: str, envelope: object) -> None:
        """A message the peer pushed to us (`sync_update`, `critical_event`)."""
        ...


class PeerChannel(Protocol):
    """One outgoing link to one peer."""

    address: str

    @property
    def connected(self) -> bool: ...

    def start(self) -> None:
        """Connect, and reconnect whenever the link drops, until `stop`."""
        ...

    def stop(self) -> None: ...

    def emit(self, event: str, envelope: Envelope, callback: AckCallback | None = None) -> bool:
        """Send without waiting; the peer's answer, if any, goes to `callback`. False if
        the link is down."""
        ...

    def call(self, event: str, envelope: Envelope, timeout: float) -> object:
        """Send and wait for the peer's answer; raises `LinkDown` (timeout, link down)."""
        ...

    def pages(self) -> PagePeer:
        """The peer's journal pages and snapshot (over HTTP in production)."""
        ...

    def audit_chain(self, device_id: int, after: int, limit: int) -> object:
        """The peer's copy of one till's audit chain after `after`; raises `SyncError`."""
        ...


class NodeEndpoint(Protocol):
    """What a transport delivers to this till from peers that linked to it."""

    def on_node_connect(self, auth: object, remote_addr: str) -> bool: ...

    def on_heartbeat(self, envelope: object, remote_addr: str) -> Envelope | None: ...

    def on_submit(self, envelope: object, remote_addr: str) -> Envelope: ...


class Transport(Protocol):
    """Everything the cluster runtime does to reach its peers."""

    def open(self, address: str, events: ChannelEvents) -> PeerChannel:
        """A channel to the till at `address` ("host:port"), not started yet."""
        ...

    def broadcast(self, event: str, envelope: Envelope) -> None:
        """To every peer linked to our own endpoint (the master's `sync_update`s)."""
        ...

    def seal(self, body: dict[str, Any]) -> Envelope: ...

    def open_sealed(self, envelope: object) -> dict[str, Any] | None:
        """The body of an envelope sealed with our cluster's secret, else None."""
        ...

    def connect_auth(self) -> Envelope:
        """What this till shows a peer's endpoint when it links to it."""
        ...
