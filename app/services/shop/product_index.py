"""An in-memory name index for product search: any substring, exact counts, ~ms at 100k.

A substring search cannot use a B-tree index, and SQLite needs ~25 ms per 100,000 names
to LIKE-scan them (twice: the total and the page), well above the 30 ms p99 the till's
search needs (scripts/bench_checkout.py). So the active products' lower-cased names are
kept in name order in one newline-separated string; `str.find`/`str.split` scan that in
C in ~1-3 ms:

* total = the number of distinct lines holding the term (the pieces of
  `blob.split(term)` between two occurrences tell whether they were on one line);
* page = walk the occurrences from the start with `find`, one hit per line.

Only the skus come from here; the rows (price, stock, ...) are read from the database
for the page, so they are never stale. The index is rebuilt when the catalog
generation changes: triggers on `products` (insert, delete, and updates of sku,
name_lower or active) bump `node_state['catalog_gen']` in the same transaction as the
change, whoever makes it (appliers, journal replays, rebuilds, bulk loads). A database
without those triggers is never served from here.
"""

from __future__ import annotations

import threading
import weakref
from bisect import bisect_right
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.models import NodeState, Product
from app.models.catalog import CATALOG_GEN_KEY, CATALOG_GEN_TRIGGERS

_lock = threading.Lock()
_indexes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Database -> NameIndex
_has_triggers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Database -> bool


@dataclass
class NameIndex:
    generation: int
    skus: list[str]
    starts: list[int]  # offset of each line in blob
    blob: str

    @classmethod
    def build(cls, generation: int, rows: list[tuple[str, str]]) -> NameIndex:
        """rows: (name_lower, sku) of the active products, in (name_lower, sku) order."""
        names = [name.replace("\n", " ") for name, _ in rows]
        starts, pos = [], 0
        for name in names:
            starts.append(pos)
            pos += len(name) + 1
        return cls(generation, [sku for _, sku in rows], starts, "\n".join(names))

    def count(self, term: str) -> int:
        pieces = self.blob.split(term)
        if len(pieces) == 1:
            return 0
        # Two neighbouring occurrences lie on different lines iff a newline separates them.
        return 1 + sum(1 for piece in pieces[1:-1] if "\n" in piece)

    def page(self, term: str, offset: int, limit: int) -> list[str]:
        out: list[str] = []
        pos, skip, end = 0, offset, len(self.blob)
        while len(out) < limit:
            hit = self.blob.find(term, pos)
            if hit < 0:
                break
            line = bisect_right(self.starts, hit) - 1
            if skip:
                skip -= 1
            else:
                out.append(self.skus[line])
            pos = self.starts[line + 1] if line + 1 < len(self.starts) else end
        return out


def _generation(session: Session) -> int:
    value = session.scalar(select(NodeState.value).where(NodeState.key == CATALOG_GEN_KEY))
    return int(value) if value else 0


def _triggers_present(session: Session, db: object) -> bool:
    known = _has_triggers.get(db)
    if known is None:
        names = {name for (name,) in session.execute(
            text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))}
        known = all(name in names for name, _ in CATALOG_GEN_TRIGGERS)
        _has_triggers[db] = known
    return known


def search(session: Session, db: object, term: str, offset: int, limit: int
           ) -> tuple[list[str], int] | None:
    """(skus of the page in name order, total) of active products whose name holds `term`.

    `term` is already lower-cased. None: this database cannot be served from memory
    (no generation triggers) or the term cannot be (it holds a newline); use SQL.
    """
    if not term or "\n" in term or not _triggers_present(session, db):
        return None
    generation = _generation(session)
    index = _indexes.get(db)
    if index is None or index.generation != generation:
        with _lock:
            index = _indexes.get(db)
            if index is None or index.generation != generation:
                # Same read transaction as the generation: a consistent snapshot.
                rows = session.execute(select(Product.name_lower, Product.sku)
                                       .where(Product.active.is_(True))
                                       .order_by(Product.name_lower, Product.sku)).all()
                index = NameIndex.build(generation, [(n, s) for n, s in rows])
                _indexes[db] = index
    return index.page(term, offset, limit), index.count(term)
