"""Append-only audit log: one hash chain per device, and the conflicts register."""

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class AuditEntry(Base):
    __tablename__ = "audit_log"
    device_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts_ms: Mapped[int] = mapped_column(Integer, nullable=False)
    user: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(40), nullable=False)
    details: Mapped[dict] = mapped_column(JSON, nullable=False)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)


Index("ix_audit_ts", AuditEntry.ts_ms)
Index("ix_audit_action_ts", AuditEntry.action, AuditEntry.ts_ms)
Index("ix_audit_user_ts", AuditEntry.user, AuditEntry.ts_ms)


class ConflictRecord(Base):
    """An oversell or a rejected edit, decided by the master; replicated through the journal."""

    __tablename__ = "conflicts"
    conflict_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    sku: Mapped[str | None] = mapped_column(String(64))
    event_id: Mapped[str | None] = mapped_column(String(32))
    origin_device: Mapped[int | None] = mapped_column(Integer)
    user: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict] = mapped_column(JSON, nullable=False)
    decision: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(10), nullable=False, default="open")
    resolution: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    created_ms: Mapped[int] = mapped_column(Integer, nullable=False)
    resolved_ms: Mapped[int | None] = mapped_column(Integer)
