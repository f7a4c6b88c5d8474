"""The event envelope: every change in the shop is one of these.

Also the one definition of the journal's columns and of the rows an event makes (a
journal entry, an outbox row, a journal entry as it travels between nodes): every
module that writes or reads journal rows goes through these.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Protocol, Sequence

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

# The event's own columns, as the journal and the outbox store them (`Event`'s fields).
EVENT_COLUMNS = ("event_id", "origin_device", "origin_seq", "hlc", "type", "payload", "user",
                 "base_version", "mode")
# The journal table's columns, in table order (also the order `raw_page` returns them in).
JOURNAL_COLUMNS = ("gseq", "epoch_number", "epoch_master", *EVENT_COLUMNS, "recorded_ms")
# The outbox table's columns, in table order.
OUTBOX_COLUMNS = (*EVENT_COLUMNS, "applied", "created_ms", "attempts", "last_error")
# A journal entry as it travels between nodes (`journal_entry_dict`): the journal's
# columns, with the epoch pair as one `[number, master]`.
ENTRY_KEYS = ("gseq", "epoch", *EVENT_COLUMNS, "recorded_ms")


class EventRow(Protocol):
    """A stored event: a journal or outbox row (ORM or plain attributes)."""

    event_id: str
    origin_device: int
    origin_seq: int
    hlc: str
    type: str
    payload: dict[str, Any]
    user: str | None
    base_version: int | None
    mode: str


class JournalRow(EventRow, Protocol):
    gseq: int
    epoch_number: int
    epoch_master: int
    recorded_ms: int


@dataclass(frozen=True)
class AuditNote:
    """The audit entry a use case writes with its event, in the transaction that makes
    the event durable at this till (`WritePath.execute(ev, audit=...)`); the journal adds
    the event id, its mode and, where this till sequenced it, its gseq and epoch."""

    action: str
    details: dict[str, Any]


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Event":
        return cls(
            event_id=str(data["event_id"]), origin_device=int(data["origin_device"]),
            origin_seq=int(data["origin_seq"]), hlc=str(data["hlc"]), type=str(data["type"]),
            payload=dict(data["payload"]), user=data.get("user"),
            base_version=data.get("base_version"), mode=str(data.get("mode") or "online"),
        )

    @classmethod
    def from_row(cls, row: EventRow) -> "Event":
        event = cls(**{c: getattr(row, c) for c in EVENT_COLUMNS})
        event.payload = dict(event.payload)
        return event


def event_values(ev: Event) -> dict[str, Any]:
    """The event's own columns (`EVENT_COLUMNS`)."""
    return {c: getattr(ev, c) for c in EVENT_COLUMNS}


def journal_values(ev: Event, gseq: int, epoch: tuple[int, int] | list[int], recorded_ms: int
                   ) -> dict[str, Any]:
    """A journal row's columns (`JOURNAL_COLUMNS`, for `insert_rows` or a `JournalEntry`)."""
    return {"gseq": gseq, "epoch_number": epoch[0], "epoch_master": epoch[1],
            **event_values(ev), "recorded_ms": recorded_ms}


def outbox_values(ev: Event, *, applied: bool, created_ms: int) -> dict[str, Any]:
    """An outbox row's columns (`OUTBOX_COLUMNS`, for `insert_rows` or an `OutboxEvent`)."""
    return {**event_values(ev), "applied": applied, "created_ms": created_ms,
            "attempts": 0, "last_error": None}


def journal_entry_dict(row: JournalRow) -> dict[str, Any]:
    """A journal row as it travels between nodes (`ENTRY_KEYS`)."""
    return {"gseq": row.gseq, "epoch": [row.epoch_number, row.epoch_master],
            **{c: getattr(row, c) for c in EVENT_COLUMNS}, "recorded_ms": row.recorded_ms}


# How each stored column goes into an entry's JSON text (`entries_json`): numbers, and the
# payload (stored as JSON text already), as they are; the others through `json.dumps`.
_AS_IS = {"gseq", "epoch_number", "epoch_master", "origin_device", "origin_seq", "payload",
          "recorded_ms"}
_QUOTED = [i for i, c in enumerate(JOURNAL_COLUMNS) if c not in _AS_IS]
_ENTRY_TEMPLATE = "{{" + ",".join(
    f'"epoch":[{{{JOURNAL_COLUMNS.index("epoch_number")}}},'
    f'{{{JOURNAL_COLUMNS.index("epoch_master")}}}]' if key == "epoch"
    else f'"{key}":{{{JOURNAL_COLUMNS.index(key)}}}' for key in ENTRY_KEYS) + "}}"


def entries_json(rows: Iterable[Sequence[Any]]) -> str:
    """Journal rows as stored (`JOURNAL_COLUMNS` order, the payload still JSON text) as
    the JSON of their `journal_entry_dict`s, comma-separated, without decoding and
    encoding every payload again (pages of thousands of entries)."""
    q = json.dumps
    out = []
    for row in rows:
        cells = list(row)
        for i in _QUOTED:
            cells[i] = q(cells[i])
        out.append(_ENTRY_TEMPLATE.format(*cells))
    return ",".join(out)
