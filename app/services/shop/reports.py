"""Day reports (X during the day, Z to close it), in integer cents. No Flask here.

A day is a local-time calendar day of this node (the shop's clock): from local
midnight to the next local midnight, so a DST day has 23 or 25 hours. The report is
built from the replicated derived tables, so every node shows the same figures for the
same journal (plus its own offline sales still waiting in the outbox).

* sales: every sale created that day (also the ones voided later), gross = their totals.
* refunds / voids: the money given back that day (a refund of yesterday's sale counts
  today: that is when the money left the drawer), with their tax.
* payments: what each method contributed to the day's sales (cash is net of change), and
  `refunded_cents`: what refunds/voids that day paid back to that method.
* cash expected in the drawer = cash taken - change given - the cash part of refunds/voids
  (a refund goes back to the sale's own tenders unless a manager chose one: a card sale's
  refund leaves the drawer alone).
* tax by rate: the sales' `tax_by_rate` minus the refunds' tax of that rate (computed
  per refund line the same way the refund computed it, so the totals match exactly).

A Z close is an audit entry `report.z_closed` carrying the totals (on this node's
tamper-evident chain); a day can be Z-closed once per node.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from app.models import Payment, Refund, Sale, SaleLine
from app.services.node import Node
from app.utils.errors import Conflict, ValidationError
from app.utils.money import round_half_up_div

Z_ACTION = "report.z_closed"
TOP_PRODUCTS = 10
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MIN_DAY = date(1970, 1, 2)  # the first local day whose midnight is after the epoch anywhere
MAX_DAY = date(9998, 12, 31)


# ------------------------------------------------------------------ days
def parse_day(text: str | None, now_ms: int) -> date:
    """'YYYY-MM-DD' -> date; empty -> today (local time of this node)."""
    if not text:
        return local_date(now_ms)
    if not isinstance(text, str) or not _DATE.match(text):
        raise ValidationError("date must be YYYY-MM-DD", {"field": "date"})
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValidationError("date is not a real calendar day", {"field": "date"}) from None
    if not MIN_DAY <= day <= MAX_DAY:
        # Local midnights outside these have no epoch-ms timestamp (year 1) or no next day
        # (9999-12-31): the bounds computation overflowed into a 500.
        raise ValidationError(f"date must be between {MIN_DAY.isoformat()} and {MAX_DAY.isoformat()}",
                              {"field": "date"})
    return day


def local_date(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000).date()


def day_bounds(day: date) -> tuple[int, int]:
    """[start, end) of a local day in epoch ms (DST-safe: both ends are local midnights)."""
    start = datetime(day.year, day.month, day.day).astimezone()
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day).astimezone()
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def _hour(ms: int) -> int:
    return datetime.fromtimestamp(ms / 1000).hour


# ------------------------------------------------------------------ helpers
def _rate_figures(value: Any) -> tuple[int, int]:
    """(gross, tax) of one `tax_by_rate` entry: {gross_cents, tax_cents, ...} or a bare tax."""
    if isinstance(value, dict):
        return int(value.get("gross_cents") or 0), int(value.get("tax_cents") or 0)
    return 0, int(value or 0)


def _tenders(r: Refund) -> list[dict[str, int]]:
    """The money a refund/void gave back per tender (rows before migration 0004: its method)."""
    if r.tenders is None:
        return [{"method": r.method, "amount_cents": r.amount_cents}]
    return [{"method": t["method"], "amount_cents": int(t["amount_cents"])} for t in r.tenders]


def _bucket() -> dict[str, int]:
    return {"sales_count": 0, "gross_cents": 0, "refunds_count": 0, "refunds_cents": 0,
            "voids_count": 0, "voids_cents": 0}


def _net(b: dict[str, int]) -> int:
    return b["gross_cents"] - b["refunds_cents"] - b["voids_cents"]


# ------------------------------------------------------------------ the report
def day_report(node: Node, day: date) -> dict[str, Any]:
    start, end = day_bounds(day)
    with node.db.read() as session:
        sales = session.execute(
            select(Sale.sale_id, Sale.device_id, Sale.cashier, Sale.total_cents, Sale.tax_cents,
                   Sale.discount_cents, Sale.tax_by_rate, Sale.created_ms, Sale.status)
            .where(Sale.created_ms >= start, Sale.created_ms < end)).all()

        pay_rows = session.execute(
            select(Sale.device_id, Payment.method, func.count(), func.sum(Payment.amount_cents),
                   func.sum(func.coalesce(Payment.tendered_cents, Payment.amount_cents)),
                   func.sum(Payment.change_cents))
            .join(Sale, Sale.sale_id == Payment.sale_id)
            .where(Sale.created_ms >= start, Sale.created_ms < end)
            .group_by(Sale.device_id, Payment.method)).all()

        top = session.execute(
            select(SaleLine.sku, func.max(SaleLine.name), func.sum(SaleLine.quantity),
                   func.sum(SaleLine.total_cents))
            .join(Sale, Sale.sale_id == SaleLine.sale_id)
            .where(Sale.created_ms >= start, Sale.created_ms < end)
            .group_by(SaleLine.sku)
            .order_by(func.sum(SaleLine.quantity).desc(), func.sum(SaleLine.total_cents).desc(),
                      SaleLine.sku)
            .limit(TOP_PRODUCTS)).all()
        items = session.scalar(
            select(func.coalesce(func.sum(SaleLine.quantity), 0))
            .join(Sale, Sale.sale_id == SaleLine.sale_id)
            .where(Sale.created_ms >= start, Sale.created_ms < end)) or 0

        refunds = session.scalars(
            select(Refund).where(Refund.created_ms >= start, Refund.created_ms < end)
            .order_by(Refund.created_ms)).all()
        # Tax rate of each refunded line, from the sale it refunds (any day).
        refunded_sales = sorted({r.sale_id for r in refunds})
        line_rate: dict[tuple[str, str], int] = {}
        for i in range(0, len(refunded_sales), 500):
            chunk = refunded_sales[i:i + 500]
            for sale_id, sku, rate in session.execute(
                    select(SaleLine.sale_id, SaleLine.sku, SaleLine.tax_rate_bp)
                    .where(SaleLine.sale_id.in_(chunk))):
                line_rate[(sale_id, sku)] = rate
        z_closed = find_z_close(session, day)

    totals = _bucket()
    totals.update(tax_cents=0, discount_cents=0, refunds_tax_cents=0, voids_tax_cents=0)
    by_till: dict[int, dict[str, int]] = defaultdict(_bucket)
    by_cashier: dict[str, dict[str, int]] = defaultdict(_bucket)
    by_hour = [{"hour": h, "count": 0, "gross_cents": 0} for h in range(24)]
    tax: dict[int, dict[str, int]] = defaultdict(lambda: {
        "gross_cents": 0, "sales_tax_cents": 0, "refund_gross_cents": 0, "refund_tax_cents": 0})

    for s in sales:
        totals["sales_count"] += 1
        totals["gross_cents"] += s.total_cents
        totals["tax_cents"] += s.tax_cents
        totals["discount_cents"] += s.discount_cents
        for bucket in (by_till[s.device_id], by_cashier[s.cashier]):
            bucket["sales_count"] += 1
            bucket["gross_cents"] += s.total_cents
        hour = by_hour[_hour(s.created_ms)]
        hour["count"] += 1
        hour["gross_cents"] += s.total_cents
        for rate, value in (s.tax_by_rate or {}).items():
            gross, tax_cents = _rate_figures(value)
            tax[int(rate)]["gross_cents"] += gross
            tax[int(rate)]["sales_tax_cents"] += tax_cents

    cash_refunds: dict[int, int] = defaultdict(int)
    refunded_by_method: dict[str, int] = defaultdict(int)
    for r in refunds:
        kind = "voids" if r.kind == "void" else "refunds"
        totals[f"{kind}_count"] += 1
        totals[f"{kind}_cents"] += r.amount_cents
        totals[f"{kind}_tax_cents"] += r.tax_cents
        for bucket in (by_till[r.device_id], by_cashier[r.user or "?"]):
            bucket[f"{kind}_count"] += 1
            bucket[f"{kind}_cents"] += r.amount_cents
        for tender in _tenders(r):  # the drawer pays out only the cash part of a refund
            refunded_by_method[tender["method"]] += tender["amount_cents"]
            if tender["method"] == "cash":
                cash_refunds[r.device_id] += tender["amount_cents"]
        for line in r.lines or []:
            rate = line_rate.get((r.sale_id, line.get("sku")))
            money = int(line.get("amount_cents") or 0)
            if rate is None:
                continue
            tax[rate]["refund_gross_cents"] += money
            tax[rate]["refund_tax_cents"] += round_half_up_div(money * rate, 10000 + rate)

    # Payments: per method overall, and the cash drawer per till.
    methods: dict[str, dict[str, int]] = {}
    drawer: dict[int, dict[str, int]] = defaultdict(lambda: {
        "tendered_cents": 0, "change_cents": 0, "refunded_cents": 0})
    for device_id, method, count, amount, tendered, change in pay_rows:
        m = methods.setdefault(method, {"count": 0, "amount_cents": 0})
        m["count"] += int(count)
        m["amount_cents"] += int(amount or 0)
        if method == "cash":
            drawer[device_id]["tendered_cents"] += int(tendered or 0)
            drawer[device_id]["change_cents"] += int(change or 0)
    for device_id, amount in cash_refunds.items():
        drawer[device_id]["refunded_cents"] += amount
    for device_id in drawer:  # every till with cash movements appears in by_till
        by_till.setdefault(device_id, _bucket())
    for d in drawer.values():
        d["expected_cents"] = d["tendered_cents"] - d["change_cents"] - d["refunded_cents"]
    cash = {k: sum(d[k] for d in drawer.values())
            for k in ("tendered_cents", "change_cents", "refunded_cents", "expected_cents")}
    for method in ("cash", "card", *refunded_by_method):
        methods.setdefault(method, {"count": 0, "amount_cents": 0})
    for method, m in methods.items():
        m["refunded_cents"] = refunded_by_method.get(method, 0)

    tills = []
    for device_id in sorted(by_till):
        b = by_till[device_id]
        tills.append({"device_id": device_id, **b, "net_cents": _net(b),
                      "cash_expected_cents": drawer[device_id]["expected_cents"]
                      if device_id in drawer else 0})
    cashiers = [{"user": user, **b, "net_cents": _net(b)}
                for user, b in sorted(by_cashier.items(), key=lambda kv: (-kv[1]["gross_cents"], kv[0]))]
    rates = []
    for rate in sorted(tax):
        t = tax[rate]
        rates.append({"rate_bp": rate, **t,
                      "net_gross_cents": t["gross_cents"] - t["refund_gross_cents"],
                      "tax_cents": t["sales_tax_cents"] - t["refund_tax_cents"]})

    return {
        "date": day.isoformat(), "kind": "Z" if z_closed else "X",
        "from_ms": start, "to_ms": end, "generated_ms": node.clock(), "device_id": node.device_id,
        "sales": {"count": totals["sales_count"], "gross_cents": totals["gross_cents"],
                  "tax_cents": totals["tax_cents"], "discount_cents": totals["discount_cents"],
                  "items": int(items),
                  "average_cents": (round_half_up_div(totals["gross_cents"], totals["sales_count"])
                                    if totals["sales_count"] else 0)},
        "refunds": {"count": totals["refunds_count"], "amount_cents": totals["refunds_cents"],
                    "tax_cents": totals["refunds_tax_cents"]},
        "voids": {"count": totals["voids_count"], "amount_cents": totals["voids_cents"],
                  "tax_cents": totals["voids_tax_cents"]},
        "net_cents": _net(totals),
        "tax_cents": sum(r["tax_cents"] for r in rates),
        "payments": [{"method": m, **v} for m, v in sorted(methods.items())],
        "cash": cash,
        "tax_by_rate": rates,
        "by_till": tills,
        "by_cashier": cashiers,
        "by_hour": by_hour,
        "top_products": [{"sku": sku, "name": name, "quantity": int(qty), "gross_cents": int(gross)}
                         for sku, name, qty, gross in top],
        "z_closed": z_closed,
    }


def find_z_close(session, day: date) -> dict[str, Any] | None:
    """This node's Z close of `day`, if there is one (audit entries, few of them)."""
    # The stored text, parsed here: a damaged audit row (which verification reports as a
    # break) must not take the day report down with it.
    rows = session.connection().exec_driver_sql(
        "SELECT user, ts_ms, device_id, seq, details FROM audit_log WHERE action = ? "
        "ORDER BY ts_ms DESC LIMIT 5000", (Z_ACTION,))
    for user, ts_ms, device_id, seq, text in rows:
        try:
            details = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            continue
        if isinstance(details, dict) and details.get("date") == day.isoformat():
            return {"by": user, "at_ms": ts_ms, "device_id": device_id, "seq": seq}
    return None


def z_close(node: Node, user: str, day: date) -> dict[str, Any]:
    """Close the day: audit `report.z_closed` with the totals. Once per day and node."""
    if day > local_date(node.clock()):
        raise ValidationError("a day that has not started cannot be closed", {"field": "date"})
    report = day_report(node, day)
    with node.db.write() as session:
        done = find_z_close(session, day)
        if done is not None:
            raise Conflict(f"{day.isoformat()} was already closed (Z) by {done['by']}",
                           {"date": day.isoformat(), "z_closed": done}, code="ALREADY_CLOSED")
        entry = node.audit.record(session, Z_ACTION, user, {
            "date": report["date"],
            "sales_count": report["sales"]["count"], "gross_cents": report["sales"]["gross_cents"],
            "refunds_cents": report["refunds"]["amount_cents"],
            "voids_cents": report["voids"]["amount_cents"], "net_cents": report["net_cents"],
            "tax_cents": report["tax_cents"],
            "tax_by_rate": {str(r["rate_bp"]): r["tax_cents"] for r in report["tax_by_rate"]},
            "payments": {p["method"]: p["amount_cents"] for p in report["payments"]},
            "cash_expected_cents": report["cash"]["expected_cents"],
        })
        closed = {"by": entry.user, "at_ms": entry.ts_ms, "device_id": entry.device_id,
                  "seq": entry.seq}
    report["kind"] = "Z"
    report["z_closed"] = closed
    return report
