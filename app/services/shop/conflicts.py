"""Pure conflict rules: who wins when changes collide. No I/O, no clock.

First come, first served: for online events the master's arrival order decides (an
online sale that would oversell is refused); events made offline were already
acknowledged to a person (the goods have left), so they are never refused: an oversell
they cause is recorded as a conflict. Among offline events sequenced together, the
earlier hybrid-logical-clock timestamp goes first. An edit whose base version is stale
loses to the one already applied.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Protocol


@dataclass(frozen=True)
class Shortage:
    sku: str
    available: int
    requested: int


@dataclass(frozen=True)
class SaleDecision:
    accepted: bool
    refused: Shortage | None = None  # online sale refused: first shortage in line order
    oversold: tuple[Shortage, ...] = field(default_factory=tuple)  # offline sale accepted anyway


def requested_by_sku(lines: Iterable[tuple[str, int]]) -> dict[str, int]:
    wanted: Counter[str] = Counter()
    for sku, qty in lines:
        wanted[sku] += qty
    return dict(wanted)


def decide_sale(stock: Mapping[str, int], lines: Iterable[tuple[str, int]], mode: str) -> SaleDecision:
    """Decide a sale against current stock. `mode` is "online" or "offline"."""
    wanted = requested_by_sku(lines)
    short = [Shortage(sku, stock.get(sku, 0), qty) for sku, qty in wanted.items()
             if stock.get(sku, 0) < qty]
    if not short:
        return SaleDecision(accepted=True)
    if mode == "online":
        return SaleDecision(accepted=False, refused=short[0])
    return SaleDecision(accepted=True, oversold=tuple(short))


@dataclass(frozen=True)
class EditDecision:
    accepted: bool
    current_version: int
    reason: str = ""


def decide_edit(current_version: int, base_version: int | None) -> EditDecision:
    """An edit must be based on the version it changes; otherwise the applied one wins."""
    if base_version is None:
        return EditDecision(False, current_version, "base_version is required for edits")
    if base_version != current_version:
        return EditDecision(False, current_version,
                            f"stale edit: based on version {base_version}, current is {current_version}")
    return EditDecision(True, current_version)


class HasHlc(Protocol):
    hlc: str
    event_id: str


def order_offline(events: Iterable[HasHlc]) -> list:
    """Concurrent offline events in first-come order: earlier HLC first, event id breaks ties."""
    return sorted(events, key=lambda e: (e.hlc, e.event_id))
