"""Tables only. Derived tables are rebuilt from the journal; local tables are not replicated."""

from app.models.audit import AuditEntry, ConflictRecord
from app.models.base import Base
from app.models.catalog import Category, Product, StockMovement
from app.models.journal import JournalEntry, NodeState, OutboxEvent
from app.models.people import AuthSession, LoginFailure, User
from app.models.sales import Payment, Refund, Sale, SaleLine

# Tables materialized from the journal (+ applied outbox); truncated on rebuild.
DERIVED_TABLES = [
    "payments", "sale_lines", "refunds", "sales", "stock_movements", "products",
    "categories", "users", "conflicts", "login_failures",
]

__all__ = [
    "AuditEntry", "AuthSession", "Base", "Category", "ConflictRecord", "DERIVED_TABLES",
    "JournalEntry", "LoginFailure", "NodeState", "OutboxEvent", "Payment", "Product",
    "Refund", "Sale", "SaleLine", "StockMovement", "User",
]
