"""Sync-round triggers, coalesced: one round at a time, and no request is ever dropped.

A sync round (`sync_runner.SyncRunner.run_round`: drop a losing tail, push the outbox,
pull) is asked for by many things at once: a gap or a mismatch in a push, a new master, a master
link coming up, an offline sale, a failed round, a renewed lease, the periodic job.
Rounds run one at a time; a request that arrives during a round is not dropped and does
not queue a round of its own: the round runs once more when it ends, for the latest
reason (any number of requests during a round make one more round). The caller that
finds a round running returns at once; the caller running the rounds runs that one too.

A failed round (or an offline sale, a deferred ack) asks for a retry within a second:
at most one retry is pending at a time (`want_retry` / `retry_fired`).

No clock, socket or database in here: `SyncRunner` starts the retry timer and does the
round. Tests: `tests/unit/test_sync_round.py`.
"""

from __future__ import annotations

import threading
from typing import Callable


class SyncRounds:
    """Calls `run(reason)` for requests, one at a time; requests during a run coalesce."""

    def __init__(self, run: Callable[[str], object]):
        self._run = run
        self._lock = threading.Lock()
        self._wanted: str | None = None
        self._busy = False
        self._retry_pending = False

    @property
    def idle(self) -> bool:
        """No round running and none asked for."""
        with self._lock:
            return not self._busy and self._wanted is None

    def request(self, reason: str) -> None:
        """Run a round for `reason` now, or once more after the one that is running."""
        with self._lock:
            self._wanted = reason
            if self._busy:
                return
            self._busy = True
        try:
            while True:
                with self._lock:
                    wanted, self._wanted = self._wanted, None
                    if wanted is None:
                        self._busy = False
                        return
                self._run(wanted)
        except BaseException:
            with self._lock:
                self._busy = False
            raise

    def want_retry(self) -> bool:
        """A retry is asked for: True when the caller should start its timer (no retry is
        pending yet), False when one already is."""
        with self._lock:
            if self._retry_pending:
                return False
            self._retry_pending = True
            return True

    def retry_fired(self) -> None:
        """The retry timer fired: a failing round may ask for the next one."""
        with self._lock:
            self._retry_pending = False
