"""The pipe between the SIP process and a media worker: length-prefixed pickles over a Unix stream socket, with
file descriptors (the bound RTP/RTCP sockets) passed alongside a message.

`encode_frame` / `FrameDecoder` are the sans-I/O framing: a 5-byte header (payload length, number of descriptors
that travel with the frame) then the pickle. Descriptors arrive as SCM_RIGHTS data attached to the bytes that
carried them, which the kernel delivers no later than the frame's first byte, so the decoder hands each complete
frame the next `nfds` descriptors received.

`Channel` drives one socket from an asyncio loop (add_reader / add_writer: the loop's stream transports cannot
send descriptors). Both ends trust each other (same user, same program): pickle is the wire format.
"""

from __future__ import annotations

import array
import asyncio
import logging
import os
import pickle
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["Channel", "FrameDecoder", "FrameError", "encode_frame"]

log = logging.getLogger("siprec.recording")

HEADER = struct.Struct("!IB")
# Far above any message (PCM blocks are < 64 KiB): a larger length means a broken peer.
MAX_FRAME = 64 * 1024 * 1024
MAX_FDS = 8  # per frame (a leg passes 2)
READ_SIZE = 256 * 1024


class FrameError(Exception):
    """The byte stream is not made of our frames (the peer is broken): the channel is closed."""


def encode_frame(message: Any, nfds: int = 0) -> bytes:
    if not 0 <= nfds <= MAX_FDS:
        raise ValueError(f"a frame carries 0..{MAX_FDS} descriptors, not {nfds}")
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(payload) > MAX_FRAME:
        raise ValueError(f"message of {len(payload)} bytes exceeds {MAX_FRAME}")
    return HEADER.pack(len(payload), nfds) + payload


class FrameDecoder:
    def __init__(self) -> None:
        self._buffer = bytearray()
        self.fds: deque[int] = deque()  # received, not yet given to a frame

    def feed(self, data: bytes, fds: list[int] | tuple[int, ...] = ()) -> list[tuple[Any, list[int]]]:
        """Bytes (and the descriptors received with them) in, complete (message, descriptors) frames out."""
        self._buffer += data
        self.fds.extend(fds)
        out: list[tuple[Any, list[int]]] = []
        buf = self._buffer
        pos = 0
        while len(buf) - pos >= HEADER.size:
            length, nfds = HEADER.unpack_from(buf, pos)
            if length > MAX_FRAME or nfds > MAX_FDS:
                raise FrameError(f"frame header claims {length} bytes and {nfds} descriptors")
            end = pos + HEADER.size + length
            if len(buf) < end:
                break
            if len(self.fds) < nfds:
                raise FrameError(f"frame announces {nfds} descriptors, {len(self.fds)} arrived")
            try:
                message = pickle.loads(memoryview(buf)[pos + HEADER.size : end])
            except Exception as exc:
                raise FrameError(f"undecodable frame: {exc}") from exc
            out.append((message, [self.fds.popleft() for _ in range(nfds)]))
            pos = end
        if pos:
            del buf[:pos]
        return out

    def close(self) -> None:
        """Close descriptors no frame claimed."""
        while self.fds:
            os.close(self.fds.popleft())


class Channel:
    """One end of the socketpair. `on_message(message, fds)` runs on the loop for every frame; `on_closed()` once
    when the peer hung up or the stream broke. `send` never blocks: what the socket does not take is queued.
    Descriptors given to `send` belong to the channel from then on (closed once sent, or when the channel closes)."""

    def __init__(
        self,
        sock: socket.socket,
        on_message: Callable[[Any, list[int]], None],
        on_closed: Callable[[], None],
        *,
        name: str,
    ) -> None:
        self.sock = sock
        self.name = name
        sock.setblocking(False)
        self._on_message = on_message
        self._on_closed = on_closed
        self._decoder = FrameDecoder()
        self._out: deque[tuple[memoryview, list[int]]] = deque()
        self._loop = asyncio.get_running_loop()
        self._writing = False
        self.closed = False
        self.sent_bytes = 0
        self._loop.add_reader(sock.fileno(), self._readable)

    @property
    def queued(self) -> int:
        return sum(len(data) for data, _ in self._out)

    def send(self, message: Any, fds: list[int] | tuple[int, ...] = ()) -> None:
        if self.closed:
            raise ConnectionError(f"{self.name}: channel closed")
        self._out.append((memoryview(encode_frame(message, len(fds))), list(fds)))
        if not self._writing:
            self._flush()

    def _flush(self) -> None:
        try:
            while self._out:
                data, fds = self._out[0]
                if fds:
                    sent = self.sock.sendmsg(
                        [data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
                    )
                else:
                    sent = self.sock.send(data)
                self.sent_bytes += sent
                for passed in fds:  # the kernel holds its own reference now
                    os.close(passed)
                if sent == len(data):
                    self._out.popleft()
                else:  # the descriptors went with the first part
                    self._out[0] = (data[sent:], [])
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            log.warning("%s: send failed (%s)", self.name, exc)
            self.close()
            return
        if self._out and not self._writing:
            self._writing = True
            self._loop.add_writer(self.sock.fileno(), self._flush)
        elif not self._out and self._writing:
            self._writing = False
            self._loop.remove_writer(self.sock.fileno())

    def _readable(self) -> None:
        fds: list[int] = []
        try:
            data, ancdata, _flags, _addr = self.sock.recvmsg(READ_SIZE, socket.CMSG_SPACE(MAX_FDS * 4 * 4))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("%s: receive failed (%s)", self.name, exc)
            self.close()
            return
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                received = array.array("i")
                received.frombytes(payload[: len(payload) - len(payload) % received.itemsize])
                fds.extend(received)
        if not data and not fds:
            self.close()
            return
        try:
            frames = self._decoder.feed(data, fds)
        except FrameError as exc:
            log.error("%s: %s", self.name, exc)
            self.close()
            return
        for message, frame_fds in frames:
            try:
                self._on_message(message, frame_fds)
            except Exception:
                log.exception("%s: handling %s failed", self.name, type(message).__name__)
            if self.closed:
                return

    async def drain(self, timeout: float) -> bool:
        """Wait until everything queued was handed to the socket (True) or `timeout` passed (False)."""
        deadline = self._loop.time() + timeout
        while self._out and not self.closed and self._loop.time() < deadline:
            await asyncio.sleep(0.01)
        return not self._out

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        fd = self.sock.fileno()
        if fd >= 0:
            self._loop.remove_reader(fd)
            if self._writing:
                self._loop.remove_writer(fd)
        self._writing = False
        for _, fds in self._out:
            for passed in fds:
                os.close(passed)
        self._out.clear()
        self._decoder.close()
        self.sock.close()
        self._on_closed()
