"""This till's links to its peers: one `PeerLink` per peer address, over a transport channel.

A link learns its peer's device id from the peer's heartbeats; it is the journal's
`MasterLink` when its peer is our master (submit events, wait for the acks). What the
link hears (up, down, a pushed message) goes to a `LinkListener`: the runtime.
"""

from __future__ import annotations

import threading
from typing import Protocol

from app.services.cluster.election import Epoch
from app.services.cluster.transport import AckCallback, Envelope, PagePeer, PeerChannel, Transport
from app.services.journal.write_path import LinkDown


class LinkListener(Protocol):
    def link_up(self, link: PeerLink) -> None: ...

    def link_down(self, link: PeerLink) -> None:
        """A link whose peer we knew by its id went down."""
        ...

    def pushed(self, event: str, envelope: object, link: PeerLink) -> None: ...

    def submit_epoch(self) -> Epoch:
        """The epoch our submits carry (a master at a lower one answers not_master)."""
        ...


class PeerLink:
    """Our link to one peer (its address; its device id once a heartbeat named it)."""

    def __init__(self, address: str, transport: Transport, listener: LinkListener,
                 own_id: int):
        self.address = address
        self.device_id: int | None = None
        self.transport = transport
        self.listener = listener
        self.own_id = own_id
        self.channel: PeerChannel = transport.open(address, self)

    @property
    def connected(self) -> bool:
        return self.channel.connected

    @property
    def master_id(self) -> int:
        return self.device_id or 0

    def start(self) -> None:
        self.channel.start()

    def stop(self) -> None:
        self.channel.stop()

    def emit(self, event: str, envelope: Envelope, callback: AckCallback | None = None) -> bool:
        if not self.connected:
            return False
        return self.channel.emit(event, envelope, callback)

    def submit(self, events: list[dict], timeout: float) -> list[dict]:
        """The journal's MasterLink: hand events to the master and wait for its acks."""
        if not self.connected:
            raise LinkDown("not connected")
        body = {"from": self.own_id, "epoch": self.listener.submit_epoch().to_list(),
                "events": events}
        reply = self.channel.call("submit", self.transport.seal(body), timeout)
        opened = self.transport.open_sealed(reply)
        if opened is None:
            raise LinkDown("unsigned reply")
        acks = opened.get("acks") or []
        if len(acks) != len(events):
            raise LinkDown("bad reply")
        return acks

    def pages(self) -> PagePeer:
        return self.channel.pages()

    def audit_chain(self, device_id: int, after: int, limit: int) -> object:
        return self.channel.audit_chain(device_id, after, limit)

    # ------------------------------------------------ ChannelEvents (transport threads)
    def on_connect(self) -> None:
        self.listener.link_up(self)

    def on_disconnect(self) -> None:
        if self.device_id is not None:
            self.listener.link_down(self)

    def on_message(self, event: str, envelope: object) -> None:
        self.listener.pushed(event, envelope, self)


class Links:
    """Every peer address this till links to, by address."""

    def __init__(self, transport: Transport, listener: LinkListener, own_id: int,
                 own_addresses: set[str]):
        self.transport = transport
        self.listener = listener
        self.own_id = own_id
        self.own_addresses = own_addresses
        self.by_address: dict[str, PeerLink] = {}
        self._lock = threading.Lock()

    def add(self, address: str) -> PeerLink | None:
        """A new link to `address`, not started (None: we have one, or it is us)."""
        with self._lock:
            if address in self.by_address or address in self.own_addresses:
                return None
            link = PeerLink(address, self.transport, self.listener, self.own_id)
            self.by_address[address] = link
        return link

    def put(self, link: PeerLink) -> None:
        """Take a link made elsewhere (tests)."""
        self.by_address[link.address] = link

    def all(self) -> list[PeerLink]:
        return list(self.by_address.values())

    def __bool__(self) -> bool:
        return bool(self.by_address)

    def connected_to(self, device_id: int | None) -> PeerLink | None:
        """Our connected link to `device_id`, if any."""
        if device_id is None:
            return None
        for link in self.all():
            if link.device_id == device_id and link.connected:
                return link
        return None

    def knows(self, device_id: int) -> bool:
        return any(link.device_id == device_id for link in self.all())

    def stop(self) -> None:
        for link in self.all():
            link.stop()
