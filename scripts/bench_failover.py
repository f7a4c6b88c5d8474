#!/usr/bin/env python3
"""Failover benchmark (issue 3): kill -9 the master of a 3-till cluster, again and again.

    .venv/bin/python scripts/bench_failover.py [--rounds 10] [--idle 30] [--keep DIR]

A 3-node cluster of real processes on 127.0.0.1 with the product defaults (heartbeat
0.5 s, failover timeout 2 s, submit timeout 0.3 s). Each round:

1. find the master (all live tills agree on it, same epoch, state "online");
2. `kill -9` it and poll GET /health of the live tills every 10 ms until they all report
   the same new master, the same epoch and state "online": that is the failover time;
3. restart the killed till and wait until it has rejoined (all three agree again and
   their journals are equal), then `--settle` seconds (default 3): a started till may
   not claim the master role during its startup grace (= failover timeout, 2 s), so
   killing the master sooner measures that grace, not failover (with --settle 1 the
   kills after the first took 0.7-1.3 s instead of 0.1-0.6 s).

Then it measures idle CPU of every till over `--idle` seconds (psutil cpu_times, user +
system, as % of one core). Targets: failover p50 <= 1.5 s, max <= 3 s; idle <= 2 %.
Only 127.0.0.1 is used; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import psutil  # noqa: E402

from tests.cluster.harness import Cluster  # noqa: E402

P50_TARGET = 1.5
MAX_TARGET = 3.0
IDLE_TARGET = 2.0
POLL = 0.010


def say(msg: str) -> None:
    print(msg, flush=True)


def load_note() -> str:
    """Other work on this box skews every figure: say how busy it was."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min) / {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def agreed(views: list[dict | None], killed: int | None = None) -> int | None:
    """The master every view agrees on (same id, same epoch, all online), else None."""
    if not views or any(v is None for v in views):
        return None
    masters = {v.get("master_id") for v in views}
    epochs = {tuple(v.get("epoch") or ()) for v in views}
    if len(masters) != 1 or len(epochs) != 1 or any(v.get("state") != "online" for v in views):
        return None
    master = masters.pop()
    if master is None or master == killed:
        return None
    return master


def wait_failover(cluster: Cluster, killed: int, t_kill: float, timeout: float = 15.0
                  ) -> tuple[float, int, list]:
    live = [n for i, n in cluster.nodes.items() if i != killed]
    deadline = t_kill + timeout
    polls = 0
    while time.monotonic() < deadline and polls < int(timeout / POLL) + 100:
        polls += 1
        started = time.monotonic()
        views = [n.health() for n in live]
        master = agreed(views, killed)
        if master is not None:
            return time.monotonic() - t_kill, master, views
        time.sleep(max(0.0, POLL - (time.monotonic() - started)))
    raise TimeoutError(f"no agreement {timeout} s after killing till {killed}: "
                       f"{[n.health() for n in live]}")


def idle_cpu(cluster: Cluster, seconds: float) -> dict[int, float]:
    procs = {i: psutil.Process(n.proc.pid) for i, n in cluster.nodes.items()}
    before = {i: p.cpu_times() for i, p in procs.items()}
    t0 = time.monotonic()
    step = max(1.0, seconds / 6)
    while time.monotonic() - t0 < seconds:
        time.sleep(min(step, seconds - (time.monotonic() - t0)) if seconds > 0 else 0)
        say(f"  idle: {time.monotonic() - t0:4.0f} / {seconds:.0f} s")
    elapsed = time.monotonic() - t0
    after = {i: p.cpu_times() for i, p in procs.items()}
    return {i: 100.0 * ((after[i].user + after[i].system) - (before[i].user + before[i].system))
            / elapsed for i in procs}




def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU measurement")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds between a till's rejoin and the next kill (default 3: the "
                         "2 s startup grace of the restarted till, plus 1 s)")
    ap.add_argument("--keep", default=None, help="keep the tills' data and logs in this folder")
    args = ap.parse_args()

    base = args.keep or tempfile.mkdtemp(prefix="lanpos-bench-failover-")
    os.makedirs(base, exist_ok=True)
    cluster = Cluster(3, base, failover_timeout=2.0, heartbeat_interval=0.5,
                      submit_timeout=0.3)
    times: list[float] = []
    try:
        say("starting 3 tills (heartbeat 0.5 s, failover timeout 2 s, submit timeout 0.3 s); "
            + load_note())
        t0 = time.monotonic()
        cluster.start()
        master = cluster.wait_master(timeout=30)
        cluster.wait_converged(timeout=30)
        say(f"  up in {time.monotonic() - t0:.1f} s, master till {master}")
        for rnd in range(1, args.rounds + 1):
            master = cluster.wait_master(timeout=30)
            victim = cluster[master]
            t_kill = time.monotonic()
            victim.kill()
            took, new_master, views = wait_failover(cluster, master, t_kill)
            times.append(took)
            epoch = views[0]["epoch"]
            say(f"round {rnd:2d}/{args.rounds}: killed master {master} -> master {new_master} "
                f"epoch {epoch} in {took * 1000:6.0f} ms")
            t_restart = time.monotonic()
            victim.start()
            victim.wait_up(timeout=30)
            cluster.wait_master(timeout=30)
            cluster.wait_converged(timeout=30)
            say(f"           till {master} restarted and rejoined in "
                f"{time.monotonic() - t_restart:.1f} s")
            # A (re)started till listens for `failover timeout` before it may claim
            # (election.py startup grace); kill the next master only after that.
            time.sleep(args.settle)

        cluster.wait_master(timeout=30)
        say(f"measuring idle CPU over {args.idle:.0f} s ... ({load_note()})")
        time.sleep(2.0)
        cpu = idle_cpu(cluster, args.idle)
    finally:
        cluster.stop()

    p50 = statistics.median(times)
    lo, hi = min(times), max(times)
    say("")
    say(f"failover time over {len(times)} kills of the master (kill -9 -> all live tills agree):")
    say(f"  min {lo * 1000:6.0f} ms   p50 {p50 * 1000:6.0f} ms   max {hi * 1000:6.0f} ms")
    say(f"  target p50 <= {P50_TARGET * 1000:.0f} ms: {'PASS' if p50 <= P50_TARGET else 'FAIL'};"
        f"  max <= {MAX_TARGET * 1000:.0f} ms: {'PASS' if hi <= MAX_TARGET else 'FAIL'}")
    say(f"idle CPU per till over {args.idle:.0f} s (% of one core), {load_note()}:")
    for i, value in sorted(cpu.items()):
        say(f"  till {i}: {value:5.2f} %   {'PASS' if value <= IDLE_TARGET else 'FAIL'}"
            f" (target <= {IDLE_TARGET:.0f} %)")
    ok = p50 <= P50_TARGET and hi <= MAX_TARGET and all(v <= IDLE_TARGET for v in cpu.values())
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
