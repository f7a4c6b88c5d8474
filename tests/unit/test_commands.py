"""Typed commands: one definition per event type, strict both ways."""

from __future__ import annotations

import pytest

from app.services.journal.events import EVENT_TYPES
from app.services.shop.commands import (
    COMMANDS,
    PayloadError,
    SaleVoid,
    StockReceive,
    UserUpdate,
    parse_payload,
)


def test_every_event_type_has_exactly_one_command():
    assert set(COMMANDS) == set(EVENT_TYPES)
    assert all(cls.TYPE == type_ for type_, cls in COMMANDS.items())


def test_a_payload_reads_back_as_the_command_that_made_it():
    move = StockReceive(sku="A-1", quantity=3, reason="delivery", created_ms=5)
    assert move.payload() == {"sku": "A-1", "quantity": 3, "reason": "delivery",
                              "approver": None, "created_ms": 5}
    assert parse_payload("stock.receive", move.payload()) == move
    void = SaleVoid(refund_id="r", sale_id="s", lines=[], amount_cents=0)
    assert parse_payload("sale.void", void.payload()) == void


def test_a_missing_created_ms_is_left_for_the_journal_to_stamp():
    assert "created_ms" not in StockReceive(sku="A-1", quantity=1).payload()


def test_a_rehash_flag_travels_only_when_set():
    assert "rehash" not in UserUpdate(username="u", changes={"role": "manager"}).payload()
    assert UserUpdate(username="u", changes={}, rehash=True).payload()["rehash"] is True


@pytest.mark.parametrize("type_,payload,why", [
    ("stock.receive", {"sku": "A", "quantity": 1, "colour": "red"}, "unknown fields"),
    ("stock.receive", {"sku": "A"}, "quantity"),
    ("sale.teleport", {}, "unknown event type"),
])
def test_a_payload_that_does_not_fit_its_definition_is_refused(type_, payload, why):
    with pytest.raises(PayloadError, match=why):
        parse_payload(type_, payload)
