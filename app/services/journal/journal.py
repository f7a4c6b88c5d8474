"""One till's replicated journal, composed of its parts.

* `store`         positions, epoch, HLC, new events, pages (`store.py`)
* `write_path`    `execute`: sequence here, submit to the master, or keep offline
* `sequencer`     the master's side: order batches into the journal (`sequencer.py`)
* `follower`      a follower's side: append a master's entries, drop a losing tail
* `snapshots`     write and install a snapshot of the journal and derived tables
* `outbox`        events made here that the journal has not brought back yet
* `derived`       rebuild the derived tables: fold(journal) + fold(applied outbox)
* `subscriptions` who hears of notices, appended entries, events gone offline

The journal drives the shop only through the `StateMachine` it is given, and reads the
cluster only through the `ClusterView` attached to it (`attach_cluster`).
"""

from __future__ import annotations

from typing import Any, Callable

from app.models.db import Database
from app.services.journal.cluster_view import ClusterView
from app.services.journal.derived import DerivedTables
from app.services.journal.events import AuditNote, Event
from app.services.journal.follower import Follower
from app.services.journal.outbox import Outbox
from app.services.journal.sequencer import Sequencer
from app.services.journal.snapshots import Snapshots
from app.services.journal.state_machine import StateMachine
from app.services.journal.store import AuditSink, JournalStore
from app.services.journal.subscriptions import (
    AppendedListener,
    NoticeListener,
    OfflineListener,
    Subscriptions,
)
from app.services.journal.write_path import Outcome, WritePath
from app.utils.clock import wall_ms


class Journal:
    def __init__(self, db: Database, *, device_id: int, machine: StateMachine,
                 clock: Callable[[], int] = wall_ms, audit: AuditSink | None = None,
                 submit_timeout: float = 0.3):
        self.db = db
        self.device_id = device_id
        # What the journal's entries drive (admission, derived tables): the shop.
        self.machine = machine
        self.subscriptions = Subscriptions()
        self.store = JournalStore(db, device_id=device_id, clock=clock, audit=audit)
        self.derived = DerivedTables(machine)
        self.outbox = Outbox(self.store, self.derived, self.subscriptions)
        self.sequencer = Sequencer(self.store, machine, self.outbox, self.subscriptions)
        self.write_path = WritePath(self.store, machine, self.sequencer, self.subscriptions,
                                    submit_timeout=submit_timeout)
        self.follower = Follower(self.store, machine, self.derived, self.subscriptions)
        self.snapshots = Snapshots(self.store, machine, self.derived, self.subscriptions)

    # ------------------------------------------------------------- the front door
    def new_event(self, type_: str, payload: dict[str, Any], user: str | None,
                  base_version: int | None = None) -> Event:
        """A new event made at this till (its origin_seq and HLC stamp)."""
        return self.store.new_event(type_, payload, user, base_version)

    def execute(self, ev: Event, *, audit: AuditNote | None = None, offline_ok: bool = True,
                before_submit: Callable[[], None] | None = None) -> Outcome:
        """Make one event durable the best way the cluster allows right now, with its
        audit entry (`audit`, `before_submit`: see `WritePath.execute`)."""
        return self.write_path.execute(ev, audit=audit, offline_ok=offline_ok,
                                       before_submit=before_submit)

    def subscribe(self, callback: NoticeListener) -> None:
        """Call `callback(notices)` after every change the journal commits."""
        self.subscriptions.subscribe(callback)

    def subscribe_appended(self, callback: AppendedListener) -> None:
        """Call `callback(entries, prev)` after this master commits new journal entries."""
        self.subscriptions.subscribe_appended(callback)

    def subscribe_offline(self, callback: OfflineListener) -> None:
        """Call `callback()` after an event had to go to the outbox offline here."""
        self.subscriptions.subscribe_offline(callback)

    def attach_cluster(self, view: ClusterView) -> None:
        """The wiring started the cluster runtime: from now on lease, isolation and master
        link are its answers (until then, and without a cluster, `STANDALONE`'s)."""
        self.sequencer.cluster = view
        self.write_path.cluster = view

    @property
    def cluster(self) -> ClusterView:
        """The cluster as this journal sees it (read-only)."""
        return self.write_path.cluster
