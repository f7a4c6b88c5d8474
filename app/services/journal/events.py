"""The event envelope: every change in the shop is one of these."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Events whose effect commutes with any other (stock is a sum of movements, sales are
# keyed by id): a till applies these at once, even offline. Edits wait for the master.
COMMUTATIVE_TYPES = frozenset({
    "sale.create", "sale.refund", "sale.void", "stock.receive", "stock.adjust",
    # Wrong PINs and their clearing: rows keyed by event id with the failing till's time
    # (`lockout.py` reads them in any order), so an offline till counts them at once.
    "user.login_failed", "user.unlock",
})

# Decisions a master derives itself; a dropped journal tail never resubmits them, the
# winning master decides again when it sequences the events they were about.
MASTER_DERIVED_TYPES = frozenset({"conflict.record"})

EVENT_TYPES = frozenset({
    "category.create", "product.create", "product.update", "stock.receive", "stock.adjust",
    "sale.create", "sale.refund", "sale.void", "user.create", "user.update",
    "user.login_failed", "user.unlock", "conflict.record", "conflict.resolve",
})


@dataclass
class Event:
    event_id: str
    origin_device: int
    origin_seq: int
    hlc: str
    type: str
    payload: dict[str, Any]
    user: str | None = None
    base_version: int | None = None
    mode: str = "online"  # "offline": already acknowledged to a person, never refused
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Event":
        return cls(
            event_id=str(data["event_id"]), origin_device=int(data["origin_device"]),
            origin_seq=int(data["origin_seq"]), hlc=str(data["hlc"]), type=str(data["type"]),
            payload=dict(data["payload"]), user=data.get("user"),
            base_version=data.get("base_version"), mode=str(data.get("mode") or "online"),
        )

    @classmethod
    def from_row(cls, row: Any) -> "Event":
        return cls(
            event_id=row.event_id, origin_device=row.origin_device, origin_seq=row.origin_seq,
            hlc=row.hlc, type=row.type, payload=dict(row.payload), user=row.user,
            base_version=row.base_version, mode=row.mode,
        )


def journal_entry_dict(row: Any) -> dict[str, Any]:
    """A journal row as it travels between nodes."""
    return {
        "gseq": row.gseq, "epoch": [row.epoch_number, row.epoch_master],
        "event_id": row.event_id, "origin_device": row.origin_device,
        "origin_seq": row.origin_seq, "hlc": row.hlc, "type": row.type,
        "payload": row.payload, "user": row.user, "base_version": row.base_version,
        "mode": row.mode, "recorded_ms": row.recorded_ms,
    }
