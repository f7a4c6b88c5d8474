"""Carries out sync rounds (which to run is `sync_rounds.SyncRounds`' policy) and a new
master's catch-up before it sequences.

A round, on a client: drop our losing tail (if any) into the outbox, push the outbox to
the master, then pull what we miss (the pull runs even when the push failed; the round
then counts as failed and is retried within a second). On the master: journal its own
outbox.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, TypedDict

from app.services.cluster.context import ClusterContext
from app.services.cluster.outbox_push import OutboxPusher
from app.services.cluster.sync_rounds import SyncRounds
from app.services.cluster.transport import PagePeer
from app.services.journal.replication import Diverged, SyncError, drop_losing_tail, pull
from app.services.journal.write_path import LinkDown

log = logging.getLogger(__name__)
RETRY_AFTER_S = 1.0


class SyncStats(TypedDict):
    """A client's sync rounds so far (`/api/sync/status`, the status page)."""

    last_sync_time: int | None  # wall ms
    total_syncs: int
    successful_syncs: int
    failed_syncs: int
    total_events_synced: int
    last_error: str | None


class SnapshotArgs(TypedDict):
    snapshot_dir: str
    snapshot_min: int


class RoundPages:
    """The master's pages for one sync round, refused once the round is stale.

    A round starts as a client of master M and may wait long on M's pages (M paused by
    SIGSTOP). If meanwhile this till was elected master and M wakes as a client of it
    (election.py: a node that stood still comes back as a client), M's old journal
    must not make this new master drop its own tail (chaos seed 102): every page is
    checked, after it arrived, against the role, master and epoch the round began with.
    """

    def __init__(self, pages: PagePeer, ctx: ClusterContext, master: int):
        self._pages = pages
        self._ctx = ctx
        self._master = master
        self._epoch = ctx.epoch()
        self.address = pages.address

    def _check(self) -> None:
        if self._ctx.role_and_master() != ("client", self._master) \
                or self._ctx.epoch() != self._epoch:
            raise SyncError(f"master {self._master} is no longer ours: sync round abandoned")

    def get(self, path: str) -> dict[str, Any]:
        page = self._pages.get(path)
        self._check()
        return page

    def download(self, path: str, dest: str, timeout: float = 120.0) -> dict[str, str]:
        got = self._pages.download(path, dest, timeout)
        self._check()
        return got


class SyncRunner:
    def __init__(self, ctx: ClusterContext, after_round: Callable[[], None]):
        self.ctx = ctx
        self.after_round = after_round  # the outbox may have drained; status may change
        self.rounds = SyncRounds(self.run_round)
        self.pusher = OutboxPusher(ctx.node.journal, ctx.audit, self.retry_soon)
        self.stats: SyncStats = {
            "last_sync_time": None, "total_syncs": 0, "successful_syncs": 0,
            "failed_syncs": 0, "total_events_synced": 0, "last_error": None}

    def request(self, reason: str = "periodic") -> None:
        """Pull what we miss from the master, push our outbox to it.

        One round at a time; a request that arrives during a round (a new master, a
        link coming up) is not dropped: the round runs once more when it ends
        (`SyncRounds`).
        """
        self.rounds.request(reason)

    def kick(self, reason: str) -> None:
        """A round now, on a thread of its own."""
        threading.Thread(target=self.request, kwargs={"reason": reason}, daemon=True,
                         name="sync-now").start()

    def retry_soon(self) -> None:
        """A sync round within a second (after a failed round or an offline sale), not at
        the next periodic run."""
        if not self.rounds.want_retry():
            return

        def run() -> None:
            self.rounds.retry_fired()  # cleared first: a failing round may ask again
            self.request(reason="retry")

        timer = threading.Timer(RETRY_AFTER_S, run)
        timer.daemon = True
        timer.start()

    def snapshot_args(self) -> SnapshotArgs:
        cfg = self.ctx.node.config
        return {"snapshot_dir": cfg.data_dir, "snapshot_min": cfg.snapshot_min}

    def run_round(self, reason: str) -> None:
        ctx = self.ctx
        journal = ctx.node.journal
        stats = self.stats
        try:
            role, master = ctx.role_and_master()
            if role == "master":
                if journal.sequencer.active:
                    journal.sequencer.drain_outbox()
                return
            if master is None:
                return
            link = ctx.links.connected_to(master)
            stats["total_syncs"] += 1
            stats["last_sync_time"] = int(time.time() * 1000)
            if link is None:
                raise SyncError(f"no link to master {master}")
            # Our losing tail (if any) goes back to the outbox, the outbox to the master,
            # and only then do we pull what we miss: after a partition every till's
            # resubmission reaches the master at once, instead of each till first
            # applying everything the tills before it resubmitted.
            pages = RoundPages(link.pages(), ctx, master)
            dropped = drop_losing_tail(journal, pages)
            try:
                pushed = self.pusher.push_outbox(link)
            finally:
                # A push that fails (a master that stepped down, a timeout) still lets
                # the journal catch up; the round then counts as failed and is retried.
                result = pull(journal, pages, **self.snapshot_args())
            result["dropped"] += dropped
            ctx.caught_up = True
            stats["successful_syncs"] += 1
            stats["total_events_synced"] += result["pulled"] + pushed
            ctx.audit("sync.round", {"reason": reason, "master_id": master, "pushed": pushed,
                                     **result})
        except (SyncError, LinkDown) as exc:
            stats["failed_syncs"] += 1
            stats["last_error"] = str(exc)
            log.info("sync round failed: %s", exc)
            self.retry_soon()
        except Exception as exc:  # noqa: BLE001
            stats["failed_syncs"] += 1
            stats["last_error"] = str(exc)
            log.exception("sync round failed")
        finally:
            self.after_round()

    def catch_up_before_sequencing(self) -> None:
        """Pull entries that alive peers got from the old master and we missed.

        Only a peer whose journal *extends* ours is followed; a diverged peer (the other
        side of a healed partition) keeps its tail until it follows us, then drops it
        into its outbox and resubmits it. So the winning master's journal stays the base.
        """
        ctx = self.ctx
        now = ctx.now_ms()
        my_gseq, _ = ctx.node.journal.store.position()
        with ctx.lock:
            peers = sorted((p for p in ctx.core.peers(now) if p.alive and p.last_gseq > my_gseq),
                           key=lambda p: p.last_gseq, reverse=True)
        for p in peers:
            link = ctx.links.connected_to(p.device_id)
            if link is None:
                continue
            try:
                result = pull(ctx.node.journal, link.pages(), truncate=False,
                              **self.snapshot_args())
            except Diverged as exc:
                ctx.audit("sync.catch_up_skipped", {"from_device": p.device_id,
                                                    "reason": str(exc)})
                continue
            ctx.audit("sync.catch_up", {"from_device": p.device_id, **result})
