"""Journals on real SQLite files, wired by hand (no processes, no network), for tests."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from app.models.db import Database
from app.services.audit import AuditLog
from app.services.journal.events import Event
from app.services.journal.journal import Journal
from app.services.journal.replication import changes_json
from app.services.shop.state_machine import ShopStateMachine
from app.services.shop.stock import stock_of


class Clock:
    """A fake wall clock that moves 1 ms on every reading."""

    def __init__(self) -> None:
        self.now = 1_800_000_000_000

    def __call__(self) -> int:
        self.now += 1
        return self.now


def journal_at(directory: Path, device_id: int) -> Journal:
    db = Database(str(Path(directory) / "lanpos.db"))
    db.migrate()
    clock = Clock()
    return Journal(db, device_id=device_id, machine=ShopStateMachine(), clock=clock,
                  audit=AuditLog(device_id, clock))


def stock_at(journal: Journal, sku: str) -> int | None:
    """A product's derived stock at this journal's till (None: no such product)."""
    return stock_of(journal.db, sku)


def make_journal(tmp_path: Path, device_id: int) -> Journal:
    return journal_at(Path(tmp_path) / f"till{device_id}", device_id)


def product_event(journal: Journal, sku: str = "A", stock: int = 1) -> Event:
    return journal.new_event("product.create", {"sku": sku, "name": sku, "price_cents": 100,
                                               "tax_rate_bp": 700, "stock": stock}, "system")


def sale_event(journal: Journal, n: int = 1, *, sku: str = "A", qty: int = 1,
               client_ref: str | None = None, sale_id: str | None = None) -> Event:
    """Sale number n at this journal's till: qty x sku at 1.00."""
    dev = journal.device_id
    return journal.new_event("sale.create", {
        "sale_id": sale_id or f"s{dev}-{n}", "receipt_no": f"T{dev}-{n:06d}",
        "receipt_seq": n, "device_id": dev, "client_ref": client_ref, "cashier": "c",
        "lines": [{"sku": sku, "name": sku, "quantity": qty, "unit_price_cents": 100,
                   "discount_cents": 0, "tax_rate_bp": 700, "total_cents": 100 * qty}],
        "subtotal_cents": 100 * qty, "discount_cents": 0, "total_cents": 100 * qty,
        "tax_cents": 7, "tax_by_rate": {}, "payments": [{"method": "card", "amount_cents": 100 * qty}],
        "paid_cents": 100 * qty, "change_cents": 0}, "c")


class JournalPeer:
    """What `HttpPeer.get` returns for /api/sync/changes and /ids, from a journal in this
    process (the routes call the same functions); counts the entries it served."""

    def __init__(self, journal: Journal):
        self.journal = journal
        self.address = f"journal-{journal.device_id}"
        self.served = 0

    def get(self, path: str) -> dict:
        url = urlparse(path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/api/sync/changes":
            page = json.loads(changes_json(self.journal, int(q["since"]), int(q["limit"])))
            self.served += len(page["entries"])
            return page
        if url.path == "/api/sync/ids":
            return {"ids": self.journal.store.ids_between(int(q["low"]), int(q["high"]),
                                                   epochs=q.get("epochs") == "1")}
        raise AssertionError(path)
