"""Publisher-confirm bookkeeping for one AMQP channel (sans-I/O): which outbox rows are on the wire under which
delivery tag, and what each Basic.Ack / Basic.Nack settles.

Delivery tags count from 1 per channel in publish order. An ack or nack with `multiple` settles every outstanding
tag up to and including its own. `reset()` (channel or connection lost) returns every unsettled row in id order:
they are published again first on the next channel.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar


class HasId(Protocol):
    @property
    def id(self) -> int: ...


R = TypeVar("R", bound=HasId)


class ConfirmTracker(Generic[R]):
    def __init__(self) -> None:
        self._outstanding: OrderedDict[int, R] = OrderedDict()  # delivery tag -> row, tags ascending
        self._next_tag = 1

    def __len__(self) -> int:
        return len(self._outstanding)

    def sent(self, row: R) -> int:
        """Record a publish; returns its delivery tag."""
        tag = self._next_tag
        self._next_tag += 1
        self._outstanding[tag] = row
        return tag

    def settle(self, tag: int, multiple: bool) -> list[R]:
        """The rows an ack/nack of `tag` settles (in publish order). Unknown or repeated tags settle nothing."""
        if not multiple:
            row = self._outstanding.pop(tag, None)
            return [row] if row is not None else []
        settled: list[R] = []
        while self._outstanding:
            first = next(iter(self._outstanding))
            if first > tag:
                break
            settled.append(self._outstanding.pop(first))
        return settled

    def reset(self) -> list[R]:
        """Forget the channel: every unsettled row in id order; tags restart at 1."""
        rows = sorted(self._outstanding.values(), key=lambda r: r.id)
        self._outstanding.clear()
        self._next_tag = 1
        return rows


def merge_by_id(first: Iterable[R], second: Iterable[R]) -> list[R]:
    """Rows of both, in id order, each id once (re-sends are queued from several places: nacks, resets)."""
    seen: dict[int, R] = {}
    for row in (*first, *second):
        seen.setdefault(row.id, row)
    return [seen[i] for i in sorted(seen)]
