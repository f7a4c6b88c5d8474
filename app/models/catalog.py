"""Derived catalog and stock tables (materialized from the journal)."""

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class Category(Base):
    __tablename__ = "categories"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80), nullable=False, unique=True)


class Product(Base):
    """A product. `stock` caches SUM(stock_movements.delta), kept in the same transaction."""

    __tablename__ = "products"
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    name_lower: Mapped[str] = mapped_column(String(200), nullable=False)
    barcode: Mapped[str | None] = mapped_column(String(14), unique=True)
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"))
    price_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    tax_rate_bp: Mapped[int] = mapped_column(Integer, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    low_stock_threshold: Mapped[int] = mapped_column(Integer, nullable=False, default=5)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    stock: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated_by: Mapped[str | None] = mapped_column(String(64))
    updated_event: Mapped[str | None] = mapped_column(String(32))


Index("ix_products_name_lower", Product.name_lower)
Index("ix_products_category", Product.category_id, Product.name_lower)


class StockMovement(Base):
    """Every change of stock: receive, adjust (with reason), sale, refund, void, recount."""

    __tablename__ = "stock_movements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(32), nullable=False)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), nullable=False)
    delta: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    device_id: Mapped[int] = mapped_column(Integer, nullable=False)
    user: Mapped[str | None] = mapped_column(String(64))
    created_ms: Mapped[int] = mapped_column(Integer, nullable=False)


Index("ix_stock_movements_sku", StockMovement.sku)
Index("ix_stock_movements_event", StockMovement.event_id)
