"""Hybrid logical clock (Kulkarni et al. 2014), pure and fake-clock testable.

Till PCs' wall clocks disagree (minutes of skew are normal) and may jump
backwards (NTP, a manual fix). An HLC timestamp stays close to wall time but
never goes backwards on a node and is always greater than any timestamp the
node has received, so "happened before" implies "smaller timestamp" whatever
the clocks say. It orders offline-concurrent events (earlier HLC wins) and
breaks exact ties by device id.

Timestamps are strings ``"<wall_ms:015d>.<counter:05d>.<device:05d>"``: fixed
width, so plain string comparison (and SQL ``ORDER BY``) is the HLC order.

Counter overflow (more than 99999 events within one millisecond without the
clock moving) is handled by borrowing: the logical wall time is bumped by 1 ms
and the counter reset, which keeps the order and the fixed width.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

WALL_DIGITS = 15
COUNTER_DIGITS = 5
DEVICE_DIGITS = 5
MAX_WALL_MS = 10**WALL_DIGITS - 1
MAX_COUNTER = 10**COUNTER_DIGITS - 1
MAX_DEVICE = 10**DEVICE_DIGITS - 1

_HLC_RE = re.compile(r"\A([0-9]{15})\.([0-9]{5})\.([0-9]{5})\Z")


def format_hlc(wall_ms: int, counter: int, device_id: int) -> str:
    """Build the sortable string form; refuses values that would break the width."""
    for name, value, hi in (
        ("wall_ms", wall_ms, MAX_WALL_MS),
        ("counter", counter, MAX_COUNTER),
        ("device_id", device_id, MAX_DEVICE),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= hi:
            raise ValueError(f"{name} must be an int in 0..{hi}, got {value!r}")
    return f"{wall_ms:015d}.{counter:05d}.{device_id:05d}"


def parse_hlc(s: str) -> tuple[int, int, int]:
    """``"001700000000000.00003.00002"`` -> (wall_ms, counter, device)."""
    if not isinstance(s, str):
        raise TypeError(f"an HLC timestamp must be a str, got {type(s).__name__}")
    m = _HLC_RE.match(s)
    if not m:
        raise ValueError(f"not an HLC timestamp: {s!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


class HLC:
    """One node's hybrid logical clock.

    ``clock`` returns physical time in ms (inject a fake in tests). ``last`` is
    the last timestamp this node issued (persisted across restarts, e.g. the
    newest ``hlc`` in its outbox/journal), so a restart with a clock that went
    backwards still continues above it. Thread-safe.

    ``max_drift_ms``: if set, ``update`` refuses (ValueError) a remote timestamp
    more than this far ahead of the local physical clock, so one PC with a clock
    set to next year cannot drag every node's HLC there. Off by default.
    """

    def __init__(
        self,
        device_id: int,
        clock: Callable[[], int],
        last: str | None = None,
        *,
        max_drift_ms: int | None = None,
    ) -> None:
        format_hlc(0, 0, device_id)  # validates device_id
        self.device_id = device_id
        self._clock = clock
        self._max_drift_ms = max_drift_ms
        self._lock = threading.Lock()
        self._l = 0
        self._c = 0
        self._last: str | None = None
        if last is not None:
            self._l, self._c, _ = parse_hlc(last)
            self._last = last

    @property
    def last(self) -> str | None:
        """The most recent timestamp issued (None before the first)."""
        return self._last

    def _physical(self) -> int:
        pt = self._clock()
        if isinstance(pt, bool) or not isinstance(pt, int):
            raise TypeError("clock() must return int milliseconds")
        return max(pt, 0)

    def _emit(self, wall: int, counter: int) -> str:
        if counter > MAX_COUNTER:
            wall, counter = wall + 1, 0
        self._l, self._c = wall, counter
        self._last = format_hlc(wall, counter, self.device_id)
        return self._last

    def now(self) -> str:
        """Timestamp for a local or send event."""
        with self._lock:
            pt = self._physical()
            if pt > self._l:
                return self._emit(pt, 0)
            return self._emit(self._l, self._c + 1)

    def update(self, remote: str) -> str:
        """Merge a received timestamp; returns the timestamp of the receive event.

        The result is greater than ``remote`` and than everything this node
        issued before.
        """
        rl, rc, _ = parse_hlc(remote)
        with self._lock:
            pt = self._physical()
            if self._max_drift_ms is not None and rl - pt > self._max_drift_ms:
                raise ValueError(f"remote HLC {remote} is {rl - pt} ms ahead of the local clock")
            l_old, c_old = self._l, self._c
            l_new = max(l_old, rl, pt)
            if l_new == l_old and l_new == rl:
                c_new = max(c_old, rc) + 1
            elif l_new == l_old:
                c_new = c_old + 1
            elif l_new == rl:
                c_new = rc + 1
            else:
                c_new = 0
            return self._emit(l_new, c_new)
