"""The replicated journal (source of truth), the till's outbox, and node-local state."""

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class JournalEntry(Base):
    """One event, accepted and ordered by a master: gseq is global and gapless."""

    __tablename__ = "journal"
    gseq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    epoch_number: Mapped[int] = mapped_column(Integer, nullable=False)
    epoch_master: Mapped[int] = mapped_column(Integer, nullable=False)
    event_id: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    origin_device: Mapped[int] = mapped_column(Integer, nullable=False)
    origin_seq: Mapped[int] = mapped_column(Integer, nullable=False)
    hlc: Mapped[str] = mapped_column(String(40), nullable=False)
    type: Mapped[str] = mapped_column(String(40), nullable=False)
    payload: Mapped[dict] = mapped_column(JSON, nullable=False)
    user: Mapped[str | None] = mapped_column(String(64))
    base_version: Mapped[int | None] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(10), nullable=False, default="online")
    recorded_ms: Mapped[int] = mapped_column(Integer, nullable=False)


class OutboxEvent(Base):
    """An event made here (or taken back from a dropped journal tail) not yet seen in the journal.

    `applied` tells whether its effect is already in the derived tables: commutative
    events (sales, stock movements) are applied at once so the till keeps selling
    offline; edits are applied only when they come back through the journal.
    """

    __tablename__ = "outbox"
    event_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    origin_device: Mapped[int] = mapped_column(Integer, nullable=False)
    origin_seq: Mapped[int] = mapped_column(Integer, nullable=False)
    hlc: Mapped[str] = mapped_column(String(40), nullable=False)
    type: Mapped[str] = mapped_column(String(40), nullable=False)
    payload: Mapped[dict] = mapped_column(JSON, nullable=False)
    user: Mapped[str | None] = mapped_column(String(64))
    base_version: Mapped[int | None] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(10), nullable=False, default="offline")
    applied: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_ms: Mapped[int] = mapped_column(Integer, nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


Index("ix_outbox_hlc", OutboxEvent.hlc)


class NodeState(Base):
    """Node-local key/value settings: persisted epoch, counters, HLC, sync statistics."""

    __tablename__ = "node_state"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)
