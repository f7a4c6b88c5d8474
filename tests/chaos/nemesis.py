"""The nemesis: faults at seeded random times, alone and overlapping, healed at the end.

Kinds (see FAULT_KINDS): kill -9 of the master or of a client and restart; SIGSTOP of
the master for longer than the failover timeout, then SIGCONT; partitions (isolate the
master; a minority of clients cut from the rest; a bridge partition where A-B is cut
but both still see C); packet delay + loss on one till's link; the wall clock of one
till stepped by +-300 s; a till's database deleted and the till restarted.

A plan is made from the seed before the run starts (so a run can be repeated); which
till a fault hits is decided when it starts ("the master" means the master then).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from tests.chaos.cluster import ChaosCluster

KILL_MASTER = "kill-master"
KILL_CLIENT = "kill-client"
PAUSE_MASTER = "pause-master"
PART_MASTER = "partition-master"
PART_MINORITY = "partition-minority"
PART_BRIDGE = "partition-bridge"
NETEM = "netem"
CLOCK_SKEW = "clock-skew"
WIPE_DB = "wipe-db"
FAULT_KINDS = (KILL_MASTER, KILL_CLIENT, PAUSE_MASTER, PART_MASTER, PART_MINORITY, PART_BRIDGE,
               NETEM, CLOCK_SKEW, WIPE_DB)
PARTITIONS = (PART_MASTER, PART_MINORITY, PART_BRIDGE)
# How long each kind lasts (seconds): a pause must outlast the failover timeout (2 s).
DURATIONS = {KILL_MASTER: (2.0, 6.0), KILL_CLIENT: (2.0, 6.0), PAUSE_MASTER: (3.0, 6.0),
             PART_MASTER: (4.0, 10.0), PART_MINORITY: (4.0, 10.0), PART_BRIDGE: (4.0, 10.0),
             NETEM: (5.0, 12.0), CLOCK_SKEW: (5.0, 15.0), WIPE_DB: (1.0, 3.0)}


@dataclass
class Fault:
    kind: str
    start: float  # seconds after the workload started
    duration: float
    params: dict[str, Any] = field(default_factory=dict)
    target: list[int] = field(default_factory=list)
    applied_at: float | None = None
    healed_at: float | None = None
    applied_wall: float | None = None
    healed_wall: float | None = None
    note: str = ""
    skipped: str = ""
    master_epoch: list[int] | None = None  # the target's epoch when it was hit (master faults)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_plan(seed: int, duration: float, n: int, kinds: list[str] | None = None,
              faults: int | None = None, quiet_tail: float = 3.0) -> list[Fault]:
    """Seeded faults: each kind in `kinds` at least once, plus random extra ones.

    Start times are random in [2 s, duration - quiet_tail - length]; faults may overlap
    (that is the combined case). Every fault ends before the workload stops.
    """
    rng = random.Random(seed)
    pool = list(FAULT_KINDS)
    if n < 3:
        pool = [k for k in pool if k not in (PART_BRIDGE, PART_MINORITY)]
    if faults is not None:
        count = max(faults, len(kinds or []))
    elif kinds:
        count = len(kinds)  # exactly the kinds asked for
    else:
        count = rng.randint(2, 4)
    chosen = list(kinds or [])
    while len(chosen) < count:
        chosen.append(rng.choice(pool))
    rng.shuffle(chosen)
    plan = []
    for kind in chosen:
        lo, hi = DURATIONS[kind]
        length = rng.uniform(lo, hi)
        latest = max(2.0, duration - quiet_tail - length)
        start = rng.uniform(2.0, latest)
        params: dict[str, Any] = {}
        if kind == NETEM:
            delay = rng.choice([60, 120, 200, 300])
            params = {"delay_ms": delay, "jitter_ms": delay // 4,
                      "loss_pct": rng.choice([0, 5, 10, 20]), "node": rng.randint(1, n)}
        elif kind == CLOCK_SKEW:
            params = {"offset_ms": rng.choice([-300_000, 300_000]), "node": rng.randint(1, n)}
        elif kind in (KILL_CLIENT, WIPE_DB, PART_MINORITY, PART_BRIDGE):
            params = {"pick": rng.random(), "pick2": rng.random()}
        plan.append(Fault(kind, round(start, 2), round(length, 2), params))
    plan.sort(key=lambda f: f.start)
    return plan


def skew_targets(plan: list[Fault]) -> set[int]:
    return {f.params["node"] for f in plan if f.kind == CLOCK_SKEW}


class Nemesis:
    def __init__(self, cluster: ChaosCluster, plan: list[Fault], t0: float,
                 log: Callable[[str], None] = print):
        self.cluster = cluster
        self.plan = plan
        self.t0 = t0
        self.log = log
        self.active: list[Fault] = []
        self.down: set[int] = set()
        self.paused: set[int] = set()
        self.wipes: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._thread = threading.Thread(target=self._run, daemon=True, name="nemesis")

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 3)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        events: list[tuple[float, int, str, Fault]] = []
        for f in self.plan:
            events.append((f.start, 1, "apply", f))
            events.append((f.start + f.duration, 0, "heal", f))
        events.sort(key=lambda e: (e[0], e[1]))
        for at, _prio, action, fault in events:
            while not self._stop.is_set() and self.now() < at:
                self._stop.wait(min(0.05, max(0.0, at - self.now())))
            if self._stop.is_set():
                return
            with self._lock:
                try:
                    if action == "apply":
                        self._apply(fault)
                    elif fault in self.active:
                        self._heal(fault)
                except Exception as exc:  # noqa: BLE001 - a failed fault is reported, not fatal
                    fault.note += f" [{action} failed: {exc}]"
                    self.log(f"  nemesis: {action} {fault.kind} failed: {exc}")

    def stop_and_heal(self) -> None:
        """Stop the schedule and heal everything still active (reverse order)."""
        self._stop.set()
        self._thread.join(30)
        with self._lock:
            for fault in reversed(list(self.active)):
                try:
                    self._heal(fault)
                except Exception as exc:  # noqa: BLE001
                    fault.note += f" [heal failed: {exc}]"
            # Belt and braces: the network whole, every till up and running.
            self.cluster.hosts.block(set())
            for i in range(1, self.cluster.n + 1):
                self.cluster.hosts.unimpair(i)
            for till in self.cluster.tills.values():
                if till.paused:
                    till.resume()
                if not till.alive():
                    till.start()
            if self.cluster.skew is not None:
                for i in self.cluster.skewable:
                    self.cluster.skew.set_offset(self.cluster[i].skew_file, 0)

    # ------------------------------------------------------------ helpers
    def _up(self) -> list[int]:
        return [i for i, t in self.cluster.tills.items()
                if t.alive() and i not in self.down and i not in self.paused]

    def _master(self) -> int | None:
        m = self.cluster.current_master()
        return m if m in self._up() else None

    def _pick(self, candidates: list[int], r: float) -> int | None:
        if not candidates:
            return None
        return sorted(candidates)[int(r * len(candidates)) % len(candidates)]

    def _cut_pairs(self) -> set[frozenset[int]]:
        pairs: set[frozenset[int]] = set()
        for f in self.active:
            pairs |= {frozenset(p) for p in f.params.get("pairs", [])}
        return pairs

    def _mark(self, fault: Fault, target: list[int], note: str) -> None:
        fault.target = target
        fault.applied_at = self.now()
        fault.applied_wall = time.time()
        fault.note = note
        self.active.append(fault)
        self.log(f"  t={fault.applied_at:6.1f}s  fault {fault.kind} on {target}: {note}")

    def _skip(self, fault: Fault, why: str) -> None:
        fault.skipped = why
        self.log(f"  t={self.now():6.1f}s  fault {fault.kind} skipped: {why}")

    def _epoch_of(self, i: int) -> list[int] | None:
        v = self.cluster[i].health(0.8)
        return list(v["epoch"]) if v else None

    # ------------------------------------------------------------- apply
    def _apply(self, f: Fault) -> None:
        c = self.cluster
        n = c.n
        if f.kind in (KILL_MASTER, PAUSE_MASTER, KILL_CLIENT, WIPE_DB):
            master = self._master()
            if f.kind in (KILL_MASTER, PAUSE_MASTER):
                target = master
                if target is None:
                    return self._skip(f, "no reachable master right now")
            else:
                clients = [i for i in self._up() if i != master]
                if f.kind == WIPE_DB:
                    # Only a till that is a client in everyone's eyes: a master's disk may
                    # hold the only copy of sales it acknowledged (no quorum replication),
                    # and destroying that is outside what DESIGN.md promises.
                    views = self.cluster.views(0.8)
                    masters = {i for i, v in views.items() if v and v["role"] == "master"}
                    masters |= {v["master_id"] for v in views.values() if v and v.get("master_id")}
                    clients = [i for i in clients if i not in masters]
                target = self._pick(clients, f.params["pick"])
                if target is None:
                    return self._skip(f, "no running client")
            till = c[target]
            if f.kind == PAUSE_MASTER:
                f.master_epoch = self._epoch_of(target)
                till.pause()
                self.paused.add(target)
                return self._mark(f, [target], f"SIGSTOP (epoch {f.master_epoch})")
            f.master_epoch = self._epoch_of(target) if f.kind == KILL_MASTER else None
            till.kill()
            self.down.add(target)
            if f.kind == WIPE_DB:
                aside = till.wipe()
                self.wipes.append({"till": target, "t": self.now(), "aside": aside})
                return self._mark(f, [target], f"kill -9, data dir deleted (kept at {aside})")
            return self._mark(f, [target], "kill -9")
        if f.kind in PARTITIONS:
            master = self._master() or self.cluster.current_master() or 1
            everyone = list(range(1, n + 1))
            if f.kind == PART_MASTER:
                side = [master]
            elif f.kind == PART_MINORITY:
                others = sorted(i for i in everyone if i != master)
                size = max(1, (n - 1) // 2)
                start = int(f.params["pick"] * len(others))
                side = sorted((others * 2)[start:start + size])
            else:  # bridge: A-B cut, both see everyone else
                a = master if f.params["pick"] < 0.5 else self._pick(everyone, f.params["pick2"])
                rest = [i for i in everyone if i != a]
                b = self._pick(rest, f.params["pick2"])
                f.params["pairs"] = [[a, b]]
                c.hosts.block(self._cut_pairs() | {frozenset((a, b))})
                return self._mark(f, [a, b], f"link {a}-{b} cut, both still see "
                                           f"{[i for i in everyone if i not in (a, b)]}")
            rest = [i for i in everyone if i not in side]
            f.params["pairs"] = [[a, b] for a in side for b in rest]
            c.hosts.block(self._cut_pairs() | {frozenset(p) for p in f.params["pairs"]})
            return self._mark(f, side, f"{side} cut from {rest} (master was {master})")
        if f.kind == NETEM:
            i = f.params["node"]
            how = c.hosts.impair(i, f.params["delay_ms"], f.params["jitter_ms"], f.params["loss_pct"])
            return self._mark(f, [i], how)
        if f.kind == CLOCK_SKEW:
            i = f.params["node"]
            if c.skew is None or not c.skew.available:
                reason = c.skew.reason if c.skew is not None else "no clock mechanism"
                return self._skip(f, f"clock skew impossible here: {reason}")
            c.skew.set_offset(c[i].skew_file, f.params["offset_ms"])
            return self._mark(f, [i], f"wall clock {f.params['offset_ms'] / 1000:+.0f} s "
                                      f"({c.skew.kind})")
        return self._skip(f, "unknown kind")

    # -------------------------------------------------------------- heal
    def _heal(self, f: Fault) -> None:
        c = self.cluster
        if f in self.active:
            self.active.remove(f)
        f.healed_at = self.now()
        f.healed_wall = time.time()
        if f.kind in (KILL_MASTER, KILL_CLIENT, WIPE_DB):
            i = f.target[0]
            self.down.discard(i)
            if not c[i].alive():
                c[i].start()
        elif f.kind == PAUSE_MASTER:
            i = f.target[0]
            self.paused.discard(i)
            c[i].resume()
        elif f.kind in PARTITIONS:
            c.hosts.block(self._cut_pairs())
        elif f.kind == NETEM:
            if not any(g.kind == NETEM and g.params["node"] == f.params["node"] for g in self.active):
                c.hosts.unimpair(f.params["node"])
        elif f.kind == CLOCK_SKEW:
            if c.skew is not None and not any(g.kind == CLOCK_SKEW and g.params["node"]
                                              == f.params["node"] for g in self.active):
                c.skew.set_offset(c[f.params["node"]].skew_file, 0)
        self.log(f"  t={f.healed_at:6.1f}s  healed {f.kind} on {f.target}")
