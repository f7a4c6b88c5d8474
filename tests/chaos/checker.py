"""Checks after the faults stop and the cluster is quiet: DESIGN.md's invariants, from the
tills' own SQLite files and audit logs, against the workload's history.

Every check returns a list of violations (empty = holds). Counts for the report are
gathered on the way (acknowledged, lost, duplicated, unknown -> present/absent, ...).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections import Counter, defaultdict
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.chaos.hosts import ROOT


def _rows(path: str, sql: str, params: tuple = ()) -> list[tuple]:
    if not os.path.exists(path):
        return []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as conn:
        try:
            return list(conn.execute(sql, params))
        except sqlite3.OperationalError:
            return []


@dataclass
class NodeData:
    device_id: int
    path: str
    journal: list[tuple[int, str, str, dict, int, int]]  # gseq, event_id, type, payload, ep n, ep m
    stock: dict[str, int]
    movements: dict[str, int]
    conflicts: list[tuple[str, str, str]]  # kind, sku, event_id
    audit: list[tuple[int, int, int, str, dict]]  # device_id, seq, ts_ms, action, details
    outbox: list[tuple[str, str, dict]]

    @classmethod
    def load(cls, device_id: int, path: str) -> "NodeData":
        journal = [(g, e, t, json.loads(p), en, em) for g, e, t, p, en, em in _rows(
            path, "SELECT gseq, event_id, type, payload, epoch_number, epoch_master FROM journal "
                  "ORDER BY gseq")]
        stock = dict(_rows(path, "SELECT sku, stock FROM products"))
        movements = dict(_rows(path, "SELECT sku, sum(delta) FROM stock_movements GROUP BY sku"))
        conflicts = _rows(path, "SELECT kind, sku, event_id FROM conflicts")
        audit = [(d, s, ts, a, json.loads(det)) for d, s, ts, a, det in _rows(
            path, "SELECT device_id, seq, ts_ms, action, details FROM audit_log ORDER BY device_id, seq")]
        outbox = [(e, t, json.loads(p)) for e, t, p in _rows(
            path, "SELECT event_id, type, payload FROM outbox")]
        return cls(device_id, path, journal, stock, movements, conflicts, audit, outbox)


@dataclass
class CheckResult:
    ok: bool = True
    violations: dict[str, list[str]] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)

    def add(self, check: str, problems: list[str]) -> None:
        self.violations[check] = problems[:20] + ([f"... and {len(problems) - 20} more"]
                                                  if len(problems) > 20 else [])
        if problems:
            self.ok = False

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "violations": {k: v for k, v in self.violations.items() if v},
                "checks": sorted(self.violations), "counts": self.counts}


def fold_stock(journal: list[tuple]) -> tuple[dict[str, int], list[tuple[str, str, int, int]]]:
    """Stock per sku from the journal alone, and every sale line that went below zero:
    (event_id, sku, stock before, quantity)."""
    stock: dict[str, int] = defaultdict(int)
    sold_refs: dict[str, dict[str, int]] = {}
    below: list[tuple[str, str, int, int]] = []
    for _g, event_id, typ, p, _en, _em in journal:
        if typ == "product.create" and p.get("stock"):
            stock[p["sku"]] += int(p["stock"])
        elif typ in ("stock.receive", "stock.adjust"):
            stock[p["sku"]] += int(p["quantity"])
        elif typ == "sale.create":
            wanted: Counter[str] = Counter()
            for line in p["lines"]:
                wanted[line["sku"]] += int(line["quantity"])
            for sku, qty in wanted.items():
                if stock[sku] < qty:
                    below.append((event_id, sku, stock[sku], qty))
                stock[sku] -= qty
            sold_refs[p["sale_id"]] = dict(wanted)
        elif typ in ("sale.refund", "sale.void"):
            if p["sale_id"] in sold_refs:
                for item in p["lines"]:
                    stock[item["sku"]] += int(item["quantity"])
        elif typ == "conflict.resolve" and p.get("recount") is not None:
            pass  # not used by the workload
    return dict(stock), below


SALE_CHECKS = ("acknowledged sales present exactly once", "no sale that nobody sold",
               "refused sales absent")


def sale_outcome(status: int, data: dict[str, Any]) -> dict[str, Any]:
    """What a till's answer to `POST /api/sales` says about the sale, as history fields.

    ok: 201 (or 200, a retry the till already had) with a sale id: acknowledged, must
    be journaled exactly once. fail: 409 (out of stock...): refused, must never be
    journaled. unknown: 5xx, the till failed midway: the sale may or may not exist.
    error: any other answer (400, 401...): refused before anything was made."""
    if status in (200, 201) and data.get("sale_id"):
        return {"outcome": "ok", "sale_id": data["sale_id"], "mode": data.get("status"),
                "duplicate": status == 200}
    if status == 409:
        return {"outcome": "fail", "detail": (data.get("error") or {}).get("code", "")}
    return {"outcome": "unknown" if status >= 500 else "error"}


def exception_outcome(exc: Exception) -> tuple[str, str]:
    """A request that raised: "error" if it provably never reached the till (connection
    refused: nothing can exist), else "unknown" (a timeout, or a connection cut after the
    request left, e.g. by kill -9: the till may have made the sale; Jepsen's :info)."""
    text = repr(exc)
    if isinstance(exc, requests.ConnectTimeout) or "NewConnectionError" in text \
            or "Connection refused" in text:
        return "error", "not sent: " + type(exc).__name__
    return "unknown", type(exc).__name__


def check_sales(journals: dict[int, list[dict[str, Any]]], history: list[dict[str, Any]], *,
                destroyed: set[str] | frozenset[str] = frozenset(), ref: int | None = None
                ) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Sales in each till's journal against what the cashiers were told.

    `journals`: per till, the payloads of its `sale.create` entries; `history`: ops of
    kind "sale" with `client_ref`, `outcome` (ok | fail | error | unknown) and, for ok,
    the `sale_id` answered; `destroyed`: client_refs whose only copy was on a wiped disk.
    A client_ref answered ok at least once must be journaled exactly once, as the sale
    id answered; one whose every request ended in an unknown outcome (or unknown, then
    refused) may be journaled once or not at all, never twice; one only ever refused
    must be absent; a sale nobody sent must not be there. Returns the problems per
    check (`SALE_CHECKS`) and counts (unknown outcomes resolved on till `ref`).
    """
    ref = min(journals) if ref is None else ref
    by_ref: dict[str, list[dict]] = defaultdict(list)
    for op in history:
        if op["kind"] == "sale":
            by_ref[op["client_ref"]].append(op)
    lost, duplicated, phantom, refused_present, mismatched = [], [], [], [], []
    unknown_present = unknown_absent = unknown_dup = 0
    destroyed_lost = 0
    lost_refs: set[str] = set()
    dup_refs: set[str] = set()
    acked = {r for r, ops in by_ref.items() if any(o["outcome"] == "ok" for o in ops)}
    for i, sales in journals.items():
        counts: Counter[str] = Counter()
        sale_of: dict[str, str] = {}
        for p in sales:
            cref = p.get("client_ref")
            counts[cref] += 1
            sale_of[cref] = p["sale_id"]
            if cref not in by_ref:
                phantom.append(f"till{i}: sale {p['sale_id']} (client_ref {cref}) was never sent")
        for cref, ops in by_ref.items():
            c = counts.get(cref, 0)
            if cref in acked:
                if c == 0:
                    if cref in destroyed:
                        destroyed_lost += 1 if i == ref else 0
                    else:
                        lost.append(f"till{i}: acknowledged sale {cref} missing")
                        lost_refs.add(cref)
                elif c > 1:
                    duplicated.append(f"till{i}: acknowledged sale {cref} journaled {c} times")
                    dup_refs.add(cref)
                ids_said = {o.get("sale_id") for o in ops if o["outcome"] == "ok"}
                if c and sale_of.get(cref) not in ids_said:
                    mismatched.append(f"till{i}: {cref} acknowledged as {ids_said}, journaled as "
                                      f"{sale_of.get(cref)}")
            elif any(o["outcome"] == "unknown" for o in ops):
                if i == ref:
                    if c == 0:
                        unknown_absent += 1
                    elif c == 1:
                        unknown_present += 1
                    else:
                        unknown_dup += 1
                if c > 1:
                    duplicated.append(f"till{i}: sale {cref} (unknown outcome) journaled {c} times")
                    dup_refs.add(cref)
            elif c:
                outcomes = sorted({str(o.get("http") or o["outcome"]) for o in ops})
                refused_present.append(f"till{i}: sale {cref} answered {outcomes} but journaled")
    problems = dict(zip(SALE_CHECKS, (lost + duplicated + mismatched, phantom, refused_present),
                        strict=True))
    counts_out = {"sales_acked": len(acked), "unknown_resolved_present": unknown_present,
                  "unknown_resolved_absent": unknown_absent, "unknown_duplicated": unknown_dup,
                  "lost": len(lost_refs), "duplicated": len(dup_refs),
                  "destroyed_with_wiped_disk": destroyed_lost}
    return problems, counts_out


def check_run(*, tills: dict[int, str], wiped: list[dict[str, Any]], history: list[dict[str, Any]],
              faults: list[dict[str, Any]], monitor: list[dict[str, Any]], skewed: set[int],
              verify_audit: bool = True) -> CheckResult:
    res = CheckResult()
    nodes = {i: NodeData.load(i, p) for i, p in tills.items()}
    aside = [NodeData.load(w["till"], os.path.join(w["aside"], "lanpos.db")) for w in wiped]
    ref = nodes[min(nodes)]

    # 1. all journals identical (gseq, event_id), gapless, no event twice
    problems = []
    ids = {i: [(g, e) for g, e, *_ in n.journal] for i, n in nodes.items()}
    for i, j in ids.items():
        if j != ids[ref.device_id]:
            first = next((k for k, (a, b) in enumerate(zip(j, ids[ref.device_id], strict=False))
                          if a != b), min(len(j), len(ids[ref.device_id])))
            problems.append(f"till{i} journal ({len(j)} entries) differs from till{ref.device_id}'s "
                            f"({len(ids[ref.device_id])}) from position {first}")
        if [g for g, _ in j] != list(range(1, len(j) + 1)):
            problems.append(f"till{i} journal gseq is not gapless 1..{len(j)}")
        dup = [e for e, c in Counter(e for _, e in j).items() if c > 1]
        if dup:
            problems.append(f"till{i}: {len(dup)} event ids journaled twice")
        # A master at epoch e continues a journal it caught up with (all epochs < e), so
        # epochs never go down along gseq; a lower epoch after a higher one means a till
        # appended another master's entries on top of a tail that lost.
        last_epoch: tuple = (0, 0)
        for g, _e, _t, _p, en, em in nodes[i].journal:
            if (en, em) < last_epoch:
                problems.append(f"till{i}: gseq {g} has epoch {[en, em]} after an entry of epoch "
                                f"{list(last_epoch)}")
                break
            last_epoch = (en, em)
    res.add("journals identical", problems)

    # 2. sales: acknowledged present exactly once; nothing nobody sold; unknowns resolve
    # Sales whose only copy was on a wiped disk: in its outbox (not yet pushed), or in
    # its journal from a term of its own that nobody else received. They are reported
    # as destroyed with the disk, not as lost (DESIGN promises survival of power loss,
    # kill -9, failover and partitions - not of a deleted database).
    destroyed: set[str] = set()  # client_refs, event_ids and refund_ids
    for n in aside:
        only_here = [(e, typ, p) for e, typ, p in n.outbox]
        only_here += [(e, typ, p) for _g, e, typ, p, _en, em in n.journal if em == n.device_id]
        for e, typ, p in only_here:
            destroyed.add(e)
            if typ == "sale.create" and p.get("client_ref"):
                destroyed.add(p["client_ref"])
            if typ in ("sale.refund", "sale.void") and p.get("refund_id"):
                destroyed.add(p["refund_id"])
    sales, sale_counts = check_sales(
        {i: [p for _g, _e, t, p, *_ in n.journal if t == "sale.create"] for i, n in nodes.items()},
        history, destroyed=destroyed, ref=ref.device_id)
    for check, found in sales.items():
        res.add(check, found)
    sales_ops = [o for o in history if o["kind"] == "sale"]
    res.counts.update({
        "operations": len(history), "sales_attempted": len(sales_ops),
        "sales_acked_offline": len({o["client_ref"] for o in sales_ops
                                    if o["outcome"] == "ok" and o.get("mode") == "offline"}),
        "sales_409": sum(1 for o in sales_ops if o["outcome"] == "fail"),
        "sales_error": sum(1 for o in sales_ops if o["outcome"] == "error"),
        "sales_unknown": sum(1 for o in sales_ops if o["outcome"] == "unknown"),
        **sale_counts,
        "receipts_acked": sum(1 for o in history if o["kind"] == "receive" and o["outcome"] == "ok"),
        "price_edits_ok": sum(1 for o in history if o["kind"] == "price" and o["outcome"] == "ok"),
        "price_edits_409": sum(1 for o in history if o["kind"] == "price" and o["outcome"] == "fail"),
        "refunds_acked": sum(1 for o in history if o["kind"] == "refund" and o["outcome"] == "ok"),
        "journal_entries": len(ref.journal),
    })

    # 3. acknowledged receipts and refunds present exactly once too
    problems = []
    destroyed_other: set[str] = set()
    for i, n in nodes.items():
        events = Counter(e for _g, e, *_ in n.journal)
        refunds = Counter(p.get("refund_id") for _g, _e, t, p, *_ in n.journal
                          if t in ("sale.refund", "sale.void"))
        for op in history:
            if op["outcome"] != "ok":
                continue
            if op["kind"] == "receive" and op.get("event_id") and events[op["event_id"]] != 1:
                if events[op["event_id"]] == 0 and op["event_id"] in destroyed:
                    destroyed_other.add(op["event_id"])
                    continue
                problems.append(f"till{i}: acknowledged receipt {op['event_id']} present "
                                f"{events[op['event_id']]} times")
            if op["kind"] == "refund" and op.get("refund_id") and refunds[op["refund_id"]] != 1:
                if refunds[op["refund_id"]] == 0 and op["refund_id"] in destroyed:
                    destroyed_other.add(op["refund_id"])
                    continue
                problems.append(f"till{i}: acknowledged refund {op['refund_id']} present "
                                f"{refunds[op['refund_id']]} times")
    res.add("acknowledged receipts and refunds present exactly once", problems)
    res.counts["receipts_refunds_destroyed_with_wiped_disk"] = len(destroyed_other)

    # 4. stock = received - sold + refunded, on every node, from three angles
    problems = []
    oversells = []
    for i, n in nodes.items():
        folded, below = fold_stock(n.journal)
        for sku in sorted(set(folded) | set(n.stock)):
            s, m, f = n.stock.get(sku, 0), n.movements.get(sku, 0), folded.get(sku, 0)
            if not s == m == f:
                problems.append(f"till{i} {sku}: products.stock {s}, movements {m}, journal {f}")
        for sku, s in n.stock.items():
            if s != ref.stock.get(sku):
                problems.append(f"till{i} {sku}: stock {s} but till{ref.device_id} has "
                                f"{ref.stock.get(sku)}")
        # 5. every oversell has a conflict record of kind oversell
        recorded = {(e, sku) for kind, sku, e in n.conflicts if kind == "oversell"}
        for event_id, sku, before, qty in below:
            if (event_id, sku) not in recorded:
                oversells.append(f"till{i}: sale event {event_id} took {sku} from {before} to "
                                 f"{before - qty} without an oversell conflict")
        if i == ref.device_id:
            res.counts["oversells"] = len(below)
            res.counts["negative_final_stock"] = sorted(k for k, v in n.stock.items() if v < 0)
            res.counts["conflicts"] = Counter(kind for kind, _s, _e in n.conflicts)
    res.add("stock = received - sold + refunded, same everywhere", problems)
    res.add("every oversell has a conflict record", oversells)

    # 6. at most one master per epoch; an epoch pair is claimed once, by its own master
    problems = []
    claims: dict[tuple[int, int], list[str]] = defaultdict(list)
    for n in list(nodes.values()) + aside:
        for dev, seq, _ts, action, det in n.audit:
            if action == "role.master" and dev == n.device_id:
                pair = tuple(det.get("epoch") or (0, 0))
                claims[pair].append(f"till{dev}#{seq}")
                if pair[1] != dev:
                    problems.append(f"till{dev} became master at epoch {list(pair)} named for "
                                    f"till{pair[1]}")
    for pair, who in claims.items():
        if len(who) > 1:
            problems.append(f"epoch {list(pair)} claimed {len(who)} times: {who}")
    seen_masters: dict[tuple, set[int]] = defaultdict(set)
    for sample in monitor:
        for i, v in sample["views"].items():
            if v and v["role"] == "master":
                seen_masters[tuple(v["epoch"])].add(int(i))
    for pair, who in seen_masters.items():
        if len(who) > 1:
            problems.append(f"epoch {list(pair)}: tills {sorted(who)} all reported role master")
    res.add("one master per epoch, epoch pairs never reused", problems)
    res.counts["epochs_claimed"] = len(claims)

    # 7. the paused master does not sequence after it wakes (while a newer master exists)
    problems = []
    notes = []
    for f in faults:
        if f["kind"] != "pause-master" or f.get("applied_wall") is None or f.get("healed_wall") is None:
            continue
        i = f["target"][0]
        if i in skewed:
            notes.append(f"pause of till{i}: its wall clock was skewed, audit times not comparable")
            continue
        old = tuple(f.get("master_epoch") or (0, 0))
        newer = any(int(k) != i and v and v["role"] == "master" and tuple(v["epoch"]) > old
                    for s in monitor if f["applied_at"] <= s["t"] <= f["healed_at"] + 0.3
                    for k, v in s["views"].items())
        if not newer:
            notes.append(f"pause of till{i}: no newer master was elected while it slept")
            continue
        wake_ms = int(f["healed_wall"] * 1000)
        own = [a for a in (nodes[i].audit + [x for n in aside if n.device_id == i for x in n.audit])
               if a[0] == i and a[2] >= wake_ms]
        own.sort(key=lambda a: a[1])
        for _dev, seq, ts, action, det in own:
            if action in ("role.master", "role.step_down", "election.follow", "node.stopped"):
                break  # a new term (after catch-up) or a client: from here on it is legitimate
            # A batch from another till is audited as sync.sequenced; a local event's own
            # audit entry names the gseq and epoch this node journaled it at.
            if action == "sync.sequenced" or ("gseq" in det and "epoch" in det):
                first = det.get("first_gseq", det.get("gseq"))
                problems.append(f"till{i} woke at {wake_ms} and journaled {action} (gseq {first}) "
                                f"before starting a new term (it was master at {list(old)}; "
                                f"audit #{seq}, +{ts - wake_ms} ms)")
    res.add("paused master does not sequence after waking", problems)
    res.counts["notes"] = notes

    # 8. audit chains verify on every node (the product's own verifier)
    if verify_audit:
        problems = []
        wiped_tills = {w["till"] for w in wiped}
        for i, path in tills.items():
            r = subprocess.run([sys.executable, "-m", "app", "verify-audit", "--data-dir",
                                os.path.dirname(path)], cwd=ROOT, capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": ROOT}, timeout=120)
            broken = broken_audit_devices(r.stdout)
            # A wiped disk starts its till's chain afresh: the copies the others kept no
            # longer extend into it, which every till must report (audit.diverged). That,
            # and only that, is expected; any other break is a failure.
            expected = all(reason == "diverged" and dev in wiped_tills
                           for dev, reason in broken.items())
            if r.returncode != 0 and not (r.returncode == 1 and broken and expected):
                problems.append(f"till{i}: verify-audit exit {r.returncode}: "
                                f"{(r.stdout + r.stderr).strip()[-300:]}")
        res.add("audit chains verify", problems)
    return res


_BROKEN_LINE = re.compile(r"^device (\d+): .* BROKEN at seq \S+ \(([a-z_]+)\)", re.MULTILINE)


def broken_audit_devices(verify_output: str) -> dict[int, str]:
    """device id -> reason, for every chain `verify-audit` printed as BROKEN."""
    return {int(dev): reason for dev, reason in _BROKEN_LINE.findall(verify_output)}
