"""Refusals travel between tills as plain values (code, message, details); the HTTP
status a client sees is decided from the code at the route edge."""

from __future__ import annotations

import pytest

from app.services.journal.events import Event
from app.services.journal.state_machine import Refusal, Refused
from app.services.journal.write_path import WritePath
from app.utils.errors import Conflict, Locked, NotFound, OutOfStock, ValidationError, status_of_code


def test_a_refusal_goes_over_the_wire_as_code_message_and_details_only():
    refusal = Refusal("OUT_OF_STOCK", "only 0 of A in stock", {"sku": "A"})
    assert refusal.to_wire() == {"code": "OUT_OF_STOCK", "message": "only 0 of A in stock",
                                 "details": {"sku": "A"}}
    assert Refusal("CONFLICT", "stale").to_wire() == {"code": "CONFLICT", "message": "stale"}
    assert Refusal.from_wire(refusal.to_wire()) == refusal


def test_an_older_tills_ack_with_an_http_status_in_it_is_read_without_it():
    old = {"code": "NOT_FOUND", "message": "unknown sale", "status": 404,
           "details": {"sale_id": "s1"}}
    assert Refusal.from_wire(old) == Refusal("NOT_FOUND", "unknown sale", {"sale_id": "s1"})


def test_a_refused_ack_is_raised_as_the_refusal_it_carries():
    ev = Event("e1", 2, 1, "000001800000000.00001.00002", "sale.create", {})
    ack = {"status": "refused", "event_id": "e1", "error": {
        "code": "OUT_OF_STOCK", "message": "none left", "status": 409, "details": {"sku": "A"}}}
    with pytest.raises(Refused) as refused:
        WritePath._outcome_from_ack(ev, ack)
    assert refused.value.refusal == Refusal("OUT_OF_STOCK", "none left", {"sku": "A"})
    assert (refused.value.code, refused.value.message, refused.value.details) == (
        "OUT_OF_STOCK", "none left", {"sku": "A"})


@pytest.mark.parametrize("error", [
    OutOfStock("A", 0, 1), Conflict("stale"), Conflict("dup", code="DUPLICATE_SKU"),
    NotFound("unknown sale"), ValidationError("malformed event"), Locked(3)])
def test_the_status_decided_from_the_code_is_the_one_the_error_had(error):
    assert status_of_code(error.code) == error.status
