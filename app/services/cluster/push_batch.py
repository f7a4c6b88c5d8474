"""Journal pushes that arrive while one is being applied are applied together.

The master pushes every new journal entry to every till at once (`sync_update`). Under
load that is one small write transaction per sale on every till; a till that is busy
applying one push instead takes everything that arrived meanwhile in one transaction
(`receive_entries` of the merged entries), so a burst costs one commit, not one each.
"""

from __future__ import annotations

import threading
from typing import Callable, Hashable

Push = tuple[Hashable, list[dict], "dict | None"]  # (term it came from, entries, prev)


def merge_pushes(pushes: list[Push]) -> list[tuple[list[dict], dict | None]]:
    """Consecutive pushes of one term become one run of entries in gseq order (an entry
    sent twice counts once), with the `prev` of the push that starts the run."""
    runs: list[tuple[list[dict], dict | None]] = []
    k = 0
    while k < len(pushes):
        term = pushes[k][0]
        group = []
        while k < len(pushes) and pushes[k][0] == term:
            if pushes[k][1]:
                group.append(pushes[k])
            k += 1
        if not group:
            continue
        by_gseq: dict[int, dict] = {}
        for _, entries, _prev in group:
            for entry in entries:
                by_gseq.setdefault(int(entry["gseq"]), entry)
        first = min(group, key=lambda push: min(int(e["gseq"]) for e in push[1]))
        runs.append(([by_gseq[g] for g in sorted(by_gseq)], first[2]))
    return runs


class PushBatcher:
    """Calls `apply(entries, prev)` for pushes; concurrent pushes are merged.

    The first caller applies; pushes that arrive meanwhile are queued and the same caller
    applies them, merged, when it is done. No thread ever waits for another.
    """

    def __init__(self, apply: Callable[[list[dict], dict | None], object]):
        self._apply = apply
        self._lock = threading.Lock()
        self._queue: list[Push] = []
        self._busy = False

    def push(self, term: Hashable, entries: list[dict], prev: dict | None) -> None:
        with self._lock:
            self._queue.append((term, entries, prev))
            if self._busy:
                return
            self._busy = True
        try:
            while True:
                with self._lock:
                    batch, self._queue = self._queue, []
                    if not batch:
                        self._busy = False
                        return
                for run, prev_of_run in merge_pushes(batch):
                    self._apply(run, prev_of_run)
        except BaseException:
            with self._lock:
                self._busy = False
            raise
