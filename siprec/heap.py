"""Keep the cyclic garbage collector's pauses off the call set-up path.

CPython's full collection walks every tracked object. Measured in `bench.media_load` at 1,000 calls: the SIP
process holds ~105,000 objects from start-up (modules, typing, aiohttp, SQLAlchemy, the config) and ~70 per call,
and its full collections stopped the event loop for 60-220 ms in the middle of a burst of INVITEs, which was the
whole INVITE -> 200 p99. Those start-up objects live until exit, so scanning them can never free anything:
`freeze_startup_heap()` moves them to the permanent generation once the process is ready, and collections only
walk what calls create.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("siprec")


def freeze_startup_heap(name: str) -> int:
    """Collect once (start-up garbage must not become immortal), then freeze what is left. Returns how many
    objects were frozen."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.debug("%s: %d start-up objects frozen out of garbage collection", name, frozen)
    return frozen
