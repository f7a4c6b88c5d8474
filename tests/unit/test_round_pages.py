"""A sync round's pages are refused once the round is stale (sync_runner.RoundPages).

Chaos seed 102 (pause-master + clock-skew, issue 13): till 2 began a round as a client
of till 1, which was paused; till 2 was elected master; till 1 woke as a client of till 2
(election.py: a node that stood still comes back as a client) and answered the stale
round with its old journal, which made the new master drop its own tail.
"""

from __future__ import annotations

import pytest

from app.services.cluster.election import Epoch
from app.services.cluster.sync_runner import RoundPages
from app.services.journal.replication import SyncError


class FakeCtx:
    def __init__(self) -> None:
        self.role, self.master, self.ep = "client", 1, Epoch(1, 1)

    def role_and_master(self) -> tuple[str, int | None]:
        return self.role, self.master

    def epoch(self) -> Epoch:
        return self.ep


class FakePages:
    address = "10.0.0.1:5000"

    def __init__(self, ctx: FakeCtx, change=None) -> None:
        self.ctx, self.change, self.calls = ctx, change, 0

    def get(self, path: str) -> dict:
        self.calls += 1
        if self.change:
            self.change(self.ctx)  # what happened while the request waited
        return {"path": path}

    def download(self, path: str, dest: str, timeout: float = 120.0) -> dict[str, str]:
        return self.get(path)


def test_pages_pass_while_the_round_is_current():
    ctx = FakeCtx()
    pages = RoundPages(FakePages(ctx), ctx, master=1)
    assert pages.get("/api/sync/changes?since=0") == {"path": "/api/sync/changes?since=0"}
    assert pages.address == "10.0.0.1:5000"


@pytest.mark.parametrize("change", [
    lambda c: setattr(c, "role", "master"),               # we were elected meanwhile
    lambda c: setattr(c, "master", 3),                    # we follow another master now
    lambda c: setattr(c, "ep", Epoch(2, 1)),              # same master, a new term
])
def test_a_page_that_arrives_after_the_round_went_stale_is_refused(change):
    ctx = FakeCtx()
    pages = RoundPages(FakePages(ctx, change), ctx, master=1)
    with pytest.raises(SyncError):
        pages.get("/api/sync/changes?since=319")
    with pytest.raises(SyncError):
        pages.download("/api/sync/snapshot", "/tmp/x")
