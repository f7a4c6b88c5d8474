"""Checkout, sale lookup and search, refunds and voids."""

import re

from flask import Blueprint, jsonify, request

from app.routes.guards import acting_manager, current_user, node, parse, query_int, require_role
from app.routes.schemas import RefundBody, SaleBody, VoidBody
from app.services.shop import sales
from app.services.shop import users as users_service
from app.utils.errors import ValidationError

bp = Blueprint("api_sales", __name__, url_prefix="/api/sales")


@bp.post("")
@require_role("cashier")
def create_sale():
    body = parse(SaleBody)
    cashier = current_user()
    approver = None
    if body.approver is not None:
        approver = users_service.approve(node(), body.approver.username, body.approver.pin,
                                         client=request.remote_addr or "?")["username"]
    sale, created = sales.create_sale(
        node(), cashier, [line.model_dump() for line in body.lines],
        [p.model_dump() for p in body.payments], client_ref=body.client_ref,
        cart_discount_cents=body.cart_discount_cents, approver=approver)
    status = sale.pop("status_detail", None)
    if status not in ("online", "offline"):  # a retry: say how the first one went
        status = "offline" if sale.get("sync") == "pending" else "online"
    return jsonify({
        "success": True, "sale_id": sale.get("sale_id"), "receipt_no": sale.get("receipt_no"),
        "total_cents": sale.get("total_cents"), "tax_cents": sale.get("tax_cents"),
        "change_cents": sale.get("change_cents"), "status": status, "duplicate": not created,
        "sale": sale,
    }), (201 if created else 200)


@bp.get("")
@require_role("cashier")
def list_sales():
    device = request.args.get("device_id")
    result = sales.list_sales(node(), limit=query_int("limit", 50, 1, 500),
                              offset=query_int("offset", 0, 0, 10_000_000),
                              device_id=query_int("device_id", 0, 1, 99_999) if device else None)
    return jsonify({"success": True, **result})


_CURSOR = re.compile(r"^(\d{1,15})\.([0-9a-f]{1,32})$")
_RECEIPT = re.compile(r"^[A-Za-z0-9-]{1,20}$")
_SKU = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _query_text(name: str, pattern: re.Pattern[str], what: str) -> str | None:
    raw = request.args.get(name)
    if raw is None or raw.strip() == "":
        return None
    raw = raw.strip()
    if not pattern.match(raw):
        raise ValidationError(f"{name} must be {what}", {"field": name})
    return raw


@bp.get("/search")
@require_role("manager")
def search_sales():
    """The back office's receipts list: filtered, newest first, keyset-paged (`cursor` is
    the `next_cursor` of the previous page)."""
    known = {"limit", "cursor", "since_ms", "until_ms", "device_id", "cashier", "method",
             "receipt_no", "min_cents", "max_cents", "sku"}
    unknown = sorted(set(request.args) - known)
    if unknown:
        raise ValidationError(f"unknown filter {unknown[0]}", {"field": unknown[0]})
    cursor = None
    raw_cursor = _query_text("cursor", _CURSOR, "the next_cursor of a previous page")
    if raw_cursor is not None:
        ms, sale_id = raw_cursor.split(".", 1)
        cursor = (int(ms), sale_id)
    method = request.args.get("method") or None
    if method is not None and method not in ("cash", "card"):
        raise ValidationError("method must be cash or card", {"field": "method"})

    def opt_int(name: str, lo: int, hi: int) -> int | None:
        return query_int(name, 0, lo, hi) if request.args.get(name, "") != "" else None

    since_ms = opt_int("since_ms", 0, 10**14)
    until_ms = opt_int("until_ms", 0, 10**14)
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise ValidationError("until_ms must be after since_ms", {"field": "until_ms"})
    min_cents = opt_int("min_cents", 0, 10**11)
    max_cents = opt_int("max_cents", 0, 10**11)
    if min_cents is not None and max_cents is not None and max_cents < min_cents:
        raise ValidationError("max_cents must not be below min_cents", {"field": "max_cents"})
    result = sales.search_sales(
        node(), limit=query_int("limit", 50, 1, sales.SEARCH_MAX_LIMIT), cursor=cursor,
        since_ms=since_ms, until_ms=until_ms, device_id=opt_int("device_id", 1, 99_999),
        cashier=_query_text("cashier", _SKU, "a username"), method=method,
        receipt_no=_query_text("receipt_no", _RECEIPT, "a receipt number like T1-000042"),
        min_cents=min_cents, max_cents=max_cents,
        sku=_query_text("sku", _SKU, "a product SKU"))
    return jsonify({"success": True, **result})


@bp.get("/<sale_id>/journal")
@require_role("manager")
def sale_journal(sale_id: str):
    """Where the sale's event and its refunds' and voids' events sit in the journal."""
    return jsonify({"success": True, "journal": sales.journal_position(node(), sale_id)})


@bp.get("/<sale_id>")
@require_role("cashier")
def get_sale(sale_id: str):
    return jsonify({"success": True, "sale": sales.get_sale(node(), sale_id)})


@bp.get("/by-receipt/<receipt_no>")
@require_role("cashier")
def by_receipt(receipt_no: str):
    return jsonify({"success": True, "sale": sales.get_by_receipt(node(), receipt_no)})


@bp.post("/<sale_id>/refund")
@require_role("cashier")
def refund(sale_id: str):
    body = parse(RefundBody) if request.get_data() else RefundBody()
    user, approver = acting_manager(body.approver)
    lines = [line.model_dump() for line in body.lines] if body.lines else None
    return jsonify({"success": True, "sale": sales.refund(node(), user, sale_id, lines,
                                                          approver=approver, reason=body.reason,
                                                          refund_to=body.refund_to)}), 201


@bp.post("/<sale_id>/void")
@require_role("cashier")
def void(sale_id: str):
    body = parse(VoidBody) if request.get_data() else VoidBody()
    user, approver = acting_manager(body.approver)
    return jsonify({"success": True, "sale": sales.refund(node(), user, sale_id, None,
                                                          kind="void", approver=approver,
                                                          reason=body.reason,
                                                          refund_to=body.refund_to)}), 201
