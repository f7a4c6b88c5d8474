"""Heartbeats: ours to every link (and the lease that each tick renews), theirs as the
replies and as calls to our endpoint; each one goes to the election core.

Raft-style fan-out (issue 13): the master sends its heartbeat to every link, a follower
to none while its master is heard, a till without a master (or whose master is late) to
the lower ids (`ElectionCore.wants_heartbeat`, docs/election.md); the reply is the peer's
heartbeat. A peer whose heartbeat reaches our endpoint gets ours as the answer.
"""

from __future__ import annotations

from typing import Any, Protocol

from app.services.cluster.audit_copy import AuditCopier
from app.services.cluster.context import ClusterContext
from app.services.cluster.election import Action, Epoch, Heartbeat
from app.services.cluster.lease import Renewed, Stalled
from app.services.cluster.links import PeerLink
from app.services.cluster.transport import Envelope


class ElectionShell(Protocol):
    """What a heartbeat sets off in the runtime."""

    def handle(self, actions: list[Action]) -> None: ...

    def refresh_master_link(self) -> None: ...

    def add_peer(self, address: str) -> None: ...

    def kick_sync(self, reason: str) -> None: ...


class Heartbeats:
    def __init__(self, ctx: ClusterContext, shell: ElectionShell, audit_copy: AuditCopier):
        self.ctx = ctx
        self.shell = shell
        self.audit_copy = audit_copy

    def renew_lease(self) -> None:
        """Do what the lease fence (lease.py) decides for this heartbeat tick: audit a
        stall, and after a lapsed lease is renewed journal what went to the outbox
        meanwhile (the journal reads the lease itself, through `lease_live`). A master
        that wakes from a stall cut off from every peer journals nothing at its old term
        (chaos seed 3000, session 4)."""
        ctx = self.ctx
        journal = ctx.node.journal
        for action in ctx.lease.on_tick(ctx.now_ms(), has_peers=bool(ctx.links)):
            if isinstance(action, Stalled):
                ctx.audit("node.stalled", {"gap_ms": action.gap_ms,
                                           "was_sequencing": journal.sequencer.active})
            elif isinstance(action, Renewed):
                if action.was_lapsed and journal.sequencer.active:
                    self.shell.kick_sync("lease renewed")  # journal what went to the outbox meanwhile

    def mine(self) -> Envelope:
        """Our heartbeat, sealed."""
        ctx = self.ctx
        journal = ctx.node.journal
        last_gseq, last_epoch = journal.store.position()
        with ctx.lock:
            ctx.core.set_local_state(last_gseq=last_gseq, last_epoch=Epoch(*last_epoch),
                                     eligible=ctx.eligible())
            hb = ctx.core.heartbeat(ctx.now_ms())
        body = {"hb": hb.to_dict(), "port": ctx.cfg.port,
                "outbox_pending": journal.outbox.pending(),
                "audit_seq": ctx.node.audit.last_seq}
        if hb.role == "master":
            # Followers hear only the master: it passes on the audit chain heads its
            # followers announced, so the audit copy still skips chains up to date.
            body["audit_heads"] = {str(k): v for k, v in self.audit_copy.heads().items()}
        return ctx.transport.seal(body)

    def targets(self, links: list[PeerLink]) -> list[PeerLink]:
        """The links this tick's heartbeat goes to (election.py `wants_heartbeat`)."""
        now = self.ctx.now_ms()
        with self.ctx.lock:
            return [lk for lk in links if self.ctx.core.wants_heartbeat(lk.device_id, now)]

    def send(self, links: list[PeerLink], envelope: Envelope | None = None) -> None:
        """Our heartbeat to each link; each reply is the peer's heartbeat."""
        envelope = envelope or self.mine()
        for link in links:
            # The ack's arguments are the peer's to choose: none (an empty ack) or several
            # must be refused like a bad one, not raise TypeError in the socket thread.
            link.emit("heartbeat", envelope,
                      callback=lambda *reply, lk=link, gen=self.ctx.lease.sent_generation:
                      self._on_ack(reply, lk, gen))

    def _on_ack(self, args: tuple[object, ...], link: PeerLink, stall_gen: int | None = None
                ) -> None:
        """A peer's ack to our heartbeat, as the socket gave it: exactly one envelope."""
        if len(args) != 1:
            self.ctx.refuse(link.address, f"heartbeat ack with {len(args)} arguments, not 1")
            return
        self.on_reply(args[0], link, stall_gen)

    def on_reply(self, reply: object, link: PeerLink, stall_gen: int | None = None) -> None:
        body = self.ctx.transport.open_sealed(reply)
        if body is None:
            self.ctx.refuse(link.address, "unsigned or wrongly signed heartbeat reply")
            return
        self.ctx.lease.on_reply(stall_gen)  # an answer to a heartbeat sent since the last stall
        self._take(body, link.address, link)

    def on_heartbeat(self, envelope: object, remote_addr: str) -> Envelope | None:
        """A peer's heartbeat arrived at our endpoint; answer with ours."""
        body = self.ctx.transport.open_sealed(envelope)
        if body is None:
            self.ctx.refuse(remote_addr, "unsigned or wrongly signed heartbeat")
            return None
        self._take(body, remote_addr, None)
        return self.mine()

    def _take(self, body: dict[str, Any], remote_addr: str, link: PeerLink | None) -> None:
        ctx = self.ctx
        try:
            hb = Heartbeat.from_dict(body.get("hb"))
        except ValueError as exc:
            ctx.refuse(remote_addr, f"malformed heartbeat: {exc}")
            return
        if hb.device_id == ctx.device_id:
            if link is not None:  # our own address reached us (e.g. via discovery)
                link.stop()
            return
        if isinstance(body.get("audit_seq"), int):
            self.audit_copy.note_head(hb.device_id, body["audit_seq"])
        heads = body.get("audit_heads")
        if isinstance(heads, dict) and hb.role == "master" and hb.device_id == ctx.core.master_id:
            for key, seq in heads.items():
                if isinstance(key, str) and key.isdigit() and int(key) != ctx.device_id \
                        and isinstance(seq, int) and not isinstance(seq, bool):
                    self.audit_copy.note_head(int(key), seq)
        if link is not None:
            link.device_id = hb.device_id
        elif ctx.cfg.learn_peers and not ctx.links.knows(hb.device_id):
            # A heartbeat from a till we have no link to: link back to it.
            port = body.get("port")
            host = remote_addr.rsplit(":", 1)[0] if ":" in remote_addr else remote_addr
            if isinstance(port, int):
                self.shell.add_peer(f"{host}:{port}")
        with ctx.lock:
            actions = ctx.core.on_heartbeat(hb, ctx.now_ms())
        self.shell.handle(actions)
        self.shell.refresh_master_link()
