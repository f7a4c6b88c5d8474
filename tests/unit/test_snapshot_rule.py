"""When a till takes a snapshot instead of pages (replication.worth_a_snapshot)."""

from app.services.journal.replication import worth_a_snapshot


def test_a_new_or_far_behind_till_takes_a_snapshot_and_a_short_gap_takes_pages():
    assert worth_a_snapshot(0, 10_000)                  # new or wiped till
    assert not worth_a_snapshot(0, 9_999)               # short journal: pages
    assert worth_a_snapshot(1_000, 11_000)              # lacks 10,000, holds 1,000
    assert not worth_a_snapshot(50_000, 65_000)         # lacks fewer than it holds
    assert not worth_a_snapshot(5, 5)                   # nothing missing
    assert worth_a_snapshot(0, 1, snapshot_min=0)       # --snapshot-min 0: any gap, never none
    assert not worth_a_snapshot(3, 3, snapshot_min=0)
