"""Child process of test_killed_process_leaves_outbox_that_the_next_one_delivers (run with -m).

Publishes events 0..99 and waits until the broker confirmed them, then hands events 100..199 to the publisher,
waits only until they are committed to the outbox, prints "stored 200" and SIGKILLs itself: no stop(), no flush of
confirms, whatever was on the wire stays unconfirmed.
usage: python -m tests.integration.amqp.outbox_child STORE_URL PREFIX EXCHANGE AMQP_URL
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from siprec.config import AmqpConfig
from siprec.events.amqp import AmqpPublisher
from siprec.events.bus import EventBus
from siprec.events.types import SessionEnded
from siprec.store.db import Store


def numbered(i: int) -> SessionEnded:
    return SessionEnded(f"call-{i}", f"sess-{i}", "bye", 1700000000.0 + i, 1700000010.0 + i, 10.0)


async def main(store_url: str, prefix: str, exchange: str, amqp_url: str) -> None:
    store = await Store.open(store_url, prefix=prefix)
    bus = EventBus()
    publisher = AmqpPublisher(AmqpConfig(url=amqp_url, exchange=exchange), store, bus=bus)
    await publisher.start()
    for i in range(100):
        bus.publish(numbered(i))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while publisher.outbox.depth() > 0:
        if loop.time() > deadline:
            raise SystemExit(f"first 100 not confirmed: {publisher.stats()}")
        await asyncio.sleep(0.02)
    print("confirmed 100", flush=True)
    for i in range(100, 200):
        bus.publish(numbered(i))
    if not await publisher.outbox.flush(60):
        raise SystemExit("events 100..199 not committed")
    print("stored 200", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
