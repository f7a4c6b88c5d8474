"""Pushes that arrive while one is applied are merged into one apply (push_batch)."""

from __future__ import annotations

import threading

from app.services.cluster.push_batch import PushBatcher, merge_pushes


def entries(*gseqs: int) -> list[dict]:
    return [{"gseq": g, "event_id": f"e{g}"} for g in gseqs]


def prev(g: int) -> dict:
    return {"gseq": g, "event_id": f"e{g}"}


def test_pushes_of_one_term_merge_in_gseq_order_with_the_prev_of_the_first():
    runs = merge_pushes([(1, entries(5), prev(4)), (1, entries(3, 4), prev(2)),
                         (1, entries(4, 6), prev(3)), (1, [], None)])
    assert runs == [(entries(3, 4, 5, 6), prev(2))]


def test_a_new_term_starts_a_new_run():
    runs = merge_pushes([(1, entries(3), prev(2)), (2, entries(3), prev(2)),
                         (2, entries(4), prev(3))])
    assert runs == [(entries(3), prev(2)), (entries(3, 4), prev(2))]


def test_pushes_arriving_during_an_apply_are_applied_together_by_the_same_caller():
    applied: list[tuple[list[int], int | None]] = []
    inside = threading.Event()
    release = threading.Event()

    def apply(run: list[dict], prev_entry: dict | None) -> None:
        applied.append(([e["gseq"] for e in run], prev_entry and prev_entry["gseq"]))
        if len(applied) == 1:
            inside.set()
            assert release.wait(5)

    batcher = PushBatcher(apply)
    first = threading.Thread(target=batcher.push, args=(1, entries(1), None))
    first.start()
    assert inside.wait(5)
    for g in (3, 2, 4):  # arrive while the first is applied; these calls return at once
        batcher.push(1, entries(g), prev(g - 1))
    assert applied == [([1], None)]
    release.set()
    first.join(5)
    assert applied == [([1], None), ([2, 3, 4], 1)]


def test_a_failed_apply_does_not_stop_later_pushes():
    calls: list[list[int]] = []

    def apply(run: list[dict], prev_entry: dict | None) -> None:
        calls.append([e["gseq"] for e in run])
        if len(calls) == 1:
            raise RuntimeError("disk full")

    batcher = PushBatcher(apply)
    try:
        batcher.push(1, entries(1), None)
    except RuntimeError:
        pass
    batcher.push(1, entries(2), prev(1))
    assert calls == [[1], [2]]
