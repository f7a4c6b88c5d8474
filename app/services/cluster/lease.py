"""The master's lease and the stall fence: a pure policy, fake-clock tested.

A sequencing master may journal for one failover timeout after each heartbeat tick
(the lease). The runtime's heartbeat tick (`heartbeats.Heartbeats.renew_lease`) calls
`on_tick` and does what the returned actions say (audit a stall, hand the renewed lease to the journal, start
a sync round); the journal checks the lease when a batch starts and again just before it
commits. No clock, socket, thread or database in here: time is monotonic milliseconds,
passed in. (A monotonic clock never jumps; wall-clock steps do not reach this module.)

Rules (each pinned by `tests/unit/test_lease.py`; the chaos seeds are in docs/chaos.md):

1. Every tick renews the lease to `now + failover_timeout` (seed 5: a paused master must
   not keep sequencing on a lease from before its pause).
2. A tick that comes more than a failover timeout after the previous one means this
   process stood still (SIGSTOP, a suspended VM, swapping): the others have counted us
   dead and may have elected a new master. That is a stall (`Stalled`, audited as
   `node.stalled`); the lease is not renewed for one more failover timeout (the fence).
3. After the fence, the lease stays lapsed until a peer has answered a heartbeat sent
   after the stall (`sent_generation` when sending, `on_reply` with it when the answer
   comes); an answer to an older heartbeat, one that waited in a socket while we stood
   still, does not count (seed 3000, session 4). A node that knows no peer renews once
   the fence is over.
4. A renewal that ends a lapse (`Renewed.was_lapsed`) lets the runtime journal what went
   to the outbox meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stalled:
    """This process stood still for `gap_ms` between two ticks."""

    gap_ms: int


@dataclass(frozen=True)
class Renewed:
    """The lease now runs until `lease_until_ms`; `was_lapsed`: it had run out before."""

    lease_until_ms: int
    was_lapsed: bool


LeaseAction = Stalled | Renewed


class LeaseFence:
    def __init__(self, failover_timeout_ms: int) -> None:
        self.failover_timeout_ms = failover_timeout_ms
        # None: no lease yet (`start` grants the first one).
        self.lease_until_ms: int | None = None
        self._last_tick_ms: int | None = None
        self._fenced_until_ms: int | None = None  # the fence after the last stall
        # Set when this process stood still; cleared by a peer's reply to a heartbeat we
        # sent after that (not by messages that waited in a socket while we stood still).
        self.stalled = False
        self._generation = 0

    def start(self, now_ms: int) -> int:
        """The runtime starts: a first lease of one failover timeout."""
        self.lease_until_ms = now_ms + self.failover_timeout_ms
        return self.lease_until_ms

    def may_sequence(self, now_ms: int) -> bool:
        """Whether the lease is live at `now_ms` (no lease yet: it is not)."""
        return self.lease_until_ms is not None and now_ms < self.lease_until_ms

    @property
    def sent_generation(self) -> int:
        """Tag a heartbeat with this when sending it; pass it back to `on_reply`."""
        return self._generation

    def on_reply(self, sent_generation: int | None) -> None:
        """A peer answered a heartbeat tagged `sent_generation` (None: untagged)."""
        if sent_generation == self._generation:
            self.stalled = False  # a peer answered us since we woke: we have its word

    def on_tick(self, now_ms: int, *, has_peers: bool) -> list[LeaseAction]:
        """A heartbeat tick at `now_ms`; `has_peers`: this node knows at least one peer."""
        actions: list[LeaseAction] = []
        last, self._last_tick_ms = self._last_tick_ms, now_ms
        if last is not None and now_ms - last > self.failover_timeout_ms:
            self._fenced_until_ms = now_ms + self.failover_timeout_ms
            self.stalled = True
            self._generation += 1
            actions.append(Stalled(gap_ms=now_ms - last))
        fenced = self._fenced_until_ms is not None and now_ms < self._fenced_until_ms
        if fenced or (self.stalled and has_peers):
            return actions
        lapsed = not self.may_sequence(now_ms)
        self.lease_until_ms = now_ms + self.failover_timeout_ms
        actions.append(Renewed(lease_until_ms=self.lease_until_ms, was_lapsed=lapsed))
        return actions
