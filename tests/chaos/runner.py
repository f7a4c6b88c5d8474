"""One chaos run: hosts up, tills up, workload + nemesis + monitor, heal, converge, check.

`run_once()` always cleans up what it made (tills, namespaces, bridge, qdiscs, delayers),
also when something in the middle fails.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from tests.chaos import nemesis as nem
from tests.chaos.checker import check_run
from tests.chaos.cluster import ChaosCluster
from tests.chaos.hosts import ClockSkew, make_hosts
from tests.chaos.workload import History, Workload, WorkloadConfig


@dataclass
class RunConfig:
    seed: int
    duration: float = 30.0
    nodes: int = 3
    mode: str = "auto"  # netns | loopback | auto
    kinds: list[str] | None = None  # fault kinds that must appear (None: random mix)
    faults: int | None = None
    work_dir: str = "/tmp/lanpos-chaos"
    converge_timeout: float = 90.0
    clients_per_till: int = 2
    verify_audit: bool = True
    progress_every: float = 10.0
    index: int = 1


@dataclass
class RunResult:
    seed: int
    index: int
    mode: str
    ok: bool = False
    error: str = ""
    mode_notes: list[str] = field(default_factory=list)
    clock: str = ""
    faults: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    violations: dict[str, list[str]] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    failovers: list[dict[str, Any]] = field(default_factory=list)
    convergence_s: float | None = None
    duration_s: float = 0.0
    wall_s: float = 0.0
    work_dir: str = ""
    history_path: str = ""
    monitor: list[dict[str, Any]] = field(default_factory=list)
    ops: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, full: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not full:
            d.pop("monitor")
            d.pop("ops")
        return d


class Monitor:
    """Samples every till's /health a few times a second: roles, masters, epochs over time."""

    def __init__(self, cluster: ChaosCluster, t0: float, every: float = 0.25):
        self.cluster = cluster
        self.t0 = t0
        self.every = every
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=cluster.n, thread_name_prefix="monitor")
        self._thread = threading.Thread(target=self._run, daemon=True, name="monitor")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pool.shutdown(wait=False)

    def _view(self, i: int) -> dict | None:
        till = self.cluster[i]
        if not till.alive() or till.paused:
            return None
        try:
            r = till.http.get(till.url + "/api/cluster", timeout=0.6)
            v = r.json() if r.status_code == 200 else None
        except Exception:  # noqa: BLE001 - down, paused or cut: no view
            return None
        if not v:
            return None
        return {"role": v["role"], "master_id": v["master_id"], "epoch": v["epoch"],
                "state": v["state"], "outbox": v.get("outbox_pending")}

    def _run(self) -> None:
        while not self._stop.is_set():
            t = round(time.monotonic() - self.t0, 3)
            futures = {i: self._pool.submit(self._view, i) for i in self.cluster.tills}
            views = {}
            for i, fut in futures.items():
                try:
                    views[i] = fut.result(timeout=2)
                except Exception:  # noqa: BLE001
                    views[i] = None
            self.samples.append({"t": t, "views": views})
            self._stop.wait(self.every)


def leader_of(sample: dict[str, Any], n: int) -> tuple[int, tuple] | None:
    """The master a majority of the whole cluster follows, online, at one epoch."""
    votes: dict[tuple, int] = {}
    for v in sample["views"].values():
        if v and v["state"] == "online" and v["master_id"]:
            key = (v["master_id"], tuple(v["epoch"]))
            votes[key] = votes.get(key, 0) + 1
    for key, count in votes.items():
        if count > n // 2:
            return key
    return None


def failovers(samples: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Every change of the majority's master, with the time the cluster had none."""
    out = []
    last: tuple | None = None
    last_t = 0.0
    for s in samples:
        lead = leader_of(s, n)
        if lead is None:
            continue
        if last is not None and lead != last:
            out.append({"from": last[0], "to": lead[0], "epoch": list(lead[1]), "at": s["t"],
                        "gap_s": round(s["t"] - last_t, 2)})
        last, last_t = lead, s["t"]
    return out


def run_once(cfg: RunConfig, log: Callable[[str], None] = print) -> RunResult:
    started = time.monotonic()
    work = os.path.join(cfg.work_dir, f"run-{cfg.index:03d}-seed{cfg.seed}")
    shutil.rmtree(work, ignore_errors=True)  # never start from an older run's databases
    os.makedirs(work, exist_ok=True)
    result = RunResult(seed=cfg.seed, index=cfg.index, mode=cfg.mode, work_dir=work)
    hosts = cluster = monitor = workload = nemesis = history = None
    try:
        hosts = make_hosts(cfg.mode, cfg.nodes, work)
        result.mode = hosts.mode
        hosts.setup()
        result.mode_notes = list(hosts.notes)
        plan = nem.make_plan(cfg.seed, cfg.duration, cfg.nodes, cfg.kinds, cfg.faults)
        skew = None
        if nem.skew_targets(plan):
            skew = ClockSkew(os.path.join(cfg.work_dir, "clock"))
            result.clock = skew.describe()
        cluster = ChaosCluster(hosts, work, n=cfg.nodes, skew=skew,
                               skewable=nem.skew_targets(plan) if skew and skew.available else set())
        cluster.start()
        wl_cfg = WorkloadConfig(seed=cfg.seed, clients_per_till=cfg.clients_per_till)
        t0 = time.monotonic()
        history = History(os.path.join(work, "history.jsonl"), t0)
        result.history_path = history.path
        workload = Workload(cluster, history, wl_cfg, deadline=t0 + cfg.duration)
        targets = workload.prepare()
        # Re-base the clock: the workload starts now.
        t0 = time.monotonic()
        history.t0 = t0
        workload.deadline = t0 + cfg.duration
        log(f"  setup: {hosts.mode} mode, scarce {targets and {s: targets[s] for s in workload.scarce}}, "
            f"plan {[(f.kind, f.start, f.duration) for f in plan]}")
        monitor = Monitor(cluster, t0)
        nemesis = nem.Nemesis(cluster, plan, t0, log=log)
        monitor.start()
        workload.start()
        nemesis.start()
        next_progress = cfg.progress_every
        while time.monotonic() - t0 < cfg.duration:
            time.sleep(0.2)
            el = time.monotonic() - t0
            if cfg.progress_every and el >= next_progress:
                next_progress += cfg.progress_every
                ops = list(history.ops)
                by = {k: sum(1 for o in ops if o["outcome"] == k) for k in ("ok", "fail", "error", "unknown")}
                log(f"  t={el:5.1f}s ops={len(ops)} ok={by['ok']} 409={by['fail']} "
                    f"err={by['error']} unknown={by['unknown']} active={[f.kind for f in nemesis.active]}")
        workload.join(timeout=20)
        nemesis.stop_and_heal()
        healed = time.monotonic()
        result.duration_s = round(healed - t0, 1)
        log(f"  t={healed - t0:5.1f}s workload stopped, everything healed; waiting for convergence")
        # Quiet: all up, one master, identical journals, empty outboxes (bounded wait).
        why = ""
        deadline = healed + cfg.converge_timeout
        while time.monotonic() < deadline:
            ok, why = cluster.converged()
            if ok:
                break
            time.sleep(0.3)
        else:
            ok = False
        if ok:
            result.convergence_s = round(time.monotonic() - healed, 2)
            # Whole and quiet for one failover timeout: exactly one master remains.
            time.sleep(cluster.failover_timeout + 0.5)
            ok2, why2 = cluster.converged()
            if not ok2:
                why = "not stable after one failover timeout: " + why2
                result.convergence_s = None
        monitor.stop()
        history.close()
        with open(os.path.join(work, "monitor.jsonl"), "w", encoding="utf-8") as fh:
            for sample in monitor.samples:
                fh.write(json.dumps(sample, separators=(",", ":")) + "\n")
        result.faults = [f.to_dict() for f in plan]
        result.monitor = monitor.samples
        result.ops = history.ops
        result.failovers = failovers(monitor.samples, cfg.nodes)
        skewed = {f.params["node"] for f in plan if f.kind == nem.CLOCK_SKEW and f.applied_at is not None}
        check = check_run(tills={i: t.db_path for i, t in cluster.tills.items()},
                          wiped=nemesis.wipes, history=history.ops, faults=result.faults,
                          monitor=monitor.samples, skewed=skewed, verify_audit=cfg.verify_audit)
        if result.convergence_s is None:
            check.add("converged after heal", [f"no convergence within {cfg.converge_timeout:.0f} s: {why}"])
        else:
            check.add("converged after heal", [])
        masters_now = [i for i, v in cluster.views().items() if v and v["role"] == "master"]
        check.add("exactly one master once quiet",
                  [] if len(masters_now) == 1 else [f"masters at the end: {masters_now}"])
        result.ok = check.ok
        result.counts = check.counts
        result.violations = {k: v for k, v in check.violations.items() if v}
        result.checks = sorted(check.violations)
    except Exception as exc:  # noqa: BLE001 - a broken run is a failed run, reported
        result.ok = False
        result.error = f"{type(exc).__name__}: {exc}"
        log("  run failed: " + traceback.format_exc(limit=6))
        if history is not None:
            result.ops = history.ops
        if monitor is not None:
            result.monitor = monitor.samples
    finally:
        for stopper in (lambda: workload and workload.join(5), lambda: monitor and monitor.stop(),
                        lambda: cluster and cluster.stop(), lambda: hosts and hosts.cleanup()):
            try:
                stopper()
            except Exception:  # noqa: BLE001
                pass
        result.wall_s = round(time.monotonic() - started, 1)
    return result
