"""SQLite engine with the pragmas a till needs, and the one write path to the database.

Writes are serialized inside the process by `write_lock` (SQLite has a single writer
anyway) and run in `BEGIN IMMEDIATE` transactions, so a read-then-write never fails
with `database is locked` (PLATFORM-NOTES). `synchronous=FULL`: an acknowledged sale
survives power loss.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from operator import itemgetter
from typing import Any, Callable, Iterator

from sqlalchemy import JSON, Table, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.models.migrate import upgrade_to_head

SCHEMA_VERSION = 5  # the Alembic head, as an integer (revision ids are 0001, 0002, ...)


def make_engine(path: str) -> Engine:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    engine = create_engine(f"sqlite:///{path}", pool_size=8, max_overflow=16)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" hook emit BEGIN
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=5000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        immediate = conn.get_execution_options().get("immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def driver(session: Session) -> sqlite3.Connection:
    """The sqlite3 connection under `session`'s transaction: for the statements of the
    sale path (plain SQL, run thousands of times a day), which skip SQLAlchemy's
    execution machinery (about 13 us a statement on this machine, more than most of
    these statements cost SQLite). They run in the session's transaction; SQLAlchemy's
    statement events do not see them (count statements with sqlite3's trace callback).
    Kept in `session.info` until the transaction ends (`session.connection()` itself
    costs about 10 us)."""
    conn = session.info.get(_DRIVER)
    if conn is None:
        conn = session.info[_DRIVER] = session.connection().connection.driver_connection
    return conn


_DRIVER = "sqlite3_connection"


def _forget_driver(session: Session, _transaction: Any) -> None:
    session.info.pop(_DRIVER, None)


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT many rows (all with the keys of the first) through the driver's executemany.

    For pages of thousands of rows (catch-up, bootstrap, a master's batch): SQLAlchemy's
    Core INSERT builds bound parameters row by row in Python, which costs more than the
    insert itself. JSON columns are encoded as SQLAlchemy's JSON type encodes them.
    """
    if not rows:
        return
    columns = list(rows[0])
    names = ", ".join(f'"{c}"' for c in columns)
    sql = f"INSERT INTO {table.name} ({names}) VALUES ({', '.join('?' * len(columns))})"
    pick = itemgetter(*columns) if len(columns) > 1 else (lambda row: (row[columns[0]],))
    values = [pick(row) for row in rows]
    encoded = [k for k, c in enumerate(columns) if isinstance(table.c[c].type, JSON)]
    if encoded:
        values = [_encode(list(v), encoded) for v in values]
    driver(session).executemany(sql, values)


def _encode(values: list[Any], positions: list[int]) -> tuple[Any, ...]:
    for k in positions:
        values[k] = json.dumps(values[k])
    return tuple(values)


def set_column(session: Session, table: Table, column: str, key: str,
               values: dict[Any, Any]) -> None:
    """UPDATE table SET column = value WHERE key = k, for every k -> value (executemany)."""
    if values:
        driver(session).executemany(f'UPDATE {table.name} SET "{column}" = ? WHERE "{key}" = ?',
                                    [(value, k) for k, value in values.items()])


class Database:
    def __init__(self, path: str):
        self.path = path
        self.engine = make_engine(path)
        self._write_engine = self.engine.execution_options(immediate=True)
        self._reader = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._writer = sessionmaker(bind=self._write_engine, expire_on_commit=False)
        self.write_lock = threading.RLock()
        self._commit_callbacks: list[Callable[[], None]] = []
        event.listen(self._writer, "after_commit", lambda _session: self._committed())
        for maker in (self._reader, self._writer):
            event.listen(maker, "after_transaction_end", _forget_driver)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reader() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One serialized write transaction: commit on success, roll back on error."""
        with self.write_lock:
            with self._writer() as session:
                with session.begin():
                    yield session

    @contextmanager
    def write_attached(self, path: str, alias: str) -> Iterator[Session]:
        """A write transaction, as `write`, that can also read the SQLite file at `path`
        as schema `alias` (`INSERT INTO main.t SELECT ... FROM alias.t`: bulk copies that
        never pass through Python). SQLite attaches and detaches only outside a
        transaction, so this holds one pooled connection for the whole time."""
        with self.write_lock, self._write_engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            raw.execute(f"ATTACH DATABASE ? AS {alias}", (path,))
            try:
                with Session(bind=conn, expire_on_commit=False) as session, session.begin():
                    yield session
            finally:
                raw.execute(f"DETACH DATABASE {alias}")
        self._committed()

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` after every committed write transaction (cache invalidation)."""
        self._commit_callbacks.append(callback)

    def _committed(self) -> None:
        for callback in self._commit_callbacks:
            callback()

    def migrate(self) -> int:
        upgrade_to_head(self.engine)
        return SCHEMA_VERSION

    def dispose(self) -> None:
        self.engine.dispose()
