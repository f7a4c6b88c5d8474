"""What the master checks before it journals an event, and what it records after.

Uses the pure rules in `conflicts.py` against the master's current derived state.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import (
    Category,
    ConflictRecord,
    JournalEntry,
    Product,
    Refund,
    Sale,
    SaleLine,
    User,
)
from app.models.db import driver
from app.services.journal.events import Event
from app.services.journal.state_machine import NotYet, Refusal
from app.services.shop.apply import REFILED
from app.services.shop.apply_bulk import RunKeys, RunReads, SalesOnFile
from app.services.shop.conflicts import SaleDecision, Shortage, decide_edit, decide_sale
from app.utils.chunks import chunks
from app.utils.errors import ApiError, Conflict, NotFound, OutOfStock


def _stock(session: Session, skus: list[str]) -> dict[str, int]:
    products = session.scalars(select(Product).where(Product.sku.in_(skus))).all()
    # Whole rows, held for the rest of the transaction (the identity map only keeps weak
    # references): the applier that follows finds them there and moves the stock without
    # selecting each product again.
    session.info.setdefault("admitted_products", []).extend(products)
    stock = {p.sku: p.stock for p in products}
    # The derived stock also counts this node's applied outbox (offline sales and
    # receipts not journaled yet). The master decides in *journal* order, so take them
    # out: otherwise a receipt still in its outbox lets a sale through that the journal
    # shows as an oversell with no conflict record (chaos seed 3000 run 2x).
    for sku, delta in outbox_stock_deltas(session, set(skus)).items():
        if sku in stock:
            stock[sku] -= delta
    return stock


def outbox_stock_deltas(session: Session, skus: set[str]) -> dict[str, int]:
    """Stock change per sku of the applied events waiting in this node's outbox."""
    deltas: dict[str, int] = {}
    rows = driver(session).execute("SELECT type, payload FROM outbox WHERE applied = 1").fetchall()
    for typ, text in rows:
        payload = json.loads(text)
        if typ == "sale.create":
            moves = [(line["sku"], -int(line["quantity"])) for line in payload.get("lines", [])]
        elif typ in ("sale.refund", "sale.void"):
            moves = [(line["sku"], int(line["quantity"])) for line in payload.get("lines", [])]
        elif typ in ("stock.receive", "stock.adjust"):
            moves = [(payload["sku"], int(payload["quantity"]))]
        else:
            continue
        for sku, delta in moves:
            if sku in skus:
                deltas[sku] = deltas.get(sku, 0) + delta
    return deltas


def admit(session: Session, ev: Event) -> Any:
    """Raise an ApiError to refuse an online event; return a decision for after_apply."""
    p = ev.payload
    if ev.type == "sale.create":
        lines = [(line["sku"], int(line["quantity"])) for line in p["lines"]]
        decision = decide_sale(_stock(session, [s for s, _ in lines]), lines, ev.mode)
        if not decision.accepted:
            short = decision.refused
            raise OutOfStock(short.sku, max(short.available, 0), short.requested)
        return decision
    if ev.type == "product.create":
        if session.get(Product, p["sku"]) is not None:
            raise Conflict(f"a product with sku {p['sku']} already exists",
                           {"sku": p["sku"]}, code="DUPLICATE_SKU")
        if p.get("barcode") and session.scalar(
                select(Product.sku).where(Product.barcode == p["barcode"])):
            raise Conflict(f"barcode {p['barcode']} is already used",
                           {"barcode": p["barcode"]}, code="DUPLICATE_BARCODE")
        return None
    if ev.type == "product.update":
        product = session.get(Product, p["sku"])
        if product is None:
            raise NotFound(f"unknown sku {p['sku']}", {"sku": p["sku"]})
        verdict = decide_edit(product.version, ev.base_version)
        if not verdict.accepted:
            raise Conflict(verdict.reason, {
                "sku": product.sku, "base_version": ev.base_version,
                "current_version": product.version, "winner": {
                    "user": product.updated_by, "event_id": product.updated_event},
                "current": product_snapshot(session, product),
                "yours": p.get("changes", {}),
            })
        barcode = p.get("changes", {}).get("barcode")
        if barcode and session.scalar(select(Product.sku).where(
                Product.barcode == barcode, Product.sku != product.sku)):
            raise Conflict(f"barcode {barcode} is already used", {"barcode": barcode},
                           code="DUPLICATE_BARCODE")
        return None
    if ev.type == "user.create":
        if session.get(User, p["username"]) is not None and ev.mode == "online":
            raise Conflict(f"user {p['username']} already exists", {"username": p["username"]})
        return None
    if ev.type == "user.update":
        _keep_one_admin(session, p["username"], p.get("changes", {}))
        return None
    if ev.type in ("sale.refund", "sale.void"):
        sale = session.get(Sale, p["sale_id"])
        if sale is None and ev.mode == "online":
            raise NotFound("unknown sale", {"sale_id": p["sale_id"]})
        if sale is None or session.scalar(select(JournalEntry.gseq)
                                          .where(JournalEntry.event_id == sale.event_id)) is None:
            # Journaled before its sale, every other node would skip it (no such sale yet)
            # while the till that made both applied it: stock would differ for good
            # (chaos seed 3037). Not now: the till keeps it and sends it again.
            raise NotYet(f"sale {p['sale_id']} is not in the journal yet")
        if ev.mode != "online":
            return None
        if sale.status == "voided":
            raise Conflict("this sale is already voided", {"sale_id": sale.sale_id})
        if session.get(Refund, p["refund_id"]) is None:
            lines = {row.sku: row for row in session.scalars(
                select(SaleLine).where(SaleLine.sale_id == sale.sale_id))}
            for item in p["lines"]:
                line = lines.get(item["sku"])
                left = (line.quantity - line.refunded_qty) if line else 0
                if item["quantity"] > left:
                    raise Conflict(f"only {left} of {item['sku']} left to refund",
                                   {"sku": item["sku"], "refundable": left})
        return None
    return None


def _keep_one_admin(session: Session, username: str, changes: dict) -> None:
    """Refuse to demote or deactivate the last active admin (nobody could manage users)."""
    demoted = ("role" in changes and changes["role"] != "admin") or changes.get("active") is False
    if not demoted:
        return
    user = session.get(User, username)
    if user is None or user.role != "admin" or not user.active:
        return
    others = session.scalar(select(func.count()).select_from(User).where(
        User.role == "admin", User.active.is_(True), User.username != username))
    if not others:
        raise Conflict(f"{username} is the last active admin; make another admin first",
                       {"username": username}, code="LAST_ADMIN")


def after_apply(session: Session, ev: Event, decision: Any) -> list[dict]:
    """Conflict records to journal after an accepted event (offline oversells)."""
    if ev.type != "sale.create" or not isinstance(decision, SaleDecision):
        return []
    stock_after = {}
    for short in decision.oversold:
        product = session.get(Product, short.sku)
        stock_after[short.sku] = product.stock if product else None
    records = oversell_records(ev, decision.oversold, stock_after)
    refiled = session.info.get(REFILED, {}).pop(ev.payload["sale_id"], None)
    if refiled is not None:  # the applier filed it under another number (apply._settle_clash)
        filed_as, holder = refiled
        printed = ev.payload["receipt_no"]
        records.append({
            "conflict_id": uuid.uuid4().hex, "kind": "receipt_reused", "sku": None,
            "event_id": ev.event_id, "origin_device": ev.origin_device, "user": ev.user,
            "details": {"sale_id": ev.payload["sale_id"], "receipt_no": printed,
                        "filed_as": filed_as, "other_sale_id": holder},
            "decision": f"till {ev.origin_device} printed {printed} twice (it lost its data); "
                        f"both sales kept, this one filed as {filed_as}",
        })
    return records


def oversell_records(ev: Event, oversold: tuple[Shortage, ...],
                     stock_after: dict[str, int | None]) -> list[dict]:
    """One conflict record per product an offline sale took below zero."""
    return [{
        "conflict_id": uuid.uuid4().hex, "kind": "oversell", "sku": short.sku,
        "event_id": ev.event_id, "origin_device": ev.origin_device, "user": ev.user,
        "details": {
            "sale_id": ev.payload.get("sale_id"), "receipt_no": ev.payload.get("receipt_no"),
            "available_before": short.available, "sold": short.requested,
            "stock_after": stock_after.get(short.sku),
        },
        "decision": "sale kept (made offline, goods already left); stock went negative — "
                    "recount and adjust",
    } for short in oversold]


def edit_conflict_record(session: Session, ev: Event, refusal: Refusal) -> dict | None:
    """A stale edit lost: one conflict record per losing event."""
    if session.scalar(select(ConflictRecord.conflict_id)
                      .where(ConflictRecord.event_id == ev.event_id)):
        return None
    details = dict(refusal.details or {})
    return {
        "conflict_id": uuid.uuid4().hex, "kind": "edit_rejected", "sku": ev.payload.get("sku"),
        "event_id": ev.event_id, "origin_device": ev.origin_device, "user": ev.user,
        "details": details,
        "decision": f"edit by {ev.user} rejected: {refusal.message}; the edit by "
                    f"{(details.get('winner') or {}).get('user')} stands",
    }


def product_snapshot(session: Session, product: Product) -> dict:
    category = session.get(Category, product.category_id) if product.category_id else None
    return {
        "sku": product.sku, "name": product.name, "barcode": product.barcode,
        "category": category.name if category else None, "price_cents": product.price_cents,
        "tax_rate_bp": product.tax_rate_bp, "active": product.active,
        "low_stock_threshold": product.low_stock_threshold, "version": product.version,
        "stock": product.stock,
    }


# ---------------------------------------------------------------- a run at once
RUN_TYPES = frozenset({"sale.create", "stock.receive", "stock.adjust"})


@dataclass
class RunVerdict:
    """The master's decision on one event of a run (see `admit_run`)."""

    event: Event
    status: str  # "accept" | "duplicate" | "refuse"
    gseq: int | None = None  # duplicate: where the journal holds it (None: by client_ref)
    sale_id: str | None = None  # duplicate by client_ref: the sale that has it
    error: ApiError | None = None  # refuse
    oversold: tuple[Shortage, ...] = ()
    stock_after: dict[str, int] = field(default_factory=dict)  # derived stock after it


def admit_run(session: Session, events: list[Event]) -> list[RunVerdict]:
    """Decide the longest prefix of `events` that needs no more than a stock check.

    The same decisions `admit` and the per-event path make (duplicates by event_id and
    client_ref, first-come-first-served stock, oversell records for offline sales), but
    against stock kept in memory across the run: one read of what the run touches
    instead of several queries per event. The run stops, for the per-event path, at an
    event of another type, one that repeats an earlier event of the run, a product this
    node does not know, a receipt number or sale already on file, or an event waiting
    in this node's own outbox (applied here already).
    """
    run: list[Event] = []
    for ev in events:
        if ev.type not in RUN_TYPES:
            break
        run.append(ev)
    if not run:
        return []
    ids = [ev.event_id for ev in run]
    keys = RunKeys.of(run)
    # Plain SQL: this runs in every sale's sequencing transaction.
    conn = driver(session)
    journaled: dict[str, int] = {}
    waiting: set[str] = set()
    for chunk in chunks(ids):
        marks = ", ".join("?" * len(chunk))
        for event_id, gseq in conn.execute(
                f"SELECT event_id, gseq FROM journal WHERE event_id IN ({marks}) UNION ALL "  # noqa: S608
                f"SELECT event_id, NULL FROM outbox WHERE event_id IN ({marks})",
                (*chunk, *chunk)):
            if gseq is None:
                waiting.add(event_id)
            else:
                journaled[event_id] = gseq
    products: dict[str, tuple[int, str, str | None]] = {}
    for chunk in chunks(keys.skus):
        products.update((sku, (stock, name, made_by)) for sku, stock, name, made_by in
                        conn.execute(
                            "SELECT sku, stock, name, updated_event FROM products "  # noqa: S608
                            f"WHERE sku IN ({', '.join('?' * len(chunk))})", chunk))
    stock = {sku: row[0] for sku, row in products.items()}
    # As in `_stock`: decide in journal order, without this node's unjournaled outbox.
    pending = outbox_stock_deltas(session, set(stock))
    on_file = SalesOnFile.load(session, keys)
    # The applier that follows in this transaction needs the same rows (RunReads).
    session.info[RunReads.KEY] = RunReads(frozenset(ids), products, on_file.copy())

    verdicts: list[RunVerdict] = []
    seen: set[str] = set()
    for ev in run:
        p = ev.payload
        if ev.event_id in seen or ev.event_id in waiting:
            break
        seen.add(ev.event_id)
        if ev.event_id in journaled:
            verdicts.append(RunVerdict(ev, "duplicate", gseq=journaled[ev.event_id]))
            continue
        if ev.type != "sale.create":
            if p["sku"] not in stock:
                break
            stock[p["sku"]] += int(p["quantity"])
            verdicts.append(RunVerdict(ev, "accept"))
            continue
        ref = p.get("client_ref")
        if ref and ref in on_file.refs:
            verdicts.append(RunVerdict(ev, "duplicate", sale_id=on_file.refs[ref]))
            continue
        lines = [(line["sku"], int(line["quantity"])) for line in p["lines"]]
        if p["sale_id"] in on_file.sale_ids or p["receipt_no"] in on_file.receipts \
                or any(sku not in stock for sku, _ in lines):
            break
        available = {sku: stock[sku] - pending.get(sku, 0) for sku, _ in lines}
        decision = decide_sale(available, lines, ev.mode)
        if not decision.accepted:
            short = decision.refused
            verdicts.append(RunVerdict(ev, "refuse", error=OutOfStock(
                short.sku, max(short.available, 0), short.requested)))
            continue
        for sku, qty in lines:
            stock[sku] -= qty
        on_file.add(p)
        verdicts.append(RunVerdict(ev, "accept", oversold=decision.oversold,
                                   stock_after={s.sku: stock[s.sku] for s in decision.oversold}))
    return verdicts
