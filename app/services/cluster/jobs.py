"""Interval jobs on the monotonic clock (the heartbeat, housekeeping)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)


class MonotonicJobs:
    """Interval jobs on the monotonic clock, one thread each.

    APScheduler 3 times interval jobs by the wall clock: when a till's clock is stepped
    back (NTP, a person fixing it) by 300 s, every job stops for 300 s - no heartbeat,
    no lease, no sync. A thread waiting on the monotonic clock is not fooled. A run that
    overruns its interval is not repeated to catch up (like coalesce=True).
    """

    def __init__(self) -> None:
        self._stop = threading.Event()

    def every(self, interval: float, fn: Callable[[], object], name: str) -> None:
        def loop() -> None:
            next_at = time.monotonic() + interval
            while not self._stop.wait(max(0.0, next_at - time.monotonic())):
                try:
                    fn()
                except Exception:  # noqa: BLE001 - a job must never die
                    log.exception("job %s failed", name)
                next_at = max(next_at + interval, time.monotonic())

        threading.Thread(target=loop, name=f"job-{name}", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
