"""Stock is the sum of movements: receive and adjust add movements, never overwrite."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from app.models import Product, StockMovement
from app.models.db import Database
from app.services.node import Node
from app.services.shop.commands import StockAdjust, StockChange, StockReceive
from app.services.shop.submit import AuditNote, submit
from app.utils.errors import NotFound, ValidationError


def stock_of(db: Database, sku: str) -> int | None:
    """A product's derived stock (None: no such product)."""
    with db.read() as session:
        product = session.get(Product, sku)
        return product.stock if product else None


def _require_product(node: Node, sku: str) -> None:
    with node.db.read() as session:
        if session.get(Product, sku) is None:
            raise NotFound(f"unknown sku {sku}", {"sku": sku}, code="UNKNOWN_SKU")


def receive(node: Node, user: str, sku: str, quantity: int, reason: str | None,
            approver: str | None = None) -> dict[str, Any]:
    """`approver`: the manager whose PIN approved it (None: the user is a manager)."""
    if quantity <= 0:
        raise ValidationError("quantity received must be positive", {"field": "quantity"})
    return _move(node, user, StockReceive(sku=sku, quantity=quantity, reason=reason,
                                          approver=approver), "stock.received")


def adjust(node: Node, user: str, sku: str, quantity: int, reason: str | None,
           approver: str | None = None) -> dict[str, Any]:
    """`approver`: the manager whose PIN approved it (None: the user is a manager)."""
    if quantity == 0:
        raise ValidationError("an adjustment of 0 changes nothing", {"field": "quantity"})
    if not reason or not reason.strip():
        raise ValidationError("an adjustment needs a reason", {"field": "reason"})
    return _move(node, user, StockAdjust(sku=sku, quantity=quantity, reason=reason,
                                         approver=approver), "stock.adjusted")


def _move(node: Node, user: str, movement: StockChange, audit_action: str
          ) -> dict[str, Any]:
    """Journal one stock movement of a known product; its payload and audit entry agree."""
    _require_product(node, movement.sku)
    outcome = submit(node, movement, user, audit=AuditNote(audit_action, movement.payload()))
    return {"sku": movement.sku, "stock": stock_of(node.db, movement.sku),
            "status": outcome.status, "event_id": outcome.event.event_id}


def movements(node: Node, sku: str, limit: int = 100) -> dict[str, Any]:
    with node.db.read() as session:
        if session.get(Product, sku) is None:
            raise NotFound(f"unknown sku {sku}", {"sku": sku}, code="UNKNOWN_SKU")
        rows = session.scalars(select(StockMovement).where(StockMovement.sku == sku)
                               .order_by(StockMovement.id.desc()).limit(limit)).all()
        total = session.scalar(select(func.coalesce(func.sum(StockMovement.delta), 0))
                               .where(StockMovement.sku == sku))
        return {"sku": sku, "stock": total, "movements": [{
            "kind": m.kind, "delta": m.delta, "reason": m.reason, "user": m.user,
            "approved_by": m.approved_by, "device_id": m.device_id,
            "created_ms": m.created_ms} for m in rows]}
