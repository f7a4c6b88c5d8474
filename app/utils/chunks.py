"""Long lists cut into pieces that fit one SQL `IN (...)` list."""

from __future__ import annotations

from typing import Iterable, Iterator, TypeVar

IN_CHUNK = 500  # values per IN (...) list: far below SQLite's host-parameter limit

T = TypeVar("T")


def chunks(values: Iterable[T]) -> Iterator[list[T]]:
    values = list(values)
    for k in range(0, len(values), IN_CHUNK):
        yield values[k:k + IN_CHUNK]
