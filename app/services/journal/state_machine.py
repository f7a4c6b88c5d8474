"""The state machine that journal entries drive: what the journal needs from the rows they
derive, owned by the journal (its consumer), implemented by the shop
(`app.services.shop.state_machine.ShopStateMachine`).

The journal knows events, positions, epochs and the outbox. Whether an event may be
journaled, which rows it derives and which conflict records follow it are the state
machine's business; the journal hands it sessions and events and gets back plain values:
verdicts, refusals, notices, conflict-record payloads (journaled as `conflict.record`
events).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.services.journal.events import Event

# What applying an entry tells the till (relayed to subscribers): (name, data).
Notice = tuple[str, dict[str, Any]]


class HasHlc(Protocol):
    hlc: str
    event_id: str


Pending = TypeVar("Pending", bound=HasHlc)


@dataclass(frozen=True)
class Refusal:
    """Why the rules will not journal an event: a plain value (a stable code, a message
    for people, optional details). It travels to the till that submitted the event inside
    the ack (`to_wire`); the HTTP status a client sees is decided from `code` at the route
    edge (`app/routes/errors.py`), never carried between tills."""

    code: str
    message: str
    details: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        """The ack's `error`: {code, message[, details]} (details only when given)."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = dict(self.details)
        return error

    @classmethod
    def from_wire(cls, error: dict[str, Any]) -> "Refusal":
        """An ack's `error`. A till of an older build also sent an HTTP "status" in it:
        ignored (the status is decided from the code where a client is answered)."""
        details = error.get("details")
        return cls(str(error["code"]), str(error["message"]),
                   dict(details) if details is not None else None)


class Refused(Exception):
    """The rules refused an event: raised by the state machine's `admit`, and by
    `Journal.execute` when the master refused the event it was given."""

    def __init__(self, refusal: Refusal):
        super().__init__(refusal.message)
        self.refusal = refusal

    @property
    def code(self) -> str:
        return self.refusal.code

    @property
    def message(self) -> str:
        return self.refusal.message

    @property
    def details(self) -> dict[str, Any] | None:
        return self.refusal.details


class NotYet(Exception):
    """The event depends on one the master has not journaled yet: it is neither accepted
    nor refused; the till keeps it in its outbox and submits it again."""


@dataclass
class Verdict:
    """The state machine's decision on one event of a batch (`StateMachine.admit_batch`)."""

    event: Event
    status: str  # "accept" | "duplicate" | "refuse"
    gseq: int | None = None  # duplicate: where the journal holds it (None: a repeated request)
    ack: dict[str, Any] = field(default_factory=dict)  # more fields for the event's ack
    refusal: Refusal | None = None  # refuse
    # accept: conflict records to journal right after the event (`conflict.record` payloads)
    records: list[dict[str, Any]] = field(default_factory=list)


class StateMachine(Protocol):
    """What the journal drives. Every call runs inside the journal's write transaction
    (`session`); nothing here commits."""

    def order_offline(self, events: Iterable[Pending]) -> list[Pending]:
        """Events made apart (an outbox, a dropped tail) in the order they are replayed."""
        ...

    # --- admission (master side, before an event is journaled)
    def admit_batch(self, session: Session, events: list[Event]) -> list[Verdict]:
        """Decide at once the longest prefix of `events` the machine can (possibly none);
        the rest goes through `admit`, one event at a time."""
        ...

    def repeated_request(self, session: Session, ev: Event) -> dict[str, Any] | None:
        """When `ev` repeats a request another event already made (same client
        reference): the ack fields naming it; the event is then never journaled."""
        ...

    def admit(self, session: Session, ev: Event) -> object:
        """Raise `Refused` to refuse `ev`, NotYet to defer it; otherwise return a
        decision (opaque to the journal) for `records_after`."""
        ...

    def records_after(self, session: Session, ev: Event, decision: object) -> list[dict[str, Any]]:
        """Conflict records to journal after an admitted event was applied."""
        ...

    def is_lost_edit(self, ev: Event, refusal: Refusal) -> bool:
        """Whether refusing `ev` with `refusal` means a stale edit lost to a newer one (its
        conflict record is journaled; offline, the event is "rejected", not "refused")."""
        ...

    def lost_edit_record(self, session: Session, ev: Event, refusal: Refusal
                         ) -> dict[str, Any] | None:
        """The conflict record of a lost edit; None when it is on file already."""
        ...

    # --- applying entries (every till)
    def apply(self, session: Session, ev: Event) -> list[Notice]:
        """Derive the rows of one entry."""
        ...

    def apply_page(self, session: Session, events: list[Event]) -> list[Notice]:
        """Derive the rows of many entries, in order (a page, a rebuild, a fold)."""
        ...

    def settle_modes(self, session: Session, events: list[Event]) -> None:
        """Events this till applied before the journal had them (from its outbox) take
        the mode the journal recorded for them."""
        ...

    def derived_tables_loaded(self, conn: Connection) -> None:
        """The derived tables were replaced in bulk with their triggers off (a snapshot
        install): do once what those triggers would have done."""
        ...
