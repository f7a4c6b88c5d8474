"""Catalog rules: products, categories, search. Reads are local; edits go to the master."""

from __future__ import annotations

from typing import Any

from sqlalchemy import false, func, or_, select
from sqlalchemy.orm import Session

from app.models import Category, Product
from app.services.node import Node
from app.services.shop import product_index
from app.services.shop.admission import product_snapshot
from app.services.shop.commands import ProductCreate, ProductUpdate
from app.services.shop.submit import AuditNote, submit
from app.utils.barcode import is_valid_barcode
from app.utils.errors import NotFound, ValidationError


def _product_dict(product: Product, category: str | None) -> dict[str, Any]:
    return {
        "sku": product.sku, "name": product.name, "barcode": product.barcode,
        "category": category, "price_cents": product.price_cents,
        "tax_rate_bp": product.tax_rate_bp, "active": product.active,
        "low_stock_threshold": product.low_stock_threshold, "version": product.version,
        "stock": product.stock, "updated_by": product.updated_by,
    }


def list_products(node: Node, *, search: str = "", category: str = "", limit: int = 50,
                  offset: int = 0, include_inactive: bool = False, sort: str = "name",
                  low_stock: bool = False) -> dict[str, Any]:
    """Server-side paged search: by name prefix/substring, sku or barcode.

    Fast at 100,000 products (scripts/bench_backoffice.py): the filters only touch
    columns of the (active, name_lower, sku) index, so a substring search scans that
    index instead of the table; a search that is exactly a sku or a barcode returns
    that product (unique keys, no scan); the total is counted without the join.
    """
    with node.db.read() as session:
        conds = []
        if not include_inactive:
            conds.append(Product.active.is_(True))
        if category:
            category_id = session.scalar(select(Category.id).where(Category.name == category))
            conds.append(Product.category_id == category_id if category_id is not None
                         else false())  # an unknown category matches nothing
        if search:
            raw = search.strip()
            like = raw.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            exact = list(session.scalars(select(Product.sku).where(
                or_(Product.sku == raw, Product.barcode == raw)).limit(2)))
            if not exact and sort == "name" and not (include_inactive or category or low_stock):
                # The till's search box: served by the in-memory name index.
                found = product_index.search(session, node.db, raw.lower(), offset, limit)
                if found is not None:
                    skus, total = found
                    return {"products": _products_in_order(session, skus), "total": total,
                            "limit": limit, "offset": offset}
            # A scanned barcode or a typed sku names its product: no name scan for it.
            conds.append(Product.sku.in_(exact) if exact
                         else Product.name_lower.like(f"%{like}%", escape="\\"))
        if low_stock:
            conds.append(Product.stock <= Product.low_stock_threshold)
        query = (select(Product, Category.name)
                 .outerjoin(Category, Product.category_id == Category.id).where(*conds))
        total = session.scalar(select(func.count()).select_from(Product).where(*conds))
        order = {
            "name": Product.name_lower, "-name": Product.name_lower.desc(),
            "sku": Product.sku, "-sku": Product.sku.desc(),
            "stock": Product.stock, "-stock": Product.stock.desc(),
            "price": Product.price_cents, "-price": Product.price_cents.desc(),
        }.get(sort, Product.name_lower)
        rows = session.execute(query.order_by(order, Product.sku).limit(limit).offset(offset)).all()
        return {"products": [_product_dict(p, c) for p, c in rows], "total": total,
                "limit": limit, "offset": offset}


def _products_in_order(session: Session, skus: list[str]) -> list[dict[str, Any]]:
    if not skus:
        return []
    rows = session.execute(select(Product, Category.name)
                           .outerjoin(Category, Product.category_id == Category.id)
                           .where(Product.sku.in_(skus))).all()
    by_sku = {p.sku: _product_dict(p, c) for p, c in rows}
    return [by_sku[sku] for sku in skus if sku in by_sku]


def get_product(node: Node, sku: str) -> dict[str, Any]:
    with node.db.read() as session:
        product = session.get(Product, sku)
        if product is None:
            raise NotFound(f"unknown sku {sku}", {"sku": sku}, code="UNKNOWN_SKU")
        return product_snapshot(session, product) | {"updated_by": product.updated_by}


def get_by_barcode(node: Node, code: str) -> dict[str, Any]:
    # A misread scan (wrong check digit) can never match a product: say so, not "not found".
    check_barcode(code)
    with node.db.read() as session:
        product = session.scalar(select(Product).where(Product.barcode == code))
        if product is None:
            raise NotFound(f"no product with barcode {code}", {"barcode": code},
                           code="UNKNOWN_BARCODE")
        return product_snapshot(session, product) | {"updated_by": product.updated_by}


def list_categories(node: Node) -> list[dict[str, Any]]:
    with node.db.read() as session:
        rows = session.execute(
            select(Category.name, func.count(Product.category_id))  # covered by ix_products_category
            .outerjoin(Product, (Product.category_id == Category.id) & Product.active.is_(True))
            .group_by(Category.id).order_by(Category.name)).all()
        return [{"name": name, "products": count} for name, count in rows]


def check_barcode(barcode: str | None) -> None:
    if barcode is not None and not is_valid_barcode(barcode):
        raise ValidationError("barcode is not a valid EAN-13/UPC-A/EAN-8 code (check digit)",
                              {"field": "barcode", "barcode": barcode}, code="INVALID_BARCODE")


def create_product(node: Node, user: str, data: dict[str, Any]) -> dict[str, Any]:
    check_barcode(data.get("barcode"))
    submit(node, ProductCreate(**data), user, offline_ok=False,
           audit=AuditNote("product.created", {"sku": data["sku"], "price_cents": data["price_cents"]}))
    return get_product(node, data["sku"])


def update_product(node: Node, user: str, sku: str, changes: dict[str, Any],
                   base_version: int, approver: str | None = None) -> dict[str, Any]:
    """A price or product edit. Stale `base_version` -> 409 CONFLICT naming the winner.

    `approver`: the manager whose PIN approved the edit (None: the user is a manager)."""
    if "barcode" in changes:
        check_barcode(changes["barcode"])
    before = get_product(node, sku)
    audit = {"sku": sku, "changes": changes, "base_version": base_version, "approver": approver}
    if "price_cents" in changes:
        audit["old_price_cents"] = before["price_cents"]
    submit(node, ProductUpdate(sku=sku, changes=changes, approver=approver), user,
           audit=AuditNote("price.changed" if "price_cents" in changes else "product.updated", audit),
           base_version=base_version, offline_ok=False)
    return get_product(node, sku)
