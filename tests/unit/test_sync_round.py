"""Sync rounds run one at a time, and a request made during a round is never dropped."""

from __future__ import annotations

import threading

from app.services.cluster.runtime import ClusterRuntime


def runtime_with(once) -> ClusterRuntime:
    rt = ClusterRuntime.__new__(ClusterRuntime)  # only the round machinery, no node
    rt._sync_lock = threading.Lock()
    rt._sync_wanted = None
    rt._sync_once = once
    return rt


def kick(rt: ClusterRuntime, reason: str) -> None:
    t = threading.Thread(target=rt.sync_round, args=(reason,))
    t.start()
    t.join(5)


def test_requests_during_a_round_coalesce_into_one_more_round():
    ran: list[str] = []

    def once(reason: str) -> None:
        ran.append(reason)
        if len(ran) == 1:  # two requests arrive while the first round runs
            kick(rt, "link up")
            kick(rt, "new master")

    rt = runtime_with(once)
    rt.sync_round("periodic")
    assert ran == ["periodic", "new master"]
    assert rt._sync_wanted is None and not rt._sync_lock.locked()


class KickBeforeRelease:
    """A lock that lets a request arrive after the round ended, before the lock is free."""

    def __init__(self, on_first_release) -> None:
        self.lock = threading.Lock()
        self.on_first_release = on_first_release

    def acquire(self, blocking: bool = True) -> bool:
        return self.lock.acquire(blocking)

    def release(self) -> None:
        hook, self.on_first_release = self.on_first_release, None
        if hook is not None:
            hook()
        self.lock.release()

    def locked(self) -> bool:
        return self.lock.locked()


def test_a_request_made_just_as_the_holder_finishes_still_runs():
    ran: list[str] = []
    rt = runtime_with(ran.append)
    rt._sync_lock = KickBeforeRelease(lambda: kick(rt, "new master"))
    rt.sync_round("periodic")
    assert ran == ["periodic", "new master"]
    assert rt._sync_wanted is None and not rt._sync_lock.locked()
