"""Pull, push and catch-up between nodes (HTTP side of replication).

Clients apply journal entries strictly in gseq order. A node whose journal diverged
from its source (it holds a tail from an epoch that lost) finds the common prefix,
drops its tail into the outbox (`Ledger.truncate_after`) and continues from there; a
wiped or fully diverged till starts from gseq 0 (full export).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from app.services.ledger import Ledger
from app.utils.signing import sign_request

log = logging.getLogger(__name__)

PAGE = 2000


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

    def get(self, path: str) -> Any:
        ts = int(time.time() * 1000)
        sig = sign_request(self.secret, "GET", path, b"", ts, self.device_id)
        try:
            response = self.session.get(f"http://{self.address}{path}", timeout=self.timeout, headers={
                "X-Lanpos-Device": str(self.device_id), "X-Lanpos-Timestamp": str(ts),
                "X-Lanpos-Signature": sig})
        except requests.RequestException as exc:
            raise SyncError(f"{self.address}: {exc}") from exc
        if response.status_code != 200:
            raise SyncError(f"{self.address}{path}: HTTP {response.status_code} {response.text[:200]}")
        return response.json()


def common_prefix(ledger: Ledger, peer: HttpPeer, upto: int) -> int:
    """Highest gseq at which our journal and the peer's hold the same event."""
    hi = upto
    while hi > 0:
        lo = max(hi - PAGE, 0)
        # Positions are compared with their epochs: see ledger._position.
        theirs = {row[0]: tuple(row[1:]) for row in
                  peer.get(f"/api/sync/ids?low={lo}&high={hi}&epochs=1")["ids"]}
        mine = {row[0]: tuple(row[1:]) for row in ledger.ids_between(lo, hi, epochs=True)}
        for gseq in range(hi, lo, -1):
            if gseq in theirs and gseq in mine and (
                    theirs[gseq] == mine[gseq] if len(theirs[gseq]) == 3
                    else theirs[gseq][0] == mine[gseq][0]):  # a peer without epochs
                return gseq
        hi = lo
    return 0


class Diverged(SyncError):
    """The peer's journal does not extend ours (and we were told to keep ours)."""


def pull(ledger: Ledger, peer: HttpPeer, *, truncate: bool = True,
         max_rounds: int = 10_000) -> dict[str, int]:
    """Bring our journal up to the peer's: append what is missing, drop a losing tail.

    With truncate=False (a new master catching up before it sequences) a diverged peer
    is not followed: the master keeps its own journal and the peer, once it follows
    the master, drops its tail into its outbox and resubmits it.
    """
    pulled = dropped = 0
    for _ in range(max_rounds):
        since, _epoch = ledger.position()
        page = peer.get(f"/api/sync/changes?since={since}&limit={PAGE}")
        anchor = page["anchor"]
        remote_last = int(page["last_gseq"])
        mine_at_anchor = ledger.position_at(since) if since else None
        same = bool(since) and anchor.get("event_id") == mine_at_anchor["event_id"] and (
            anchor.get("epoch") is None or anchor.get("epoch") == mine_at_anchor["epoch"])
        if since and (remote_last < since or not same):
            if not truncate:
                if remote_last < since and anchor.get("event_id") is None:
                    break  # the peer is simply behind us
                raise Diverged(f"{peer.address} diverged from our journal at {since}")
            keep = common_prefix(ledger, peer, min(since, remote_last))
            if remote_last >= since:
                keep = min(keep, since - 1)  # position `since` itself differs: never keep it
            dropped += ledger.truncate_after(keep, f"diverged from device at {peer.address}")
            continue
        if not page["entries"]:
            break
        result = ledger.receive_entries(page["entries"], prev=anchor)
        if result.diverged:
            if not truncate:
                raise Diverged(f"{peer.address} diverged from our journal")
            keep = common_prefix(ledger, peer, ledger.position()[0])
            dropped += ledger.truncate_after(keep, f"diverged from device at {peer.address}")
            continue
        pulled += result.applied
        if result.applied == 0:
            break
    return {"pulled": pulled, "dropped": dropped}


def full_export(ledger: Ledger) -> dict[str, Any]:
    """Everything a wiped till needs: the whole journal (the source of truth)."""
    since = 0
    entries: list[dict] = []
    while True:
        page = ledger.entries_since(since, 10_000)
        entries += page["entries"]
        if not page["entries"]:
            break
        since = page["entries"][-1]["gseq"]
    return {"last_gseq": since, "entries": entries}


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))
