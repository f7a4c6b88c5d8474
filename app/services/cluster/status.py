"""What this till tells of the cluster: the state pill, the status page, the sync
counters, and the `cluster_status` pushed to browsers when it changes.

`state`, `status` and `sync_status` only read. The one fact they need that changes with
time, whether the last offline sale has reached the master, is settled when the outbox
drains (`note_outbox_drained`), not when someone looks.
"""

from __future__ import annotations

import time
from typing import Any

from app.services.cluster.context import ClusterContext
from app.services.cluster.sync_runner import SyncStats


class StatusView:
    def __init__(self, ctx: ClusterContext, stats: SyncStats):
        self.ctx = ctx
        self.stats = stats
        self._last_pushed: tuple | None = None
        # The journal's `last_offline_ms` once the outbox had drained after it (the sale
        # that went offline then has reached the master since).
        self._offline_settled_ms: int | None = None

    def _offline_unsettled(self) -> bool:
        last = self.ctx.node.journal.write_path.last_offline_ms
        return last is not None and last != self._offline_settled_ms

    def note_outbox_drained(self) -> None:
        """After a sync round, a master's push and every heartbeat tick: an outbox that
        drained while our master is linked settles the last offline sale (the pill shows
        "offline" from such a sale until then, even while the link looks connected)."""
        ctx = self.ctx
        journal = ctx.node.journal
        if not self._offline_unsettled() or journal.outbox.pending():
            return
        role, master = ctx.role_and_master()
        if role != "master" and master is not None and ctx.links.connected_to(master):
            self._offline_settled_ms = journal.write_path.last_offline_ms

    def state(self) -> str:
        ctx = self.ctx
        role, master = ctx.role_and_master()
        if role == "master":
            # A lapsed lease (a master that stood still) sequences nothing: not online.
            if not ctx.node.journal.sequencer.active or not ctx.lease.may_sequence(ctx.now_ms()):
                return "failover"
            return "offline" if ctx.isolated else "online"
        if master is not None and ctx.links.connected_to(master) is not None:
            if self._offline_unsettled() and ctx.node.journal.outbox.pending():
                return "offline"  # our last sale could not reach the master
            return "online"
        lost = ctx.master_lost_at
        if lost is not None and ctx.now_ms() - lost < 3 * ctx.cfg.failover_timeout_ms:
            return "failover"
        return "offline"

    def status(self) -> dict[str, Any]:
        ctx = self.ctx
        cfg = ctx.cfg
        now = ctx.now_ms()
        with ctx.lock:
            role, master, epoch = ctx.core.role, ctx.core.master_id, ctx.core.epoch
            peers = ctx.core.peers(now)
        addresses = {lk.device_id: lk.address for lk in ctx.links.all() if lk.device_id}
        last_gseq, _ = ctx.node.journal.store.position()
        wall_offset = int(time.time() * 1000) - now
        nodes = [{"device_id": ctx.device_id, "address": f"{cfg.host}:{cfg.port}",
                  "alive": True, "last_seen": now + wall_offset, "role": role,
                  "epoch": epoch.to_list(), "last_gseq": last_gseq, "self": True}]
        for p in peers:
            nodes.append({"device_id": p.device_id, "address": addresses.get(p.device_id),
                          "alive": p.alive,
                          "last_seen": p.last_seen + wall_offset if p.last_seen else None,
                          "role": p.role, "epoch": p.epoch.to_list(), "last_gseq": p.last_gseq,
                          "lag": max(last_gseq - p.last_gseq, 0) if role == "master" else None})
        nodes.sort(key=lambda n: n["device_id"])
        return {"device_id": ctx.device_id, "role": role, "master_id": master,
                "epoch": epoch.to_list(), "state": self.state(), "nodes": nodes,
                "sync": self.sync_status()}

    def sync_status(self) -> dict[str, Any]:
        ctx = self.ctx
        journal = ctx.node.journal
        last_gseq, _ = journal.store.position()
        with ctx.lock:
            role, epoch = ctx.core.role, ctx.core.epoch
            master = ctx.core.master_id
            master_gseq = next((p.last_gseq for p in ctx.core.peers(ctx.now_ms())
                                if p.device_id == master), last_gseq)
        return {"role": role, "epoch": epoch.to_list(), "last_gseq": last_gseq,
                "outbox_pending": journal.outbox.pending(),
                "lag": max(master_gseq - last_gseq, 0), **self.stats}

    def push_if_changed(self, force: bool = False) -> None:
        """`cluster_status` to this till's browsers when role, master, epoch or state changed."""
        ctx = self.ctx
        with ctx.lock:
            key = (ctx.core.role, ctx.core.master_id, ctx.core.epoch)
        state = self.state()
        full = (*key, state)
        if force or full != self._last_pushed:
            self._last_pushed = full
            ctx.emit_browsers("cluster_status", {
                "state": state, "role": key[0], "master_id": key[1], "epoch": key[2].to_list(),
                "outbox_pending": ctx.node.journal.outbox.pending()})
