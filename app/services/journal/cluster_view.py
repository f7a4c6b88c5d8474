"""What the write path needs to know of the cluster: a read-only view the journal owns.

The cluster runtime implements `ClusterView`; the journal only reads it (nothing pokes the
journal's attributes). A till without a cluster (tests, a one-till shop) keeps the
`STANDALONE` view it is built with: always lease-live, never isolated, no master link.
"""

from __future__ import annotations

from typing import Protocol


class MasterLink(Protocol):
    master_id: int

    def submit(self, events: list[dict], timeout: float) -> list[dict]: ...


class ClusterView(Protocol):
    def lease_live(self) -> bool:
        """This node's lease to sequence is live now (read at batch start and before commit)."""
        ...

    def isolated(self) -> bool:
        """A master cut off from every peer it knows: its commutative events go as offline."""
        ...

    def master_link(self) -> MasterLink | None:
        """The link to submit events to the master over, if one is up."""
        ...


class Standalone:
    """The view of a till without a cluster: it may always sequence, alone and unisolated."""

    def lease_live(self) -> bool:
        return True

    def isolated(self) -> bool:
        return False

    def master_link(self) -> MasterLink | None:
        return None


STANDALONE = Standalone()
