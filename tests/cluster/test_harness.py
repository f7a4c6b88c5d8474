"""The harness's own waits must not pass on a state that is not there (no processes: the
tills' SQLite files are made by hand, the interleaving is forced)."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing

from tests.cluster import harness
from tests.cluster.harness import Cluster


def _db(path: str, journal: list[str], outbox: list[str]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")  # as the tills run it
        conn.execute("CREATE TABLE journal (gseq INTEGER PRIMARY KEY, event_id TEXT)")
        conn.execute("CREATE TABLE outbox (event_id TEXT)")
        conn.executemany("INSERT INTO journal VALUES (?, ?)", list(enumerate(journal, 1)))
        conn.executemany("INSERT INTO outbox VALUES (?)", [(e,) for e in outbox])
        conn.commit()


def test_wait_converged_never_passes_on_a_journal_read_before_an_outbox_drained(tmp_path,
                                                                               monkeypatch):
    """Till 1 (the master) holds an offline sale in its outbox; its lease comes back and
    it journals the sale (one transaction: out of the outbox, into the journal) and
    pushes it to till 2. If that commit lands between the harness reading till 1's
    journal and reading its outbox, the old wait_converged saw equal journals without
    the sale and empty outboxes, and returned: the sale was in neither, and a check of
    till 2's journal right after found an acknowledged sale missing (the flake of
    test_regression_paused_master_sequences_after_wake). Forced here: the drain
    commits when till 1's outbox is first read."""
    cluster = Cluster(2, str(tmp_path))
    one, two = cluster[1], cluster[2]
    _db(one.db_path, ["e1", "e2"], ["sale"])
    _db(two.db_path, ["e1", "e2"], [])
    real_connect = sqlite3.connect
    drained: list[bool] = []

    def drain_and_push() -> None:
        with closing(real_connect(one.db_path)) as conn:
            conn.execute("DELETE FROM outbox WHERE event_id = 'sale'")
            conn.execute("INSERT INTO journal VALUES (3, 'sale')")
            conn.commit()
        with closing(real_connect(two.db_path)) as conn:
            conn.execute("INSERT INTO journal VALUES (3, 'sale')")
            conn.commit()
        drained.append(True)

    def connect(path, *args, **kwargs):
        conn = real_connect(path, *args, **kwargs)
        if path == one.db_path:
            def on_statement(sql: str) -> None:
                if "outbox" in sql and not drained:
                    drain_and_push()  # commits before this statement runs
            conn.set_trace_callback(on_statement)
        return conn

    monkeypatch.setattr(harness.sqlite3, "connect", connect)
    journal = cluster.wait_converged(timeout=5, nodes=[one, two])
    assert drained
    assert journal == [(1, "e1"), (2, "e2"), (3, "sale")], (
        f"wait_converged returned {journal}: a journal read before the drain, with the "
        "sale in no journal and no outbox")
    assert one.journal() == two.journal() == journal
