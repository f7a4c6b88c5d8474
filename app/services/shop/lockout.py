"""Wrong-PIN back-off: a pure policy over the failures the journal holds for one user.

Failures are journaled (`user.login_failed`), so every till counts every till's
failures; a successful login, an admin's unlock or a PIN reset clears them
(`user.unlock` / `user.update`). The first FREE_FAILURES wrong PINs cost nothing; each
one after that makes the user wait 1 s, 2 s, 4 s ... at most CAP_MS. A PIN typed
during the wait is refused without being checked or counted, so an attacker cannot
renew a lock cheaply, and a manager is never locked out for longer than the cap.
Failures older than WINDOW_MS stop counting.

Times are the failing till's clock; a wait is never longer than its own delay, so a
till whose clock runs ahead cannot lock a user out for longer.
"""

from __future__ import annotations

from typing import Iterable

FREE_FAILURES = 3
BASE_MS = 1_000
CAP_MS = 15 * 60 * 1000
WINDOW_MS = 24 * 3600 * 1000


def delay_ms(failures: int) -> int:
    """The wait after the `failures`-th counted failure: 0, 0, 0, 1 s, 2 s, 4 s ... cap."""
    if failures <= FREE_FAILURES:
        return 0
    exponent = failures - FREE_FAILURES - 1
    if exponent >= 40:  # 2**40 s is past any cap; no huge integers
        return CAP_MS
    return min(BASE_MS * (2 ** exponent), CAP_MS)


def counted(failure_times: Iterable[int], now_ms: int, cleared_ms: int = 0) -> list[int]:
    """The failures that count: after the last clear, within the window, sorted."""
    return sorted(t for t in failure_times if t > cleared_ms and t > now_ms - WINDOW_MS)


def retry_after_ms(failure_times: Iterable[int], now_ms: int, cleared_ms: int = 0) -> int:
    """How long this user must wait before a PIN is checked again (0: check it now)."""
    times = counted(failure_times, now_ms, cleared_ms)
    if not times:
        return 0
    wait = delay_ms(len(times))
    if wait == 0:
        return 0
    return max(0, min(times[-1] + wait - now_ms, wait))


def attempts_left(failures: int) -> int:
    """Wrong PINs left before the first wait."""
    return max(FREE_FAILURES - failures, 0)
