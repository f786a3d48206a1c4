"""RabbitMQ publisher: every bus event (minus the publish_* filters) goes through the outbox to a durable topic
exchange, as a persistent message, with publisher confirms.

Flow: the bus callback only hands the event to the outbox (no I/O, never blocks). The outbox commits it; the pump
takes committed rows in id order and publishes up to `max_in_flight` unconfirmed ones; each Basic.Ack deletes its
rows, a Basic.Nack or a lost connection queues them to be sent again, before anything newer. The connection is
re-opened with capped, jittered exponential backoff.

On the wire this is at-least-once: a message whose confirm was lost with the connection is sent again. Every
message carries `message_id` = its outbox id (never reused), so a consumer that drops ids it has seen gets every
event exactly once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pika
import pika.exceptions
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.channel import Channel
from pika.spec import Basic, BasicProperties
from sqlalchemy.exc import SQLAlchemyError

from siprec.config import AmqpConfig, redact_url
from siprec.events.backoff import Backoff
from siprec.events.bus import EventBus, Subscription
from siprec.events.confirms import ConfirmTracker, merge_by_id
from siprec.events.outbox import Outbox, OutboxRow
from siprec.events.types import Event
from siprec.store.db import Store

log = logging.getLogger("siprec.events.amqp")

TAKE_BATCH = 50  # rows published per step of the pump (pika: ~50-100 us each), then the loop gets a turn
APP_ID = "siprec"
STABLE_CONNECTION_S = 5.0  # a connection that lived this long resets the reconnect backoff


def publish_filter(config: AmqpConfig) -> Callable[[str], bool]:
    """Whether a routing key is published, from the publish_* switches (everything else always is)."""
    exact = {
        "transcript.partial": config.publish_partial_transcripts,
        "transcript.final": config.publish_final_transcripts,
    }
    by_prefix = {
        "sentiment": config.publish_sentiment_updates,
        "keyword": config.publish_keyword_detections,
        "speaker": config.publish_speaker_changes,
    }

    def wanted(routing_key: str) -> bool:
        if routing_key in exact:
            return exact[routing_key]
        return by_prefix.get(routing_key.split(".", 1)[0], True)

    return wanted


def connection_parameters(url: str, *, heartbeat_s: int = 30) -> pika.URLParameters:
    """pika parameters for `url`: one TCP attempt per connect (our loop retries with backoff), bounded connect and
    handshake time; heartbeat and blocked-connection timeout unless the URL's query sets them."""
    params = pika.URLParameters(url)
    query = parse_qs(urlsplit(url).query)
    params.connection_attempts = 1
    params.retry_delay = 0
    if "socket_timeout" not in query:
        params.socket_timeout = 5.0
    if "stack_timeout" not in query:
        params.stack_timeout = 10.0
    if "heartbeat" not in query:
        params.heartbeat = heartbeat_s
    if "blocked_connection_timeout" not in query:
        params.blocked_connection_timeout = 60.0
    params.client_properties = {"connection_name": "siprec-events", "product": "siprec"}
    return params


class _Lost(Exception):
    """The connection or channel went away while we waited on it."""


class AmqpPublisher:
    """Publishes bus events to `config.exchange`. `await start()`, `await stop(timeout)`; `stats()`, `health()`.

    `store` holds the outbox table (created by `Store.open`). `bus` (optional) is subscribed on start; `publish(event)`
    is the same entry point for callers without a bus. `origin`: see Outbox (distinct per instance when several
    share one PostgreSQL store).
    """

    def __init__(
        self,
        config: AmqpConfig,
        store: Store,
        *,
        bus: EventBus | None = None,
        max_in_flight: int = 1000,
        reconnect: Backoff | None = None,
        heartbeat_s: int = 30,
        outbox: Outbox | None = None,
        origin: str = "",
    ) -> None:
        self.config = config
        self.exchange = config.exchange
        self.outbox = outbox or Outbox(store, origin=origin)
        self.bus = bus
        self.max_in_flight = max_in_flight
        self.wants = publish_filter(config)
        self._params = connection_parameters(config.url, heartbeat_s=heartbeat_s)
        self._backoff = reconnect or Backoff(base_s=0.5, cap_s=30.0)
        self._tracker: ConfirmTracker[OutboxRow] = ConfirmTracker()
        self._resend: list[OutboxRow] = []  # unconfirmed rows to publish again, before anything newer
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._conn: AsyncioConnection | None = None
        self._channel: Channel | None = None
        self._lost = asyncio.Event()
        self._kick = asyncio.Event()  # something to do: rows stored, window freed, unblocked, stopping
        self._settled = asyncio.Event()  # a confirm arrived (stop() waits on it)
        self._blocked = False
        self._stopping = False
        self._read_failures = 0
        self._nacks_in_a_row = 0
        self._refused: set[int] = set()  # ids nacked and not yet acked since
        self._hold_until = 0.0  # loop time before which nothing is published (backoff after a nack)
        self._ever_connected = False
        self.connected = False
        self.published = 0
        self.resent = 0
        self.confirmed = 0
        self.nacked = 0
        self.reconnects = 0
        self.filtered = 0
        self.last_error: str | None = None

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        if self._task is not None:
            return
        self._stopping = False
        await self.outbox.open()
        self.outbox.on_stored = self._kick.set
        if self.bus is not None:
            self._subscription = self.bus.subscribe(self.publish)
        self._task = asyncio.create_task(self._run(), name="amqp-publisher")
        log.info(
            "amqp publisher started", extra={"url": redact_url(self.config.url), "exchange": self.exchange}
        )

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop taking events; for up to `timeout` s publish and confirm what the outbox holds; then close. What is
        left stays in the outbox and goes first on the next start."""
        if self._task is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        await self.outbox.flush(max(0.0, deadline - loop.time()))
        while self.outbox.depth() > 0 and self.connected and loop.time() < deadline:
            self._settled.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), max(0.0, deadline - loop.time()))
            await self.outbox.flush(max(0.0, deadline - loop.time()))
        self._stopping = True
        self._kick.set()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        await self.outbox.close(max(0.5, deadline - loop.time()))
        left = self.outbox.depth()
        log.info("amqp publisher stopped; %d events left in the outbox", left, extra={"outbox_depth": left})

    def publish(self, event: Event) -> None:
        """The bus callback: filter, then hand to the outbox. No I/O here."""
        key = event.routing_key
        if not self.wants(key):
            self.filtered += 1
            return
        self.outbox.add(key, event)

    def stats(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "published": self.published,
            "resent": self.resent,
            "confirmed": self.confirmed,
            "nacked": self.nacked,
            "in_flight": len(self._tracker),
            "reconnects": self.reconnects,
            "filtered": self.filtered,
            "outbox_depth": self.outbox.depth(),
            "outbox_dropped": self.outbox.dropped,
        }

    def health(self) -> dict[str, Any]:
        """healthy: connected. degraded: broker unreachable or refusing messages, events kept in the outbox.
        unhealthy: the outbox cannot write to the store or has dropped events."""
        refusing = self.connected and bool(self._refused)
        if self.outbox.last_error is not None or self.outbox.dropped:
            status = "unhealthy"
        elif not self.connected or refusing:
            status = "degraded"
        else:
            status = "healthy"
        return {
            "status": status,
            "connected": self.connected,
            "outbox_depth": self.outbox.depth(),
            "error": self.outbox.last_error or (self.last_error if status != "healthy" else None),
        }

    async def health_check(self) -> tuple[str, dict[str, Any]]:
        """The same as `health()`, shaped for siprec.api.healthchecks (status, details)."""
        details = self.health()
        return details.pop("status"), details

    # ------------------------------------------------------------------ connection loop

    async def _run(self) -> None:
        try:
            await self._connection_loop()
        finally:
            # Cancelled (stop) possibly mid-connect: never leave a socket or a half-open connection behind.
            self.connected = False
            self._requeue_unconfirmed()
            await self._close_connection()

    async def _connection_loop(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0  # consecutive failed or short-lived connections
        while not self._stopping:
            try:
                await self._connect()
            except Exception as exc:
                if not isinstance(exc, _Lost | pika.exceptions.AMQPError | OSError):
                    log.exception("amqp: unexpected error while connecting")
                await self._close_connection()
                failures += 1
                self.last_error = _describe(exc)
                delay = self._backoff.delay(failures)
                if failures == 1:
                    log.warning("amqp: cannot connect (%s); retrying with backoff", self.last_error)
                else:
                    log.info("amqp: attempt %d failed (%s); next in %.1f s", failures, self.last_error, delay)
                await asyncio.sleep(delay)
                continue
            if self._ever_connected:
                self.reconnects += 1
            self._ever_connected = True
            self.connected = True
            self.last_error = None
            self._hold_until = 0.0
            opened_at = loop.time()
            log.info(
                "amqp connected; %d unconfirmed to send again, %d in the outbox",
                len(self._resend),
                self.outbox.depth(),
                extra={"url": redact_url(self.config.url), "exchange": self.exchange},
            )
            try:
                await self._pump()
            except Exception as exc:
                # A bug, not a broker problem: keep publishing through a fresh connection rather than stop for good.
                log.exception("amqp: unexpected error while publishing")
                self.last_error = _describe(exc)
            finally:
                self.connected = False
                self._requeue_unconfirmed()
                await self._close_connection()
            if self._stopping:
                return
            log.warning("amqp connection lost (%s); reconnecting", self.last_error)
            # A connection that dies right after opening (a broker restarting, a policy closing us) must not turn
            # into a reconnect storm: back off as after a failed connect.
            failures = failures + 1 if loop.time() - opened_at < STABLE_CONNECTION_S else 0
            if failures:
                await asyncio.sleep(self._backoff.delay(failures))

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        self._lost = asyncio.Event()
        self._blocked = False
        opened: asyncio.Future[None] = loop.create_future()
        opened.add_done_callback(
            lambda f: f.cancelled() or f.exception()
        )  # an abandoned failure is not "unretrieved"

        def on_open(_conn: Any) -> None:
            if not opened.done():
                opened.set_result(None)

        lost = self._lost

        def on_open_error(_conn: Any, exc: BaseException) -> None:
            if not opened.done():
                opened.set_exception(_Lost(_describe(exc)))
            lost.set()  # the connection is over: _close_connection() need not wait for it

        def on_closed(_conn: Any, exc: BaseException) -> None:
            # Bound to this connection's own event: a late close of an older connection changes nothing.
            if lost is self._lost:
                if not isinstance(exc, pika.exceptions.ConnectionClosedByClient):  # our own close is no error
                    self.last_error = _describe(exc)
                self.connected = False
                self._kick.set()
            lost.set()

        self._conn = AsyncioConnection(self._params, on_open, on_open_error, on_closed, custom_ioloop=loop)
        self._conn.add_on_connection_blocked_callback(self._on_blocked)
        self._conn.add_on_connection_unblocked_callback(self._on_unblocked)
        await opened
        conn = self._conn
        channel: Channel = await self._call(lambda done: conn.channel(on_open_callback=done))
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        await self._call(lambda done: channel.confirm_delivery(self._on_confirm, callback=done))
        await self._call(
            lambda done: channel.exchange_declare(
                self.exchange, exchange_type="topic", durable=True, callback=done
            )
        )

    async def _call(self, start: Callable[[Callable[[Any], None]], Any]) -> Any:
        """Start a pika operation that reports through a callback; its result, or _Lost if the link dies first."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()

        def callback(result: Any) -> None:
            if not done.done():
                done.set_result(result)

        start(callback)
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait({done, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if not done.done():
            done.cancel()
            raise _Lost(self.last_error or "connection lost")
        return done.result()

    async def _close_connection(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is None or conn.is_closed:
            return
        with contextlib.suppress(pika.exceptions.AMQPError):
            if not conn.is_closing:
                conn.close()
        # Wait (briefly) for the broker's Close-Ok so the socket is released, not left to the GC.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._lost.wait(), 2.0)

    # ------------------------------------------------------------------ pump

    async def _pump(self) -> None:
        while not self._lost.is_set() and not self._stopping:
            self._kick.clear()
            if await self._send_some():
                await asyncio.sleep(0)  # take() from memory does not suspend: yield between batches
            else:
                await self._kick.wait()

    async def _send_some(self) -> bool:
        """Publish what the window allows: re-sends first, then new rows. True if anything was sent."""
        free = self.max_in_flight - len(self._tracker)
        if self._blocked or free <= 0 or asyncio.get_running_loop().time() < self._hold_until:
            return False
        if self._resend:
            rows, self._resend = self._resend[:free], self._resend[free:]
            self.resent += self._send(rows)
            return True
        try:
            rows = await self.outbox.take(min(free, TAKE_BATCH))
        except (SQLAlchemyError, OSError) as exc:
            # The store is down: what is in flight still gets confirmed; try reading again shortly.
            self._read_failures += 1
            if self._read_failures == 1:
                log.error("amqp: cannot read the outbox: %s", _describe(exc))
            await asyncio.sleep(self._backoff.delay(self._read_failures))
            return True
        self._read_failures = 0
        if not rows:
            return False
        self._send(rows)
        return True

    def _send(self, rows: list[OutboxRow]) -> int:
        channel = self._channel
        for i, row in enumerate(rows):
            if channel is None or not channel.is_open or self._lost.is_set():
                self._resend = merge_by_id(rows[i:], self._resend)
                return i
            properties = BasicProperties(
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,  # persistent
                message_id=str(row.id),
                timestamp=int(row.created_at),
                type=row.routing_key,
                app_id=APP_ID,
            )
            try:
                channel.basic_publish(self.exchange, row.routing_key, row.body.encode(), properties)
            except (pika.exceptions.AMQPError, OSError) as exc:
                self.last_error = _describe(exc)
                self._resend = merge_by_id(rows[i:], self._resend)
                self._lost.set()
                self._kick.set()
                return i
            self._tracker.sent(row)
            self.published += 1
        return len(rows)

    def _requeue_unconfirmed(self) -> None:
        rows = self._tracker.reset()
        if rows:
            self.outbox.record_failures(r.id for r in rows)
            self._resend = merge_by_id(rows, self._resend)

    # ------------------------------------------------------------------ pika callbacks

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        rows = self._tracker.settle(method.delivery_tag, bool(method.multiple))
        if not rows:
            return
        if isinstance(method, Basic.Ack):
            self.confirmed += len(rows)
            self.outbox.ack(r.id for r in rows)
            if self._refused:
                # Acks of messages sent before a nack can come after it (persistent messages are acked once on
                # disk, refusals at once): the refusal is over only when every refused message got through.
                self._refused.difference_update(r.id for r in rows)
                if not self._refused:
                    self._nacks_in_a_row = 0
        else:
            # The broker refused them (a full queue with overflow reject-publish, an internal error): send them
            # again, but hold everything for a backoff first (in order, and without hammering the broker).
            self.nacked += len(rows)
            self.outbox.record_failures(r.id for r in rows)
            self._resend = merge_by_id(rows, self._resend)
            self._refused.update(r.id for r in rows)
            self._nacks_in_a_row += 1
            delay = self._backoff.delay(self._nacks_in_a_row)
            loop = asyncio.get_running_loop()
            self._hold_until = loop.time() + delay
            loop.call_later(delay, self._kick.set)
            if self._nacks_in_a_row == 1:
                log.warning("amqp: broker refused %d messages (Basic.Nack); sending them again", len(rows))
            self.last_error = f"broker refused {len(rows)} messages (Basic.Nack)"
        self._settled.set()
        self._kick.set()

    def _on_channel_closed(self, channel: Any, exc: BaseException) -> None:
        # A channel closed by the broker (exchange deleted, 406 on declare...) ends this connection too: the
        # reconnect path is the one recovery path.
        if channel is not self._channel:
            return
        if not isinstance(exc, pika.exceptions.ChannelClosedByClient):
            self.last_error = _describe(exc)
        self._lost.set()
        self._kick.set()

    def _on_blocked(self, _conn: Any, _frame: Any) -> None:
        log.warning("amqp: broker blocked publishing (resource alarm); events wait in the outbox")
        self._blocked = True

    def _on_unblocked(self, _conn: Any, _frame: Any) -> None:
        log.info("amqp: broker unblocked publishing")
        self._blocked = False
        self._kick.set()


def _describe(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}" if not text.startswith(exc.__class__.__name__) else text
