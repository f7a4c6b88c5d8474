"""Sync rounds run one at a time, and a request made during a round is never dropped
(app/services/cluster/sync_rounds.py, the policy behind `ClusterRuntime.sync_round`)."""

from __future__ import annotations

import random
import threading

import pytest

from app.services.cluster.sync_rounds import SyncRounds


def kick(rounds: SyncRounds, reason: str) -> None:
    """A request from another thread (a heartbeat, a push, a timer), waited for."""
    t = threading.Thread(target=rounds.request, args=(reason,))
    t.start()
    t.join(5)
    assert not t.is_alive()


def test_a_request_when_idle_runs_a_round_at_once_in_the_caller():
    ran: list[tuple[str, str]] = []
    rounds = SyncRounds(lambda reason: ran.append((reason, threading.current_thread().name)))
    rounds.request("periodic")
    assert ran == [("periodic", threading.current_thread().name)]
    assert rounds.idle


def test_requests_during_a_round_coalesce_into_one_more_round():
    ran: list[str] = []

    def once(reason: str) -> None:
        ran.append(reason)
        if len(ran) == 1:  # two requests arrive while the first round runs
            kick(rounds, "link up")
            kick(rounds, "new master")

    rounds = SyncRounds(once)
    rounds.request("periodic")
    assert ran == ["periodic", "new master"]  # one more round, for the latest reason
    assert rounds.idle


def test_a_request_during_the_extra_round_makes_one_more_again():
    ran: list[str] = []

    def once(reason: str) -> None:
        ran.append(reason)
        if len(ran) < 3:
            kick(rounds, f"gap {len(ran)}")

    rounds = SyncRounds(once)
    rounds.request("periodic")
    assert ran == ["periodic", "gap 1", "gap 2"]
    assert rounds.idle


def test_a_request_made_just_as_the_holder_finishes_still_runs():
    """Requests race the end of rounds from many threads: every request is followed by a
    round that started after it (none is lost), and no two rounds ever overlap."""
    rng = random.Random(7)
    lock = threading.Lock()
    clock = [0]
    starts: list[int] = []
    running = [0]
    overlaps: list[int] = []

    def tick() -> int:
        with lock:
            clock[0] += 1
            return clock[0]

    def once(reason: str) -> None:
        with lock:
            running[0] += 1
            if running[0] > 1:
                overlaps.append(running[0])
        starts.append(tick())
        if rng.random() < 0.5:
            threading.Event().wait(0.0005)
        with lock:
            running[0] -= 1

    rounds = SyncRounds(once)
    asked: list[int] = []

    def requester(n: int) -> None:
        for _ in range(n):
            asked.append(tick())
            rounds.request("kick")

    threads = [threading.Thread(target=requester, args=(200,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not overlaps
    assert rounds.idle
    assert max(starts) > max(asked)  # the last request of all was served by a later round
    assert all(any(s > a for s in starts) for a in asked)
    assert len(starts) <= len(asked)


def test_a_failing_round_frees_the_rounds_and_keeps_a_request_made_during_it():
    ran: list[str] = []

    def once(reason: str) -> None:
        ran.append(reason)
        if reason == "periodic":
            kick(rounds, "new master")
            raise RuntimeError("boom")

    rounds = SyncRounds(once)
    with pytest.raises(RuntimeError):
        rounds.request("periodic")
    assert ran == ["periodic"]
    assert not rounds.idle  # "new master" is still wanted: the next request runs
    rounds.request("retry")
    assert ran == ["periodic", "retry"]
    assert rounds.idle


def test_one_retry_pending_at_a_time():
    rounds = SyncRounds(lambda reason: None)
    assert rounds.want_retry()        # start the timer
    assert not rounds.want_retry()    # one is pending already
    assert not rounds.want_retry()
    rounds.retry_fired()              # cleared first: the round it runs may ask again
    assert rounds.want_retry()
