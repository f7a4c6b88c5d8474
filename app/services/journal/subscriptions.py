"""Who hears what the journal did: notices of every change, entries a master appended,
events that had to go offline. Listeners subscribe; nothing reassigns a slot."""

from __future__ import annotations

from typing import Callable

from app.services.journal.state_machine import Notice

NoticeListener = Callable[[list[Notice]], None]
# (entries as they travel between nodes, the position they follow)
AppendedListener = Callable[[list[dict], "dict | None"], None]
OfflineListener = Callable[[], None]


class Subscriptions:
    def __init__(self) -> None:
        self._notices: list[NoticeListener] = []
        self._appended: list[AppendedListener] = []
        self._offline: list[OfflineListener] = []

    def subscribe(self, callback: NoticeListener) -> None:
        """Call `callback(notices)` after every change the journal commits (in the order
        subscribers came; a notice list may be empty)."""
        self._notices.append(callback)

    def subscribe_appended(self, callback: AppendedListener) -> None:
        """Call `callback(entries, prev)` after this master commits new journal entries
        (`prev`: the position they follow)."""
        self._appended.append(callback)

    def subscribe_offline(self, callback: OfflineListener) -> None:
        """Call `callback()` after an event had to go to the outbox offline here."""
        self._offline.append(callback)

    def publish(self, notices: list[Notice]) -> None:
        for callback in list(self._notices):
            callback(notices)

    def publish_appended(self, entries: list[dict], prev: dict | None) -> None:
        for callback in list(self._appended):
            callback(entries, prev)

    def publish_offline(self) -> None:
        for callback in list(self._offline):
            callback()
