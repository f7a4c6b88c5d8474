"""Election core, Raft-style heartbeat fan-out (issue 13, "sixteen tills"): fake clock.

``FanoutNet`` sends a node's heartbeat only where ``ElectionCore.wants_heartbeat`` says
(the master to every peer; a follower to nobody while its master is heard; the lower
ids when it has no master or the master has been silent for ``probe_after_ms``), and the
receiver answers with its own heartbeat, as the shell's Socket.IO ack does. A paused
node (SIGSTOP) neither ticks nor reads: what is sent to it waits in its socket and is
read when it resumes, before its first tick. ``crash(fin=True)`` is kill -9 (the peers'
sockets close at once). Every action list goes through the same fencing checks as
``tests/unit/test_election.py``.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.services.cluster.election import (
    REFUSE_STALE_EPOCH,
    Action,
    BecomeMaster,
    ElectionCore,
    Epoch,
    Follow,
    Heartbeat,
    MasterLost,
    PersistEpoch,
    Refused,
    StepDown,
)

BEAT = 500
STEP = 100
TIMEOUT = 2000


class FanoutNet:
    def __init__(self, ids: list[int], *, reclaim: str = "never", reclaim_delay: int = 30000,
                 offsets: dict[int, int] | None = None) -> None:
        self.now = 0
        self.ids = list(ids)
        self.reclaim = reclaim
        self.reclaim_delay = reclaim_delay
        self.offsets = offsets or {}
        self.persisted: dict[int, Epoch] = {i: Epoch(0, 0) for i in ids}
        self.high_water: dict[int, Epoch] = {i: Epoch(0, 0) for i in ids}
        self.cores: dict[int, ElectionCore] = {}
        self.next_beat: dict[int, int] = {}
        self.cut_links: set[frozenset[int]] = set()
        self.paused: set[int] = set()
        self.inbox: dict[int, list[tuple[int, str]]] = {}  # paused node: (sender, wire)
        self.log: list[tuple[int, int, Action]] = []
        self.claims: dict[Epoch, int] = {}
        self.sent: list[tuple[int, int, int]] = []  # (t, from, to) heartbeats, not answers
        for i in ids:
            self._boot(i)

    def _boot(self, i: int) -> None:
        self.cores[i] = ElectionCore(i, schema_version=1, failover_timeout_ms=TIMEOUT,
                                     reclaim=self.reclaim, reclaim_delay_ms=self.reclaim_delay,
                                     epoch=self.persisted[i], now=self.now)
        self.next_beat[i] = self.now + self.offsets.get(i, 0) % BEAT

    def _apply(self, i: int, actions: list[Action]) -> None:
        for a in actions:
            self.log.append((self.now, i, a))
            if isinstance(a, PersistEpoch):
                assert a.epoch > self.persisted[i], f"{i} persisted non-increasing {a}"
                self.persisted[i] = a.epoch
            elif isinstance(a, BecomeMaster):
                assert a.epoch.master_id == i, f"{i} claimed someone else's pair {a}"
                assert a.epoch not in self.claims, f"{a.epoch} claimed twice"
                assert self.persisted[i] == a.epoch, "BecomeMaster before PersistEpoch"
                self.claims[a.epoch] = i
        core = self.cores[i]
        assert core.epoch == self.persisted[i], f"{i}: in-memory epoch not durable"
        assert core.epoch >= self.high_water[i], f"{i}: epoch went backwards"
        self.high_water[i] = core.epoch

    def connected(self, a: int, b: int) -> bool:
        return a in self.cores and b in self.cores and frozenset((a, b)) not in self.cut_links

    @staticmethod
    def _wire(core: ElectionCore, now: int) -> str:
        return json.dumps(core.heartbeat(now).to_dict())

    def _deliver(self, sender: int, to: int, wire: str) -> None:
        """``to`` reads ``sender``'s heartbeat and answers with its own (the ack)."""
        self._apply(to, self.cores[to].on_heartbeat(Heartbeat.from_dict(json.loads(wire)), self.now))
        if self.connected(to, sender) and sender not in self.paused:
            reply = self._wire(self.cores[to], self.now)
            self._apply(sender, self.cores[sender].on_heartbeat(
                Heartbeat.from_dict(json.loads(reply)), self.now))

    def send(self, i: int, j: int) -> None:
        self.sent.append((self.now, i, j))
        wire = self._wire(self.cores[i], self.now)
        if j in self.paused:
            self.inbox[j].append((i, wire))
        else:
            self._deliver(i, j, wire)

    def step(self) -> None:
        self.now += STEP
        for i in sorted(self.cores):
            if i not in self.paused:
                self._apply(i, self.cores[i].tick(self.now))
        for i in sorted(self.cores):
            if i not in self.cores or i in self.paused or self.now < self.next_beat[i]:
                continue
            self.next_beat[i] += BEAT
            for j in sorted(self.cores):
                if j != i and self.connected(i, j) and self.cores[i].wants_heartbeat(j, self.now):
                    self.send(i, j)

    def advance(self, ms: int) -> None:
        end = self.now + ms
        while self.now < end:
            self.step()

    # -- faults
    def cut(self, a: int, b: int) -> None:
        self.cut_links.add(frozenset((a, b)))

    def isolate(self, a: int) -> None:
        for b in self.ids:
            if b != a:
                self.cut(a, b)

    def heal(self) -> None:
        self.cut_links.clear()

    def crash(self, a: int, *, fin: bool = False) -> None:
        if a not in self.cores:
            return
        del self.cores[a]
        self.paused.discard(a)
        self.inbox.pop(a, None)
        if fin:
            for j in sorted(self.cores):
                if frozenset((a, j)) not in self.cut_links and j not in self.paused:
                    self._apply(j, self.cores[j].on_peer_down(a, self.now))

    def restart(self, a: int) -> None:
        if a not in self.cores:
            self._boot(a)

    def pause(self, a: int) -> None:
        if a in self.cores:
            self.paused.add(a)
            self.inbox[a] = []

    def resume(self, a: int) -> None:
        """SIGCONT: the socket backlog is read first (the worst order), then ticks resume."""
        if a not in self.paused:
            return
        self.paused.discard(a)
        backlog = self.inbox.pop(a, [])
        for sender, wire in backlog:
            if a in self.cores and sender in self.cores:
                self._deliver(sender, a, wire)
        self.next_beat[a] = max(self.next_beat[a], self.now)

    # -- views
    def masters(self) -> list[int]:
        return sorted(i for i, c in self.cores.items() if c.role == "master" and i not in self.paused)

    def master_of(self, i: int) -> int | None:
        c = self.cores[i]
        return i if c.role == "master" else c.master_id

    def actions(self, node: int | None = None, kind: type | None = None, since: int = -1) -> list[Action]:
        return [a for t, i, a in self.log
                if t >= since and (node is None or i == node) and (kind is None or isinstance(a, kind))]

    def assert_agreement(self, expected: int | None = None) -> int:
        masters = self.masters()
        assert len(masters) == 1, f"masters={masters} at t={self.now}"
        m = masters[0]
        views = {i: (self.master_of(i), self.cores[i].epoch) for i in self.cores if i not in self.paused}
        assert all(v == (m, self.cores[m].epoch) for v in views.values()), views
        if expected is not None:
            assert m == expected
        return m

    def beats_between(self, t0: int, t1: int) -> list[tuple[int, int, int]]:
        return [s for s in self.sent if t0 <= s[0] < t1]


def started(n: int = 5, **kw: object) -> FanoutNet:
    net = FanoutNet(list(range(1, n + 1)), **kw)  # type: ignore[arg-type]
    net.advance(TIMEOUT + 4 * BEAT)
    net.assert_agreement(1)
    return net


def hb(device: int, epoch: Epoch, role: str = "master", master: int | None = None,
       members: tuple = (), **kw: object) -> Heartbeat:
    defaults = {"last_gseq": 0, "last_epoch": Epoch(0, 0), "schema_version": 1, "eligible": True}
    fields: dict = defaults | kw
    if master is None and role == "master":
        master = device
    return Heartbeat(device, epoch, role, master, members=members, **fields)


# ------------------------------------------------------------------ wire


def test_members_round_trip_and_an_older_tills_heartbeat_without_them() -> None:
    beat = hb(1, Epoch(3, 1), members=((2, True), (5, False)))
    assert Heartbeat.from_dict(json.loads(json.dumps(beat.to_dict()))) == beat
    old = beat.to_dict()
    del old["members"]
    assert Heartbeat.from_dict(old).members == ()
    for bad in ([[0, True]], [[2, 1]], [[2]], "2", [[True, True]], [None]):
        with pytest.raises(ValueError):
            Heartbeat.from_dict(beat.to_dict() | {"members": bad})


# ------------------------------------------------------------------ single core


def test_a_master_lists_the_peers_it_counts_alive_and_a_client_lists_none() -> None:
    c = ElectionCore(1, schema_version=1, startup_grace_ms=100)
    c.on_heartbeat(hb(3, Epoch(0, 0), role="client"), 0)
    c.on_heartbeat(hb(2, Epoch(0, 0), role="client", eligible=False), 0)
    assert c.heartbeat(0).members == ()
    c.tick(100)
    assert c.role == "master"
    assert c.heartbeat(100).members == ((2, False), (3, True))
    assert c.heartbeat(2000).members == ()  # nobody heard for a failover timeout
    assert c.wants_heartbeat(2, 100) and c.wants_heartbeat(None, 100)


def test_a_follower_beats_nobody_while_its_master_is_heard_and_probes_when_it_is_not() -> None:
    c = ElectionCore(4, schema_version=1)
    assert c.wants_heartbeat(2, 0)  # no master yet: probe the lower ids
    assert not c.wants_heartbeat(5, 0)  # a higher id probes us
    c.on_heartbeat(hb(1, Epoch(1, 1), members=((2, True), (3, True))), 100)
    assert c.master_id == 1
    assert not c.wants_heartbeat(1, 200) and not c.wants_heartbeat(2, 200)
    assert c.wants_heartbeat(None, 200)  # a link whose peer we do not know yet
    assert not c.wants_heartbeat(2, 100 + c.probe_after_ms - 1)
    assert c.wants_heartbeat(2, 100 + c.probe_after_ms)  # the master is late: probe
    assert not c.wants_heartbeat(5, 100 + c.probe_after_ms)
    assert c.on_peer_down(1, 300) == [MasterLost(1)]
    assert c.wants_heartbeat(2, 300)


def test_the_masters_word_keeps_followers_alive_it_never_revives_one_reported_down() -> None:
    c = ElectionCore(4, schema_version=1)
    c.on_heartbeat(hb(2, Epoch(0, 0), role="client"), 0)  # heard first-hand once (startup)
    for t in range(100, 10_000, 500):
        c.on_heartbeat(hb(1, Epoch(1, 1), members=((2, True), (3, True), (4, True))), t)
    # 3 was never heard first-hand: known by the master's word alone.
    assert c.alive_ids(9_700) == [1, 2, 3, 4]
    assert c.on_peer_down(2, 9_700) == []
    c.on_heartbeat(hb(1, Epoch(1, 1), members=((2, True), (3, True))), 9_800)
    assert c.alive_ids(9_800) == [1, 3, 4]  # its socket closed: only its own beat revives it
    c.on_heartbeat(hb(2, Epoch(1, 1), role="client", master=1), 9_900)
    assert c.alive_ids(9_900) == [1, 2, 3, 4]
    # The word of a master we do not follow counts for nothing.
    c.on_heartbeat(hb(7, Epoch(0, 7), members=((5, True),)), 9_950)
    assert 5 not in c.alive_ids(9_950)


def test_a_vouched_lower_id_makes_a_follower_wait_when_the_master_closes() -> None:
    c = ElectionCore(3, schema_version=1, startup_grace_ms=0)
    c.on_heartbeat(hb(1, Epoch(1, 1), members=((2, True), (3, True))), 5_000)
    assert c.on_peer_down(1, 5_100) == [MasterLost(1)]  # 2 is alive by 1's word: 2 claims
    assert c.tick(5_500) == []
    # 2 never shows up: the word expires one failover timeout after it was given.
    assert c.tick(7_000) == [PersistEpoch(Epoch(2, 3)), BecomeMaster(Epoch(2, 3))]


def test_a_not_eligible_member_is_passed_over() -> None:
    c = ElectionCore(3, schema_version=1, startup_grace_ms=0)
    c.on_heartbeat(hb(1, Epoch(1, 1), members=((2, False), (3, True))), 5_000)
    assert c.on_peer_down(1, 5_100) == [MasterLost(1), PersistEpoch(Epoch(2, 3)),
                                        BecomeMaster(Epoch(2, 3))]


def test_a_master_that_stood_still_stays_master_when_nobody_moved_on() -> None:
    """The stall alone changes no role (tests/integration/test_stall_lease.py: the lease
    fence, not the election, keeps it from sequencing until a fresh answer)."""
    c = ElectionCore(1, schema_version=1, startup_grace_ms=0)
    c.tick(0)
    assert c.on_heartbeat(hb(2, Epoch(1, 1), role="client", master=1), 5_000) == []
    assert c.role == "master" and c.returning(5_000)
    assert c.tick(7_000) == [] and not c.returning(7_000)


def test_a_master_that_stood_still_follows_the_newer_master_instead_of_taking_back_the_role() -> None:
    c = ElectionCore(1, schema_version=1, startup_grace_ms=0)
    c.tick(0)
    c.on_heartbeat(hb(2, Epoch(1, 1), role="client", master=1), 400)
    # SIGSTOP for 8 s: the first thing read after waking is till 2's claim.
    acts = c.on_heartbeat(hb(2, Epoch(2, 2)), 8_400)
    assert acts == [StepDown(Epoch(2, 2), 2), PersistEpoch(Epoch(2, 2)), Follow(2, Epoch(2, 2))]
    assert c.role == "client" and c.master_id == 2
    # A master that kept running still wins the heal (lower id, above both).
    d = ElectionCore(1, schema_version=1, startup_grace_ms=0)
    for t in range(0, 8_400, 500):
        d.tick(t)
    assert d.on_heartbeat(hb(2, Epoch(2, 2)), 8_400) == [PersistEpoch(Epoch(3, 1)),
                                                          BecomeMaster(Epoch(3, 1))]


def test_a_woken_master_that_hears_of_a_higher_epoch_second_hand_steps_down_and_listens() -> None:
    c = ElectionCore(1, schema_version=1, startup_grace_ms=0)
    c.tick(0)
    acts = c.on_heartbeat(hb(3, Epoch(2, 2), role="client", master=2), 8_000)
    assert acts == [StepDown(Epoch(2, 2), None), PersistEpoch(Epoch(2, 2))]
    assert c.role == "client" and c.master_id is None
    assert c.tick(9_000) == []  # within the grace: no claim although 2 is not seen
    assert c.on_heartbeat(hb(2, Epoch(2, 2)), 9_500) == [Follow(2, Epoch(2, 2))]


# ------------------------------------------------------------------ scenarios


def test_sixteen_tills_agree_and_then_only_the_master_beats() -> None:
    net = FanoutNet(list(range(1, 17)), offsets={i: (i * 37) % BEAT for i in range(1, 17)})
    net.advance(TIMEOUT + 3 * BEAT)
    net.assert_agreement(1)
    assert net.actions(kind=BecomeMaster) == [BecomeMaster(Epoch(1, 1))]
    t0 = net.now
    net.advance(10 * BEAT)
    beats = net.beats_between(t0, net.now)
    assert {s[1] for s in beats} == {1}
    assert len(beats) == 10 * 15  # 15 per interval instead of 16 * 15 = 240
    for i in range(2, 17):
        assert net.cores[i].alive_ids(net.now) == list(range(1, 17))


def test_kill_master_with_fin_the_lowest_follower_claims_at_once_and_alone() -> None:
    net = started(16)
    t0 = net.now
    net.crash(1, fin=True)
    assert net.masters() == [2]
    net.advance(BEAT)
    net.assert_agreement(2)
    assert net.actions(kind=BecomeMaster, since=t0) == [BecomeMaster(net.cores[2].epoch)]
    assert net.actions(kind=StepDown, since=t0) == []


def test_silent_master_failover_within_timeout_plus_two_beats_one_claim() -> None:
    net = started(16)
    t0 = net.now
    net.crash(1)
    while net.masters() != [2] or any(net.master_of(i) != 2 for i in net.cores):
        net.step()
        assert net.now - t0 <= TIMEOUT + 2 * BEAT, "failover too slow"
    net.advance(4 * BEAT)
    net.assert_agreement(2)
    assert net.actions(kind=BecomeMaster, since=t0) == [BecomeMaster(net.cores[2].epoch)]
    # The followers probed while the master was silent, then went quiet again.
    probes = {s[1] for s in net.beats_between(t0, t0 + TIMEOUT)}
    assert probes >= set(range(3, 17))
    assert {s[1] for s in net.beats_between(net.now - 2 * BEAT, net.now)} == {2}


@pytest.mark.parametrize("fin", [False, True])
def test_master_and_next_lowest_die_together(fin: bool) -> None:
    net = started(5)
    t0 = net.now
    net.crash(2, fin=fin)
    net.crash(1, fin=fin)
    net.advance(TIMEOUT + 2 * BEAT)
    net.assert_agreement(3)
    assert net.actions(kind=BecomeMaster, since=t0) == [BecomeMaster(net.cores[3].epoch)]


def test_paused_master_wakes_as_a_client_of_the_new_master() -> None:
    """Issue 13: a master paused for 8 s took the role back when it resumed."""
    net = started(16)
    net.pause(1)
    net.advance(8_000)
    net.assert_agreement(2)
    e2 = net.cores[2].epoch
    t_wake = net.now
    net.resume(1)
    for _ in range(60_000 // STEP):
        net.step()
        assert net.masters() == [2], f"second master at t={net.now}: {net.masters()}"
    net.assert_agreement(2)
    assert net.cores[1].epoch == e2
    assert net.actions(kind=BecomeMaster, since=t_wake) == []
    assert net.actions(1, StepDown, since=t_wake) == [StepDown(e2, 2)]


def test_paused_client_wakes_without_claiming() -> None:
    net = started(5)
    net.pause(5)
    net.advance(6_000)
    t_wake = net.now
    net.resume(5)
    net.advance(20_000)
    net.assert_agreement(1)
    assert net.actions(kind=BecomeMaster, since=t_wake) == []


def test_partition_heal_under_fanout_lower_id_master_wins_above_both() -> None:
    net = started(5)
    net.isolate(1)
    net.advance(TIMEOUT + 3 * BEAT)
    assert net.masters() == [1, 2]
    e1, e2 = net.cores[1].epoch, net.cores[2].epoch
    t_heal = net.now
    net.heal()
    net.advance(TIMEOUT)
    net.assert_agreement(1)
    final = net.cores[1].epoch
    assert final.number > max(e1.number, e2.number)
    assert net.actions(2, StepDown, since=t_heal) == [StepDown(final, 1)]
    # Each refuses the other's beats at the lower epoch until it has moved on.
    assert {r.reason for r in net.actions(kind=Refused, since=t_heal)} <= {REFUSE_STALE_EPOCH}


def test_returning_lower_id_with_reclaim_never_stays_client_under_fanout() -> None:
    net = started(5)
    net.crash(1, fin=True)
    net.advance(TIMEOUT)
    net.assert_agreement(2)
    t_back = net.now
    net.restart(1)
    net.advance(30_000)
    net.assert_agreement(2)
    assert net.actions(kind=BecomeMaster, since=t_back) == []
    assert 1 in net.cores[5].alive_ids(net.now)  # known by the master's word


def test_reclaim_auto_under_fanout_hands_back_once() -> None:
    net = started(5, reclaim="auto", reclaim_delay=6_000)
    net.crash(1, fin=True)
    net.advance(TIMEOUT)
    net.assert_agreement(2)
    t_back = net.now
    net.restart(1)
    net.advance(6_000 + TIMEOUT + 4 * BEAT)
    net.assert_agreement(1)
    assert len(net.actions(kind=BecomeMaster, since=t_back)) == 1


# ------------------------------------------------------------------ property

ops = st.one_of(
    st.tuples(st.just("advance"), st.integers(STEP, 3 * TIMEOUT // 2)),
    st.tuples(st.just("crash"), st.integers(0, 5), st.booleans()),
    st.tuples(st.just("restart"), st.integers(0, 5)),
    st.tuples(st.just("cut"), st.integers(0, 5), st.integers(0, 5)),
    st.tuples(st.just("isolate"), st.integers(0, 5)),
    st.tuples(st.just("heal")),
    st.tuples(st.just("pause"), st.integers(0, 5)),
    st.tuples(st.just("resume"), st.integers(0, 5)),
)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(3, 6),
    reclaim=st.sampled_from(["never", "auto"]),
    offsets=st.lists(st.integers(0, BEAT - 1), min_size=6, max_size=6),
    script=st.lists(ops, max_size=14),
)
def test_random_faults_under_fanout_keep_fencing_and_converge(
    n: int, reclaim: str, offsets: list[int], script: list[tuple]
) -> None:
    ids = list(range(1, n + 1))
    delay = 3 * TIMEOUT
    net = FanoutNet(ids, reclaim=reclaim, reclaim_delay=delay,
                    offsets=dict(zip(ids, offsets, strict=False)))
    for op in script:
        kind = op[0]
        if kind == "advance":
            net.advance(op[1])
        elif kind == "crash":
            net.crash(ids[op[1] % n], fin=op[2])
        elif kind == "restart":
            net.restart(ids[op[1] % n])
        elif kind == "cut" and op[1] % n != op[2] % n:
            net.cut(ids[op[1] % n], ids[op[2] % n])
        elif kind == "isolate":
            net.isolate(ids[op[1] % n])
        elif kind == "heal":
            net.heal()
        elif kind == "pause":
            net.pause(ids[op[1] % n])
        elif kind == "resume":
            net.resume(ids[op[1] % n])
    net.heal()
    for i in ids:
        net.resume(i)
        net.restart(i)
    net.advance(2 * TIMEOUT + 4 * BEAT)
    net.assert_agreement()
    if reclaim == "auto":
        net.advance(delay + TIMEOUT + 2 * BEAT)
        net.assert_agreement(1)
    # Quiet and whole: only the master beats.
    t0 = net.now
    net.advance(4 * BEAT)
    assert {s[1] for s in net.beats_between(t0, net.now)} == set(net.masters())
