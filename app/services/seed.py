"""Demo data: the sample catalog and demo users, entered as ordinary events."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from app.models import Product, User
from app.services.node import Node
from app.services.users import hash_pin
from app.utils.sample_catalog import SAMPLE_CATALOG

DEMO_USERS = [
    ("admin", "Ada Admin", "admin", "1234"),
    ("manager", "Max Manager", "manager", "2345"),
    ("cashier", "Cleo Cashier", "cashier", "0000"),
]


def wait_ready(node: Node, timeout: float = 30.0) -> bool:
    """Until this node can get edits journaled (it is master, or linked to one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.ledger.sequencing or node.ledger.master_link is not None:
            return True
        time.sleep(0.1)
    return False


def seed_demo(node: Node) -> int:
    """Load demo users and the sample catalog if this shop has no products yet."""
    with node.db.read() as session:
        have_products = session.scalar(select(func.count()).select_from(Product)) or 0
        have_users = {u for (u,) in session.execute(select(User.username))}
    made = 0
    for username, display, role, pin in DEMO_USERS:
        if username in have_users:
            continue
        ev = node.ledger.new_event("user.create", {"username": username, "display_name": display,
                                                   "role": role, "pin_hash": hash_pin(pin)}, "system")
        ev.extra["audit"] = ("user.created", {"username": username, "role": role, "via": "demo"})
        node.ledger.execute(ev, offline_ok=False)
        made += 1
    if have_products:
        return made
    events = []
    for item in SAMPLE_CATALOG:
        ev = node.ledger.new_event("product.create", dict(item), "system")
        events.append(ev)
    _submit_batch(node, events)
    return made + len(events)


def _submit_batch(node: Node, events: list) -> None:
    if node.ledger.sequencing:
        for start in range(0, len(events), 1000):
            node.ledger.sequence(events[start:start + 1000])
    else:
        for ev in events:
            node.ledger.execute(ev, offline_ok=False)


def bulk_catalog(node: Node, count: int, *, prefix: str = "BULK", stock: int = 1000) -> int:
    """A large synthetic catalog for benchmarks (the node must be master)."""
    from app.utils.barcode import make_ean13

    categories = ["Bakery", "Dairy", "Drinks", "Snacks", "Household", "Personal care",
                  "Fruit & Veg", "Frozen"]
    events = []
    for i in range(count):
        events.append(node.ledger.new_event("product.create", {
            "sku": f"{prefix}-{i:06d}", "name": f"Item {i:06d} {categories[i % 8].lower()}",
            "barcode": make_ean13(f"29{i:010d}"), "category": categories[i % 8],
            "price_cents": 99 + (i * 37) % 5000, "tax_rate_bp": 700 if i % 3 else 1900,
            "stock": stock}, "system"))
    _submit_batch(node, events)
    return count
