"""What the parts of the cluster runtime share: this till's node, the election core under
its lock, the lease, the links, the transport, the clock and a few facts the election
shell learns (caught up, when the master was lost, isolated)."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from app.config import Config
from app.services import refusals
from app.services.cluster.election import ElectionCore, Epoch
from app.services.cluster.lease import LeaseFence
from app.services.cluster.links import Links
from app.services.cluster.transport import Transport
from app.services.node import Node

log = logging.getLogger(__name__)


class ClusterContext:
    def __init__(self, node: Node, transport: Transport, links: Links,
                 emit_browsers: Callable[[str, dict[str, Any]], None],
                 clock: Callable[[], int]):
        cfg = node.config
        self.node = node
        self.cfg: Config = cfg
        self.device_id = cfg.device_id
        self.transport = transport
        self.links = links
        self.emit_browsers = emit_browsers
        # The election core and the lease run on monotonic time (wall clocks jump).
        self.now_ms = clock
        self.lock = threading.RLock()
        ep = node.journal.store.epoch
        self.core = ElectionCore(
            cfg.device_id, schema_version=node.schema_version,
            failover_timeout_ms=cfg.failover_timeout_ms, reclaim=cfg.reclaim,
            reclaim_delay_ms=int(cfg.reclaim_delay * 1000), epoch=Epoch(ep[0], ep[1]),
            now=clock())
        # The master's lease and the stall fence (pure policy; see lease.py).
        self.lease = LeaseFence(cfg.failover_timeout_ms)
        self.caught_up = False
        self.master_lost_at: int | None = None
        # A master that knows peers but hears none (`ClusterRuntime.update_isolation`).
        self.isolated = False

    def role_and_master(self) -> tuple[str, int | None]:
        with self.lock:
            return self.core.role, self.core.master_id

    def epoch(self) -> Epoch:
        with self.lock:
            return self.core.epoch

    def eligible(self) -> bool:
        master = self.core.master_id
        return self.caught_up or master is None or master == self.device_id

    def audit(self, action: str, details: dict[str, Any]) -> None:
        try:
            with self.node.db.write() as session:
                self.node.audit.record(session, action, None, details)
        except Exception:  # noqa: BLE001 - auditing must not stop the cluster loop
            log.exception("audit %s failed", action)

    def refuse(self, who: str, reason: str) -> None:
        """Audit refused node traffic, at most once a minute per sender (refusals.py)."""
        refusals.refuse(self.node, "node.refused", who, reason)
