"""Sales, refunds and voids at a till.

A sale is priced here, in integer cents, from the till's own catalog; its receipt
number is gapless per device; `client_ref` makes a retried or double-tapped payment
return the first sale instead of selling twice. The master decides stock (first come,
first served); offline, the till sells and syncs later.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.models import JournalEntry, OutboxEvent, Payment, Refund, Sale, SaleLine
from app.models.db import driver
from app.services.journal.state_machine import Refused
from app.services.node import Node
from app.services.shop.commands import SaleCreate, SaleRefund, SaleVoid
from app.services.shop.pricing import PriceLine, price_cart, settle_payments, split_refund
from app.services.shop.receipts import till_sales
from app.services.shop.submit import AuditNote, submit
from app.services.shop.users import ROLE_RANK
from app.utils.errors import ApiError, Conflict, NotFound, ValidationError
from app.utils.money import round_half_up_div


def sale_dict(session: Session, sale: Sale) -> dict[str, Any]:
    lines = session.scalars(select(SaleLine).where(SaleLine.sale_id == sale.sale_id)
                            .order_by(SaleLine.line_no)).all()
    payments = session.scalars(select(Payment).where(Payment.sale_id == sale.sale_id)
                               .order_by(Payment.id)).all()
    refunds = session.scalars(select(Refund).where(Refund.sale_id == sale.sale_id)
                              .order_by(Refund.created_ms)).all()
    pending = session.get(OutboxEvent, sale.event_id) is not None
    return {
        "sale_id": sale.sale_id, "receipt_no": sale.receipt_no, "device_id": sale.device_id,
        "client_ref": sale.client_ref, "cashier": sale.cashier, "approver": sale.approver,
        "status": sale.status, "subtotal_cents": sale.subtotal_cents,
        "discount_cents": sale.discount_cents, "total_cents": sale.total_cents,
        "tax_cents": sale.tax_cents, "tax_by_rate": sale.tax_by_rate,
        "paid_cents": sale.paid_cents, "change_cents": sale.change_cents,
        "refunded_cents": sale.refunded_cents, "mode": sale.mode, "created_ms": sale.created_ms,
        "sync": "pending" if pending else "synced",
        "lines": [{"sku": line.sku, "name": line.name, "quantity": line.quantity,
                   "unit_price_cents": line.unit_price_cents, "discount_cents": line.discount_cents,
                   "tax_rate_bp": line.tax_rate_bp, "total_cents": line.total_cents,
                   "refunded_qty": line.refunded_qty} for line in lines],
        "payments": [{"method": p.method, "amount_cents": p.amount_cents,
                      "tendered_cents": p.tendered_cents, "change_cents": p.change_cents}
                     for p in payments],
        "refunds": [{"refund_id": r.refund_id, "kind": r.kind, "amount_cents": r.amount_cents,
                     "method": r.method, "tenders": refund_tenders(r),
                     "lines": r.lines, "user": r.user, "created_ms": r.created_ms}
                    for r in refunds],
    }


def journaled_sale_dict(ev: Any) -> dict[str, Any]:
    """`sale_dict` of a sale that was just journaled and applied here, built from its event."""
    p = ev.payload
    keys = ("sale_id", "receipt_no", "device_id", "client_ref", "cashier", "approver",
            "subtotal_cents", "discount_cents", "total_cents", "tax_cents", "tax_by_rate",
            "paid_cents", "change_cents")
    line_keys = ("sku", "name", "quantity", "unit_price_cents", "discount_cents", "tax_rate_bp",
                 "total_cents")
    return {
        **{k: p.get(k) for k in keys}, "status": "completed", "refunded_cents": 0,
        "mode": ev.mode, "created_ms": p["created_ms"], "sync": "synced",
        "lines": [{**{k: line[k] for k in line_keys}, "refunded_qty": 0} for line in p["lines"]],
        "payments": [{"method": pay["method"], "amount_cents": pay["amount_cents"],
                      "tendered_cents": pay.get("tendered_cents"),
                      "change_cents": pay.get("change_cents", 0)} for pay in p["payments"]],
        "refunds": [],
    }


# The sale a client_ref already names, and this till's highest receipt number on file.
_SALE_READ_SQL = ("SELECT (SELECT sale_id FROM sales WHERE client_ref = ?), "
                  "(SELECT max(receipt_seq) FROM sales WHERE device_id = ?)")
_PRODUCTS_SQL = "SELECT sku, name, price_cents, tax_rate_bp, active FROM products WHERE sku IN ({})"


def _find_by_client_ref(session: Session, client_ref: str) -> Sale | None:
    return session.scalar(select(Sale).where(Sale.client_ref == client_ref))


def merge_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per sku (first position kept; quantities and line discounts added up).

    Refunds, voids and the appliers address a sale's lines by sku, so a sale must never
    hold two lines of one sku (a void would otherwise restock only one of them).
    """
    merged: dict[str, dict[str, Any]] = {}
    for line in lines:
        sku = line["sku"]
        if sku in merged:
            merged[sku]["quantity"] += line["quantity"]
            merged[sku]["discount_cents"] = (merged[sku].get("discount_cents", 0)
                                             + line.get("discount_cents", 0))
        else:
            merged[sku] = dict(line)
    return list(merged.values())


def create_sale(node: Node, cashier: dict[str, Any], lines: list[dict[str, Any]],
                payments: list[dict[str, Any]], client_ref: str | None = None,
                cart_discount_cents: int = 0, approver: str | None = None
                ) -> tuple[dict[str, Any], bool]:
    """Returns (sale, created). created=False: the client_ref was seen before."""
    lines = merge_lines(lines)
    has_discount = cart_discount_cents > 0 or any(line.get("discount_cents") for line in lines)
    if has_discount and ROLE_RANK[cashier["role"]] < ROLE_RANK["manager"] and approver is None:
        raise ValidationError("discounts need a manager's approval", {"field": "approver"},
                              code="APPROVAL_REQUIRED")
    till = till_sales(node.db)
    # No till-wide lock: only a repeat of this client_ref waits (receipts.py).
    with till.one_request_per_ref(client_ref):
        skus = [line["sku"] for line in lines]
        with node.db.read() as session:
            conn = driver(session)  # plain SQL: this runs for every checkout
            existing_id, on_file = conn.execute(_SALE_READ_SQL,
                                                (client_ref, node.device_id)).fetchone()
            if existing_id is not None:
                return sale_dict(session, session.get(Sale, existing_id)), False
            products = {row[0]: row for row in conn.execute(
                _PRODUCTS_SQL.format(", ".join("?" * len(skus))), skus)}
        priced_lines = []
        for i, line in enumerate(lines):
            product = products.get(line["sku"])
            if product is None or not product[4]:
                raise NotFound(f"unknown sku {line['sku']}",
                               {"sku": line["sku"], "line": i}, code="UNKNOWN_SKU")
            priced_lines.append(PriceLine(
                sku=product[0], name=product[1], quantity=line["quantity"],
                unit_price_cents=product[2], tax_rate_bp=product[3],
                discount_cents=line.get("discount_cents", 0)))
        totals = price_cart(priced_lines, cart_discount_cents)
        normalized, change = settle_payments(totals.total_cents, payments)
        receipt_seq = till.receipts.take(on_file or 0)
        reserved: list[int] = []

        def reserve() -> None:
            # Reserve the number durably before the sale leaves this till: if the till dies
            # after the master journaled the sale but before it stored it here, the number
            # must not be given to the next sale after the restart (two sales, one receipt).
            # Not needed when this till journals the sale itself: its row, committed with
            # the journal entry, holds the number.
            till.receipts.reserve(receipt_seq)
            reserved.append(receipt_seq)
        sale_id = uuid.uuid4().hex
        receipt_no = f"T{node.device_id}-{receipt_seq:06d}"
        command = SaleCreate(
            sale_id=sale_id, receipt_no=receipt_no, receipt_seq=receipt_seq,
            device_id=node.device_id, client_ref=client_ref, cashier=cashier["username"],
            approver=approver,
            lines=[{"sku": pl.sku, "name": pl.name, "quantity": pl.quantity,
                    "unit_price_cents": pl.unit_price_cents, "discount_cents": pl.discount_cents,
                    "tax_rate_bp": pl.tax_rate_bp, "total_cents": pl.total_cents}
                   for pl in totals.lines],
            subtotal_cents=totals.subtotal_cents, discount_cents=totals.discount_cents,
            total_cents=totals.total_cents, tax_cents=totals.tax_cents,
            tax_by_rate={str(rate): v for rate, v in totals.tax_by_rate.items()},
            payments=normalized,
            paid_cents=sum(p.get("tendered_cents") or p["amount_cents"] for p in normalized),
            change_cents=change,
        )
        audit = AuditNote("sale.created", {
            "sale_id": sale_id, "receipt_no": receipt_no, "total_cents": totals.total_cents,
            "lines": len(lines), "approver": approver})
        try:
            outcome = submit(node, command, cashier["username"], audit=audit,
                             before_submit=reserve)
        except (ApiError, Refused):
            # Refused (e.g. OUT_OF_STOCK): journaled nowhere, so the number is free again
            # and receipt numbers stay gapless.
            till.receipts.give_back(receipt_seq, reserved=bool(reserved))
            raise
        ev = outcome.event
        if outcome.status == "online" and ev.mode == "online":
            # Journaled by this very node as master: the rows are exactly the payload's,
            # so answer without reading them back (the hot path of every checkout).
            result = journaled_sale_dict(ev)
            result["status_detail"] = outcome.status
            return result, True
        with node.db.read() as session:
            sale = session.get(Sale, sale_id)
            if sale is None and outcome.ack.get("sale_id"):
                sale = session.get(Sale, outcome.ack["sale_id"])
            if sale is None and client_ref:
                sale = _find_by_client_ref(session, client_ref)
            if sale is None:  # the master knew this client_ref; we have not seen it yet
                return {"sale_id": outcome.ack.get("sale_id"), "status": "duplicate"}, False
            result = sale_dict(session, sale)
        result["status_detail"] = outcome.status
        return result, outcome.status != "duplicate"


def get_sale(node: Node, sale_id: str) -> dict[str, Any]:
    with node.db.read() as session:
        sale = session.get(Sale, sale_id)
        if sale is None:
            raise NotFound("unknown sale", {"sale_id": sale_id})
        return sale_dict(session, sale)


def get_by_receipt(node: Node, receipt_no: str) -> dict[str, Any]:
    with node.db.read() as session:
        sale = session.scalar(select(Sale).where(Sale.receipt_no == receipt_no.strip().upper()))
        if sale is None:
            raise NotFound(f"no sale with receipt {receipt_no}", {"receipt_no": receipt_no})
        return sale_dict(session, sale)


def list_sales(node: Node, *, limit: int = 50, offset: int = 0, device_id: int | None = None,
               since_ms: int | None = None, until_ms: int | None = None) -> dict[str, Any]:
    with node.db.read() as session:
        query = select(Sale)
        if device_id is not None:
            query = query.where(Sale.device_id == device_id)
        if since_ms is not None:
            query = query.where(Sale.created_ms >= since_ms)
        if until_ms is not None:
            query = query.where(Sale.created_ms < until_ms)
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        rows = session.scalars(query.order_by(Sale.created_ms.desc()).limit(limit)
                               .offset(offset)).all()
        return {"sales": [sale_dict(session, s) for s in rows], "total": total}


SEARCH_MAX_LIMIT = 200


def search_sales(node: Node, *, limit: int = 50, cursor: tuple[int, str] | None = None,
                 since_ms: int | None = None, until_ms: int | None = None,
                 device_id: int | None = None, cashier: str | None = None,
                 method: str | None = None, receipt_no: str | None = None,
                 min_cents: int | None = None, max_cents: int | None = None,
                 sku: str | None = None) -> dict[str, Any]:
    """The back office's receipts list (issue 17): every sale this till's derived tables
    hold, newest first, keyset-paged on (created_ms, sale_id) and never OFFSET, so a page
    costs the same at the millionth sale and a sale arriving between two pages neither
    repeats nor hides a row. `cursor` is the (created_ms, sale_id) of the last row of the
    previous page; `next_cursor` is None on the last page. Rows are summaries (one query
    for the page plus one for its payments); the detail is `get_sale`."""
    conds: list[str] = []
    params: dict[str, Any] = {"limit": limit + 1}
    if cursor is not None:
        conds.append("(s.created_ms < :c_ms OR (s.created_ms = :c_ms AND s.sale_id < :c_id))")
        params.update(c_ms=cursor[0], c_id=cursor[1])
    if since_ms is not None:
        conds.append("s.created_ms >= :since")
        params["since"] = since_ms
    if until_ms is not None:
        conds.append("s.created_ms < :until")
        params["until"] = until_ms
    if device_id is not None:
        conds.append("s.device_id = :device")
        params["device"] = device_id
    if cashier is not None:
        conds.append("s.cashier = :cashier")
        params["cashier"] = cashier
    if receipt_no is not None:
        conds.append("s.receipt_no = :receipt")
        params["receipt"] = receipt_no.strip().upper()
    if min_cents is not None:
        conds.append("s.total_cents >= :min_cents")
        params["min_cents"] = min_cents
    if max_cents is not None:
        conds.append("s.total_cents <= :max_cents")
        params["max_cents"] = max_cents
    if method is not None:
        conds.append("EXISTS (SELECT 1 FROM payments p WHERE p.sale_id = s.sale_id"
                     " AND p.method = :method)")
        params["method"] = method
    if sku is not None:
        conds.append("EXISTS (SELECT 1 FROM sale_lines l WHERE l.sale_id = s.sale_id"
                     " AND l.sku = :sku)")
        params["sku"] = sku
    where = f"WHERE {' AND '.join(conds)}" if conds else ""
    sql = ("SELECT s.sale_id, s.receipt_no, s.device_id, s.cashier, s.approver, s.status,"
           " s.total_cents, s.refunded_cents, s.tax_cents, s.mode, s.created_ms"
           f" FROM sales s {where} ORDER BY s.created_ms DESC, s.sale_id DESC LIMIT :limit")
    keys = ("sale_id", "receipt_no", "device_id", "cashier", "approver", "status",
            "total_cents", "refunded_cents", "tax_cents", "mode", "created_ms")
    with node.db.read() as session:
        conn = session.connection()
        rows = [dict(zip(keys, r, strict=True)) for r in conn.execute(text(sql), params).all()]
        more = len(rows) > limit
        rows = rows[:limit]
        if rows:
            ids = {r["sale_id"]: r for r in rows}
            for r in rows:
                r["methods"] = []
                r["items"] = 0
            for sale_id, pay_method in conn.execute(
                    select(Payment.sale_id, Payment.method)
                    .where(Payment.sale_id.in_(list(ids))).order_by(Payment.id)).all():
                if pay_method not in ids[sale_id]["methods"]:
                    ids[sale_id]["methods"].append(pay_method)
            for sale_id, items in conn.execute(
                    select(SaleLine.sale_id, func.sum(SaleLine.quantity))
                    .where(SaleLine.sale_id.in_(list(ids))).group_by(SaleLine.sale_id)).all():
                ids[sale_id]["items"] = int(items or 0)
    last = rows[-1] if rows else None
    return {"sales": rows,
            "next_cursor": f"{last['created_ms']}.{last['sale_id']}" if more and last else None}


def journal_position(node: Node, sale_id: str) -> dict[str, Any]:
    """Where a sale's event and its refunds' and voids' events sit in the journal: gseq and
    epoch (number, master) of each, or None while an event is only in this till's outbox
    (sold offline, not yet ordered by a master)."""
    with node.db.read() as session:
        sale = session.get(Sale, sale_id)
        if sale is None:
            raise NotFound("unknown sale", {"sale_id": sale_id})
        events = {sale.event_id: "sale"}
        for refund_id, event_id in session.execute(
                select(Refund.refund_id, Refund.event_id).where(Refund.sale_id == sale_id)).all():
            events[event_id] = refund_id
        found = {e.event_id: e for e in session.scalars(
            select(JournalEntry).where(JournalEntry.event_id.in_(list(events))))}

        def pos(event_id: str) -> dict[str, Any]:
            e = found.get(event_id)
            return {"event_id": event_id, "gseq": e.gseq if e else None,
                    "epoch": e.epoch_number if e else None,
                    "epoch_master": e.epoch_master if e else None}

        return {"sale": pos(sale.event_id),
                "refunds": {ref: pos(ev) for ev, ref in events.items() if ref != "sale"}}


def _refund_amount(line: SaleLine, qty: int, already_cents: int) -> int:
    """Money back for qty more units of a line: its share of the line total (after discounts).

    Rounded cumulatively: after refunding n units in total, exactly
    round(total * n / quantity) has gone back (the whole line total once all units are
    back), however the units were split over refunds. Rounding each refund on its own
    would give back a cent too much now and then (767 for 3 units: 256 + 256 + 256).
    """
    done = line.refunded_qty + qty
    target = (line.total_cents if done == line.quantity
              else round_half_up_div(line.total_cents * done, line.quantity))
    return target - already_cents


def _refunded_cents_by_sku(session: Session, sale_id: str) -> dict[str, int]:
    paid_back: dict[str, int] = {}
    for refund_row in session.scalars(select(Refund).where(Refund.sale_id == sale_id)):
        for item in refund_row.lines:
            paid_back[item["sku"]] = paid_back.get(item["sku"], 0) + int(item["amount_cents"])
    return paid_back


def refund_tenders(row: Refund) -> list[dict[str, Any]]:
    """How a refund's money went back: [{method, amount_cents}] (rows before 0004: cash)."""
    if row.tenders is not None:
        return [{"method": t["method"], "amount_cents": int(t["amount_cents"])} for t in row.tenders]
    return [{"method": row.method, "amount_cents": row.amount_cents}]


def _tenders_back(session: Session, sale_id: str, amount: int,
                  refund_to: str | None) -> list[dict[str, Any]]:
    """Where `amount` goes back: the tender a manager chose, else the sale's own tenders.

    The sale's tenders are its payment methods in the order first paid, each weighted by
    what it contributed (cash net of change), less what earlier refunds gave back to it
    (pricing.split_refund: exact cents, never more to a tender than it paid in total).
    """
    if refund_to is not None:
        return [{"method": refund_to, "amount_cents": amount}] if amount else []
    paid: dict[str, int] = {}
    for pay in session.scalars(select(Payment).where(Payment.sale_id == sale_id)
                               .order_by(Payment.id)):
        paid[pay.method] = paid.get(pay.method, 0) + pay.amount_cents
    refunded: dict[str, int] = {}
    for row in session.scalars(select(Refund).where(Refund.sale_id == sale_id)):
        for tender in refund_tenders(row):
            refunded[tender["method"]] = refunded.get(tender["method"], 0) + tender["amount_cents"]
    methods = list(paid)
    try:
        parts = split_refund(amount, [paid[m] for m in methods],
                             [refunded.get(m, 0) for m in methods])
    except ValueError:
        raise Conflict("the sale's payments have nothing left to give back",
                       {"sale_id": sale_id, "amount_cents": amount}, code="OVER_REFUND") from None
    return [{"method": m, "amount_cents": part} for m, part in zip(methods, parts, strict=True)
            if part]


def refund(node: Node, user: str, sale_id: str, items: list[dict[str, Any]] | None,
           *, kind: str = "refund", approver: str | None = None,
           reason: str | None = None, refund_to: str | None = None) -> dict[str, Any]:
    """Refund some lines (or all that is left), or void the whole sale; both restock.

    The money goes back to the sale's own tenders in proportion (a card sale to the card),
    or all to `refund_to` ("cash"/"card") when the manager approving it chose so.
    """
    with node.sale_lock:
        with node.db.read() as session:
            sale = session.get(Sale, sale_id)
            if sale is None:
                raise NotFound("unknown sale", {"sale_id": sale_id})
            if sale.status == "voided":
                raise Conflict("this sale is already voided", {"sale_id": sale_id},
                               code="ALREADY_VOIDED")
            lines = {line.sku: line for line in session.scalars(
                select(SaleLine).where(SaleLine.sale_id == sale_id))}
            if kind == "void" or not items:
                wanted = {sku: line.quantity - line.refunded_qty for sku, line in lines.items()}
            else:
                wanted = {}
                for item in items:
                    wanted[item["sku"]] = wanted.get(item["sku"], 0) + item["quantity"]
            paid_back = _refunded_cents_by_sku(session, sale_id)
            refund_lines = []
            amount = 0
            tax = 0
            for sku, qty in wanted.items():
                line = lines.get(sku)
                if line is None:
                    raise ValidationError(f"{sku} is not on this sale", {"sku": sku})
                left = line.quantity - line.refunded_qty
                if qty > left:
                    raise Conflict(f"only {left} of {sku} left to refund",
                                   {"sku": sku, "refundable": left}, code="OVER_REFUND")
                if qty == 0:
                    continue
                money = _refund_amount(line, qty, paid_back.get(sku, 0))
                amount += money
                tax += round_half_up_div(money * line.tax_rate_bp, 10000 + line.tax_rate_bp)
                refund_lines.append({"sku": sku, "quantity": qty, "amount_cents": money})
            if not refund_lines:
                raise Conflict("nothing left to refund on this sale", {"sale_id": sale_id},
                               code="NOTHING_TO_REFUND")
            tenders = _tenders_back(session, sale_id, amount, refund_to)
        if len(tenders) == 1:
            method = tenders[0]["method"]
        else:
            method = "split" if tenders else (refund_to or "cash")
        refund_id = uuid.uuid4().hex
        command = (SaleVoid if kind == "void" else SaleRefund)(
            refund_id=refund_id, sale_id=sale_id, lines=refund_lines, amount_cents=amount,
            tax_cents=tax, method=method, tenders=tenders, refund_to=refund_to,
            approver=approver, reason=reason)
        audit = AuditNote(f"sale.{'voided' if kind == 'void' else 'refunded'}", {
            "sale_id": sale_id, "receipt_no": sale.receipt_no, "amount_cents": amount,
            "lines": refund_lines, "tenders": tenders, "refund_to": refund_to,
            "approver": approver, "reason": reason})
        outcome = submit(node, command, user, audit=audit)
        result = get_sale(node, sale_id)
        result["refund"] = {"refund_id": refund_id, "amount_cents": amount, "kind": kind,
                            "method": method, "tenders": tenders, "status": outcome.status}
        return result
