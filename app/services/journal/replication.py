"""Pull, push and catch-up between nodes (HTTP side of replication).

Clients apply journal entries strictly in gseq order. A node whose journal diverged
from its source (it holds a tail from an epoch that lost) finds the common prefix,
drops its tail into the outbox (`Follower.truncate_after`) and continues from there; a
wiped or fully diverged till starts from gseq 0 (full export).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import requests

from app.config import Config
from app.models.db import SCHEMA_VERSION
from app.services.journal.events import entries_json
from app.services.journal.journal import Journal
from app.utils.signing import sign_request

log = logging.getLogger(__name__)

PAGE = 2000
SNAPSHOT_MIN = Config.snapshot_min  # see `worth_a_snapshot`


class SyncError(Exception):
    pass


@dataclass
class HttpPeer:
    """Signed HTTP calls to one peer's /api/sync/* routes."""

    address: str  # host:port
    secret: str
    device_id: int  # our own id, part of the signature
    timeout: float = 5.0
    # Keep-alive: sync rounds and audit copies reuse one connection per peer.
    session: requests.Session = field(default_factory=requests.Session, repr=False)

    def _headers(self, path: str) -> dict[str, str]:
        ts = int(time.time() * 1000)
        return {"X-Lanpos-Device": str(self.device_id), "X-Lanpos-Timestamp": str(ts),
                "X-Lanpos-Signature": sign_request(self.secret, "GET", path, b"", ts,
                                                   self.device_id)}

    def get(self, path: str) -> dict[str, Any]:
        try:
            response = self.session.get(f"http://{self.address}{path}", timeout=self.timeout,
                                        headers=self._headers(path))
        except requests.RequestException as exc:
            raise SyncError(f"{self.address}: {exc}") from exc
        if response.status_code != 200:
            raise SyncError(f"{self.address}{path}: HTTP {response.status_code} {response.text[:200]}")
        return response.json()

    def download(self, path: str, dest: str, timeout: float = 120.0) -> dict[str, str]:
        """Signed GET of a file into `dest`; returns the response headers."""
        try:
            with self.session.get(f"http://{self.address}{path}", timeout=timeout, stream=True,
                                  headers=self._headers(path)) as response:
                if response.status_code != 200:
                    raise SyncError(f"{self.address}{path}: HTTP {response.status_code}")
                with open(dest, "wb") as out:
                    for chunk in response.iter_content(1 << 20):
                        out.write(chunk)
                return dict(response.headers)
        except (requests.RequestException, OSError) as exc:
            raise SyncError(f"{self.address}{path}: {exc}") from exc


def common_prefix(journal: Journal, peer: HttpPeer, upto: int) -> int:
    """Highest gseq at which our journal and the peer's hold the same event."""
    hi = upto
    while hi > 0:
        lo = max(hi - PAGE, 0)
        # Positions are compared with their epochs: see store.position_of.
        theirs = {row[0]: tuple(row[1:]) for row in
                  peer.get(f"/api/sync/ids?low={lo}&high={hi}&epochs=1")["ids"]}
        mine = {row[0]: tuple(row[1:]) for row in journal.store.ids_between(lo, hi, epochs=True)}
        for gseq in range(hi, lo, -1):
            if gseq in theirs and gseq in mine and (
                    theirs[gseq] == mine[gseq] if len(theirs[gseq]) == 3
                    else theirs[gseq][0] == mine[gseq][0]):  # a peer without epochs
                return gseq
        hi = lo
    return 0


class Diverged(SyncError):
    """The peer's journal does not extend ours (and we were told to keep ours)."""


def pull(journal: Journal, peer: HttpPeer, *, truncate: bool = True, max_rounds: int = 10_000,
         snapshot_dir: str | None = None, snapshot_min: int = SNAPSHOT_MIN) -> dict[str, int]:
    """Bring our journal up to the peer's: append what is missing, drop a losing tail.

    With truncate=False (a new master catching up before it sequences) a diverged peer
    is not followed: the master keeps its own journal and the peer, once it follows
    the master, drops its tail into its outbox and resubmits it. With `snapshot_dir`, a
    journal far behind the peer's (`worth_a_snapshot`, judged on the first page) installs
    the peer's snapshot instead (`bootstrap`).
    """
    pulled = dropped = 0
    snapshot = (snapshot_dir, snapshot_min) if snapshot_dir is not None else None
    # The next page is fetched while this one is applied (the peer reads and sends it
    # meanwhile); it is used only if this page left our journal where it starts.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pull") as fetcher:
        ahead: tuple[int, Future] | None = None
        try:
            for _ in range(max_rounds):
                ahead, more = _pull_round(journal, peer, truncate, fetcher, ahead, snapshot)
                pulled += more["pulled"]
                dropped += more["dropped"]
                if more["snapshot_tried"]:
                    snapshot = None  # once per pull
                if more["done"]:
                    break
        finally:
            if ahead is not None:
                ahead[1].cancel()
                wait([ahead[1]])
    return {"pulled": pulled, "dropped": dropped}


def _pull_round(journal: Journal, peer: HttpPeer, truncate: bool, fetcher: ThreadPoolExecutor,
                ahead: tuple[int, Future] | None, snapshot: tuple[str, int] | None
                ) -> tuple[tuple[int, Future] | None, dict]:
    """One page of `pull`: returns the page being fetched ahead, and what it did."""
    out = {"pulled": 0, "dropped": 0, "done": False, "snapshot_tried": False}
    since, _epoch = journal.store.position()
    if ahead is not None and ahead[0] == since:
        page = ahead[1].result()
    else:
        if ahead is not None:
            wait([ahead[1]])  # one call on the peer's connection at a time
        page = peer.get(_changes_path(since))
    ahead = None
    anchor = page["anchor"]
    remote_last = int(page["last_gseq"])
    if _leads_elsewhere(journal, since, page):
        if not truncate:
            if remote_last < since and anchor.get("event_id") is None:
                out["done"] = True  # the peer is simply behind us
                return None, out
            raise Diverged(f"{peer.address} diverged from our journal at {since}")
        out["dropped"] = _drop_tail(journal, peer, since, remote_last)
        return None, out
    if not page["entries"]:
        out["done"] = True
        return None, out
    if snapshot is not None and worth_a_snapshot(since, remote_last, snapshot[1]):
        out["snapshot_tried"] = True
        out["pulled"] = bootstrap(journal, peer, snapshot[0])
        if out["pulled"]:
            return None, out
    end = int(page["entries"][-1]["gseq"])
    if end < remote_last:
        ahead = (end, fetcher.submit(peer.get, _changes_path(end)))
    result = journal.follower.receive_entries(page["entries"], prev=anchor)
    if result.diverged:
        if not truncate:
            raise Diverged(f"{peer.address} diverged from our journal")
        if ahead is not None:
            wait([ahead[1]])
        keep = common_prefix(journal, peer, journal.store.position()[0])
        out["dropped"] = journal.follower.truncate_after(keep, f"diverged from device at {peer.address}")
        return ahead, out
    out["pulled"] = result.applied
    out["done"] = result.applied == 0
    return ahead, out


def drop_losing_tail(journal: Journal, peer: HttpPeer) -> int:
    """Drop our journal tail now if the peer's journal does not extend it (a tail from an
    epoch that lost): its events go back to the outbox. Returns the entries dropped.

    A sync round does this first and pushes its outbox before it pulls what it misses, so
    the events that lost are resubmitted at once instead of after everything the other
    tills resubmitted meanwhile has been pulled and applied here. One entry is fetched.
    """
    since, _epoch = journal.store.position()
    page = peer.get(_changes_path(since, limit=1))
    if not _leads_elsewhere(journal, since, page):
        return 0
    return _drop_tail(journal, peer, since, int(page["last_gseq"]))


def _leads_elsewhere(journal: Journal, since: int, page: dict) -> bool:
    """Whether the peer's journal, as its page from `since` shows it, does not extend ours
    (it is shorter, or another entry stands at `since`)."""
    if not since:
        return False
    anchor = page["anchor"]
    mine = journal.store.position_at(since)
    same = anchor.get("event_id") == mine["event_id"] and (
        anchor.get("epoch") is None or anchor.get("epoch") == mine["epoch"])
    return int(page["last_gseq"]) < since or not same


def _drop_tail(journal: Journal, peer: HttpPeer, since: int, remote_last: int) -> int:
    """Keep the prefix we share with the peer; the rest of our journal goes to the outbox."""
    keep = common_prefix(journal, peer, min(since, remote_last))
    if remote_last >= since:
        keep = min(keep, since - 1)  # position `since` itself differs: never keep it
    return journal.follower.truncate_after(keep, f"diverged from device at {peer.address}")


def _changes_path(since: int, limit: int = PAGE) -> str:
    return f"/api/sync/changes?since={since}&limit={limit}"


def changes_json(journal: Journal, since: int, limit: int) -> str:
    """The `/api/sync/changes` page as JSON text: `{"success", "entries", "anchor",
    "last_gseq"}`, as `entries_since` gives it, but each stored payload goes out as the
    JSON text it already is (decoding and encoding 2,000 payloads cost more than the read).
    """
    rows, anchor, last = journal.store.raw_page(since, limit)
    return (f'{{"success":true,"entries":[{entries_json(rows)}],"anchor":{dumps(anchor)},'
            f'"last_gseq":{last}}}')


def full_export_json(journal: Journal, schema_version: int) -> str:
    """`GET /api/sync/full-export`: the whole journal, built as `changes_json` is."""
    rows, _anchor, last = journal.store.raw_page(0, 1 << 62)
    return (f'{{"success":true,"schema_version":{int(schema_version)},"last_gseq":{last},'
            f'"entries":[{entries_json(rows)}]}}')


def worth_a_snapshot(mine: int, remote_last: int, snapshot_min: int = SNAPSHOT_MIN) -> bool:
    """A till that lacks `snapshot_min` entries or more, and more than it holds, takes a
    snapshot instead of pages: copying the whole shop then costs less than replaying what
    is missing (a new or wiped till always qualifies), as a Raft follower that far behind
    takes InstallSnapshot."""
    missing = remote_last - mine
    return missing >= max(snapshot_min, 1) and missing >= mine


def bootstrap(journal: Journal, peer: HttpPeer, directory: str) -> int:
    """Take the peer's snapshot (`GET /api/sync/full-export?format=sqlite`: journal and
    derived tables as one SQLite file). Returns the entries installed; 0 when pages are
    the way (another schema, a peer that cannot give one, a bad file, a journal that
    diverged)."""
    mine = journal.store.position()[0]
    path = os.path.join(directory, f"snapshot-in-{uuid.uuid4().hex}.db")
    try:
        headers = peer.download("/api/sync/full-export?format=sqlite", path)
        if headers.get("X-Lanpos-Schema-Version") != str(SCHEMA_VERSION):
            log.warning("snapshot from %s has schema %s, ours is %s: pulling pages instead",
                        peer.address, headers.get("X-Lanpos-Schema-Version"), SCHEMA_VERSION)
            return 0
        installed = journal.snapshots.install(path)
        return installed - mine if installed else 0
    except (SyncError, ValueError, sqlite3.Error) as exc:
        log.warning("snapshot from %s not installed (%s): pulling pages instead",
                    peer.address, exc)
        return 0
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)


def export_snapshot(journal: Journal, directory: str) -> tuple[BinaryIO, dict[str, int]]:
    """The snapshot a till bootstraps from, as an open file (already unlinked)."""
    path = os.path.join(directory, f"snapshot-out-{uuid.uuid4().hex}.db")
    try:
        meta = journal.snapshots.write(path)
        return open(path, "rb"), meta  # noqa: SIM115 - the response closes it
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)


def dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))
