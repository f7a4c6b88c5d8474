"""The pure conflict rules: first come, first served; offline sales never refused."""

from hypothesis import given
from hypothesis import strategies as st

from app.services.journal.hlc import HLC
from app.services.shop.conflicts import decide_edit, decide_sale, order_offline


def test_online_sale_within_stock_is_accepted():
    decision = decide_sale({"A": 2}, [("A", 2)], "online")
    assert decision.accepted and not decision.oversold


def test_online_sale_beyond_stock_is_refused_naming_the_first_short_sku():
    decision = decide_sale({"A": 5, "B": 1}, [("A", 1), ("B", 2)], "online")
    assert not decision.accepted
    assert (decision.refused.sku, decision.refused.available, decision.refused.requested) == ("B", 1, 2)


def test_same_sku_on_two_lines_counts_together():
    assert not decide_sale({"A": 3}, [("A", 2), ("A", 2)], "online").accepted


def test_offline_sale_is_never_refused_and_reports_the_oversell():
    decision = decide_sale({"A": 0, "B": 9}, [("A", 1), ("B", 1)], "offline")
    assert decision.accepted
    assert [(s.sku, s.available, s.requested) for s in decision.oversold] == [("A", 0, 1)]


@given(st.dictionaries(st.sampled_from("ABCD"), st.integers(-5, 10)),
       st.lists(st.tuples(st.sampled_from("ABCD"), st.integers(1, 5)), min_size=1, max_size=6))
def test_offline_always_accepted_online_accepted_iff_nothing_short(stock, lines):
    offline = decide_sale(stock, lines, "offline")
    online = decide_sale(stock, lines, "online")
    assert offline.accepted
    assert online.accepted == (not offline.oversold)


def test_first_edit_wins_and_a_stale_one_is_rejected():
    assert decide_edit(current_version=3, base_version=3).accepted
    stale = decide_edit(current_version=4, base_version=3)
    assert not stale.accepted and "version 3" in stale.reason and stale.current_version == 4
    assert not decide_edit(current_version=1, base_version=None).accepted


class Ev:
    def __init__(self, hlc: str, event_id: str):
        self.hlc, self.event_id = hlc, event_id


def test_concurrent_offline_events_are_ordered_by_hlc_even_with_skewed_clocks():
    """Till 1's clock is 300 s fast, till 2's 300 s slow: causality still orders them."""
    wall = [1_000_000_000]
    fast = HLC(1, lambda: wall[0] + 300_000)
    slow = HLC(2, lambda: wall[0] - 300_000)
    a = Ev(fast.now(), "a")          # made at till 1
    slow.update(a.hlc)               # till 2 saw it (e.g. through the journal)
    b = Ev(slow.now(), "b")          # then sold at till 2: causally after a
    wall[0] += 10
    c = Ev(slow.now(), "c")
    assert [e.event_id for e in order_offline([c, b, a])] == ["a", "b", "c"]


def test_ties_are_broken_by_event_id():
    assert [e.event_id for e in order_offline([Ev("x", "2"), Ev("x", "1")])] == ["1", "2"]
