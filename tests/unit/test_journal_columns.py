"""One definition of the journal's columns and of the rows an event makes
(`app/services/journal/events.py`): it matches the tables, and every form of a row
(ORM row, insert values, wire dict, the JSON served from stored rows) agrees with it."""

from __future__ import annotations

import json
from types import SimpleNamespace

from app.models import JournalEntry, OutboxEvent
from app.services.journal.events import (
    ENTRY_KEYS,
    JOURNAL_COLUMNS,
    OUTBOX_COLUMNS,
    Event,
    entries_json,
    journal_entry_dict,
    journal_values,
    outbox_values,
)


def event(**changes) -> Event:
    fields = dict(event_id="e1", origin_device=2, origin_seq=7, hlc="000001800000000.00001.00002",
                  type="sale.create", payload={"sale_id": "s1", "note": "{\"a\": [1, 2]}"},
                  user="cleo", base_version=None, mode="offline")
    fields.update(changes)
    return Event(**fields)


def test_the_column_lists_are_the_tables_columns_in_table_order():
    assert JOURNAL_COLUMNS == tuple(c.name for c in JournalEntry.__table__.columns)
    assert OUTBOX_COLUMNS == tuple(c.name for c in OutboxEvent.__table__.columns)


def test_rows_made_from_an_event_hold_every_column_and_give_the_event_back():
    ev = event()
    values = journal_values(ev, 5, (3, 1), 1234)
    assert tuple(values) == JOURNAL_COLUMNS
    assert tuple(outbox_values(ev, applied=True, created_ms=9)) == OUTBOX_COLUMNS
    row = SimpleNamespace(**values)
    assert Event.from_row(row) == ev
    assert Event.from_row(SimpleNamespace(**outbox_values(ev, applied=False, created_ms=9))) == ev
    wire = journal_entry_dict(row)
    assert tuple(wire) == ENTRY_KEYS and wire["epoch"] == [3, 1]
    assert Event.from_dict(wire) == ev


def test_the_json_served_from_stored_rows_is_the_wire_dict():
    evs = [event(), event(event_id="e2", user=None, base_version=4, mode="online",
                          payload={"s": "quote \" and unicode \u00e9"})]
    rows = [journal_values(ev, n, [2, 1], 1000 + n) for n, ev in enumerate(evs, start=1)]
    stored = [tuple(json.dumps(r[c]) if c == "payload" else r[c] for c in JOURNAL_COLUMNS)
              for r in rows]
    served = json.loads(f"[{entries_json(stored)}]")
    assert served == [journal_entry_dict(SimpleNamespace(**r)) for r in rows]
    assert [list(e) for e in served] == [list(ENTRY_KEYS)] * 2
