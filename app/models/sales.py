"""Derived sales tables: sales, their lines and payments, refunds."""

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class Sale(Base):
    __tablename__ = "sales"
    sale_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    receipt_no: Mapped[str] = mapped_column(String(20), nullable=False, unique=True)
    device_id: Mapped[int] = mapped_column(Integer, nullable=False)
    receipt_seq: Mapped[int] = mapped_column(Integer, nullable=False)
    client_ref: Mapped[str | None] = mapped_column(String(64), unique=True)
    cashier: Mapped[str] = mapped_column(String(64), nullable=False)
    approver: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="completed")
    subtotal_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    discount_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    total_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    tax_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    tax_by_rate: Mapped[dict] = mapped_column(JSON, nullable=False)
    paid_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    change_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    refunded_cents: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    mode: Mapped[str] = mapped_column(String(10), nullable=False)
    created_ms: Mapped[int] = mapped_column(Integer, nullable=False)
    event_id: Mapped[str] = mapped_column(String(32), nullable=False)



Index("ix_sales_created", Sale.created_ms)
# Not unique: see migration 0002 (a till that lost its disk may reuse a number).
Index("ix_sales_device_receipt", Sale.device_id, Sale.receipt_seq)


class SaleLine(Base):
    __tablename__ = "sale_lines"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sale_id: Mapped[str] = mapped_column(ForeignKey("sales.sale_id"), nullable=False)
    line_no: Mapped[int] = mapped_column(Integer, nullable=False)
    sku: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    unit_price_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    discount_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    tax_rate_bp: Mapped[int] = mapped_column(Integer, nullable=False)
    total_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    refunded_qty: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


Index("ix_sale_lines_sale", SaleLine.sale_id)


class Payment(Base):
    __tablename__ = "payments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sale_id: Mapped[str] = mapped_column(ForeignKey("sales.sale_id"), nullable=False)
    method: Mapped[str] = mapped_column(String(10), nullable=False)
    amount_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    tendered_cents: Mapped[int | None] = mapped_column(Integer)
    change_cents: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


Index("ix_payments_sale", Payment.sale_id)


class Refund(Base):
    """A refund or a void (kind), with the lines and amount given back."""

    __tablename__ = "refunds"
    refund_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    sale_id: Mapped[str] = mapped_column(ForeignKey("sales.sale_id"), nullable=False)
    kind: Mapped[str] = mapped_column(String(10), nullable=False)
    lines: Mapped[list] = mapped_column(JSON, nullable=False)
    amount_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    tax_cents: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # "cash", "card", or "split" when the money went back to more than one tender.
    method: Mapped[str] = mapped_column(String(10), nullable=False, default="cash")
    # [{method, amount_cents}, ...]: how the money went back, adding up to amount_cents
    # (migration 0004; rows from before it were all cash and were filled in so).
    tenders: Mapped[list | None] = mapped_column(JSON)
    user: Mapped[str] = mapped_column(String(64), nullable=False)
    device_id: Mapped[int] = mapped_column(Integer, nullable=False)
    created_ms: Mapped[int] = mapped_column(Integer, nullable=False)
    event_id: Mapped[str] = mapped_column(String(32), nullable=False)


Index("ix_refunds_sale", Refund.sale_id)
Index("ix_refunds_created", Refund.created_ms)
