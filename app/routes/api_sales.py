"""Checkout, sale lookup, refunds and voids."""

from flask import Blueprint, jsonify, request

from app.routes.guards import acting_manager, current_user, node, parse, query_int, require_role
from app.routes.schemas import RefundBody, SaleBody, VoidBody
from app.services.shop import sales
from app.services.shop import users as users_service

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
