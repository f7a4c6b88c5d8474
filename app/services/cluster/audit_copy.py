"""Copy each live peer's own audit chain into ours (every 5 s, and only when a peer's
heartbeat says its chain grew past our copy)."""

from __future__ import annotations

import logging

from app.services.audit import chain_head, take_peer_chain
from app.services.cluster.links import Links
from app.services.journal.replication import SyncError
from app.services.node import Node

log = logging.getLogger(__name__)
AUDIT_PAGE = 2000


class AuditCopier:
    def __init__(self, node: Node, links: Links):
        self.node = node
        self.links = links
        # Audit chain heads: as peers announce them, and how far our copies reach.
        self._peer_audit_seq: dict[int, int] = {}
        self._copied_audit_seq: dict[int, int] = {}

    def note_head(self, device_id: int, seq: int) -> None:
        """A peer's heartbeat announced where its own chain ends (or our master passed it on)."""
        self._peer_audit_seq[device_id] = seq

    def heads(self) -> dict[int, int]:
        """Where each peer's chain ends, as announced: what a master passes on."""
        return dict(self._peer_audit_seq)

    def pull_audit(self) -> int:
        """Copy each live peer's own audit chain (verified link by link) into ours, and
        report a chain that no longer extends our copy (`audit.take_peer_chain`)."""
        added = 0
        for link in self.links.all():
            device_id = link.device_id
            if not link.connected or not device_id or device_id == self.node.device_id:
                continue
            head = self._peer_audit_seq.get(device_id)
            copied = self._copied_audit_seq.get(device_id)
            if head is not None and copied is not None and head == copied:
                continue  # its heartbeat says its chain ends where our copy does
            with self.node.db.read() as session:
                last = chain_head(session, device_id)
            ours = last["seq"] if last else 0
            # From our last entry on: the peer must still hold it, unchanged.
            try:
                page = link.audit_chain(device_id, max(ours - 1, 0), AUDIT_PAGE)
            except SyncError as exc:
                log.debug("audit pull from %s failed: %s", link.address, exc)
                continue
            if not isinstance(page, dict):
                continue
            with self.node.db.write() as session:
                result = take_peer_chain(session, self.node.audit, device_id, page)
            added += result["added"]
            self._copied_audit_seq[device_id] = ours + result["added"]
            if result.get("recorded"):
                log.warning("audit chain of till %s no longer extends our copy (%s): "
                            "audit.diverged recorded", device_id, result["diverged"])
        return added
