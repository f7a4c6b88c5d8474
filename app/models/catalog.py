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
Index("ix_products_category", Product.category_id, Product.active, Product.name_lower, Product.sku)
# The back-office stock screen lists, sorts, searches and counts 100,000 products through
# these and ix_products_category (scripts/bench_backoffice.py): filters on active,
# category and name_lower are checked inside an index, and sku last makes
# "ORDER BY <column>, sku" come out of the index in order.
Index("ix_products_active_name", Product.active, Product.name_lower, Product.sku)
Index("ix_products_active_stock", Product.active, Product.stock, Product.sku)
Index("ix_products_active_price", Product.active, Product.price_cents, Product.sku)


# The catalog generation: bumped in the same transaction by any change of the products
# that search sees (a row added or removed, a new name, (de)activation), whoever makes
# it; app/services/shop/product_index.py rebuilds its in-memory name index when it moves.
# Stock and price changes do not bump it. Created by migration 0001 (same SQL).
CATALOG_GEN_KEY = "catalog_gen"
BUMP_CATALOG_GEN = ("INSERT INTO node_state (key, value) VALUES ('catalog_gen', '1') "
                    "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1;")
CATALOG_GEN_TRIGGERS = [
    ("trg_products_gen_insert", f"CREATE TRIGGER trg_products_gen_insert AFTER INSERT ON products "
                                f"BEGIN {BUMP_CATALOG_GEN} END"),
    ("trg_products_gen_delete", f"CREATE TRIGGER trg_products_gen_delete AFTER DELETE ON products "
                                f"BEGIN {BUMP_CATALOG_GEN} END"),
    ("trg_products_gen_update", f"CREATE TRIGGER trg_products_gen_update AFTER UPDATE OF sku, "
                                f"name_lower, active ON products BEGIN {BUMP_CATALOG_GEN} END"),
]


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
    # The manager whose PIN approved the event that moved the stock (migration 0004).
    approved_by: Mapped[str | None] = mapped_column(String(64))


Index("ix_stock_movements_sku", StockMovement.sku)
Index("ix_stock_movements_event", StockMovement.event_id)
