"""Demo data: the sample catalog and demo users, entered as ordinary events."""

from __future__ import annotations

import time
from typing import Callable

from sqlalchemy import insert, select

from app.models import JournalEntry, Product, StockMovement, User
from app.services.journal.events import Event, journal_values
from app.services.journal.state_machine import Refused
from app.services.node import Node
from app.services.shop.apply import category_id
from app.services.shop.commands import ProductCreate, UserCreate
from app.services.shop.submit import AuditNote, event_for, submit
from app.services.shop.users import hash_pin
from app.utils.barcode import make_ean13
from app.utils.sample_catalog import SAMPLE_CATALOG

# Managers and admins need 6-digit PINs (Config.strong_pins_for_managers); cashiers 4.
DEMO_USERS = [
    ("admin", "Ada Admin", "admin", "123456"),
    ("manager", "Max Manager", "manager", "234567"),
    ("cashier", "Cleo Cashier", "cashier", "0000"),
]


def wait_ready(node: Node, timeout: float = 30.0) -> bool:
    """Until this node can get edits journaled (it is master, or linked to one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.journal.sequencer.active or node.journal.cluster.master_link() is not None:
            return True
        time.sleep(0.1)
    return False


# Refusals that only say another till seeded the same demo user or product first.
MADE_ELSEWHERE = frozenset({"CONFLICT", "DUPLICATE_USER", "DUPLICATE_SKU", "DUPLICATE_BARCODE"})


def seed_demo(node: Node) -> int:
    """Load the demo users and the sample catalog items this shop does not have yet.

    Safe to run again after an interruption (it completes what is missing) and on
    several tills at once (what another till made first is skipped). Returns how many
    events this till had journaled.
    """
    with node.db.read() as session:
        have_skus = set(session.scalars(select(Product.sku)))
        have_users = {u for (u,) in session.execute(select(User.username))}
    made = 0
    for username, display, role, pin in DEMO_USERS:
        if username in have_users:
            continue
        command = UserCreate(username=username, display_name=display, role=role,
                             pin_hash=hash_pin(node.pepper, pin))
        made += _made_here(lambda c=command, u=username, r=role: submit(
            node, c, "system", offline_ok=False,
            audit=AuditNote("user.created", {"username": u, "role": r, "via": "demo"})))
    events = [event_for(node, ProductCreate(**item), "system")
              for item in SAMPLE_CATALOG if item["sku"] not in have_skus]
    return made + _submit_batch(node, events)


def _made_here(journal: Callable[[], object]) -> int:
    """1 if `journal()` journaled its event, 0 if another till had made the same first."""
    try:
        journal()
    except Refused as exc:
        if exc.code not in MADE_ELSEWHERE:
            raise
        return 0
    return 1


def _submit_batch(node: Node, events: list[Event]) -> int:
    if node.journal.sequencer.active:
        acks = [ack for start in range(0, len(events), 1000)
                for ack in node.journal.sequencer.sequence(events[start:start + 1000])]
        return sum(1 for ack in acks if ack.get("status") == "accepted")
    return sum(_made_here(lambda ev=ev: node.journal.execute(ev, offline_ok=False))
               for ev in events)


def bulk_catalog(node: Node, count: int, *, prefix: str = "BULK", stock: int = 1000,
                 chunk: int = 2000) -> int:
    """A large synthetic catalog for benchmarks (`run --bench-catalog N`); the node must be master.

    Products are journaled as ordinary `product.create` events, but in bulk: one
    transaction per `chunk` events appends their journal entries (next gseqs, this
    master's epoch) together with exactly the rows `apply._product_create` derives from
    them (product, category, the "initial stock" movement) and one audit entry. That is
    the same end state as `Sequencer.sequence` reaches (tests/integration rebuilds the
    derived tables from the journal and compares), at ~100x the speed of one ORM event
    at a time. Followers fetch the entries through the normal gap pull. SKUs that exist
    already are skipped, so running it again adds nothing. Returns the number added.
    """
    categories = ["Bakery", "Dairy", "Drinks", "Snacks", "Household", "Personal care",
                  "Fruit & Veg", "Frozen"]
    added = 0
    for start in range(0, count, chunk):
        items = [{
            "sku": f"{prefix}-{i:06d}", "name": f"Item {i:06d} {categories[i % 8].lower()}",
            "barcode": make_ean13(f"29{i:010d}"), "category": categories[i % 8],
            "price_cents": 99 + (i * 37) % 5000, "tax_rate_bp": 700 if i % 3 else 1900,
            "stock": stock} for i in range(start, min(start + chunk, count))]
        added += _journal_products(node, items)
    return added


def _journal_products(node: Node, items: list[dict]) -> int:
    store = node.journal.store
    with node.db.write() as session:
        if not node.journal.sequencer.active:
            raise RuntimeError("bulk_catalog needs this node to be the sequencing master")
        skus = [item["sku"] for item in items]
        taken = set(session.scalars(select(Product.sku).where(Product.sku.in_(skus))))
        codes = set(session.scalars(select(Product.barcode).where(
            Product.barcode.in_([item["barcode"] for item in items]))))
        items = [item for item in items if item["sku"] not in taken and item["barcode"] not in codes]
        if not items:
            return 0
        category_ids = {name: category_id(session, name) for name in {i["category"] for i in items}}
        last = store.last_gseq(session)
        epoch = store.epoch
        now = node.clock()
        events = [event_for(node, ProductCreate(**item), "system") for item in items]
        session.execute(insert(JournalEntry), [journal_values(ev, last + n, epoch, now)
                                               for n, ev in enumerate(events, start=1)])
        session.execute(insert(Product), [{
            "sku": p["sku"], "name": p["name"], "name_lower": p["name"].lower(),
            "barcode": p["barcode"], "category_id": category_ids[p["category"]],
            "price_cents": p["price_cents"], "tax_rate_bp": p["tax_rate_bp"], "active": True,
            "low_stock_threshold": 5, "version": 1, "stock": p["stock"], "updated_by": ev.user,
            "updated_event": ev.event_id,
        } for ev, p in ((ev, ev.payload) for ev in events)])
        session.execute(insert(StockMovement), [{
            "event_id": ev.event_id, "sku": ev.payload["sku"], "delta": ev.payload["stock"],
            "kind": "receive", "reason": "initial stock", "device_id": ev.origin_device,
            "user": ev.user, "created_ms": ev.payload["created_ms"],
        } for ev in events if ev.payload["stock"]])
        store.save_hlc(session)
        node.audit.record(session, "catalog.bulk_loaded", "system", {
            "count": len(events), "first_gseq": last + 1, "last_gseq": last + len(events),
            "first_sku": events[0].payload["sku"], "last_sku": events[-1].payload["sku"]})
    return len(events)
