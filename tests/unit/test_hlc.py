import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.services.journal.hlc import HLC, format_hlc, parse_hlc

T0 = 1_700_000_000_000  # some wall time in ms
SKEW = 300_000  # 300 s


class FakeClock:
    def __init__(self, t: int = T0) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


# ------------------------------------------------------------- string format


def test_format_and_parse():
    s = format_hlc(T0, 3, 2)
    assert s == "001700000000000.00003.00002"
    assert parse_hlc(s) == (T0, 3, 2)


@given(
    st.integers(min_value=0, max_value=10**15 - 1),
    st.integers(min_value=0, max_value=99_999),
    st.integers(min_value=0, max_value=99_999),
)
def test_roundtrip(wall, counter, device):
    assert parse_hlc(format_hlc(wall, counter, device)) == (wall, counter, device)


triples = st.tuples(
    st.integers(min_value=0, max_value=10**15 - 1),
    st.integers(min_value=0, max_value=99_999),
    st.integers(min_value=0, max_value=99_999),
)


@given(triples, triples)
def test_string_order_is_tuple_order(a, b):
    sa, sb = format_hlc(*a), format_hlc(*b)
    assert (sa < sb) == (a < b)
    assert (sa == sb) == (a == b)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "1700000000000.0.1",
        "001700000000000.00003.0002",
        "001700000000000-00003-00002",
        "001700000000000.00003.00002\n",
        " 001700000000000.00003.00002",
        "00170000000000a.00003.00002",
        "００1700000000000.00003.00002",
    ],
)
def test_parse_rejects(bad):
    with pytest.raises(ValueError):
        parse_hlc(bad)


@pytest.mark.parametrize("bad", [None, 17, b"001700000000000.00003.00002"])
def test_parse_rejects_non_strings(bad):
    with pytest.raises(TypeError):
        parse_hlc(bad)


@pytest.mark.parametrize(
    "args",
    [
        (-1, 0, 0),
        (10**15, 0, 0),
        (0, 100_000, 0),
        (0, 0, 100_000),
        (0, -1, 0),
        (1.0, 0, 0),
    ],
)
def test_format_rejects(args):
    with pytest.raises(ValueError):
        format_hlc(*args)


def test_bad_device_id():
    with pytest.raises(ValueError):
        HLC(100_000, FakeClock())
    with pytest.raises(ValueError):
        HLC(-1, FakeClock())


# ------------------------------------------------------------------ local now


def test_now_follows_wall_clock():
    clock = FakeClock()
    h = HLC(7, clock)
    assert h.last is None
    assert h.now() == format_hlc(T0, 0, 7)
    clock.t += 5
    assert h.now() == format_hlc(T0 + 5, 0, 7)
    assert h.last == format_hlc(T0 + 5, 0, 7)


def test_now_same_ms_bumps_counter():
    h = HLC(1, FakeClock())
    assert [parse_hlc(h.now())[:2] for _ in range(3)] == [(T0, 0), (T0, 1), (T0, 2)]


def test_monotonic_when_wall_clock_goes_backwards():
    clock = FakeClock()
    h = HLC(1, clock)
    a = h.now()
    clock.t -= SKEW  # NTP step back by 5 minutes
    b = h.now()
    c = h.now()
    assert a < b < c
    assert parse_hlc(b)[0] == T0  # logical time holds, counter moves
    clock.t = T0 + 1  # wall clock catches up: back to physical time, counter reset
    d = h.now()
    assert d > c and parse_hlc(d)[:2] == (T0 + 1, 0)


def test_restart_continues_above_last():
    clock = FakeClock()
    before = HLC(3, clock)
    last = [before.now() for _ in range(5)][-1]
    clock.t -= 60_000  # the PC came back with a clock a minute behind
    after = HLC(3, clock, last=last)
    assert after.last == last
    assert after.now() > last


def test_counter_overflow_borrows_a_millisecond():
    clock = FakeClock()
    h = HLC(1, clock, last=format_hlc(T0, 99_999, 1))
    nxt = h.now()
    assert parse_hlc(nxt) == (T0 + 1, 0, 1)
    assert nxt > format_hlc(T0, 99_999, 1)
    # and on receive
    h2 = HLC(2, FakeClock(T0 - 10))
    got = h2.update(format_hlc(T0, 99_999, 9))
    assert got > format_hlc(T0, 99_999, 9)


def test_clock_must_return_int():
    h = HLC(1, lambda: 1.5)
    with pytest.raises(TypeError):
        h.now()


def test_thread_safe_unique():
    h = HLC(1, FakeClock())
    out: list[str] = []
    lock = threading.Lock()

    def work():
        local = [h.now() for _ in range(500)]
        with lock:
            out.extend(local)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == len(out) == 4000


# -------------------------------------------------------------------- receive


def test_receive_from_a_clock_300s_ahead():
    ahead = HLC(2, FakeClock(T0 + SKEW))
    behind_clock = FakeClock(T0 - SKEW)
    behind = HLC(1, behind_clock)
    local_before = behind.now()
    sent = ahead.now()
    got = behind.update(sent)
    assert got > sent and got > local_before
    assert parse_hlc(got) == (T0 + SKEW, 1, 1)
    # later local events stay above what was received, though the wall clock is behind
    behind_clock.t += 1000
    assert behind.now() > got


def test_receive_from_a_clock_300s_behind():
    ahead = HLC(2, FakeClock(T0 + SKEW))
    behind = HLC(1, FakeClock(T0 - SKEW))
    local_before = ahead.now()
    sent = behind.now()
    got = ahead.update(sent)
    assert got > sent and got > local_before
    assert parse_hlc(got)[0] == T0 + SKEW  # own physical time wins


def test_receive_same_wall_time_takes_max_counter():
    clock = FakeClock()
    h = HLC(1, clock)
    for _ in range(3):
        h.now()  # counter 2
    got = h.update(format_hlc(T0, 7, 2))
    assert parse_hlc(got) == (T0, 8, 1)
    got = h.update(format_hlc(T0, 1, 2))
    assert parse_hlc(got) == (T0, 9, 1)


def test_receive_own_echo_and_tie_on_device():
    h = HLC(5, FakeClock())
    sent = h.now()
    assert h.update(sent) > sent
    # same wall and counter from a higher device id: result still greater
    other = format_hlc(T0, 50, 99_999)
    assert h.update(other) > other


def test_receive_rejects_garbage_without_changing_state():
    h = HLC(1, FakeClock())
    a = h.now()
    with pytest.raises(ValueError):
        h.update("nonsense")
    assert h.last == a


def test_max_drift_refuses_far_future():
    h = HLC(1, FakeClock(), max_drift_ms=SKEW * 2)
    assert h.update(format_hlc(T0 + SKEW, 0, 2))  # 300 s ahead: fine
    before = h.last
    with pytest.raises(ValueError):
        h.update(format_hlc(T0 + 365 * 86_400_000, 0, 2))  # a year ahead
    assert h.last == before


# ---------------------------------------------------- randomized causal runs

step = st.one_of(
    st.tuples(st.just("local"), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("send"), st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.just("deliver"), st.integers(0, 2), st.integers(0, 50)),
    # the true time advances; a node's clock may also jump backwards
    st.tuples(st.just("tick"), st.integers(0, 2), st.integers(-SKEW, 2_000)),
)


@settings(max_examples=200)
@given(
    st.lists(st.integers(-SKEW, SKEW), min_size=3, max_size=3),
    st.lists(step, min_size=1, max_size=80),
)
def test_causal_order_with_skewed_clocks(offsets, steps):
    clocks = [FakeClock(T0 + off) for off in offsets]
    nodes = [HLC(i + 1, clocks[i]) for i in range(3)]
    issued: list[list[str]] = [[], [], []]
    in_flight: list[tuple[int, str]] = []  # (destination, timestamp)
    max_physical = max(c.t for c in clocks)

    for kind, a, b in steps:
        if kind == "local":
            issued[a].append(nodes[a].now())
        elif kind == "send":
            ts = nodes[a].now()
            issued[a].append(ts)
            in_flight.append((b, ts))
        elif kind == "deliver" and in_flight:
            dest, ts = in_flight.pop(b % len(in_flight))
            before = nodes[dest].last
            got = nodes[dest].update(ts)
            # a receive is after the send and after everything earlier on that node
            assert got > ts
            assert before is None or got > before
            issued[dest].append(got)
        elif kind == "tick":
            clocks[a].t = max(0, clocks[a].t + b)
            max_physical = max(max_physical, clocks[a].t)
        # HLC stays bounded by the largest physical time seen (no runaway)
        for n in nodes:
            if n.last is not None:
                assert parse_hlc(n.last)[0] <= max_physical

    for seq in issued:
        assert seq == sorted(seq) and len(set(seq)) == len(seq)  # strictly increasing
    everything = [ts for seq in issued for ts in seq]
    assert len(set(everything)) == len(everything)  # unique across devices
