"""The SIP process <-> media worker pipe: framing (any split of the byte stream gives the same messages, bad
headers are refused) and a real socketpair carrying messages and descriptors both ways."""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from siprec.recording.channel import HEADER, MAX_FRAME, Channel, FrameDecoder, FrameError, encode_frame

messages = st.lists(
    st.tuples(st.sampled_from(["report", "event", "pcm"]), st.integers(), st.binary(max_size=300)),
    max_size=12,
)


@given(messages, st.lists(st.integers(min_value=1, max_value=64), max_size=40))
def test_any_split_of_the_stream_gives_the_same_messages(msgs: list[Any], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(m) for m in msgs)
    decoder = FrameDecoder()
    out: list[Any] = []
    pos = 0
    for cut in cuts:
        out += [m for m, _ in decoder.feed(stream[pos : pos + cut])]
        pos += cut
    out += [m for m, _ in decoder.feed(stream[pos:])]
    assert out == msgs


def test_descriptors_go_with_the_frame_that_announced_them() -> None:
    decoder = FrameDecoder()
    data = encode_frame("a") + encode_frame(("open", 1), 2) + encode_frame("b")
    frames = decoder.feed(data[:7], [41, 42])  # the kernel delivers descriptors with the frame's first bytes
    assert frames == []
    assert decoder.feed(data[7:]) == [("a", []), (("open", 1), [41, 42]), ("b", [])]


def test_a_broken_header_is_refused() -> None:
    with pytest.raises(FrameError):
        FrameDecoder().feed(HEADER.pack(MAX_FRAME + 1, 0))
    with pytest.raises(FrameError):
        FrameDecoder().feed(HEADER.pack(1, 0) + b"x")  # not a pickle
    with pytest.raises(FrameError):  # announces a descriptor that never came
        FrameDecoder().feed(encode_frame("x", 1))
    with pytest.raises(ValueError):
        encode_frame("x", 9)


def test_a_frame_is_a_length_prefixed_pickle() -> None:
    frame = encode_frame({"k": 1})
    length, nfds = HEADER.unpack_from(frame)
    assert (length, nfds) == (len(frame) - HEADER.size, 0)
    assert pickle.loads(frame[HEADER.size :]) == {"k": 1}


async def test_socketpair_carries_messages_and_sockets_and_reports_hang_up() -> None:
    a, b = socket.socketpair()
    got: list[tuple[Any, list[int]]] = []
    closed: list[str] = []
    left = Channel(a, lambda m, f: None, lambda: closed.append("left"), name="left")
    right = Channel(b, lambda m, f: got.append((m, f)), lambda: closed.append("right"), name="right")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    port = udp.getsockname()[1]
    fds_before = len(os.listdir("/proc/self/fd"))
    big = np.arange(200_000, dtype=np.int16)  # more than the socket buffer: queued, then written as it drains
    left.send(("open", port), [udp.detach()])
    left.send(("pcm", big))
    deadline = asyncio.get_running_loop().time() + 5
    while len(got) < 2 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    (first, fds), (second, _) = got
    assert first == ("open", port) and len(fds) == 1
    passed = socket.socket(fileno=fds[0])
    assert passed.getsockname()[1] == port  # the same bound socket, now owned by the receiver
    passed.close()
    np.testing.assert_array_equal(second[1], big)
    assert len(os.listdir("/proc/self/fd")) == fds_before - 1  # the sender's copy was closed once sent
    left.close()
    while "right" not in closed and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    assert closed == ["left", "right"]
    assert right.closed
    with pytest.raises(ConnectionError):
        left.send("late")
