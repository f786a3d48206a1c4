"""Webhooks: selected events (session_ended and recording_ready by default) POSTed as their JSON frame to every
`webhooks.urls` entry, signed with HMAC-SHA256, retried with backoff.

Request: `Content-Type: application/json`, the body is exactly `event.to_json()` (UTF-8), and headers
  X-Siprec-Event: <event type>               e.g. session_ended
  X-Siprec-Delivery: <uuid>                  the same on every retry of one event to one URL (dedupe on it)
  X-Siprec-Timestamp: <unix seconds>         when this attempt was sent
  X-Siprec-Signature: sha256=<hex>           when webhooks.secret is set:
      HMAC-SHA256(key=secret, msg = timestamp + "." + event type + "." + raw body)
A receiver recomputes the HMAC over the raw body, compares in constant time, and refuses timestamps far from its
clock (a replayed request carries an old timestamp, and changing it breaks the signature); `verify()` does this.

Retries: on connection errors, time-outs, 408, 429 and 5xx, up to `max_retries` times after the first attempt, with
capped jittered exponential backoff (a Retry-After in seconds is honoured up to the cap). Other statuses (4xx,
3xx: redirects are not followed) are final. The bus callback only creates a delivery task; at most
`max_concurrency` requests run at once and at most `max_pending` deliveries wait (beyond: dropped and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from siprec import __version__
from siprec.config import WebhooksConfig, redact_url
from siprec.events.backoff import Backoff
from siprec.events.bus import EventBus, Subscription
from siprec.events.types import Event
from siprec.logsetup import log_for_call

log = logging.getLogger("siprec.events.webhooks")

SIGNATURE_HEADER = "X-Siprec-Signature"
EVENT_HEADER = "X-Siprec-Event"
TIMESTAMP_HEADER = "X-Siprec-Timestamp"
DELIVERY_HEADER = "X-Siprec-Delivery"
DEFAULT_EVENT_TYPES = ("session_ended", "recording_ready")
RETRY_STATUSES = frozenset({408, 429})
REPLAY_TOLERANCE_S = 300


def signature(secret: str, timestamp: int, event_type: str, body: bytes) -> str:
    """The X-Siprec-Signature value: `sha256=` + hex HMAC-SHA256 of `timestamp.event_type.body`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.{event_type}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float = REPLAY_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """What a receiver does: True when the signature matches and the timestamp is within `tolerance_s` of now."""
    try:
        timestamp = int(headers[TIMESTAMP_HEADER])
        given = headers[SIGNATURE_HEADER]
        event_type = headers[EVENT_HEADER]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(given, signature(secret, timestamp, event_type, body))


@dataclass(frozen=True)
class _Delivery:
    url: str
    event_type: str
    call_id: str
    body: bytes
    delivery_id: str


class WebhookSender:
    """`await start()` (opens the HTTP client, subscribes to `bus`), `await stop(timeout)`; `stats()`, `health()`."""

    def __init__(
        self,
        config: WebhooksConfig,
        *,
        bus: EventBus | None = None,
        event_types: Iterable[str] = DEFAULT_EVENT_TYPES,
        max_concurrency: int = 8,
        max_pending: int = 1000,
        retry: Backoff | None = None,
    ) -> None:
        self.config = config
        self.bus = bus
        self.event_types = frozenset(event_types)
        self.max_pending = max_pending
        self._retry = retry or Backoff(base_s=1.0, cap_s=60.0)
        self._slots = asyncio.Semaphore(max_concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._subscription: Subscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.failed = 0  # given up (final status, or retries exhausted)
        self.retries = 0
        self.dropped = 0  # never attempted: too many pending, or not started
        self.last_error: str | None = None

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        if self._session is not None:
            return
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": f"siprec/{__version__}"},
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
        )
        if self.bus is not None:
            self._subscription = self.bus.subscribe(self.publish, types=self.event_types)
        log.info(
            "webhooks started",
            extra={"urls": [redact_url(u) for u in self.config.urls], "events": sorted(self.event_types)},
        )

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop taking events; give running deliveries up to `timeout` s (retry waits included); cancel the rest."""
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in late:
                task.cancel()
            if late:
                log.warning("webhooks: %d deliveries cancelled at shutdown", len(late))
                self.dropped += len(late)
                await asyncio.gather(*late, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def publish(self, event: Event) -> None:
        """The bus callback: one delivery task per URL, nothing awaited here."""
        if event.type not in self.event_types or not self.config.urls:
            return
        body = event.to_json().encode()
        call_id = str(getattr(event, "call_id", "") or "")
        for url in self.config.urls:
            if self._session is None or len(self._tasks) >= self.max_pending:
                self.dropped += 1
                log_for_call(log, call_id).warning(
                    "webhook %s to %s dropped: %s",
                    event.type,
                    redact_url(url),
                    "sender not started"
                    if self._session is None
                    else f"{len(self._tasks)} deliveries pending",
                )
                continue
            delivery = _Delivery(url, event.type, call_id, body, str(uuid.uuid4()))
            task = asyncio.create_task(self._deliver(delivery), name=f"webhook-{delivery.delivery_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def stats(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "retries": self.retries,
            "dropped": self.dropped,
            "pending": len(self._tasks),
        }

    def health(self) -> dict[str, Any]:
        """healthy, or degraded while the last delivery that ended gave up (details say why)."""
        status = "degraded" if self.last_error is not None else "healthy"
        return {"status": status, "pending": len(self._tasks), "error": self.last_error}

    async def health_check(self) -> tuple[str, dict[str, Any]]:
        """The same as `health()`, shaped for siprec.api.healthchecks (status, details)."""
        details = self.health()
        return details.pop("status"), details

    # ------------------------------------------------------------------ delivery

    async def _deliver(self, d: _Delivery) -> None:
        clog = log_for_call(log, d.call_id)
        attempt = 0
        while True:
            async with self._slots:
                outcome, retry_after = await self._attempt(d)
            if outcome is None:
                self.delivered += 1
                self.last_error = None
                if attempt:
                    clog.info(
                        "webhook %s delivered to %s after %d retries",
                        d.event_type,
                        redact_url(d.url),
                        attempt,
                    )
                return
            retryable = retry_after is not None
            if not retryable or attempt >= self.config.max_retries:
                self.failed += 1
                self.last_error = f"{redact_url(d.url)}: {outcome}"
                clog.warning(
                    "webhook %s to %s failed after %d attempts: %s",
                    d.event_type,
                    redact_url(d.url),
                    attempt + 1,
                    outcome,
                    extra={"delivery": d.delivery_id},
                )
                return
            attempt += 1
            self.retries += 1
            delay = max(self._retry.delay(attempt), min(retry_after or 0.0, self._retry.cap_s))
            await asyncio.sleep(delay)

    async def _attempt(self, d: _Delivery) -> tuple[str | None, float | None]:
        """(None, None) on success; else (what went wrong, retry-after seconds or 0.0 if retryable, None if final)."""
        assert self._session is not None
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: d.event_type,
            DELIVERY_HEADER: d.delivery_id,
            TIMESTAMP_HEADER: str(timestamp),
        }
        if self.config.secret:
            headers[SIGNATURE_HEADER] = signature(self.config.secret, timestamp, d.event_type, d.body)
        try:
            async with self._session.post(d.url, data=d.body, headers=headers, allow_redirects=False) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After", "")
        except TimeoutError:
            return f"no answer within {self.config.timeout_s} s", 0.0
        except aiohttp.ClientError as exc:
            return f"{exc.__class__.__name__}: {exc}", 0.0
        if 200 <= status < 300:
            return None, None
        if status >= 500 or status in RETRY_STATUSES:
            seconds = 0.0
            with contextlib.suppress(ValueError):
                seconds = max(0.0, float(retry_after))
            return f"HTTP {status}", seconds
        return f"HTTP {status} (not retried)", None
