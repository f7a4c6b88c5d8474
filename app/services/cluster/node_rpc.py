"""Node-to-node messages: what peers send to this till (linking to our endpoint,
heartbeats, submits; journal pushes and critical events over our links to them) and the
pushes a master sends out. Every message is a sealed envelope; a bad one is refused and
audited (`ClusterContext.refuse`), never raised."""

from __future__ import annotations

from typing import Callable

from app.services.cluster.context import ClusterContext
from app.services.cluster.election import Epoch
from app.services.cluster.heartbeats import Heartbeats
from app.services.cluster.links import PeerLink
from app.services.cluster.push_batch import PushBatcher
from app.services.cluster.transport import Envelope
from app.services.journal.events import EVENT_TYPES, Event
from app.services.journal.sequencer import refused_ack
from app.services.journal.state_machine import Refusal


class NodeRpc:
    """The runtime's `NodeEndpoint` and the master's broadcasts."""

    def __init__(self, ctx: ClusterContext, heartbeats: Heartbeats,
                 kick_sync: Callable[[str], None], outbox_drained: Callable[[], None]):
        self.ctx = ctx
        self.heartbeats = heartbeats
        self.kick_sync = kick_sync
        self.outbox_drained = outbox_drained
        self.pushes = PushBatcher(self._receive_pushed)

    # ------------------------------------------------------------- NodeEndpoint
    def on_node_connect(self, auth: object, remote_addr: str) -> bool:
        body = self.ctx.transport.open_sealed(auth)
        if body is None:
            self.ctx.refuse(remote_addr, "node connection without a valid cluster signature")
            return False
        return True

    def on_heartbeat(self, envelope: object, remote_addr: str) -> Envelope | None:
        return self.heartbeats.on_heartbeat(envelope, remote_addr)

    def on_submit(self, envelope: object, remote_addr: str) -> Envelope:
        ctx = self.ctx
        seal = ctx.transport.seal
        body = ctx.transport.open_sealed(envelope)
        if body is None:
            ctx.refuse(remote_addr, "unsigned submit")
            return {"body": "", "sig": ""}  # the submitter takes it for no answer
        events_raw = body.get("events") or []
        try:
            events = [Event.from_dict(e) for e in events_raw]
        except (KeyError, TypeError, ValueError):
            malformed = Refusal("VALIDATION_ERROR", "malformed event").to_wire()
            return seal({"acks": [{"status": "refused", "error": malformed}
                                  for _ in events_raw]})
        for ev in events:
            if ev.type not in EVENT_TYPES:
                unknown = Refusal("VALIDATION_ERROR", f"unknown event type {ev.type}")
                return seal({"acks": [refused_ack(e, unknown) for e in events]})
        try:
            their_epoch = Epoch.from_list(body.get("epoch"))
        except ValueError:
            their_epoch = Epoch(0, 0)
        if their_epoch > ctx.epoch():
            return seal({"acks": [{"status": "not_master", "event_id": e.event_id}
                                  for e in events]})
        acks = ctx.node.journal.sequencer.sequence(events, from_device=body.get("from"))
        return seal({"acks": acks})

    # ------------------------------------------------- pushed to us over our links
    def on_pushed(self, event: str, envelope: object, link: PeerLink) -> None:
        if event == "sync_update":
            self.on_sync_update(envelope, link)
        elif event == "critical_event":
            body = self.ctx.transport.open_sealed(envelope)
            if body is not None:
                self.ctx.emit_browsers("critical_event", body)

    def on_sync_update(self, envelope: object, link: PeerLink) -> None:
        ctx = self.ctx
        body = ctx.transport.open_sealed(envelope)
        if body is None:
            ctx.refuse(link.address, "unsigned sync_update")
            return
        try:
            epoch = Epoch.from_list(body.get("epoch"))
        except ValueError:
            return
        with ctx.lock:
            mine, master = ctx.core.epoch, ctx.core.master_id
        if epoch < mine:
            ctx.refuse(f"device {link.device_id}", f"sync_update from stale epoch {epoch.to_list()}")
            return
        if epoch != mine or master != link.device_id:
            return  # not (yet) our master: the next heartbeat/sync sorts it out
        self.pushes.push(tuple(epoch.to_list()), body.get("entries") or [], body.get("prev"))

    def _receive_pushed(self, entries: list[dict], prev: dict | None) -> None:
        result = self.ctx.node.journal.follower.receive_entries(entries, prev=prev)
        if result.gap_after is not None or result.diverged:
            self.kick_sync("gap" if result.gap_after is not None else "diverged")
        else:
            self.outbox_drained()

    # --------------------------------------------------------- what a master sends
    def broadcast_entries(self, entries: list[dict], prev: dict | None) -> None:
        ctx = self.ctx
        ctx.transport.broadcast("sync_update", ctx.transport.seal(
            {"epoch": ctx.epoch().to_list(), "entries": entries, "prev": prev}))

    def broadcast_critical(self, data: dict) -> None:
        if self.ctx.node.journal.sequencer.active:
            self.ctx.transport.broadcast("critical_event", self.ctx.transport.seal(data))
