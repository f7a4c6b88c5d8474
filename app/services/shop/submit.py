"""How a use case hands a typed command to the journal, with its audit entry."""

from __future__ import annotations

from typing import Callable

from app.services.journal.events import AuditNote, Event
from app.services.journal.write_path import Outcome
from app.services.node import Node
from app.services.shop.commands import Command

__all__ = ["AuditNote", "event_for", "submit"]


def event_for(node: Node, command: Command, user: str | None,
              base_version: int | None = None) -> Event:
    """A new journal event carrying `command` (not yet durable anywhere)."""
    return node.journal.new_event(command.TYPE, command.payload(), user,
                                  base_version=base_version)


def submit(node: Node, command: Command, user: str | None, *, audit: AuditNote | None,
           base_version: int | None = None, offline_ok: bool = True,
           before_submit: Callable[[], None] | None = None) -> Outcome:
    """Make `command` durable the best way the cluster allows (see `Journal.execute`;
    `before_submit`: what must be durable here before the event leaves for a master)."""
    return node.journal.execute(event_for(node, command, user, base_version), audit=audit,
                                offline_ok=offline_ok, before_submit=before_submit)
