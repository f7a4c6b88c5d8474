"""Everything a service needs about this node, wired once (see app/__init__.py and app/wiring.py)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from app.config import Config
from app.models.db import Database
from app.services.audit import AuditLog
from app.services.journal.journal import Journal
from app.services.refusals import RefusalLimiter


class ClusterHandle(Protocol):
    """What the till's own handlers ask of its cluster runtime (which implements it)."""

    def status(self) -> dict[str, Any]: ...

    def sync_status(self) -> dict[str, Any]: ...

    def refuse(self, who: str, reason: str) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Node:
    config: Config
    db: Database
    journal: Journal
    audit: AuditLog
    clock: Callable[[], int]
    schema_version: int
    # Serializes refunds and voids at this till (sales take no till-wide lock: receipt
    # numbers and repeated client_refs are handled in shop/receipts.py).
    sale_lock: threading.Lock = field(default_factory=threading.Lock)
    cluster: ClusterHandle | None = None  # the ClusterRuntime when clustering is on
    # Keys every PIN hash; derived from the cluster secret, never stored (shop_secrets.py).
    pepper: bytes = b""
    # Rate limit of refused-traffic audit entries (refusals.py), shared by sockets and cluster.
    refusals: RefusalLimiter = field(default_factory=RefusalLimiter)
    # Set once the till can serve a login: at once for create_app, after the background
    # setup (--admin-pin user, demo users journaled and visible here) for `run`.
    ready: threading.Event = field(default_factory=threading.Event)

    @property
    def device_id(self) -> int:
        return self.config.device_id

    def status(self) -> dict[str, Any]:
        """Role, master and epoch as this node sees them."""
        if self.cluster is not None:
            return self.cluster.status()
        epoch = list(self.journal.store.epoch)
        master = self.journal.sequencer.active
        return {"device_id": self.device_id, "role": "master" if master else "client",
                "master_id": self.device_id if master else None,
                "epoch": epoch, "state": "online" if master else "offline",
                "nodes": []}

    def status_summary(self) -> dict[str, Any]:
        """What a till page's status pill needs: no peer addresses, no sync errors.

        `status()` (peers, addresses, sync counters) is for managers only.
        """
        status = self.status()
        return {"device_id": self.device_id, "role": status["role"],
                "master_id": status["master_id"], "epoch": status["epoch"],
                "state": status["state"], "outbox_pending": self.journal.outbox.pending()}
