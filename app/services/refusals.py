"""Refused traffic (bad signatures, malformed socket payloads, empty acks): audited, rate-limited.

One rogue peer or browser can send hundreds of bad messages a minute. Each is refused
without a traceback, and the refusal is audited at most once per window (a minute) per
(action, address), so the audit log records that it happened without being flooded.
Pure bookkeeping plus one audit write; no Flask here.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Callable

from app.utils.clock import monotonic_ms

if TYPE_CHECKING:
    from app.services.node import Node

log = logging.getLogger(__name__)
WINDOW_MS = 60_000
MAX_TRACKED = 4096  # addresses remembered at once; older ones are forgotten first


class RefusalLimiter:
    """Says whether a refusal from an address should be audited now (once per window)."""

    def __init__(self, clock: Callable[[], int] = monotonic_ms, window_ms: int = WINDOW_MS) -> None:
        self.clock = clock
        self.window_ms = window_ms
        self._last: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def allow(self, action: str, who: str) -> bool:
        now = self.clock()
        key = (action, who)
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.window_ms:
                return False
            if len(self._last) >= MAX_TRACKED:
                self._forget_old(now)
            self._last[key] = now
            return True

    def _forget_old(self, now: int) -> None:
        stale = [k for k, at in self._last.items() if now - at >= self.window_ms]
        for k in stale:
            del self._last[k]
        if len(self._last) >= MAX_TRACKED:  # all recent: drop the oldest half
            for k, _ in sorted(self._last.items(), key=lambda kv: kv[1])[:MAX_TRACKED // 2]:
                del self._last[k]


def refuse(node: Node, action: str, who: str, reason: str) -> bool:
    """Note a refusal: a warning and an `action` audit entry {from, reason}, at most once a
    minute per (action, who). Returns True when it was audited. Never raises."""
    if not node.refusals.allow(action, who):
        return False
    log.warning("%s from %s: %s", action, who, reason)
    try:
        with node.db.write() as session:
            node.audit.record(session, action, None, {"from": who, "reason": reason})
    except Exception:  # noqa: BLE001 - a refusal must never become a traceback loop
        log.exception("audit %s failed", action)
    return True
