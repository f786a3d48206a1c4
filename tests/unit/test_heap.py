"""freeze_startup_heap: start-up garbage is collected first (never made immortal), the rest leaves the GC."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from siprec.heap import freeze_startup_heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture
def unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()  # the test process's later collections walk everything again


def test_garbage_is_collected_and_survivors_frozen(unfreeze: None) -> None:
    garbage, kept = Node(), Node()
    dead = weakref.ref(garbage)
    del garbage
    frozen = freeze_startup_heap("test")
    assert dead() is None
    assert frozen == gc.get_freeze_count() > 0
    assert not any(o is kept for o in gc.get_objects())  # frozen objects are not in any generation
