"""Receipt numbers and repeated payments at one till, without a till-wide sale lock.

Receipt numbers are gapless per device. A number is handed out in memory (`take`, a
lock held for a few microseconds), made durable before the sale leaves the till for a
master (`reserve`: node_state `receipt_seq_reserved`, so a till that dies after the
master journaled its sale never gives the number out again), and given back when the
sale is refused (`give_back`). At a master the sale's own row, journaled and applied in
the sequencing transaction, is what makes the number durable: no reservation commit.

So no lock is held across the master round trip: 4 cashiers at a follower wait for the
master at the same time. A refused number that is not the newest one handed out (a later
sale took the next number meanwhile) becomes free and is the next one taken, so numbers
stay gapless (only then, with concurrent sales and a refusal, is a receipt number used
after a higher one). Free numbers live in memory: a till killed with one pending leaves
that gap, as a till killed between its reservation and the master's answer always could.

Two requests with the same `client_ref` (a double tap, a retry) are serialized
(`one_request_per_ref`): the second one sees the first one's sale.
"""

from __future__ import annotations

import bisect
import threading
import weakref
from contextlib import contextmanager
from typing import Any, Iterator

from app.models.db import Database

RECEIPT_KEY = "receipt_seq_reserved"

_RESERVED_SQL = "SELECT value FROM node_state WHERE key = ?"
# Only ever up: two reservations racing to commit leave the higher one.
_RESERVE_SQL = ("INSERT INTO node_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                "SET value = excluded.value "
                "WHERE CAST(node_state.value AS INTEGER) < CAST(excluded.value AS INTEGER)")
_RELEASE_SQL = "UPDATE node_state SET value = ? WHERE key = ? AND CAST(value AS INTEGER) > ?"


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


class ReceiptNumbers:
    """The receipt numbers of one till (one per Database, see `till_sales`)."""

    def __init__(self, db: Database):
        self._db = db
        self._lock = threading.Lock()
        self._top: int | None = None  # the highest number handed out, on file or reserved
        self._free: list[int] = []  # given back below the top, sorted

    def take(self, on_file: int) -> int:
        """The next number; `on_file`: the highest receipt_seq of this till's sales on file
        (read by the caller: a till that got its old sales back from the journal, after
        losing its disk, continues after them)."""
        with self._lock:
            if self._top is None:
                with self._db.read() as session:
                    self._top = _as_int(session.connection().exec_driver_sql(
                        _RESERVED_SQL, (RECEIPT_KEY,)).scalar())
            if on_file > self._top:
                self._top = on_file
                self._free = [n for n in self._free if n > on_file]
            if self._free:
                return self._free.pop(0)
            self._top += 1
            return self._top

    def reserve(self, number: int) -> None:
        """Make `number` durable before the sale leaves this till (one commit)."""
        with self._db.write() as session:
            session.connection().exec_driver_sql(_RESERVE_SQL, (RECEIPT_KEY, str(number)))

    def give_back(self, number: int, *, reserved: bool) -> None:
        """The sale with `number` was journaled nowhere: the number is free again.
        `reserved`: it was made durable (`reserve`); the reservation goes back down with
        the top, in the same transaction as the change in memory (a concurrent `take`
        can never see a top the reservation is below)."""
        if not reserved:
            self._release(number)
            return
        with self._db.write() as session:
            top = self._release(number)
            session.connection().exec_driver_sql(_RELEASE_SQL, (str(top), RECEIPT_KEY, top))

    def _release(self, number: int) -> int:
        with self._lock:
            top = self._top or 0
            if number == top:
                top -= 1
                while self._free and self._free[-1] == top:  # the free ones just below
                    self._free.pop()
                    top -= 1
                self._top = top
            elif number < top and number not in self._free:
                bisect.insort(self._free, number)
            return top


class _RefLocks:
    """One lock per client_ref in use, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, list[Any]] = {}  # ref -> [lock, users]

    @contextmanager
    def hold(self, ref: str | None) -> Iterator[None]:
        if not ref:
            yield
            return
        with self._guard:
            entry = self._locks.setdefault(ref, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if not entry[1]:
                    del self._locks[ref]


class TillSales:
    """What one till keeps in memory about its sales in progress."""

    def __init__(self, db: Database):
        self.receipts = ReceiptNumbers(db)
        self.refs = _RefLocks()

    def one_request_per_ref(self, client_ref: str | None) -> Any:
        return self.refs.hold(client_ref)


_tills: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Database -> TillSales
_tills_lock = threading.Lock()


def till_sales(db: Database) -> TillSales:
    with _tills_lock:
        state = _tills.get(db)
        if state is None:
            state = _tills[db] = TillSales(db)
        return state
