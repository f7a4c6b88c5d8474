"""The shop as the state machine the journal drives (`journal.state_machine.StateMachine`):
admission (`admission.py`), the appliers (`apply.py`, `apply_bulk.py`) and the conflict
rules (`conflicts.py`) behind the journal's interface."""

from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.models import Sale
from app.models.catalog import BUMP_CATALOG_GEN
from app.services.journal.events import Event
from app.services.journal.state_machine import Notice, Pending, Refusal, Refused, Verdict
from app.services.shop import admission
from app.services.shop.apply import apply_event
from app.services.shop.apply_bulk import apply_many
from app.services.shop.conflicts import order_offline
from app.utils.chunks import chunks
from app.utils.errors import ApiError


class ShopStateMachine:
    """Stateless: every call works in the session the journal gives it."""

    def order_offline(self, events: Iterable[Pending]) -> list[Pending]:
        return order_offline(events)

    def admit_batch(self, session: Session, events: list[Event]) -> list[Verdict]:
        verdicts = []
        for run in admission.admit_run(session, events):
            ack = {"sale_id": run.sale_id} if run.sale_id is not None else {}
            records = (admission.oversell_records(run.event, run.oversold, run.stock_after)
                       if run.status == "accept" else [])
            verdicts.append(Verdict(run.event, run.status, gseq=run.gseq, ack=ack,
                                    refusal=refusal_of(run.error) if run.error else None,
                                    records=records))
        return verdicts

    def repeated_request(self, session: Session, ev: Event) -> dict[str, Any] | None:
        if ev.type == "sale.create" and ev.payload.get("client_ref"):
            sale = session.scalar(select(Sale).where(Sale.client_ref == ev.payload["client_ref"]))
            if sale is not None and sale.event_id != ev.event_id:
                return {"sale_id": sale.sale_id}
        return None

    def admit(self, session: Session, ev: Event) -> object:
        try:
            return admission.admit(session, ev)
        except ApiError as exc:  # the rules' answer, as the plain value the journal carries
            raise Refused(refusal_of(exc)) from exc

    def records_after(self, session: Session, ev: Event, decision: object) -> list[dict[str, Any]]:
        return admission.after_apply(session, ev, decision)

    def is_lost_edit(self, ev: Event, refusal: Refusal) -> bool:
        return refusal.code == "CONFLICT" and ev.type == "product.update"

    def lost_edit_record(self, session: Session, ev: Event, refusal: Refusal
                         ) -> dict[str, Any] | None:
        return admission.edit_conflict_record(session, ev, refusal)

    def apply(self, session: Session, ev: Event) -> list[Notice]:
        return apply_event(session, ev)

    def apply_page(self, session: Session, events: list[Event]) -> list[Notice]:
        return apply_many(session, events)

    def settle_modes(self, session: Session, events: list[Event]) -> None:
        """Sales applied early from the outbox take the mode the journal recorded for them,
        so every till derives the same rows: one UPDATE per mode and chunk of sale ids."""
        by_mode: dict[str, list[str]] = {}
        for ev in events:
            if ev.type == "sale.create":
                by_mode.setdefault(ev.mode, []).append(ev.payload["sale_id"])
        for mode, sale_ids in by_mode.items():
            for chunk in chunks(sale_ids):
                session.execute(update(Sale).where(Sale.sale_id.in_(chunk), Sale.mode != mode)
                                .values(mode=mode))

    def derived_tables_loaded(self, conn: Connection) -> None:
        conn.exec_driver_sql(BUMP_CATALOG_GEN)  # once, for the trigger the load left out


def refusal_of(exc: ApiError) -> Refusal:
    """What admission refused with, as the journal carries it (its HTTP status stays here:
    the route edge decides it again from the code)."""
    return Refusal(exc.code, exc.message, dict(exc.details) if exc.details is not None else None)
