"""Snapshots: a new, wiped or far-behind till installs the journal and every derived
table as one SQLite file instead of replaying the journal (as a Raft follower takes
InstallSnapshot)."""

from __future__ import annotations

import sqlite3
from contextlib import closing, contextmanager
from typing import Iterable, Iterator

from sqlalchemy.engine import Connection

from app.models import DERIVED_TABLES, JournalEntry
from app.services.journal.derived import DerivedTables
from app.services.journal.state_machine import StateMachine
from app.services.journal.store import JournalStore, same_position
from app.services.journal.subscriptions import Subscriptions

SNAPSHOT_TABLES = ("journal", *DERIVED_TABLES)


class SnapshotUnavailable(Exception):
    """This node cannot give a snapshot right now (see `Snapshots.write`)."""


class Snapshots:
    def __init__(self, store: JournalStore, machine: StateMachine, derived: DerivedTables,
                 subscriptions: Subscriptions):
        self.store = store
        self.machine = machine
        self.derived = derived
        self.subscriptions = subscriptions

    def write(self, path: str) -> dict[str, int]:
        """Copy the journal and every derived table, as of one read transaction, into a
        new SQLite file at `path` (a wiped or new till installs it: `install`).

        SQLite copies the rows itself (CREATE TABLE ... AS SELECT), so a 100,000-product
        shop is a few hundred milliseconds of the master's time instead of a replay.
        """
        with closing(sqlite3.connect(self.store.db.path, isolation_level=None)) as conn:
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("ATTACH DATABASE ? AS snap", (path,))
            conn.execute("PRAGMA snap.journal_mode=OFF")
            conn.execute("PRAGMA snap.synchronous=OFF")
            conn.execute("BEGIN")
            if conn.execute("SELECT count(*) FROM main.outbox WHERE applied").fetchone()[0]:
                # Our derived tables also hold our own unjournaled events: not fold(journal).
                conn.execute("ROLLBACK")
                conn.execute("DETACH DATABASE snap")
                raise SnapshotUnavailable("this node has applied events waiting in its outbox")
            for table in SNAPSHOT_TABLES:
                conn.execute(f"CREATE TABLE snap.{table} AS SELECT * FROM main.{table}")
            last, count = conn.execute("SELECT max(gseq), count(*) FROM main.journal").fetchone()
            conn.execute("COMMIT")
            conn.execute("DETACH DATABASE snap")
        return {"last_gseq": last or 0, "entries": count}

    def install(self, path: str) -> int:
        """Take a master's snapshot (`write`) instead of replaying its journal: the
        entries we lack and all derived tables are copied by SQLite itself, then this
        till's applied outbox (sales not journaled yet) is folded in again, as a rebuild
        does. Only onto a journal the snapshot extends (same entry at our last gseq).
        Returns the gseq installed; 0 when it does not fit (pull pages instead)."""
        store = self.store
        with store.db.write_attached(path, "snap") as session:
            conn = session.connection()
            mine = store.last_gseq(session)
            last, count = conn.exec_driver_sql(
                "SELECT max(gseq), count(*) FROM snap.journal").one()
            if not last or count != last:
                raise ValueError(f"snapshot journal is not gapless: {count} entries up to {last}")
            theirs = conn.exec_driver_sql("SELECT event_id, epoch_number, epoch_master FROM "
                                          "snap.journal WHERE gseq = ?", (mine,)).first()
            if last <= mine or (mine and (theirs is None or not same_position(
                    session.get(JournalEntry, mine),
                    {"event_id": theirs[0], "epoch": [theirs[1], theirs[2]]}))):
                return 0  # nothing new, or our journal diverged: pages sort that out
            with _bulk_load(conn, SNAPSHOT_TABLES):
                for table in DERIVED_TABLES:
                    conn.exec_driver_sql(f"DELETE FROM main.{table}")
                for table in ("journal", *reversed(DERIVED_TABLES)):  # referenced tables first
                    cols = ", ".join(f'"{r[1]}"' for r in conn.exec_driver_sql(
                        f"PRAGMA main.table_info({table})"))
                    only_new = f" WHERE gseq > {int(mine)}" if table == "journal" else ""
                    conn.exec_driver_sql(f"INSERT INTO main.{table} ({cols}) "  # noqa: S608
                                         f"SELECT {cols} FROM snap.{table}{only_new}")
            self.machine.derived_tables_loaded(conn)  # once, for the triggers left out above
            conn.exec_driver_sql("DELETE FROM outbox WHERE event_id IN (SELECT event_id FROM journal)")
            kept = self.derived.fold_outbox(session)
            top = conn.exec_driver_sql("SELECT hlc FROM journal ORDER BY gseq DESC LIMIT 1").scalar()
            store.hlc.update(top)
            store.save_hlc(session)
            store.audit_entry(session, "sync.snapshot_installed", None, {
                "from_gseq": mine, "last_gseq": last, "outbox_kept": kept})
        store.wake_waiters()
        self.subscriptions.publish([("catalog_reloaded", {}), ("outbox_changed", {})])
        return last


@contextmanager
def _bulk_load(conn: Connection, tables: Iterable[str]) -> Iterator[None]:
    """Loading many rows at once: the secondary indexes and triggers of `tables` are
    dropped for the load and created again after it (one sort per index instead of a
    b-tree insert per row), in the same transaction. Unique constraints stay."""
    names = ", ".join(f"'{t}'" for t in tables)
    saved = conn.exec_driver_sql(
        "SELECT type, name, sql FROM main.sqlite_master WHERE type IN ('index', 'trigger') "
        f"AND sql IS NOT NULL AND tbl_name IN ({names})").all()  # noqa: S608 - fixed names
    for kind, name, _sql in saved:
        conn.exec_driver_sql(f"DROP {kind.upper()} main.{name}")
    yield
    for _kind, _name, sql in saved:
        conn.exec_driver_sql(sql)
