"""Ledgers on real SQLite files, wired by hand (no processes, no network), for tests."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from app.models.db import Database
from app.services.audit import AuditLog
from app.services.journal.events import Event
from app.services.journal.ledger import Ledger
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


def ledger_at(directory: Path, device_id: int) -> Ledger:
    db = Database(str(Path(directory) / "lanpos.db"))
    db.migrate()
    clock = Clock()
    return Ledger(db, device_id=device_id, machine=ShopStateMachine(), clock=clock,
                  audit=AuditLog(device_id, clock))


def stock_at(ledger: Ledger, sku: str) -> int | None:
    """A product's derived stock at this ledger's till (None: no such product)."""
    return stock_of(ledger.db, sku)


def make_ledger(tmp_path: Path, device_id: int) -> Ledger:
    return ledger_at(Path(tmp_path) / f"till{device_id}", device_id)


def product_event(ledger: Ledger, sku: str = "A", stock: int = 1) -> Event:
    return ledger.new_event("product.create", {"sku": sku, "name": sku, "price_cents": 100,
                                               "tax_rate_bp": 700, "stock": stock}, "system")


def sale_event(ledger: Ledger, n: int = 1, *, sku: str = "A", qty: int = 1,
               client_ref: str | None = None, sale_id: str | None = None) -> Event:
    """Sale number n at this ledger's till: qty x sku at 1.00."""
    dev = ledger.device_id
    return ledger.new_event("sale.create", {
        "sale_id": sale_id or f"s{dev}-{n}", "receipt_no": f"T{dev}-{n:06d}",
        "receipt_seq": n, "device_id": dev, "client_ref": client_ref, "cashier": "c",
        "lines": [{"sku": sku, "name": sku, "quantity": qty, "unit_price_cents": 100,
                   "discount_cents": 0, "tax_rate_bp": 700, "total_cents": 100 * qty}],
        "subtotal_cents": 100 * qty, "discount_cents": 0, "total_cents": 100 * qty,
        "tax_cents": 7, "tax_by_rate": {}, "payments": [{"method": "card", "amount_cents": 100 * qty}],
        "paid_cents": 100 * qty, "change_cents": 0}, "c")


class LedgerPeer:
    """What `HttpPeer.get` returns for /api/sync/changes and /ids, from a ledger in this
    process (the routes call the same functions); counts the entries it served."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.address = f"ledger-{ledger.device_id}"
        self.served = 0

    def get(self, path: str) -> dict:
        url = urlparse(path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/api/sync/changes":
            page = json.loads(changes_json(self.ledger, int(q["since"]), int(q["limit"])))
            self.served += len(page["entries"])
            return page
        if url.path == "/api/sync/ids":
            return {"ids": self.ledger.ids_between(int(q["low"]), int(q["high"]),
                                                   epochs=q.get("epochs") == "1")}
        raise AssertionError(path)
