"""Sans-I/O parts of event delivery: publisher-confirm bookkeeping, the backoff schedule, the publish_* filter and
the pika connection parameters."""

from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from siprec.config import AmqpConfig
from siprec.events.amqp import connection_parameters, publish_filter
from siprec.events.backoff import Backoff
from siprec.events.confirms import ConfirmTracker, merge_by_id


@dataclass(frozen=True)
class Row:
    id: int


def test_ack_single_and_multiple() -> None:
    t: ConfirmTracker[Row] = ConfirmTracker()
    tags = [t.sent(Row(i)) for i in (10, 11, 12, 13, 14)]
    assert tags == [1, 2, 3, 4, 5]
    assert t.settle(2, multiple=False) == [Row(11)]
    assert t.settle(4, multiple=True) == [Row(10), Row(12), Row(13)]
    assert t.settle(4, multiple=True) == []  # repeated: nothing left up to 4
    assert t.settle(99, multiple=False) == []
    assert len(t) == 1
    assert t.reset() == [Row(14)]
    assert t.sent(Row(15)) == 1  # a new channel counts from 1 again


def test_reset_returns_rows_in_id_order() -> None:
    t: ConfirmTracker[Row] = ConfirmTracker()
    for i in (5, 3, 9):
        t.sent(Row(i))
    assert t.reset() == [Row(3), Row(5), Row(9)]
    assert len(t) == 0


def test_merge_by_id_orders_and_dedupes() -> None:
    assert merge_by_id([Row(5), Row(2)], [Row(2), Row(9), Row(1)]) == [Row(1), Row(2), Row(5), Row(9)]


@given(
    st.lists(st.tuples(st.sampled_from(["send", "ack", "ackm", "reset"]), st.integers(1, 40)), max_size=200)
)
def test_every_row_settled_or_returned_exactly_once(ops: list[tuple[str, int]]) -> None:
    t: ConfirmTracker[Row] = ConfirmTracker()
    next_id = 1
    outstanding: list[Row] = []
    accounted: list[Row] = []
    for op, n in ops:
        if op == "send":
            outstanding.append(Row(next_id))
            t.sent(Row(next_id))
            next_id += 1
        elif op in ("ack", "ackm"):
            got = t.settle(n, multiple=op == "ackm")
            assert got == sorted(got, key=lambda r: r.id)
            accounted += got
        else:
            accounted += t.reset()
        assert len(t) + len(accounted) == next_id - 1
    accounted += t.reset()
    assert sorted(r.id for r in accounted) == list(range(1, next_id))


def test_backoff_grows_to_the_cap_with_jitter() -> None:
    b = Backoff(base_s=0.5, cap_s=30.0, rng=random.Random(7))
    assert [b.ceiling(n) for n in (1, 2, 3, 4, 7, 8, 1000)] == [0.5, 1.0, 2.0, 4.0, 30.0, 30.0, 30.0]
    for n in (1, 3, 10, 10_000):
        delays = [b.delay(n) for _ in range(200)]
        assert all(b.ceiling(n) / 2 <= d <= b.ceiling(n) for d in delays)
        assert len(set(delays)) > 100  # jittered: clients that failed together spread out


def test_backoff_refuses_nonsense() -> None:
    for kwargs in ({"base_s": 0}, {"base_s": 2, "cap_s": 1}, {"factor": 0.5}):
        try:
            Backoff(**kwargs)
        except ValueError:
            continue
        raise AssertionError(f"accepted {kwargs}")


def test_publish_filter_follows_the_switches() -> None:
    everything = publish_filter(AmqpConfig())
    for key in (
        "transcript.partial",
        "transcript.final",
        "sentiment.update",
        "keyword.detected",
        "speaker.changed",
        "session.started",
        "analytics.snapshot",
        "recording.ready",
    ):
        assert everything(key)
    none = publish_filter(
        AmqpConfig(
            publish_partial_transcripts=False,
            publish_final_transcripts=False,
            publish_sentiment_updates=False,
            publish_keyword_detections=False,
            publish_speaker_changes=False,
        )
    )
    assert [
        k
        for k in (
            "transcript.partial",
            "transcript.final",
            "sentiment.alert",
            "keyword.detected",
            "speaker.changed",
            "session.ended",
            "transcript",
        )
        if none(k)
    ] == ["session.ended", "transcript"]


def test_connection_parameters_defaults_and_url_overrides() -> None:
    p = connection_parameters("amqp://u:p@broker.example:5673/vh")
    assert (p.host, p.port, p.virtual_host, p.connection_attempts) == ("broker.example", 5673, "vh", 1)
    assert p.heartbeat == 30 and p.blocked_connection_timeout == 60.0 and p.socket_timeout == 5.0
    q = connection_parameters("amqp://u:p@h/%2F?heartbeat=5&blocked_connection_timeout=7")
    assert q.heartbeat == 5 and q.blocked_connection_timeout == 7 and q.virtual_host == "/"
