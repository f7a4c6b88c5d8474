#!/usr/bin/env python3
"""Jepsen-style fault injection for lanpos: real tills on separate network hosts, broken at
random, checked against DESIGN.md's invariants after every run.

    .venv/bin/python scripts/chaos.py --runs 50 --seed 1 --duration 40
    .venv/bin/python scripts/chaos.py --runs 1 --seed 7 --faults pause-master,clock-skew
    .venv/bin/python scripts/chaos.py --cleanup      # remove leftovers of crashed runs

Needs root, `ip`, `tc` and `iptables` for the network-namespace mode (each till its own
host); without them it falls back to loopback + TCP proxies and says so (weaker).
Writes per-run artifacts (history.jsonl, till databases and logs, summary, timeline.png)
under --work-dir, and the overall summary + one timeline plot under --out.
See docs/chaos.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.chaos import report  # noqa: E402
from tests.chaos.hosts import cleanup_leftovers, missing_for_netns  # noqa: E402
from tests.chaos.nemesis import FAULT_KINDS  # noqa: E402
from tests.chaos.runner import RunConfig, run_once  # noqa: E402


def write_summary(results: list, command: str, stamp: str, out: str) -> str:
    md, data = report.aggregate(results, command, stamp)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "summary.md"), "w", encoding="utf-8") as fh:
        fh.write(md)
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(report.jsonable(data), fh, indent=1, default=str)
    return md


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--seed", type=int, default=1, help="run i uses seed S+i-1")
    p.add_argument("--duration", type=float, default=40.0, help="seconds of workload + faults per run")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--mode", choices=["auto", "netns", "loopback"], default="auto")
    p.add_argument("--faults", default="",
                   help=f"comma list that each run must include: {', '.join(FAULT_KINDS)}")
    p.add_argument("--faults-per-run", type=int, default=None, help="default: 2-4 at random")
    p.add_argument("--clients-per-till", type=int, default=2)
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "chaos"))
    p.add_argument("--work-dir", default=None, help="default: artifacts/chaos/<timestamp>")
    p.add_argument("--keep", action="store_true", help="keep the till databases of passing runs")
    p.add_argument("--plot", choices=["first-failure", "busiest", "none"], default="busiest",
                   help="which run's timeline goes to --out/timeline.png")
    p.add_argument("--cleanup", action="store_true",
                   help="remove leftover namespaces/bridges of dead harness runs and exit")
    p.add_argument("--force", action="store_true", help="with --cleanup: also those of live runs")
    args = p.parse_args(argv)

    if args.cleanup:
        removed = cleanup_leftovers(force=args.force)
        print(f"cleanup: {len(removed)} leftovers removed")
        return 0
    kinds = [k.strip() for k in args.faults.split(",") if k.strip()] or None
    for k in kinds or []:
        if k not in FAULT_KINDS:
            p.error(f"unknown fault {k}; choose from {', '.join(FAULT_KINDS)}")
    if args.mode in ("auto", "netns"):
        missing = missing_for_netns()
        if missing and args.mode == "netns":
            p.error(f"netns mode needs: {', '.join(missing)}")
        if missing:
            print(f"chaos: WEAKER MODE - loopback + TCP proxies (netns mode needs {', '.join(missing)})")
        else:
            cleanup_leftovers()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = args.work_dir or os.path.join(ROOT, "artifacts", "chaos", stamp)
    os.makedirs(work, exist_ok=True)
    command = "scripts/chaos.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    print(f"chaos: {args.runs} run(s), seed {args.seed}, {args.duration:.0f} s each, "
          f"{args.nodes} tills, artifacts in {work}", flush=True)
    results = []
    t_all = time.monotonic()
    for k in range(args.runs):
        seed = args.seed + k
        print(f"run {k + 1}/{args.runs} seed {seed}", flush=True)
        cfg = RunConfig(seed=seed, duration=args.duration, nodes=args.nodes, mode=args.mode,
                        kinds=kinds, faults=args.faults_per_run, work_dir=work, index=k + 1,
                        clients_per_till=args.clients_per_till)
        r = run_once(cfg, log=lambda s: print(s, flush=True))
        results.append(r)
        report.write_run(r, r.work_dir)
        c = r.counts
        print(f"run {k + 1}/{args.runs} seed {seed}: {'PASS' if r.ok else 'FAIL'} "
              f"ops={c.get('operations', 0)} acked={c.get('sales_acked', 0)} lost={c.get('lost', '?')} "
              f"dup={c.get('duplicated', '?')} unknown={c.get('sales_unknown', 0)} "
              f"failovers={len(r.failovers)} converge={r.convergence_s}s wall={r.wall_s:.0f}s "
              f"[{', '.join(f['kind'] for f in r.faults)}]", flush=True)
        for check, problems in r.violations.items():
            print(f"    VIOLATION {check}: {problems[:3]}", flush=True)
        if r.error:
            print(f"    ERROR {r.error}", flush=True)
        if r.ok and not args.keep:
            for name in os.listdir(r.work_dir):
                path = os.path.join(r.work_dir, name)
                if os.path.isdir(path) and name.startswith("till"):
                    shutil.rmtree(path, ignore_errors=True)
        write_summary(results, command, stamp, args.out)  # after every run: a cut-short one reports too
        elapsed = time.monotonic() - t_all
        print(f"progress: {k + 1}/{args.runs} runs, {sum(x.ok for x in results)} passed, "
              f"{elapsed / 60:.1f} min elapsed, ~{elapsed / (k + 1) * (args.runs - k - 1) / 60:.1f} min left",
              flush=True)
    md = write_summary(results, command, stamp, args.out)
    if args.plot != "none" and results:
        failed = [r for r in results if not r.ok and r.ops]
        if args.plot == "first-failure" and failed:
            pick = failed[0]
        else:
            pick = max(results, key=lambda r: (len(r.failovers),
                                               len([f for f in r.faults if not f["skipped"]]),
                                               r.counts.get("sales_acked", 0)))
        if pick.ops:
            report.timeline_png(pick, os.path.join(args.out, "timeline.png"), args.nodes)
            with open(os.path.join(args.out, "timeline.md"), "w", encoding="utf-8") as fh:
                fh.write(f"timeline.png shows run {pick.index} (seed {pick.seed}) of `{command}`.\n\n"
                         + report.run_markdown(pick))
    print(md)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
