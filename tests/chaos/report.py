"""Reports: a summary table per run (markdown + JSON) and a timeline plot (PNG)."""

from __future__ import annotations

import json
import os
from typing import Any

from tests.chaos.runner import RunResult, leader_of

COLORS = {"ok": "#2e7d32", "fail": "#f9a825", "error": "#c62828", "unknown": "#6a1b9a"}
FAULT_COLORS = {"kill-master": "#d32f2f", "kill-client": "#ef9a9a", "pause-master": "#7b1fa2",
                "partition-master": "#1565c0", "partition-minority": "#64b5f6",
                "partition-bridge": "#00838f", "netem": "#ff8f00", "clock-skew": "#6d4c41",
                "wipe-db": "#212121"}


def jsonable(obj: Any) -> Any:
    """JSON-safe copy: tuple keys become strings."""
    if isinstance(obj, dict):
        return {(k if isinstance(k, (str, int, float, bool)) or k is None else str(k)): jsonable(v)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [jsonable(v) for v in obj]
    return obj


def _fmt_failovers(r: RunResult) -> str:
    if not r.failovers:
        return "0"
    return f"{len(r.failovers)} (" + ", ".join(f"{f['gap_s']:.1f}s" for f in r.failovers) + ")"


def run_row(r: RunResult) -> dict[str, Any]:
    c = r.counts
    return {
        "run": r.index, "seed": r.seed, "mode": r.mode, "result": "PASS" if r.ok else "FAIL",
        "faults": ", ".join(f"{f['kind']}{'(skipped)' if f['skipped'] else ''}" for f in r.faults),
        "ops": c.get("operations", len(r.ops)), "acked": c.get("sales_acked", "-"),
        "offline": c.get("sales_acked_offline", "-"), "409": c.get("sales_409", "-"),
        "unknown": c.get("sales_unknown", "-"), "lost": c.get("lost", "-"),
        "duplicated": c.get("duplicated", "-"),
        "conflicts": sum((c.get("conflicts") or {}).values()) if c.get("conflicts") is not None else "-",
        "failovers": _fmt_failovers(r),
        "convergence": f"{r.convergence_s:.1f}s" if r.convergence_s is not None else "-",
        "wall": f"{r.wall_s:.0f}s",
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        out.append("| " + " | ".join(str(row[k]).replace("|", "/") for k in keys) + " |")
    return "\n".join(out)


def run_markdown(r: RunResult) -> str:
    lines = [f"## Run {r.index} (seed {r.seed}): {'PASS' if r.ok else 'FAIL'}", "",
             markdown_table([run_row(r)]), ""]
    if r.mode_notes:
        lines += [f"- mode: {r.mode}; " + "; ".join(r.mode_notes)]
    if r.clock:
        lines += [f"- clock skew: {r.clock}"]
    for f in r.faults:
        when = (f"{f['applied_at']:.1f}-{f['healed_at']:.1f}s" if f["applied_at"] is not None
                and f["healed_at"] is not None else "not applied")
        lines.append(f"- fault {f['kind']} on {f['target']} at {when}: "
                     f"{f['skipped'] or f['note']}")
    c = r.counts
    if c:
        lines.append(f"- unknown outcomes resolved: {c.get('unknown_resolved_present', 0)} present, "
                     f"{c.get('unknown_resolved_absent', 0)} absent, "
                     f"{c.get('unknown_duplicated', 0)} duplicated")
        lines.append(f"- receipts acked {c.get('receipts_acked')}, price edits ok "
                     f"{c.get('price_edits_ok')} / 409 {c.get('price_edits_409')}, refunds acked "
                     f"{c.get('refunds_acked')}, oversells {c.get('oversells')}, conflicts "
                     f"{dict(c.get('conflicts') or {})}, journal {c.get('journal_entries')} entries")
        if c.get("destroyed_with_wiped_disk") or c.get("receipts_refunds_destroyed_with_wiped_disk"):
            lines.append(f"- destroyed with a wiped disk (acknowledged, never left that till): "
                         f"{c.get('destroyed_with_wiped_disk', 0)} sales, "
                         f"{c.get('receipts_refunds_destroyed_with_wiped_disk', 0)} receipts/refunds")
        for note in c.get("notes") or []:
            lines.append(f"- note: {note}")
    lines.append(f"- checks: {', '.join(r.checks)}")
    for check, problems in r.violations.items():
        lines.append(f"- **VIOLATION {check}**:")
        lines += [f"  - {p}" for p in problems]
    if r.error:
        lines.append(f"- **run error**: {r.error}")
    return "\n".join(lines) + "\n"


def write_run(r: RunResult, out_dir: str, plot: bool = True) -> dict[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, "summary.json"), "md": os.path.join(out_dir, "summary.md")}
    with open(paths["json"], "w", encoding="utf-8") as fh:
        json.dump(jsonable(r.to_dict()), fh, indent=1, default=str)
    with open(paths["md"], "w", encoding="utf-8") as fh:
        fh.write(run_markdown(r))
    if plot and r.ops:
        paths["png"] = os.path.join(out_dir, "timeline.png")
        timeline_png(r, paths["png"])
    return paths


def timeline_png(r: RunResult, path: str, n: int | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = n or max([int(k) for s in r.monitor[:1] for k in s["views"]] or [3])
    end = max([o.get("t_end", 0) for o in r.ops] + [s["t"] for s in r.monitor] + [1.0])
    fig, (ax_ops, ax_faults, ax_master) = plt.subplots(
        3, 1, figsize=(13, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.6, 1.4]})
    # operations: one row per till, a dot per request at its end time, coloured by outcome
    for outcome, color in COLORS.items():
        xs = [o["t_end"] for o in r.ops if o["outcome"] == outcome]
        ys = [o["till"] + (0.25 if o["kind"] != "sale" else 0) + (hash(o["id"]) % 7 - 3) * 0.03
              for o in r.ops if o["outcome"] == outcome]
        label = {"ok": "ok (201)", "fail": "409", "error": "error", "unknown": "timeout/unknown"}[outcome]
        ax_ops.scatter(xs, ys, s=6, c=color, label=f"{label}: {len(xs)}", alpha=0.75, linewidths=0)
    ax_ops.set_yticks(range(1, n + 1), [f"till {i}" for i in range(1, n + 1)])
    ax_ops.set_ylim(0.5, n + 0.6)
    ax_ops.legend(loc="upper right", fontsize=8, ncol=4, markerscale=2)
    ax_ops.set_title(f"run {r.index} seed {r.seed} ({r.mode}): {'PASS' if r.ok else 'FAIL'} - "
                     f"{r.counts.get('sales_acked', '?')} sales acked, lost {r.counts.get('lost', '?')}, "
                     f"duplicated {r.counts.get('duplicated', '?')}", fontsize=10)
    # throughput of acknowledged sales per second, on a twin axis
    buckets: dict[int, int] = {}
    for o in r.ops:
        if o["kind"] == "sale" and o["outcome"] == "ok":
            buckets[int(o["t_end"])] = buckets.get(int(o["t_end"]), 0) + 1
    twin = ax_ops.twinx()
    xs = list(range(int(end) + 1))
    twin.plot(xs, [buckets.get(x, 0) for x in xs], color="#455a64", lw=1, alpha=0.6)
    twin.set_ylabel("acked sales/s", fontsize=8)
    # faults: one lane each
    for lane, f in enumerate(r.faults):
        if f["applied_at"] is None:
            continue
        healed = f["healed_at"] if f["healed_at"] is not None else end
        color = FAULT_COLORS.get(f["kind"], "#888")
        ax_faults.barh(lane, healed - f["applied_at"], left=f["applied_at"], color=color, alpha=0.8)
        ax_faults.text(f["applied_at"], lane, f" {f['kind']} {f['target']}", va="center", fontsize=7,
                       color="white" if f["kind"] in ("kill-master", "pause-master", "wipe-db",
                                                      "partition-master", "clock-skew") else "black")
        for ax in (ax_ops, ax_master):
            ax.axvspan(f["applied_at"], healed, color=color, alpha=0.07)
    ax_faults.set_yticks([])
    ax_faults.set_ylim(-0.7, max(len(r.faults), 1) - 0.3)
    ax_faults.set_ylabel("faults", fontsize=8)
    # master as each till sees it, and the majority's master
    for i in range(1, n + 1):
        ts, ms = [], []
        for s in r.monitor:
            v = s["views"].get(i) or s["views"].get(str(i))
            ts.append(s["t"])
            ms.append((v["master_id"] or 0) if v else float("nan"))
        ax_master.step(ts, [m + (i - 2) * 0.06 for m in ms], where="post", lw=1, alpha=0.7,
                       label=f"till {i}'s master")
    lead_t, lead_m = [], []
    for s in r.monitor:
        lead = leader_of(s, n)
        lead_t.append(s["t"])
        lead_m.append(lead[0] if lead else float("nan"))
    ax_master.step(lead_t, lead_m, where="post", lw=3, color="black", alpha=0.35,
                   label="majority's master")
    for fo in r.failovers:
        ax_master.annotate(f"epoch {fo['epoch'][0]}\n{fo['gap_s']:.1f}s", (fo["at"], fo["to"]),
                           fontsize=6, textcoords="offset points", xytext=(2, 6))
    ax_master.set_yticks(range(0, n + 1), ["none"] + [str(i) for i in range(1, n + 1)])
    ax_master.set_ylabel("master", fontsize=8)
    ax_master.legend(loc="upper right", fontsize=7, ncol=n + 1)
    ax_master.set_xlabel("seconds since the workload started")
    ax_master.set_xlim(0, end + 0.5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def aggregate(results: list[RunResult], command: str, started: str) -> tuple[str, dict[str, Any]]:
    rows = [run_row(r) for r in results]
    total = {
        "runs": len(results), "passed": sum(1 for r in results if r.ok),
        "operations": sum(r.counts.get("operations", 0) for r in results),
        "sales_acked": sum(r.counts.get("sales_acked", 0) for r in results),
        "sales_acked_offline": sum(r.counts.get("sales_acked_offline", 0) for r in results),
        "sales_unknown": sum(r.counts.get("sales_unknown", 0) for r in results),
        "lost": sum(r.counts.get("lost", 0) for r in results),
        "duplicated": sum(r.counts.get("duplicated", 0) for r in results),
        "oversells": sum(r.counts.get("oversells", 0) for r in results),
        "failovers": sum(len(r.failovers) for r in results),
        "faults": {},
    }
    for r in results:
        for f in r.faults:
            key = f["kind"] + (" (skipped)" if f["skipped"] else "")
            total["faults"][key] = total["faults"].get(key, 0) + 1
    conv = [r.convergence_s for r in results if r.convergence_s is not None]
    gaps = [f["gap_s"] for r in results for f in r.failovers]
    total["convergence_s_max"] = max(conv) if conv else None
    total["failover_gap_s_max"] = max(gaps) if gaps else None
    md = [f"# Chaos runs ({started})", "", f"Command: `{command}`", "",
          f"**{total['passed']}/{total['runs']} runs passed** - {total['operations']} operations, "
          f"{total['sales_acked']} sales acknowledged ({total['sales_acked_offline']} offline), "
          f"{total['sales_unknown']} unknown outcomes, **lost {total['lost']}, duplicated "
          f"{total['duplicated']}**, {total['oversells']} oversells (all with conflict records "
          f"unless a run says otherwise), {total['failovers']} failovers "
          f"(longest gap {total['failover_gap_s_max']} s), slowest convergence after heal "
          f"{total['convergence_s_max']} s.", "",
          "Faults injected: " + ", ".join(f"{k} x{v}" for k, v in sorted(total["faults"].items())),
          ""]
    modes = sorted({(r.mode, "; ".join(r.mode_notes)) for r in results})
    for mode, notes in modes:
        md.append(f"Mode: **{mode}**" + (f" - {notes}" if notes else ""))
    clocks = sorted({r.clock for r in results if r.clock})
    for clock in clocks:
        md.append(f"Clock skew mechanism: {clock}")
    md += ["", markdown_table(rows), ""]
    failed = [r for r in results if not r.ok]
    if failed:
        md.append("## Failed runs\n")
        for r in failed:
            md.append(run_markdown(r))
    return "\n".join(md) + "\n", {"total": total, "runs": [r.to_dict() for r in results]}
