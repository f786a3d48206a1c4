"""The messages between the server and its decoder processes: length-prefixed pickles over the child's stdin/stdout.

Server -> decoder process:
    (HELLO, DecoderSettings, nice)           first message: build a decoder, answer READY or FATAL
    (OPEN, sid, partials, language)          a new stream
    (AUDIO, sid, pcm bytes, timestamp)       int16 little-endian mono at the settings' rate
    (CLOSE, sid)                             finish the open utterance, answer CLOSED
    (DROP, sid)                              forget the stream (it failed on the server's side)
Decoder process -> server:
    (READY, pid) / (FATAL, message)
    (RESULT, sid, Transcript)
    (DONE, sid, samples)                     samples of the stream decoded so far (the backlog's measure)
    (CLOSED, sid, samples)                   the last message about a stream that was closed
    (ERROR, sid, message)                    the stream failed in the decoder process; nothing more follows

Both ends are this package, in processes the server started itself, so pickle is safe here.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import Any, BinaryIO

HELLO, OPEN, AUDIO, CLOSE, DROP = "hello", "open", "audio", "close", "drop"
READY, FATAL, RESULT, DONE, CLOSED, ERROR = "ready", "fatal", "result", "done", "closed", "error"

_HEADER = struct.Struct(">I")
MAX_MESSAGE = 64 << 20  # an hour of 16 kHz audio in one AUDIO message is 115 MB: senders cut files in blocks


class WireError(Exception):
    """The other end sent something that is not a message (it crashed mid-write, or is not our worker)."""


def encode(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(body) > MAX_MESSAGE:
        raise ValueError(f"message of {len(body)} bytes exceeds {MAX_MESSAGE}")
    return _HEADER.pack(len(body)) + body


def read_message(stream: BinaryIO) -> tuple[Any, ...] | None:
    """The next message from a blocking binary stream; None at end of stream."""
    header = stream.read(_HEADER.size)
    if not header:
        return None
    if len(header) < _HEADER.size:
        raise WireError("stream ended inside a message header")
    (size,) = _HEADER.unpack(header)
    if size > MAX_MESSAGE:
        raise WireError(f"message length {size} exceeds {MAX_MESSAGE}")
    body = stream.read(size)
    if len(body) < size:
        raise WireError("stream ended inside a message")
    return _loads(body)


async def read_message_async(reader: asyncio.StreamReader) -> tuple[Any, ...] | None:
    """The next message from an asyncio stream; None at end of stream."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise WireError("stream ended inside a message header") from None
    (size,) = _HEADER.unpack(header)
    if size > MAX_MESSAGE:
        raise WireError(f"message length {size} exceeds {MAX_MESSAGE}")
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise WireError("stream ended inside a message") from None
    return _loads(body)


def _loads(body: bytes) -> tuple[Any, ...]:
    try:
        message = pickle.loads(body)
    except Exception as exc:
        raise WireError(f"undecodable message: {type(exc).__name__}: {exc}") from None
    if not isinstance(message, tuple) or not message:
        raise WireError(f"not a message: {type(message).__name__}")
    return message
