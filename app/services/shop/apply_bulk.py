"""Many journal events at once: catch-up pages, a new till's bootstrap, rebuilds.

`apply_many` leaves the derived tables exactly as `apply_event` would, event by event
(tests/integration/test_apply_bulk.py compares the two), but a run of plain inserts —
sales, product creates, stock receipts and adjustments — costs one multi-row INSERT per
table and one UPDATE per touched product instead of about ten ORM statements per event.
Every other event type, and any event that needs a decision (a receipt number or
client_ref already taken, a product this node never saw, a new category), goes through
`apply_event`, in journal order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Category, ConflictRecord, Payment, Product, Sale, SaleLine, StockMovement
from app.models.db import driver, insert_rows, set_column
from app.services.journal.events import Event
from app.services.shop.apply import (
    Notice,
    apply_event,
    conflict_notice,
    conflict_row,
    movement_row,
    sale_rows,
    stock_notices,
)
from app.utils.chunks import IN_CHUNK, chunks

BULK_TYPES = frozenset({"sale.create", "product.create", "stock.receive", "stock.adjust",
                        "conflict.record"})
# A catch-up page can hold thousands of sales: the browsers need the final state, not
# every step (stock_changed/critical_event: last per product; beyond this many sales
# or products, one notice stands for the rest).
NOTICE_CAP = 100


def apply_many(session: Session, events: list[Event]) -> list[Notice]:
    """Apply events in order; runs of plain inserts go through `_BulkRun`."""
    notices: list[Notice] = []
    i = 0
    while i < len(events):
        if events[i].type in BULK_TYPES:
            done, got = _BulkRun(session).run(events[i:])
            notices += got
            i += done
            if done:
                continue
        notices += apply_event(session, events[i])  # the event a run stopped at
        i += 1
    return coalesce(notices)


def coalesce(notices: list[Notice]) -> list[Notice]:
    """Final stock per product, and a bounded number of per-sale/per-product notices."""
    last_stock: dict[str, Notice] = {}
    last_critical: dict[str, Notice] = {}
    kept: list[Notice] = []
    per_name: dict[str, int] = {}
    overflow: dict[str, Notice] = {}
    kept_users: set[str] = set()
    for name, data in notices:
        if name == "stock_changed":
            last_stock[data["sku"]] = (name, data)
        elif name == "critical_event":
            last_critical[data["sku"]] = (name, data)
        elif name == "user_changed":  # once per user a page (a catch-up of failed PINs)
            if data["username"] not in kept_users:
                kept_users.add(data["username"])
                kept.append((name, data))
        elif name in ("sale_created", "product_changed"):
            per_name[name] = per_name.get(name, 0) + 1
            if per_name[name] <= NOTICE_CAP:
                kept.append((name, data))
            else:
                overflow[name] = (name, data) if name == "sale_created" else ("catalog_reloaded", {})
        else:
            kept.append((name, data))
    # A sold-out alert only for products still at zero or below once the page is applied.
    critical = [n for sku, n in last_critical.items() if last_stock.get(sku, n)[1]["stock"] <= 0]
    return kept + list(overflow.values()) + list(last_stock.values()) + critical


@dataclass
class RunKeys:
    """What a run of sales, product creates, stock movements and conflict records
    touches: read once per run (`_BulkRun`, `admission.admit_run`)."""

    skus: set[str] = field(default_factory=set)
    sale_ids: list[str] = field(default_factory=list)
    receipts: list[str] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    conflict_ids: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, events: Iterable[Event]) -> "RunKeys":
        keys = cls()
        for ev in events:
            p = ev.payload
            if ev.type == "conflict.record":
                keys.conflict_ids.append(p["conflict_id"])
            elif ev.type == "sale.create":
                keys.skus.update(line["sku"] for line in p["lines"])
                keys.sale_ids.append(p["sale_id"])
                keys.receipts.append(p["receipt_no"])
                if p.get("client_ref"):
                    keys.refs.append(p["client_ref"])
            else:
                keys.skus.add(p["sku"])
        return keys


@dataclass
class SalesOnFile:
    """The sale ids, receipt numbers and client_refs (-> sale id) of a run that a sale
    already holds, kept up to date as the run adds its own."""

    sale_ids: set[str]
    receipts: set[str]
    refs: dict[str, str]

    @classmethod
    def load(cls, session: Session, keys: RunKeys) -> "SalesOnFile":
        if max(len(keys.sale_ids), len(keys.receipts), len(keys.refs)) <= IN_CHUNK:
            return cls._load_at_once(session, keys)
        refs: dict[str, str] = {}
        for c in chunks(keys.refs):
            refs.update(session.execute(select(Sale.client_ref, Sale.sale_id)
                                        .where(Sale.client_ref.in_(c))).all())
        return cls(
            sale_ids={x for c in chunks(keys.sale_ids)
                      for x in session.scalars(select(Sale.sale_id).where(Sale.sale_id.in_(c)))},
            receipts={x for c in chunks(keys.receipts) for x in session.scalars(
                select(Sale.receipt_no).where(Sale.receipt_no.in_(c)))},
            refs=refs)

    @classmethod
    def _load_at_once(cls, session: Session, keys: RunKeys) -> "SalesOnFile":
        """`load` in one statement (a master's batch, a sale: a few sales at most)."""
        found = cls(set(), set(), {})
        if not keys.sale_ids and not keys.refs:
            return found
        sale_ids, receipts, refs = set(keys.sale_ids), set(keys.receipts), set(keys.refs)
        for sale_id, receipt_no, ref in driver(session).execute(
                f"SELECT sale_id, receipt_no, client_ref FROM sales WHERE sale_id IN "  # noqa: S608
                f"({_marks(len(sale_ids))}) OR receipt_no IN ({_marks(len(receipts))}) "
                f"OR client_ref IN ({_marks(len(refs))})", (*sale_ids, *receipts, *refs)):
            if sale_id in sale_ids:
                found.sale_ids.add(sale_id)
            if receipt_no in receipts:
                found.receipts.add(receipt_no)
            if ref is not None and ref in refs:
                found.refs[ref] = sale_id
        return found

    def copy(self) -> "SalesOnFile":
        return SalesOnFile(set(self.sale_ids), set(self.receipts), dict(self.refs))

    def add(self, payload: dict) -> None:
        self.sale_ids.add(payload["sale_id"])
        self.receipts.add(payload["receipt_no"])
        if payload.get("client_ref"):
            self.refs[payload["client_ref"]] = payload["sale_id"]


@dataclass
class RunReads:
    """What the master's admission of a run (`admission.admit_run`) read: its event ids,
    the products it touches (sku -> stock, name, updated_event) and the sales on file,
    as they were before the run. Kept in the session for the applier that follows in the
    same transaction (`_BulkRun`), which would read the very same rows again: nothing
    writes a derived table in between (the journal only adds its rows and the audit
    entry). Taken once, and only for events of that admission."""

    KEY: ClassVar[str] = "admitted_run_reads"

    event_ids: frozenset[str]
    products: dict[str, tuple[int, str, str | None]]
    on_file: SalesOnFile

    @classmethod
    def taken_for(cls, session: Session, run: list[Event], keys: RunKeys) -> "RunReads | None":
        reads = session.info.pop(cls.KEY, None)
        if reads is None or not keys.skus <= reads.products.keys() or any(
                ev.event_id not in reads.event_ids for ev in run if ev.type != "conflict.record"):
            return None
        return reads


def _marks(n: int) -> str:
    """The placeholders of an `IN (...)` list of n values."""
    return ", ".join("?" * n)


class _BulkRun:
    """One run of bulk-able events: read what they touch once, write it all at the end."""

    def __init__(self, session: Session):
        self.session = session
        self.stock: dict[str, int] = {}
        self.names: dict[str, str] = {}
        self.changed: set[str] = set()
        self.placeholders: set[str] = set()
        self.categories: dict[str, int] = {}
        self.sales: list[dict] = []
        self.lines: list[dict] = []
        self.payments: list[dict] = []
        self.movements: list[dict] = []
        self.products: list[dict] = []
        self.conflicts: list[dict] = []
        self.notices: list[Notice] = []

    def run(self, events: list[Event]) -> tuple[int, list[Notice]]:
        """Apply the longest bulk-able prefix of `events`; return (how many, notices)."""
        run = []
        for ev in events:
            if ev.type not in BULK_TYPES:
                break
            run.append(ev)
        self.session.flush()  # pending ORM changes first: we read the tables directly
        self._prefetch(run)
        done = 0
        for ev in run:
            if not self._take(ev):
                break
            done += 1
        self._write()
        return done, self.notices

    # ------------------------------------------------------------------ reading
    def _prefetch(self, run: list[Event]) -> None:
        s = self.session
        keys = RunKeys.of(run)
        reads = RunReads.taken_for(s, run, keys)
        if reads is not None:  # what admission read for these very events, just before
            products = reads.products.items()
            self.on_file = reads.on_file
        else:
            conn = driver(s)  # plain SQL: every sale at a master comes here
            products = [(sku, (stock, name, made_by)) for chunk in chunks(keys.skus)
                        for sku, stock, name, made_by in conn.execute(
                            "SELECT sku, stock, name, updated_event FROM products "  # noqa: S608
                            f"WHERE sku IN ({_marks(len(chunk))})", chunk)]
            self.on_file = SalesOnFile.load(s, keys)
        for sku, (stock, name, made_by) in products:
            self.stock[sku], self.names[sku] = stock, name
            if made_by is None:  # see apply.is_placeholder
                self.placeholders.add(sku)
        self.conflict_ids = {x for c in chunks(keys.conflict_ids) for x in s.scalars(
            select(ConflictRecord.conflict_id).where(ConflictRecord.conflict_id.in_(c)))}
        if any(ev.type == "product.create" for ev in run):
            self.categories = dict(s.execute(select(Category.name, Category.id)).all())

    # ------------------------------------------------------------------ deciding
    def _take(self, ev: Event) -> bool:
        """Queue the rows of one event; False if it needs `apply_event` instead."""
        p = ev.payload
        if ev.type == "sale.create":
            return self._sale(ev, p)
        if ev.type == "product.create":
            return self._product(ev, p)
        if ev.type == "conflict.record":
            return self._conflict(p)
        if p["sku"] not in self.stock:
            return False  # apply_event keeps the movement on a placeholder product
        kind = "receive" if ev.type == "stock.receive" else "adjust"
        self._move(ev, [(p["sku"], int(p["quantity"]))], kind, p.get("reason"))
        return True

    def _sale(self, ev: Event, p: dict) -> bool:
        if p["sale_id"] in self.on_file.sale_ids:
            return True  # applied already: nothing to do, as in apply._sale_create
        ref = p.get("client_ref")
        if p["receipt_no"] in self.on_file.receipts or (ref and ref in self.on_file.refs) \
                or any(line["sku"] not in self.stock for line in p["lines"]):
            return False
        self.on_file.add(p)
        sale, lines, payments = sale_rows(ev, p["receipt_no"], ref)
        self.sales.append(sale)
        self.lines += lines
        self.payments += payments
        self._move(ev, [(line["sku"], -int(line["quantity"])) for line in p["lines"]], "sale")
        self.notices.append(("sale_created", {"sale_id": p["sale_id"], "receipt_no": p["receipt_no"],
                                              "device_id": p["device_id"],
                                              "total_cents": p["total_cents"]}))
        return True

    def _product(self, ev: Event, p: dict) -> bool:
        if p["sku"] in self.placeholders:
            return False  # apply_event fills the placeholder in
        if p["sku"] in self.stock:
            return True  # first create wins, as in apply._product_create
        category = p.get("category")
        if category and category not in self.categories:
            return False  # apply_event creates the category
        self.products.append({
            "sku": p["sku"], "name": p["name"], "name_lower": p["name"].lower(),
            "barcode": p.get("barcode"), "category_id": self.categories.get(category) if category else None,
            "price_cents": p["price_cents"], "tax_rate_bp": p.get("tax_rate_bp", 0),
            "active": p.get("active", True), "low_stock_threshold": p.get("low_stock_threshold", 5),
            "version": 1, "stock": 0, "updated_by": ev.user, "updated_event": ev.event_id,
        })
        self.stock[p["sku"]], self.names[p["sku"]] = 0, p["name"]
        self.notices.append(("product_changed", {"sku": p["sku"]}))
        if p.get("stock"):
            self._move(ev, [(p["sku"], int(p["stock"]))], "receive", "initial stock")
        return True

    def _conflict(self, p: dict) -> bool:
        """As apply._conflict_record: one record per conflict id."""
        if p["conflict_id"] not in self.conflict_ids:
            self.conflict_ids.add(p["conflict_id"])
            self.conflicts.append(conflict_row(p))
            self.notices.append(conflict_notice(p))
        return True

    def _move(self, ev: Event, moves: list[tuple[str, int]], kind: str,
              reason: str | None = None) -> None:
        """As apply.move_stock_many: a movement row per move, the product's sum in step."""
        for sku, delta in moves:
            self.movements.append(movement_row(ev, sku, delta, kind, reason))
            self.stock[sku] += delta
            self.changed.add(sku)
            self.notices += stock_notices(sku, self.names[sku], delta, self.stock[sku])

    # ------------------------------------------------------------------ writing
    def _write(self) -> None:
        # Products first: the other tables reference them.
        for model, rows in ((Product, self.products), (Sale, self.sales),
                            (SaleLine, self.lines), (Payment, self.payments),
                            (StockMovement, self.movements), (ConflictRecord, self.conflicts)):
            insert_rows(self.session, model.__table__, rows)
        set_column(self.session, Product.__table__, "stock", "sku",
                   {sku: self.stock[sku] for sku in self.changed})
        if self.products or self.sales or self.changed or self.conflicts:
            self.session.expire_all()  # ORM objects loaded earlier must see the new rows
