"""Election core: scenario tests on an in-memory network plus a hypothesis property.

No sleeps: ``SimNet`` owns a fake clock in milliseconds, delivers every node's
heartbeat to every connected peer each 500 ms and ticks every core each 100 ms.
Heartbeats go through ``to_dict``/JSON/``from_dict`` so the wire format is exercised.
``SimNet`` also checks the fencing invariants after every delivered action list.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.services.cluster.election import (
    REFUSE_DUPLICATE_ID,
    REFUSE_MALFORMED_CLAIM,
    REFUSE_SCHEMA,
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


class SimNet:
    """N election cores on a fake LAN with cuts, crashes and restarts.

    ``persisted`` plays the disk: it only changes through ``PersistEpoch`` and is
    what a restarted core boots from, so a claim the core forgot would be caught.
    """

    def __init__(
        self,
        ids: list[int],
        *,
        reclaim: str = "never",
        reclaim_delay: int = 30000,
        schemas: dict[int, int] | None = None,
        offsets: dict[int, int] | None = None,
    ) -> None:
        self.now = 0
        self.ids = list(ids)
        self.reclaim = reclaim
        self.reclaim_delay = reclaim_delay
        self.schemas = schemas or {}
        self.offsets = offsets or {}
        self.persisted: dict[int, Epoch] = {i: Epoch(0, 0) for i in ids}
        self.high_water: dict[int, Epoch] = {i: Epoch(0, 0) for i in ids}
        self.cores: dict[int, ElectionCore] = {}
        self.next_beat: dict[int, int] = {}
        self.cut_links: set[frozenset[int]] = set()
        self.log: list[tuple[int, int, Action]] = []
        self.claims: dict[Epoch, int] = {}
        for i in ids:
            self._boot(i)

    # -- plumbing -------------------------------------------------------------

    def _boot(self, i: int) -> None:
        self.cores[i] = ElectionCore(
            i,
            schema_version=self.schemas.get(i, 1),
            failover_timeout_ms=TIMEOUT,
            reclaim=self.reclaim,
            reclaim_delay_ms=self.reclaim_delay,
            epoch=self.persisted[i],
            now=self.now,
        )
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

    def step(self) -> None:
        self.now += STEP
        for i in sorted(self.cores):
            self._apply(i, self.cores[i].tick(self.now))
        for i in sorted(self.cores):
            if i not in self.cores or self.now < self.next_beat[i]:
                continue
            self.next_beat[i] += BEAT
            wire = json.dumps(self.cores[i].heartbeat().to_dict())
            for j in sorted(self.cores):
                if j != i and self.connected(i, j):
                    hb = Heartbeat.from_dict(json.loads(wire))
                    self._apply(j, self.cores[j].on_heartbeat(hb, self.now))

    def advance(self, ms: int) -> None:
        end = self.now + ms
        while self.now < end:
            self.step()

    # -- faults -----------------------------------------------------------------

    def cut(self, a: int, b: int) -> None:
        self.cut_links.add(frozenset((a, b)))

    def isolate(self, a: int) -> None:
        for b in self.ids:
            if b != a:
                self.cut(a, b)

    def heal(self) -> None:
        self.cut_links.clear()

    def crash(self, a: int, *, fin: bool = False) -> None:
        """kill -9 / power loss. ``fin``: peers' transports see the socket close."""
        if a not in self.cores:
            return
        del self.cores[a]
        if fin:
            for j in sorted(self.cores):
                if frozenset((a, j)) not in self.cut_links:
                    self._apply(j, self.cores[j].on_peer_down(a, self.now))

    def restart(self, a: int) -> None:
        if a not in self.cores:
            self._boot(a)

    # -- views ------------------------------------------------------------------

    def masters(self) -> list[int]:
        return sorted(i for i, c in self.cores.items() if c.role == "master")

    def master_of(self, i: int) -> int | None:
        c = self.cores[i]
        return i if c.role == "master" else c.master_id

    def actions(self, node: int | None = None, kind: type | None = None, since: int = -1) -> list[Action]:
        return [
            a
            for t, i, a in self.log
            if t >= since and (node is None or i == node) and (kind is None or isinstance(a, kind))
        ]

    def assert_agreement(self, expected: int | None = None) -> int:
        """All running nodes follow one master, which is the only node with role master."""
        masters = self.masters()
        assert len(masters) == 1, f"masters={masters} at t={self.now}"
        m = masters[0]
        views = {i: (self.master_of(i), self.cores[i].epoch) for i in self.cores}
        assert all(v == (m, self.cores[m].epoch) for v in views.values()), views
        if expected is not None:
            assert m == expected
        return m


def started(ids: tuple[int, ...] = (1, 2, 3), **kw: object) -> SimNet:
    net = SimNet(list(ids), **kw)  # type: ignore[arg-type]
    net.advance(TIMEOUT + 2 * BEAT)
    net.assert_agreement(min(ids))
    return net


# ------------------------------------------------------------------ wire types


def test_epoch_order_and_wire() -> None:
    assert Epoch(2, 1) > Epoch(1, 9) > Epoch(1, 2) > Epoch(0, 0)
    assert Epoch.from_list(Epoch(3, 4).to_list()) == Epoch(3, 4)
    for bad in ([1], [1, 2, 3], ["1", 2], [True, 1], [-1, 2], None, "1,2"):
        with pytest.raises(ValueError):
            Epoch.from_list(bad)


def test_heartbeat_round_trip_and_validation() -> None:
    hb = Heartbeat(3, Epoch(4, 1), "client", 1, 17, Epoch(4, 1), 2, True)
    assert Heartbeat.from_dict(json.loads(json.dumps(hb.to_dict()))) == hb
    for key, value in [
        ("role", "boss"),
        ("device_id", 0),
        ("eligible", 1),
        ("master_id", "1"),
        ("last_gseq", -1),
        ("epoch", [1]),
    ]:
        d = hb.to_dict() | {key: value}
        with pytest.raises(ValueError):
            Heartbeat.from_dict(d)
    d = hb.to_dict()
    del d["schema_version"]
    with pytest.raises(ValueError):
        Heartbeat.from_dict(d)


# ------------------------------------------------------------------ single core


def hb(device: int, epoch: Epoch, role: str = "master", master: int | None = None, **kw: object) -> Heartbeat:
    defaults = {"last_gseq": 0, "last_epoch": Epoch(0, 0), "schema_version": 1, "eligible": True}
    fields: dict = defaults | kw
    if master is None and role == "master":
        master = device
    return Heartbeat(device, epoch, role, master, **fields)


def test_lone_node_claims_only_after_startup_grace() -> None:
    c = ElectionCore(4, schema_version=1, now=1000)
    assert c.tick(2999) == []
    assert c.role == "client" and c.master_id is None
    assert c.tick(3000) == [PersistEpoch(Epoch(1, 4)), BecomeMaster(Epoch(1, 4))]
    assert c.heartbeat().master_id == 4 and c.heartbeat().role == "master"


def test_restart_with_persisted_epoch_never_reuses_the_pair() -> None:
    c = ElectionCore(1, schema_version=1, epoch=Epoch(7, 1), startup_grace_ms=0)
    assert c.role == "client"
    assert c.tick(0) == [PersistEpoch(Epoch(8, 1)), BecomeMaster(Epoch(8, 1))]


def test_not_eligible_never_claims() -> None:
    c = ElectionCore(1, schema_version=1, startup_grace_ms=0)
    c.set_local_state(last_gseq=5, last_epoch=Epoch(3, 2), eligible=False)
    assert c.tick(10_000) == []
    c.set_local_state(last_gseq=5, last_epoch=Epoch(3, 2), eligible=True)
    # The number also clears the epoch of our own journal tail.
    assert c.tick(10_001) == [PersistEpoch(Epoch(4, 1)), BecomeMaster(Epoch(4, 1))]


def test_stale_epoch_claim_refused_once_but_sender_counts_as_alive() -> None:
    c = ElectionCore(3, schema_version=1)
    assert c.on_heartbeat(hb(2, Epoch(5, 2)), 100) == [PersistEpoch(Epoch(5, 2)), Follow(2, Epoch(5, 2))]
    assert c.on_heartbeat(hb(1, Epoch(3, 1)), 200) == [Refused(1, REFUSE_STALE_EPOCH)]
    assert c.on_heartbeat(hb(1, Epoch(3, 1)), 700) == []  # once per (peer, epoch)
    assert c.master_id == 2 and c.epoch == Epoch(5, 2)
    assert c.alive_ids(700) == [1, 2, 3]
    # A claim above ours from an alive master is followed.
    assert c.on_heartbeat(hb(1, Epoch(6, 1)), 900) == [PersistEpoch(Epoch(6, 1)), Follow(1, Epoch(6, 1))]


def test_master_steps_down_for_lower_id_at_higher_epoch() -> None:
    c = ElectionCore(2, schema_version=1, startup_grace_ms=0)
    c.tick(0)
    assert c.epoch == Epoch(1, 2)
    acts = c.on_heartbeat(hb(1, Epoch(2, 1)), 10)
    assert acts == [StepDown(Epoch(2, 1), 1), PersistEpoch(Epoch(2, 1)), Follow(1, Epoch(2, 1))]
    assert c.role == "client"


def test_master_meeting_higher_id_master_wins_above_both() -> None:
    c = ElectionCore(1, schema_version=1, startup_grace_ms=0)
    c.tick(0)
    assert c.on_heartbeat(hb(2, Epoch(5, 2)), 10) == [PersistEpoch(Epoch(6, 1)), BecomeMaster(Epoch(6, 1))]


def test_masterless_client_at_higher_epoch_makes_stale_master_reassert() -> None:
    """Without this, a client fenced above the only master would never follow it."""
    c = ElectionCore(1, schema_version=1, startup_grace_ms=0)
    c.tick(0)
    acts = c.on_heartbeat(hb(3, Epoch(4, 2), role="client", master=None), 10)
    assert acts == [PersistEpoch(Epoch(5, 1)), BecomeMaster(Epoch(5, 1))]


def test_second_hand_epoch_is_followed_when_its_master_is_alive() -> None:
    c = ElectionCore(3, schema_version=1)
    c.on_heartbeat(hb(2, Epoch(1, 2)), 0)
    c.on_heartbeat(hb(1, Epoch(0, 0), role="client"), 0)
    # 2 stepped down for 1's new claim; 2's beat reaches us before 1's.
    acts = c.on_heartbeat(hb(2, Epoch(2, 1), role="client", master=1), 100)
    assert acts == [PersistEpoch(Epoch(2, 1)), Follow(1, Epoch(2, 1))]


def test_restarted_master_refutes_its_old_claim() -> None:
    c = ElectionCore(2, schema_version=1)
    c.on_heartbeat(hb(1, Epoch(3, 1)), 0)
    assert c.master_id == 1
    assert c.on_heartbeat(hb(1, Epoch(3, 1), role="client"), 300) == [MasterLost(1)]


def test_peer_down_then_heartbeat_revives() -> None:
    c = ElectionCore(2, schema_version=1, startup_grace_ms=0)
    c.on_heartbeat(hb(1, Epoch(1, 1)), 0)
    assert c.on_peer_down(1, 100) == [MasterLost(1), PersistEpoch(Epoch(2, 2)), BecomeMaster(Epoch(2, 2))]
    c2 = ElectionCore(3, schema_version=1)
    c2.on_heartbeat(hb(1, Epoch(1, 1)), 0)
    assert c2.on_peer_down(1, 100) == [MasterLost(1)]  # in grace: no claim
    assert c2.alive_ids(100) == [3]
    assert c2.on_heartbeat(hb(1, Epoch(1, 1)), 200) == [Follow(1, Epoch(1, 1))]
    assert c2.alive_ids(200) == [1, 3]


def test_duplicate_id_and_malformed_claim_refused() -> None:
    c = ElectionCore(2, schema_version=1)
    assert c.on_heartbeat(hb(2, Epoch(9, 2)), 0) == [Refused(2, REFUSE_DUPLICATE_ID)]
    assert c.on_heartbeat(hb(2, Epoch(9, 2)), 1) == []
    assert c.on_heartbeat(hb(5, Epoch(9, 1)), 2) == [Refused(5, REFUSE_MALFORMED_CLAIM)]
    assert c.epoch == Epoch(0, 0) and c.master_id is None


# ------------------------------------------------------------------ scenarios


def test_startup_agreement_on_lowest_id() -> None:
    net = SimNet([3, 1, 2], offsets={1: 350, 2: 100, 3: 0})
    net.advance(TIMEOUT - STEP)
    assert net.actions(kind=BecomeMaster) == []  # nobody claims inside the grace
    net.advance(3 * BEAT)
    net.assert_agreement(1)
    assert net.actions(kind=BecomeMaster) == [BecomeMaster(Epoch(1, 1))]
    assert net.cores[2].alive_ids(net.now) == [1, 2, 3]


def test_master_crash_failover_within_timeout_plus_two_beats() -> None:
    net = started()
    net.crash(1)
    t0 = net.now
    while net.masters() != [2] or net.master_of(3) != 2:
        net.step()
        assert net.now - t0 <= TIMEOUT + 2 * BEAT, "failover too slow"
    net.advance(3 * BEAT)
    net.assert_agreement(2)
    assert net.cores[2].epoch > Epoch(1, 1)
    assert net.actions(2, MasterLost) == [MasterLost(1)]
    assert net.actions(3, MasterLost) == [MasterLost(1)]


def test_peer_down_makes_failover_immediate() -> None:
    net = started()
    net.crash(1, fin=True)
    assert net.masters() == [2]  # no time has passed
    net.advance(BEAT)
    net.assert_agreement(2)


@pytest.mark.parametrize("fin", [False, True])
def test_returning_lower_id_with_reclaim_never_stays_client(fin: bool) -> None:
    net = started()
    net.crash(1, fin=fin)
    net.advance(TIMEOUT + 2 * BEAT)
    net.assert_agreement(2)
    t_back = net.now
    net.restart(1)
    net.advance(60_000)
    net.assert_agreement(2)
    assert net.actions(kind=BecomeMaster, since=t_back) == []
    assert net.actions(1, Follow, since=t_back) == [Follow(2, net.cores[2].epoch)]


def test_returning_lower_id_with_reclaim_auto_takes_over_after_delay() -> None:
    delay = 10_000
    net = started(reclaim="auto", reclaim_delay=delay)
    net.crash(1)
    net.advance(TIMEOUT + 2 * BEAT)
    net.assert_agreement(2)
    old = net.cores[2].epoch
    t_back = net.now
    net.restart(1)
    net.advance(delay - 2 * BEAT)
    net.assert_agreement(2)  # not before the delay
    two_masters = 0
    for _ in range((delay + 4 * BEAT) // STEP):
        net.step()
        two_masters += len(net.masters()) > 1
    net.assert_agreement(1)
    assert net.cores[1].epoch > old
    assert net.actions(kind=BecomeMaster, since=t_back) == [BecomeMaster(net.cores[1].epoch)]
    assert net.actions(2, StepDown) == [StepDown(net.cores[1].epoch, 1)]
    assert two_masters * STEP <= BEAT  # the overlap ends with the next heartbeat
    net.advance(60_000)  # and nothing moves afterwards
    net.assert_agreement(1)
    assert len(net.actions(kind=BecomeMaster, since=t_back)) == 1


def test_flapping_link_shorter_than_timeout_changes_nothing() -> None:
    net = started()
    t0 = net.now
    for _ in range(20):
        net.cut(1, 2)
        net.advance(TIMEOUT // 2)
        net.heal()
        net.advance(BEAT)
    net.assert_agreement(1)
    assert net.actions(since=t0) == []


def test_flapping_isolation_longer_than_timeout_converges_each_time() -> None:
    net = started()
    for _ in range(4):
        net.isolate(3)
        net.advance(TIMEOUT + 2 * BEAT)
        assert net.masters() == [1, 3]  # each side keeps selling under its own master
        net.heal()
        net.advance(TIMEOUT + BEAT)
        net.assert_agreement(1)
        assert net.cores[1].epoch > max(e for e, who in net.claims.items() if who == 3)
    epochs = [a.epoch for a in net.actions(kind=BecomeMaster)]
    assert epochs == sorted(epochs) and len(set(epochs)) == len(epochs)


def test_partition_heal_lower_id_master_wins_above_both() -> None:
    net = started()
    net.cut(1, 2)
    net.cut(1, 3)
    net.advance(TIMEOUT + 3 * BEAT)
    assert net.masters() == [1, 2]
    e1, e2 = net.cores[1].epoch, net.cores[2].epoch
    assert e1.number == 1 and e2 == Epoch(2, 2)
    t_heal = net.now
    net.heal()
    net.advance(TIMEOUT)
    net.assert_agreement(1)
    final = net.cores[1].epoch
    assert final.number > max(e1.number, e2.number)
    assert net.actions(2, StepDown) == [StepDown(final, 1)]
    refusals = net.actions(kind=Refused, since=t_heal)
    assert refusals and all(r == Refused(1, REFUSE_STALE_EPOCH) for r in refusals)
    assert all(
        isinstance(a, (Follow, PersistEpoch))
        for a in net.actions(3, since=t_heal)
        if not isinstance(a, Refused)
    )


def test_schema_incompatible_node_never_counted() -> None:
    net = SimNet([1, 2, 3], schemas={1: 1, 2: 2, 3: 2})
    net.advance(10_000)
    for i in (2, 3):
        assert net.master_of(i) == 2
        assert net.cores[i].alive_ids(net.now) == [2, 3]
        assert net.actions(i, Refused) == [Refused(1, REFUSE_SCHEMA)]  # once, not per beat
        (view1,) = [p for p in net.cores[i].peers(net.now) if p.device_id == 1]
        assert not view1.alive and not view1.compatible and view1.schema_version == 1
    assert net.actions(1, Refused) == [Refused(2, REFUSE_SCHEMA), Refused(3, REFUSE_SCHEMA)]
    assert net.cores[1].alive_ids(net.now) == [1]


# ------------------------------------------------------------------ property

ops = st.one_of(
    st.tuples(st.just("advance"), st.integers(STEP, 3 * TIMEOUT // 2)),
    st.tuples(st.just("crash"), st.integers(0, 4), st.booleans()),
    st.tuples(st.just("restart"), st.integers(0, 4)),
    st.tuples(st.just("cut"), st.integers(0, 4), st.integers(0, 4)),
    st.tuples(st.just("isolate"), st.integers(0, 4)),
    st.tuples(st.just("heal")),
)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(3, 5),
    reclaim=st.sampled_from(["never", "auto"]),
    offsets=st.lists(st.integers(0, BEAT - 1), min_size=5, max_size=5),
    script=st.lists(ops, max_size=12),
)
def test_random_faults_keep_fencing_and_converge(
    n: int, reclaim: str, offsets: list[int], script: list[tuple]
) -> None:
    ids = list(range(1, n + 1))
    delay = 3 * TIMEOUT
    net = SimNet(ids, reclaim=reclaim, reclaim_delay=delay, offsets=dict(zip(ids, offsets, strict=False)))
    # SimNet asserts unique claims, persisted-before-claim and monotonic epochs on
    # every action list it applies, i.e. after every step.
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
    net.heal()
    for i in ids:
        net.restart(i)
    net.advance(TIMEOUT + 4 * BEAT)
    net.assert_agreement()
    if reclaim == "auto":
        net.advance(delay + TIMEOUT + 2 * BEAT)
        net.assert_agreement(1)
