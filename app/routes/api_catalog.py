"""Products, categories and stock movements."""

from flask import Blueprint, jsonify, request

from app.routes.guards import acting_manager, current_user, node, parse, query_int, require_role
from app.routes.schemas import ProductCreate, ProductUpdate, StockBody
from app.services.shop import catalog, stock

bp = Blueprint("api_catalog", __name__, url_prefix="/api")


@bp.get("/products")
@require_role("cashier")
def list_products():
    result = catalog.list_products(
        node(), search=request.args.get("search", "")[:100],
        category=request.args.get("category", "")[:80],
        limit=query_int("limit", 50, 1, 500), offset=query_int("offset", 0, 0, 10_000_000),
        include_inactive=request.args.get("include_inactive") == "1",
        sort=request.args.get("sort", "name"), low_stock=request.args.get("low_stock") == "1")
    return jsonify({"success": True, **result})


@bp.get("/products/<sku>")
@require_role("cashier")
def get_product(sku: str):
    return jsonify({"success": True, "product": catalog.get_product(node(), sku)})


@bp.get("/products/by-barcode/<code>")
@require_role("cashier")
def by_barcode(code: str):
    return jsonify({"success": True, "product": catalog.get_by_barcode(node(), code)})


@bp.post("/products")
@require_role("manager")
def create_product():
    body = parse(ProductCreate)
    product = catalog.create_product(node(), current_user()["username"], body.model_dump())
    return jsonify({"success": True, "product": product}), 201


@bp.patch("/products/<sku>")
@require_role("cashier")
def update_product(sku: str):
    body = parse(ProductUpdate)
    user, approver = acting_manager(body.approver)
    changes = body.model_dump(exclude_unset=True, exclude={"base_version", "approver"})
    product = catalog.update_product(node(), user, sku, changes, body.base_version,
                                     approver=approver)
    return jsonify({"success": True, "product": product})


@bp.get("/categories")
@require_role("cashier")
def categories():
    return jsonify({"success": True, "categories": catalog.list_categories(node())})


@bp.post("/stock/receive")
@require_role("cashier")
def receive():
    body = parse(StockBody)
    user, approver = acting_manager(body.approver)
    result = stock.receive(node(), user, body.sku, body.quantity, body.reason, approver=approver)
    return jsonify({"success": True, **result}), 201


@bp.post("/stock/adjust")
@require_role("cashier")
def adjust():
    body = parse(StockBody)
    user, approver = acting_manager(body.approver)
    result = stock.adjust(node(), user, body.sku, body.quantity, body.reason, approver=approver)
    return jsonify({"success": True, **result}), 201


@bp.get("/stock/<sku>/movements")
@require_role("manager")
def movements(sku: str):
    return jsonify({"success": True, **stock.movements(node(), sku,
                                                       query_int("limit", 100, 1, 1000))})
