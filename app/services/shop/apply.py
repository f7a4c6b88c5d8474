"""Deterministic appliers: one journal event -> changes to the derived tables.

Every node runs exactly these functions over the same journal in the same order, so
every node derives the same catalog, stock, sales and users. Appliers trust the event
(admission checks happen on the master, in `admission.py`) and return the notices the
node relays to its browsers after commit.
"""

from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import insert, or_, select, update
from sqlalchemy.orm import Session

from app.models import (
    AuthSession,
    Category,
    ConflictRecord,
    JournalEntry,
    LoginFailure,
    Payment,
    Product,
    Refund,
    Sale,
    SaleLine,
    StockMovement,
    User,
)
from app.services.journal.events import Event
from app.services.journal.state_machine import Notice


def category_id(session: Session, name: str | None) -> int | None:
    if not name:
        return None
    found = session.scalar(select(Category.id).where(Category.name == name))
    if found is not None:
        return found
    category = Category(name=name)
    session.add(category)
    session.flush()
    return category.id


def move_stock(session: Session, ev: Event, sku: str, delta: int, kind: str,
               reason: str | None = None) -> list[Notice]:
    """Record one stock movement and keep the cached sum on the product in step."""
    return move_stock_many(session, ev, [(sku, delta)], kind, reason)


def move_stock_many(session: Session, ev: Event, moves: list[tuple[str, int]], kind: str,
                    reason: str | None = None) -> list[Notice]:
    """Record stock movements (one INSERT for all) and keep each product's cached sum in step."""
    notices: list[Notice] = []
    rows = []
    for sku, delta in moves:
        product = session.get(Product, sku)  # usually in the identity map already (admission)
        if product is None:  # an event about a product this node never saw: keep the movement
            product = Product(sku=sku, name=sku, name_lower=sku.lower(), price_cents=0,
                              tax_rate_bp=0, active=False, stock=0, version=1)
            session.add(product)
            session.flush()
        rows.append(movement_row(ev, sku, delta, kind, reason))
        product.stock += delta
        notices += stock_notices(sku, product.name, delta, product.stock)
    if rows:
        session.execute(insert(StockMovement), rows)
    return notices


def movement_row(ev: Event, sku: str, delta: int, kind: str, reason: str | None
                 ) -> dict[str, Any]:
    approver = ev.payload.get("approver")  # the manager whose PIN approved the event
    return {"event_id": ev.event_id, "sku": sku, "delta": delta, "kind": kind,
            "reason": reason, "device_id": ev.origin_device, "user": ev.user,
            "created_ms": int(ev.payload.get("created_ms") or 0),
            "approved_by": approver if isinstance(approver, str) else None}


def stock_notices(sku: str, name: str, delta: int, stock: int) -> list[Notice]:
    """What the browsers hear when a product's stock moves: its new level, and a
    critical event when a sale takes it to zero or below."""
    notices: list[Notice] = [("stock_changed", {"sku": sku, "stock": stock})]
    if delta < 0 and stock <= 0:
        notices.append(("critical_event", {"kind": "sold_out" if stock == 0 else "oversold",
                                           "sku": sku, "name": name, "stock": stock}))
    return notices


def _category_create(session: Session, ev: Event) -> list[Notice]:
    category_id(session, ev.payload["name"])
    return []


def is_placeholder(product: Product) -> bool:
    """Made by `move_stock_many` for movements that arrived before their product.create."""
    return product.updated_event is None


def _product_create(session: Session, ev: Event) -> list[Notice]:
    p = ev.payload
    fields = dict(
        name=p["name"], name_lower=p["name"].lower(), barcode=p.get("barcode"),
        category_id=category_id(session, p.get("category")), price_cents=p["price_cents"],
        tax_rate_bp=p.get("tax_rate_bp", 0), active=p.get("active", True),
        low_stock_threshold=p.get("low_stock_threshold", 5),
        updated_by=ev.user, updated_event=ev.event_id)
    existing = session.get(Product, p["sku"])
    if existing is None:
        session.add(Product(sku=p["sku"], version=1, stock=0, **fields))
    elif is_placeholder(existing):
        # Sales of it were applied first (a till rebuilt from a dropped journal tail applies
        # its outbox's sales, and the create comes back later): the create fills it in and
        # adds its initial stock, so stock = the journal's sum in any order (chaos seed 3049).
        for key, value in fields.items():
            setattr(existing, key, value)
    else:
        return []  # first create wins; the master refuses the second online
    session.flush()
    notices: list[Notice] = [("product_changed", {"sku": p["sku"]})]
    if p.get("stock"):
        notices += move_stock(session, ev, p["sku"], int(p["stock"]), "receive", "initial stock")
    return notices


PRODUCT_FIELDS = ("name", "barcode", "price_cents", "tax_rate_bp", "active", "low_stock_threshold")


def _product_update(session: Session, ev: Event) -> list[Notice]:
    product = session.get(Product, ev.payload["sku"])
    if product is None:
        return []
    changes = ev.payload.get("changes", {})
    for key in PRODUCT_FIELDS:
        if key in changes:
            setattr(product, key, changes[key])
    if "name" in changes:
        product.name_lower = changes["name"].lower()
    if "category" in changes:
        product.category_id = category_id(session, changes["category"])
    product.version += 1
    product.updated_by = ev.user
    product.updated_event = ev.event_id
    return [("product_changed", {"sku": product.sku, "version": product.version})]


def _stock_receive(session: Session, ev: Event) -> list[Notice]:
    return move_stock(session, ev, ev.payload["sku"], int(ev.payload["quantity"]), "receive",
                      ev.payload.get("reason"))


def _stock_adjust(session: Session, ev: Event) -> list[Notice]:
    return move_stock(session, ev, ev.payload["sku"], int(ev.payload["quantity"]), "adjust",
                      ev.payload.get("reason"))


def _sale_create(session: Session, ev: Event) -> list[Notice]:
    """The checkout hot path: plain multi-row INSERTs, no ORM unit of work per line."""
    p = ev.payload
    ref = p.get("client_ref")
    same = [Sale.sale_id == p["sale_id"], Sale.receipt_no == p["receipt_no"]]
    if ref:
        same.append(Sale.client_ref == ref)
    holders = session.scalars(select(Sale).where(or_(*same))).all()  # one query, usually empty
    if any(h.sale_id == p["sale_id"] for h in holders):
        return []
    receipt_no, client_ref = p["receipt_no"], ref
    for holder in holders:
        receipt_no, client_ref = _settle_clash(session, ev, holder, receipt_no, client_ref)
    sale, lines, payments = sale_rows(ev, receipt_no, client_ref)
    session.execute(insert(Sale), [sale])
    session.execute(insert(SaleLine), lines)
    notices = move_stock_many(session, ev, [(line["sku"], -int(line["quantity"]))
                                            for line in p["lines"]], "sale")
    session.execute(insert(Payment), payments)
    notices.append(("sale_created", {"sale_id": p["sale_id"], "receipt_no": p["receipt_no"],
                                     "device_id": p["device_id"], "total_cents": p["total_cents"]}))
    return notices


def sale_rows(ev: Event, receipt_no: str, client_ref: str | None
              ) -> tuple[dict, list[dict], list[dict]]:
    """The rows of a sale.create: sales, sale_lines, payments (both apply paths use them)."""
    p = ev.payload
    sale = {
        "sale_id": p["sale_id"], "receipt_no": receipt_no, "device_id": p["device_id"],
        "receipt_seq": p["receipt_seq"], "client_ref": client_ref, "cashier": p["cashier"],
        "approver": p.get("approver"), "status": "completed",
        "subtotal_cents": p["subtotal_cents"], "discount_cents": p["discount_cents"],
        "total_cents": p["total_cents"], "tax_cents": p["tax_cents"],
        "tax_by_rate": p["tax_by_rate"], "paid_cents": p["paid_cents"],
        "change_cents": p["change_cents"], "refunded_cents": 0, "mode": ev.mode,
        "created_ms": p["created_ms"], "event_id": ev.event_id,
    }
    lines = [{
        "sale_id": p["sale_id"], "line_no": no, "sku": line["sku"], "name": line["name"],
        "quantity": line["quantity"], "unit_price_cents": line["unit_price_cents"],
        "discount_cents": line["discount_cents"], "tax_rate_bp": line["tax_rate_bp"],
        "total_cents": line["total_cents"], "refunded_qty": 0,
    } for no, line in enumerate(p["lines"], start=1)]
    payments = [{
        "sale_id": p["sale_id"], "method": pay["method"], "amount_cents": pay["amount_cents"],
        "tendered_cents": pay.get("tendered_cents"), "change_cents": pay.get("change_cents", 0),
    } for pay in p["payments"]]
    return sale, lines, payments


def alternate_receipt_no(receipt_no: str, sale_id: str) -> str:
    """Where a sale is filed when another sale already holds its printed number."""
    return f"{receipt_no}-{sale_id[:4].upper()}"


def _journal_position(session: Session, event_id: str) -> int | None:
    return session.scalar(select(JournalEntry.gseq).where(JournalEntry.event_id == event_id))


REFILED = "refiled_receipts"  # session.info key: sale_id -> (filed_as, other sale_id)


def _settle_clash(session: Session, ev: Event, holder: Sale, receipt_no: str,
                  client_ref: str | None) -> tuple[str, str | None]:
    """Another sale holds this sale's receipt number or client_ref.

    Only a till that lost its disk prints a number twice. The value belongs to the
    sale earlier in the journal, the same on every node: a journaled sale beats one
    still in this till's outbox (which the master will journal later), otherwise the
    holder was here first. The loser keeps its sale under a suffixed receipt number
    (and without the idempotency key); `admission.after_apply` records the conflict.
    """
    mine = _journal_position(session, ev.event_id)
    theirs = _journal_position(session, holder.event_id)
    we_win = mine is not None and (theirs is None or mine < theirs)
    sale_id = ev.payload["sale_id"]
    if holder.receipt_no == receipt_no:
        if we_win:
            holder.receipt_no = alternate_receipt_no(holder.receipt_no, holder.sale_id)
        else:
            receipt_no = alternate_receipt_no(receipt_no, sale_id)
            session.info.setdefault(REFILED, {})[sale_id] = (receipt_no, holder.sale_id)
    if client_ref is not None and holder.client_ref == client_ref:
        if we_win:
            holder.client_ref = None
        else:
            client_ref = None
    session.flush()
    return receipt_no, client_ref


def _give_back(session: Session, ev: Event, kind: str) -> list[Notice]:
    """Refund (some lines) or void (everything left): restock and record the money back."""
    p = ev.payload
    sale = session.get(Sale, p["sale_id"])
    if sale is None or session.get(Refund, p["refund_id"]) is not None:
        return []
    lines = {line.sku: line for line in session.scalars(
        select(SaleLine).where(SaleLine.sale_id == sale.sale_id))}
    notices: list[Notice] = []
    for item in p["lines"]:
        line = lines.get(item["sku"])
        if line is not None:
            line.refunded_qty += int(item["quantity"])
        notices += move_stock(session, ev, item["sku"], int(item["quantity"]), kind)
    method = p.get("method", "cash")
    session.add(Refund(
        refund_id=p["refund_id"], sale_id=sale.sale_id, kind=kind, lines=p["lines"],
        amount_cents=p["amount_cents"], tax_cents=p.get("tax_cents", 0),
        method=method, user=ev.user or "", device_id=ev.origin_device,
        # Events from before refund tenders (all cash) carry only `method`.
        tenders=p.get("tenders") or [{"method": method, "amount_cents": int(p["amount_cents"])}],
        created_ms=p["created_ms"], event_id=ev.event_id,
    ))
    sale.refunded_cents += int(p["amount_cents"])
    if kind == "void":
        sale.status = "voided"
    elif all(line.refunded_qty >= line.quantity for line in lines.values()):
        sale.status = "refunded"
    else:
        sale.status = "partially_refunded"
    notices.append(("sale_changed", {"sale_id": sale.sale_id, "status": sale.status}))
    return notices


def _sale_refund(session: Session, ev: Event) -> list[Notice]:
    return _give_back(session, ev, "refund")


def _sale_void(session: Session, ev: Event) -> list[Notice]:
    return _give_back(session, ev, "void")


def _user_create(session: Session, ev: Event) -> list[Notice]:
    p = ev.payload
    if session.get(User, p["username"]) is not None:
        return []  # first create wins (two tills started with --admin-pin)
    session.add(User(username=p["username"], display_name=p["display_name"], role=p["role"],
                     pin_hash=p["pin_hash"], active=p.get("active", True), version=1))
    return [user_notice(p["username"])]


def user_notice(username: str) -> Notice:
    """`user_changed {username}`: the Users page refreshes (no roles or hashes in it)."""
    return ("user_changed", {"username": username})


USER_RANK = {"cashier": 1, "manager": 2, "admin": 3}


def _user_update(session: Session, ev: Event) -> list[Notice]:
    user = session.get(User, ev.payload["username"])
    if user is None:
        return []
    if ev.payload.get("rehash") and ev.base_version is not None and user.version != ev.base_version:
        return []  # a login's hash upgrade that something else overtook: never undo a reset
    changes = ev.payload.get("changes", {})
    ends_sessions = (("pin_hash" in changes and not ev.payload.get("rehash"))
                     or changes.get("active") is False
                     or USER_RANK.get(changes.get("role"), 99) < USER_RANK.get(user.role, 0))
    for key in ("display_name", "role", "pin_hash", "active"):
        if key in changes:
            setattr(user, key, changes[key])
    user.version += 1
    if "pin_hash" in changes and not ev.payload.get("rehash"):
        _clear_failures(session, ev)  # a new PIN: the wrong guesses at the old one are moot
    if not ends_sessions:
        return [user_notice(user.username)]
    # A PIN reset, deactivation or demotion ends the user's sessions on every till that
    # applies it. Sessions begun after it (a higher user_version) stay, so replaying the
    # journal (a rebuild) never ends them.
    ended = session.execute(
        update(AuthSession)
        .where(AuthSession.username == user.username, AuthSession.revoked.is_(False),
               AuthSession.user_version < user.version)
        .values(revoked=True)).rowcount
    return [user_notice(user.username)] + (
        [("sessions_revoked", {"username": user.username})] if ended else [])


def _login_failure_row(session: Session, ev: Event, kind: str) -> None:
    if session.get(LoginFailure, ev.event_id) is None:
        session.add(LoginFailure(event_id=ev.event_id, username=ev.payload["username"],
                                 kind=kind, at_ms=int(ev.payload["created_ms"])))


def _clear_failures(session: Session, ev: Event) -> None:
    _login_failure_row(session, ev, "cleared")


def _user_login_failed(session: Session, ev: Event) -> list[Notice]:
    _login_failure_row(session, ev, "failed")
    return [user_notice(ev.payload["username"])]


def _user_unlock(session: Session, ev: Event) -> list[Notice]:
    _clear_failures(session, ev)
    return [user_notice(ev.payload["username"])]


def _conflict_record(session: Session, ev: Event) -> list[Notice]:
    p = ev.payload
    if session.get(ConflictRecord, p["conflict_id"]) is not None:
        return []
    session.add(ConflictRecord(**conflict_row(p)))
    return [conflict_notice(p)]


def conflict_row(p: dict[str, Any]) -> dict[str, Any]:
    """The conflicts row of a conflict.record (both apply paths use it)."""
    return {"conflict_id": p["conflict_id"], "kind": p["kind"], "sku": p.get("sku"),
            "event_id": p.get("event_id"), "origin_device": p.get("origin_device"),
            "user": p.get("user"), "details": p.get("details", {}), "decision": p["decision"],
            "status": "open", "resolution": None, "resolved_by": None,
            "created_ms": p["created_ms"], "resolved_ms": None}


def conflict_notice(p: dict[str, Any]) -> Notice:
    return ("conflict", {k: p.get(k) for k in (
        "conflict_id", "kind", "sku", "origin_device", "user", "details", "decision")})


def _conflict_resolve(session: Session, ev: Event) -> list[Notice]:
    p = ev.payload
    record = session.get(ConflictRecord, p["conflict_id"])
    if record is None or record.status == "resolved":
        return []
    record.status = "resolved"
    record.resolution = p.get("resolution", "")
    record.resolved_by = ev.user
    record.resolved_ms = p["created_ms"]
    notices: list[Notice] = [("conflict_resolved", {"conflict_id": record.conflict_id})]
    recount = p.get("recount")
    if recount is not None and record.sku:
        product = session.get(Product, record.sku)
        current = product.stock if product is not None else 0
        delta = int(recount) - current
        if delta:
            notices += move_stock(session, ev, record.sku, delta, "recount",
                                  f"recount after conflict {record.conflict_id}")
    return notices


APPLIERS: dict[str, Callable[[Session, Event], list[Notice]]] = {
    "category.create": _category_create,
    "product.create": _product_create,
    "product.update": _product_update,
    "stock.receive": _stock_receive,
    "stock.adjust": _stock_adjust,
    "sale.create": _sale_create,
    "sale.refund": _sale_refund,
    "sale.void": _sale_void,
    "user.create": _user_create,
    "user.update": _user_update,
    "user.login_failed": _user_login_failed,
    "user.unlock": _user_unlock,
    "conflict.record": _conflict_record,
    "conflict.resolve": _conflict_resolve,
}


def apply_event(session: Session, ev: Event) -> list[Notice]:
    applier = APPLIERS.get(ev.type)
    if applier is None:
        return []  # an event type from a newer schema: journaled, not interpreted
    return applier(session, ev)
