"""The I/O shell around the pure election core: it composes the cluster's parts.

The core (`election.py`) decides; this module does what it says, in order: persist
first, then act, then send. The parts: `links.py` (one link per peer, over the
`Transport` the wiring hands in, `transport.py`), `heartbeats.py` (ours, theirs, the
lease each tick renews), `node_rpc.py` (what peers send us, what a master pushes),
`sync_runner.py` + `outbox_push.py` (sync rounds), `audit_copy.py`, `status.py`; what
they share is a `ClusterContext`. The runtime is also the journal's `ClusterView`.
Zeroconf only finds peers; heartbeats decide who is alive.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from apscheduler.schedulers.background import BackgroundScheduler

from app.services.cluster.audit_copy import AuditCopier
from app.services.cluster.context import ClusterContext
from app.services.cluster.discovery import Discovery
from app.services.cluster.election import (
    Action,
    BecomeMaster,
    Epoch,
    Follow,
    MasterLost,
    PersistEpoch,
    Refused,
    StepDown,
)
from app.services.cluster.heartbeats import Heartbeats
from app.services.cluster.jobs import MonotonicJobs
from app.services.cluster.links import Links, PeerLink
from app.services.cluster.node_rpc import NodeRpc
from app.services.cluster.status import StatusView
from app.services.cluster.sync_runner import SyncRunner
from app.services.cluster.transport import Transport
from app.services.node import Node
from app.utils.clock import monotonic_ms
from app.utils.signing import cluster_id

log = logging.getLogger(__name__)
AUDIT_COPY_INTERVAL_S = 5


class ClusterRuntime:
    def __init__(self, node: Node, transport: Transport, *,
                 emit_browsers: Callable[[str, dict[str, Any]], None],
                 clock: Callable[[], int] = monotonic_ms):
        cfg = node.config
        self.node = node
        self.cfg = cfg
        self.device_id = cfg.device_id
        self.cluster_id = cluster_id(cfg.cluster_secret or "")
        self.transport = transport
        self.links = Links(transport, self, cfg.device_id,
                           {f"127.0.0.1:{cfg.port}", f"localhost:{cfg.port}",
                            f"{cfg.host}:{cfg.port}"})
        self.ctx = ClusterContext(node, transport, self.links, emit_browsers, clock)
        self.core = self.ctx.core
        self.lease = self.ctx.lease
        self.promoting = False
        # What the journal reads through its ClusterView (this runtime, once started).
        self._master_link: PeerLink | None = None
        self.audit_copy = AuditCopier(node, self.links)
        self.sync = SyncRunner(self.ctx, after_round=self._after_sync_round)
        self.status_view = StatusView(self.ctx, self.sync.stats)
        self.heartbeats = Heartbeats(self.ctx, self, self.audit_copy)
        self.rpc = NodeRpc(self.ctx, self.heartbeats, self.kick_sync,
                           self.status_view.note_outbox_drained)
        self.scheduler = MonotonicJobs()
        self.background = BackgroundScheduler(daemon=True)
        self.discovery: Discovery | None = None

    # ------------------------------------------------- the journal's ClusterView
    def lease_live(self) -> bool:
        return self.lease.may_sequence(self.ctx.now_ms())

    def isolated(self) -> bool:
        return self.ctx.isolated

    def master_link(self) -> PeerLink | None:
        return self._master_link

    # ----------------------------------------------------------------- life
    def start(self) -> None:
        self.join()
        # The heartbeat (which also renews the master's lease) must never stall, so it
        # runs on the monotonic clock. The periodic safety nets run on APScheduler: a
        # wall-clock step only delays them, and sync is also kicked by gaps, new links,
        # failed rounds and a new master.
        self.scheduler.every(self.cfg.heartbeat_interval, self.heartbeat_tick, "heartbeat")
        self.background.add_job(self.sync.request, "interval", seconds=self.cfg.sync_interval,
                                id="sync", max_instances=1, coalesce=True,
                                kwargs={"reason": "periodic"})
        self.background.add_job(self.audit_copy.pull_audit, "interval",
                                seconds=AUDIT_COPY_INTERVAL_S, id="audit",
                                max_instances=1, coalesce=True)
        self.background.start()
        if self.cfg.discovery:
            try:
                self.discovery = Discovery(self.cfg, self.cluster_id, self.add_peer)
                self.discovery.start()
            except Exception as exc:  # noqa: BLE001 - a till must run without multicast
                log.warning("zeroconf discovery unavailable: %s", exc)

    def join(self) -> None:
        """Take the first lease, hear the journal, link to the configured peers; no job
        starts (`start` adds them; a test or simulator calls `heartbeat_tick` itself)."""
        journal = self.node.journal
        self.lease.start(self.ctx.now_ms())  # the journal reads it once the wiring attaches us
        journal.subscribe_appended(self.rpc.broadcast_entries)
        # Push an offline sale as soon as a master answers.
        journal.subscribe_offline(self.sync.retry_soon)
        for address in self.cfg.peers:
            self.add_peer(address)

    def stop(self) -> None:
        self.scheduler.stop()
        try:
            self.background.shutdown(wait=False)
        except Exception:  # noqa: BLE001 - best effort at shutdown
            pass
        if self.discovery is not None:
            self.discovery.stop()
        self.links.stop()

    def add_peer(self, address: str) -> None:
        link = self.links.add(address)
        if link is not None:
            link.start()

    # ------------------------------------------- what our links tell (LinkListener)
    def link_up(self, link: PeerLink) -> None:
        self.heartbeats.send([link])

    def link_down(self, link: PeerLink) -> None:
        if link.device_id is not None:
            self.on_peer_down(link.device_id)

    def pushed(self, event: str, envelope: object, link: PeerLink) -> None:
        self.rpc.on_pushed(event, envelope, link)

    def submit_epoch(self) -> Epoch:
        return self.ctx.epoch()

    # ------------------------------------------------------------ election shell
    def heartbeat_tick(self) -> None:
        try:
            self.heartbeats.renew_lease()
            envelope = self.heartbeats.mine()
            with self.ctx.lock:
                actions = self.core.tick(self.ctx.now_ms())
            self.handle(actions)
            self.heartbeats.send(self.heartbeats.targets(self.links.all()), envelope)
            self.refresh_master_link()
            self._update_isolation()
            self.status_view.note_outbox_drained()
            self.status_view.push_if_changed()
        except Exception:  # noqa: BLE001 - never let the heartbeat job die
            log.exception("heartbeat tick failed")

    def on_peer_down(self, device_id: int) -> None:
        with self.ctx.lock:
            actions = self.core.on_peer_down(device_id, self.ctx.now_ms())
        self.handle(actions)
        self.refresh_master_link()
        self._update_isolation()
        self.status_view.push_if_changed()

    def handle(self, actions: list[Action]) -> None:
        """Persist first, then act, then tell."""
        ctx, journal = self.ctx, self.node.journal
        for action in actions:
            if isinstance(action, PersistEpoch):
                journal.store.persist_epoch((action.epoch.number, action.epoch.master_id))
            elif isinstance(action, BecomeMaster):
                # A new term journals nothing before it has caught up (_promote); a sitting
                # master that re-claims (it learned of a higher epoch) stops at once.
                journal.sequencer.stop()
                ctx.audit("election.won", {"epoch": action.epoch.to_list()})
                threading.Thread(target=self._promote, args=(action.epoch,), daemon=True,
                                 name="promote").start()
            elif isinstance(action, StepDown):
                journal.sequencer.stop()
                self.promoting = False
                ctx.audit("role.step_down", {"epoch": action.epoch.to_list(),
                                             "new_master": action.master_id})
            elif isinstance(action, Follow):
                if journal.sequencer.active:
                    journal.sequencer.stop()
                ctx.caught_up = False
                ctx.master_lost_at = None
                ctx.audit("election.follow", {"master_id": action.master_id,
                                              "epoch": action.epoch.to_list()})
                ctx.emit_browsers("master_changed", {"master_id": action.master_id,
                                                     "epoch": action.epoch.to_list()})
                self.refresh_master_link()
                self.kick_sync("new master")
            elif isinstance(action, MasterLost):
                self._master_link = None
                ctx.master_lost_at = ctx.now_ms()
                ctx.audit("election.master_lost", {"master_id": action.previous_master_id})
            elif isinstance(action, Refused):
                ctx.refuse(f"device {action.device_id}", action.reason)

    def _promote(self, epoch: Epoch) -> None:
        """Catch up from the freshest alive peer, then start sequencing at `epoch`."""
        self.promoting = True
        self._master_link = None
        try:
            self.sync.catch_up_before_sequencing()
        except Exception as exc:  # noqa: BLE001 - sequence anyway; the peer resyncs to us
            log.warning("catch-up before sequencing failed: %s", exc)
        with self.ctx.lock:
            still = self.core.role == "master" and self.core.epoch == epoch
        if not still:
            self.promoting = False
            return
        resequenced = self.node.journal.sequencer.start((epoch.number, epoch.master_id))
        self.promoting = False
        self.ctx.caught_up = True
        self.ctx.audit("role.master", {"epoch": epoch.to_list(),
                                       "resequenced_outbox": resequenced})
        self.ctx.emit_browsers("master_changed", {"master_id": self.device_id,
                                                  "epoch": epoch.to_list()})
        self.heartbeats.send(self.links.all())  # tell them now, not at the next tick
        self.status_view.push_if_changed(force=True)

    def refresh_master_link(self) -> None:
        role, master = self.ctx.role_and_master()
        if role == "master" or master is None or master == self.device_id:
            self._master_link = None
            return
        before = self._master_link
        self._master_link = self.links.connected_to(master)
        if self._master_link is not None and self._master_link is not before:
            self.kick_sync("master link up")

    def _update_isolation(self) -> None:
        """A master that knows peers but hears none is alone in a partition.

        Its sales may end up in a losing tail, so they are taken as offline sales:
        never refused, reported as offline to the cashier, conflicts recorded later.
        """
        with self.ctx.lock:
            role = self.core.role
            peers = self.core.peers(self.ctx.now_ms())
        known = bool(self.links) or bool(peers)
        self.ctx.isolated = role == "master" and known and not any(p.alive for p in peers)

    def kick_sync(self, reason: str) -> None:
        self.sync.kick(reason)

    def _after_sync_round(self) -> None:
        self.status_view.note_outbox_drained()
        self.status_view.push_if_changed()

    # ------------------------------------------------------ for routes and wiring
    def refuse(self, who: str, reason: str) -> None:
        """Audit refused node traffic, at most once a minute per sender (refusals.py)."""
        self.ctx.refuse(who, reason)

    def status(self) -> dict[str, Any]:
        return self.status_view.status()

    def sync_status(self) -> dict[str, Any]:
        return self.status_view.sync_status()
