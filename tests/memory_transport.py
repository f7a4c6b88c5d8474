"""An in-memory `Transport` (app/services/cluster/transport.py): tills in one process,
linked without sockets. Delivery is synchronous, on the sender's thread; a till is
reachable once its runtime's endpoint is registered, and `kill` cuts it off the way a
`kill -9` does (every link to and from it drops at once).

Journal pages are served from the peer's journal by `tests.ledgers.JournalPeer` (what
the /api/sync/* routes answer); audit chains are not served (audit copy is not
simulated)."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from app.services.cluster.transport import (
    AckCallback,
    ChannelEvents,
    Envelope,
    NodeEndpoint,
    PagePeer,
)
from app.services.journal.journal import Journal
from app.services.journal.replication import SyncError
from app.services.journal.write_path import LinkDown
from app.utils.signing import cluster_id, open_sealed, seal
from tests.ledgers import JournalPeer


class MemoryNetwork:
    def __init__(self) -> None:
        self.endpoints: dict[str, NodeEndpoint] = {}
        self.journals: dict[str, Journal] = {}
        self.channels: list[MemoryChannel] = []
        self.sent: Counter[tuple[str, str, str]] = Counter()  # (from, to, event)
        self._ports = itertools.count(40000)

    def register(self, address: str, endpoint: NodeEndpoint, journal: Journal) -> None:
        self.endpoints[address] = endpoint
        self.journals[address] = journal

    def kill(self, address: str) -> None:
        """The till at `address` is gone: its endpoint, and every link to or from it."""
        self.endpoints.pop(address, None)
        for channel in list(self.channels):
            if address in (channel.address, channel.transport.address):
                channel.drop()

    def connect_all(self) -> None:
        """Links that are started but down try again (a socket client's reconnect loop)."""
        for channel in list(self.channels):
            if channel.started and not channel.connected:
                channel.try_connect()


class MemoryTransport:
    def __init__(self, network: MemoryNetwork, address: str, secret: str, device_id: int):
        self.network = network
        self.address = address
        self.secret = secret
        self.device_id = device_id
        self.cluster_id = cluster_id(secret)

    def open(self, address: str, events: ChannelEvents) -> MemoryChannel:
        channel = MemoryChannel(self, address, events)
        self.network.channels.append(channel)
        return channel

    def broadcast(self, event: str, envelope: Envelope) -> None:
        for channel in list(self.network.channels):
            if channel.address == self.address and channel.connected:
                self.network.sent[(self.address, channel.transport.address, event)] += 1
                channel.events.on_message(event, envelope)

    def seal(self, body: dict[str, Any]) -> Envelope:
        return seal(self.secret, body)

    def open_sealed(self, envelope: object) -> dict[str, Any] | None:
        return open_sealed(self.secret, envelope)

    def connect_auth(self) -> Envelope:
        return self.seal({"device_id": self.device_id, "ts": 0, "cluster_id": self.cluster_id})


class MemoryChannel:
    def __init__(self, transport: MemoryTransport, address: str, events: ChannelEvents):
        self.transport = transport
        self.network = transport.network
        self.address = address
        self.events = events
        self.started = False
        self._connected = False
        # Where the peer sees us come from: our host and a port of our own.
        self.remote_addr = f"{transport.address.rsplit(':', 1)[0]}:{next(self.network._ports)}"

    @property
    def connected(self) -> bool:
        return self._connected

    def _peer(self) -> NodeEndpoint:
        endpoint = self.network.endpoints.get(self.address)
        if endpoint is None or self.transport.address not in self.network.endpoints:
            self.drop()
            raise LinkDown("no such till")
        return endpoint

    def start(self) -> None:
        self.started = True
        self.try_connect()

    def try_connect(self) -> None:
        endpoint = self.network.endpoints.get(self.address)
        if endpoint is None or self._connected or not self.started:
            return
        if endpoint.on_node_connect(self.transport.connect_auth(), self.remote_addr):
            self._connected = True
            self.events.on_connect()

    def stop(self) -> None:
        self.started = False
        self._connected = False

    def drop(self) -> None:
        was = self._connected
        self._connected = False
        if was:
            self.events.on_disconnect()

    def emit(self, event: str, envelope: Envelope, callback: AckCallback | None = None) -> bool:
        if not self._connected:
            return False
        try:
            peer = self._peer()
        except LinkDown:
            return False
        self.network.sent[(self.transport.address, self.address, event)] += 1
        if event != "heartbeat":
            raise AssertionError(f"emit of {event}: only heartbeats are emitted")
        reply = peer.on_heartbeat(envelope, self.remote_addr)
        if callback is not None:
            callback(*(() if reply is None else (reply,)))
        return True

    def call(self, event: str, envelope: Envelope, timeout: float) -> object:
        if not self._connected:
            raise LinkDown("not connected")
        peer = self._peer()
        self.network.sent[(self.transport.address, self.address, event)] += 1
        if event != "submit":
            raise AssertionError(f"call of {event}: only submits are calls")
        return peer.on_submit(envelope, self.remote_addr)

    def pages(self) -> PagePeer:
        journal = self.network.journals.get(self.address)
        if journal is None or self.address not in self.network.endpoints:
            raise SyncError(f"{self.address}: unreachable")
        return JournalPeer(journal)

    def audit_chain(self, device_id: int, after: int, limit: int) -> object:
        raise SyncError("audit copy is not simulated")
