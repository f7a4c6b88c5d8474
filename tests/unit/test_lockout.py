"""The wrong-PIN back-off as a pure function of the journaled failures, on a fake clock."""

from app.services.shop import lockout
from app.services.shop.lockout import CAP_MS, WINDOW_MS, attempts_left, delay_ms, retry_after_ms


class FakeClock:
    def __init__(self, now: int = 1_700_000_000_000):
        self.now = now

    def advance(self, ms: int) -> None:
        self.now += ms


def test_three_free_failures_then_the_wait_doubles_up_to_the_cap():
    assert [delay_ms(n) for n in range(0, 8)] == [0, 0, 0, 0, 1_000, 2_000, 4_000, 8_000]
    assert delay_ms(13) == 512_000 and delay_ms(14) == CAP_MS == 15 * 60 * 1000
    assert delay_ms(10_000) == CAP_MS
    assert [attempts_left(n) for n in range(5)] == [3, 2, 1, 0, 0]


def test_an_attacker_waits_out_each_delay_and_cannot_renew_it_cheaply():
    clock = FakeClock()
    failures: list[int] = []

    def fail() -> None:
        assert retry_after_ms(failures, clock.now) == 0  # only a checked PIN is counted
        failures.append(clock.now)

    for _ in range(4):
        fail()
    assert retry_after_ms(failures, clock.now) == 1_000
    clock.advance(400)
    # Attempts during the wait are refused before any check: the wait does not move.
    assert retry_after_ms(failures, clock.now) == 600
    clock.advance(600)
    fail()
    assert retry_after_ms(failures, clock.now) == 2_000
    # Fourteen failures in: the cap, never more.
    while len(failures) < 30:
        clock.advance(retry_after_ms(failures, clock.now))
        fail()
    assert retry_after_ms(failures, clock.now) == CAP_MS


def test_a_clear_resets_the_count_and_old_failures_stop_counting():
    clock = FakeClock()
    failures = [clock.now - 5, clock.now - 4, clock.now - 3, clock.now - 2]
    assert retry_after_ms(failures, clock.now) > 0
    assert retry_after_ms(failures, clock.now, cleared_ms=clock.now - 1) == 0
    assert lockout.counted(failures, clock.now, cleared_ms=clock.now - 4) == [clock.now - 3,
                                                                             clock.now - 2]
    clock.advance(WINDOW_MS)
    assert lockout.counted(failures, clock.now) == []
    assert retry_after_ms(failures, clock.now) == 0


def test_failures_from_other_tills_count_in_any_order():
    clock = FakeClock()
    a = [clock.now - 30, clock.now - 10]  # till 1
    b = [clock.now - 20, clock.now - 5]   # till 2, arriving later through the journal
    assert retry_after_ms(a + b, clock.now) == retry_after_ms(b + a, clock.now) == 1_000 - 5


def test_a_till_whose_clock_runs_ahead_cannot_lengthen_the_wait():
    clock = FakeClock()
    ahead = clock.now + 3_600_000  # a till one hour ahead journaled these
    failures = [ahead] * 4
    assert retry_after_ms(failures, clock.now) == 1_000
