"""The two clocks a node uses: wall time for records, monotonic time for timeouts."""

import time


def wall_ms() -> int:
    """Milliseconds since the epoch: what entries, sales and audit rows record."""
    return int(time.time() * 1000)


def monotonic_ms() -> int:
    """Milliseconds that never jump (NTP, a person fixing the clock): for liveness."""
    return int(time.monotonic() * 1000)
