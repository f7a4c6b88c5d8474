"""The lease/stall fence (app/services/cluster/lease.py), on a fake clock in milliseconds.

Every rule the runtime relied on when this lived in `ClusterRuntime._renew_lease`, with the
chaos seeds behind it (docs/chaos.md): seed 5 (a paused master journaled at its old epoch
after waking), seed 3000 session 4 (a woken master heard only heartbeats that had waited in
its sockets, was left alone, and renewed its lease on its own one timeout later).
"""

from __future__ import annotations

import pytest

from app.services.cluster.lease import LeaseFence, Renewed, Stalled

T = 2_000        # failover timeout (ms), the default 2 s
BEAT = 500       # heartbeat interval (ms)
START = 5_000_000


class Fake:
    """A fence and a monotonic clock that only moves when told."""

    def __init__(self, start: int = START, timeout: int = T) -> None:
        self.now = start
        self.fence = LeaseFence(timeout)
        self.fence.start(self.now)

    def tick(self, step_ms: int, *, has_peers: bool = True) -> list:
        self.now += step_ms
        return self.fence.on_tick(self.now, has_peers=has_peers)

    def lease(self) -> int | None:
        return self.fence.lease_until_ms


def stall(f: Fake, gap: int = T + 700) -> int:
    """Tick normally, then stand still for `gap`; returns the wake time."""
    f.tick(BEAT)
    assert f.tick(gap) == [Stalled(gap_ms=gap)]
    return f.now


# ----------------------------------------------------------------- renewals
def test_start_grants_one_failover_timeout():
    f = Fake()
    assert f.lease() == START + T
    assert f.fence.may_sequence(START + T - 1)
    assert not f.fence.may_sequence(START + T)


def test_no_lease_before_start():
    fence = LeaseFence(T)
    assert fence.lease_until_ms is None and not fence.may_sequence(START)


def test_every_tick_renews_to_one_timeout_after_it():
    f = Fake()
    for _ in range(10):
        assert f.tick(BEAT) == [Renewed(lease_until_ms=f.now + T, was_lapsed=False)]
        assert f.fence.may_sequence(f.now)


def test_a_late_tick_shorter_than_the_timeout_is_no_stall():
    f = Fake()
    f.tick(BEAT)
    assert f.tick(T) == [Renewed(lease_until_ms=f.now + T, was_lapsed=True)]  # exactly T: late,
    # and the lease of the previous tick ended at this very moment, but no stall
    assert f.tick(T - 1) == [Renewed(lease_until_ms=f.now + T, was_lapsed=False)]
    assert not f.fence.stalled


def test_the_lease_runs_out_one_timeout_after_the_last_tick():
    f = Fake()
    f.tick(BEAT)
    last = f.now
    assert f.fence.may_sequence(last + T - 1)
    assert not f.fence.may_sequence(last + T)   # a paused master (seed 5) finds it lapsed


# ------------------------------------------------------------------- stalls
def test_a_gap_longer_than_the_timeout_is_a_stall_and_is_not_renewed():
    f = Fake()
    f.tick(BEAT)
    held = f.lease()
    assert f.tick(T + 1) == [Stalled(gap_ms=T + 1)]
    assert f.lease() == held and not f.fence.may_sequence(f.now)
    assert f.fence.stalled


def test_a_woken_master_is_fenced_for_one_timeout_even_after_a_fresh_answer():
    f = Fake()
    woke = stall(f)
    held = f.lease()
    f.fence.on_reply(f.fence.sent_generation)     # a peer answered at once
    while f.now + BEAT < woke + T:
        assert f.tick(BEAT) == []                 # still fenced
        assert f.lease() == held and not f.fence.may_sequence(f.now)
    assert f.tick(woke + T - f.now) == [Renewed(lease_until_ms=woke + 2 * T, was_lapsed=True)]


def test_a_woken_node_that_knows_no_peer_renews_when_the_fence_ends():
    f = Fake()
    woke = stall(f)
    assert f.tick(T - 1, has_peers=False) == []
    assert f.tick(1, has_peers=False) == [Renewed(lease_until_ms=woke + 2 * T, was_lapsed=True)]


def test_after_the_fence_only_an_answer_to_a_heartbeat_sent_since_the_wake_counts():
    f = Fake()
    before = f.fence.sent_generation              # a heartbeat sent before the stall
    stall(f)
    since = f.fence.sent_generation               # one sent after waking
    assert since != before
    held = f.lease()
    f.tick(T)                                     # fence over
    for _ in range(20):                           # nobody answered: lapsed for good
        assert f.tick(BEAT) == [] and f.lease() == held
    f.fence.on_reply(before)                      # waited in a socket while we stood still
    f.fence.on_reply(None)                        # an untagged reply
    assert f.tick(BEAT) == [] and f.fence.stalled
    f.fence.on_reply(since)
    assert not f.fence.stalled
    assert f.tick(BEAT) == [Renewed(lease_until_ms=f.now + T, was_lapsed=True)]
    assert f.tick(BEAT) == [Renewed(lease_until_ms=f.now + T, was_lapsed=False)]


def test_a_second_stall_starts_a_new_fence_and_voids_answers_to_the_first_wake():
    f = Fake()
    first = stall(f)
    gen_first = f.fence.sent_generation
    f.fence.on_reply(gen_first)
    assert f.tick(T + 5) == [Stalled(gap_ms=T + 5)]   # stood still again, inside the fence
    second = f.now
    assert second > first
    f.fence.on_reply(gen_first)                        # answers the first wake's heartbeat
    assert f.fence.stalled
    assert f.tick(T) == []                             # fence of the second stall over, no answer
    f.fence.on_reply(f.fence.sent_generation)
    assert f.tick(BEAT) == [Renewed(lease_until_ms=f.now + T, was_lapsed=True)]


def test_replies_without_a_stall_change_nothing():
    f = Fake()
    f.fence.on_reply(f.fence.sent_generation)
    f.fence.on_reply(None)
    assert not f.fence.stalled
    assert f.tick(BEAT) == [Renewed(lease_until_ms=f.now + T, was_lapsed=False)]


def test_the_seed_3000_session_4_sequence():
    """The former tests/integration/test_stall_lease.py, step for step: a stalled master
    renews its lease only after a fresh answer."""
    f = Fake()
    first = f.tick(0)
    assert first == [Renewed(lease_until_ms=START + T, was_lapsed=False)]
    assert f.tick(500)[-1].lease_until_ms > START + T      # ticking normally: renewed
    held = f.lease()
    assert f.tick(T + 700) == [Stalled(gap_ms=T + 700)]    # stood still: fenced
    assert f.lease() == held
    assert f.tick(T - 900) == [] and f.lease() == held     # fenced
    assert f.tick(1000) == [] and f.lease() == held        # fence over, nobody answered yet
    f.fence.on_reply(f.fence.sent_generation - 1)          # waited in a socket
    assert f.tick(500) == [] and f.lease() == held
    f.fence.on_reply(f.fence.sent_generation)              # answers us since
    assert f.tick(500) == [Renewed(lease_until_ms=f.now + T, was_lapsed=True)]
    assert f.lease() == f.now + T


# ------------------------------------------------------------------- clocks
@pytest.mark.parametrize("offset", [0, 1, 10**12, -(10**9)])
def test_only_the_gaps_between_ticks_matter_not_where_the_clock_starts(offset):
    """Time is whatever monotonic source the runtime passes in (never the wall clock, so
    a wall-clock step reaches none of this): the same gaps give the same decisions."""
    steps = [0, BEAT, BEAT, T + 700, BEAT, T, BEAT, BEAT]

    def run(start: int) -> list:
        f = Fake(start=start)
        out = []
        for i, step in enumerate(steps):
            if i == 6:
                f.fence.on_reply(f.fence.sent_generation)
            out.append([(type(a).__name__, getattr(a, "gap_ms", None),
                         getattr(a, "lease_until_ms", start) - start, getattr(a, "was_lapsed", None))
                        for a in f.tick(step)])
        return out

    assert run(START + offset) == run(START)


def test_a_repeated_reading_of_the_same_instant_is_an_ordinary_tick():
    f = Fake()
    f.tick(BEAT)
    assert f.tick(0) == [Renewed(lease_until_ms=f.now + T, was_lapsed=False)]
