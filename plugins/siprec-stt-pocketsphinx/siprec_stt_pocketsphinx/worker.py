"""A decoder process: `python -m siprec_stt_pocketsphinx.worker`, started and fed by the server (see pool.py).

pocketsphinx holds the GIL while it decodes (its Cython wrapper has no `nogil` around ps_process_raw), so decoder
threads in the server would stall its event loop and could use one core at most. A process per CPU hosts the
decoders of many streams instead: one `StreamDecoder` each, messages handled in arrival order (wire.py).

The process ends when its stdin closes: when the provider closes, or when the server is gone. It ignores SIGINT,
SIGTERM and SIGHUP, which reach it with the server's (a Ctrl-C in the terminal, systemd stopping the service's
whole control group): the server's graceful stop still needs it to flush the open utterances.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, BinaryIO

from siprec_stt_pocketsphinx import wire
from siprec_stt_pocketsphinx.config import DecoderSettings
from siprec_stt_pocketsphinx.decoder import ModelError, StreamDecoder, make_decoder

DONE_EVERY_S = (
    0.1  # of decoded audio between progress reports of a stream (so a backlog is never off by more)
)


class _Output:
    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def send(self, message: tuple[Any, ...]) -> None:
        self._stream.write(wire.encode(message))

    def flush(self) -> None:
        self._stream.flush()


def serve(inp: BinaryIO, out_stream: BinaryIO) -> int:
    out = _Output(out_stream)
    hello = wire.read_message(inp)
    if hello is None:
        return 0
    if hello[0] != wire.HELLO or not isinstance(hello[1], DecoderSettings):
        raise wire.WireError(f"expected {wire.HELLO}, got {hello[0]!r}")
    settings: DecoderSettings = hello[1]
    if hello[2]:
        os.nice(int(hello[2]))
    try:
        idle = [make_decoder(settings)]
    except ModelError as exc:
        out.send((wire.FATAL, str(exc)))
        out.flush()
        return 1
    out.send((wire.READY, os.getpid()))
    out.flush()
    streams: dict[int, StreamDecoder] = {}
    reported: dict[int, int] = {}  # samples of each stream last reported in a DONE
    done_every = int(DONE_EVERY_S * settings.sample_rate)
    while (message := wire.read_message(inp)) is not None:
        kind, sid = message[0], message[1]
        try:
            if kind == wire.AUDIO:
                stream = streams.get(sid)
                if stream is None:  # dropped or failed: its audio still in the pipe is discarded
                    continue
                results = stream.feed(message[2], message[3])
                for result in results:
                    out.send((wire.RESULT, sid, result))
                if results or stream.samples_in - reported[sid] >= done_every:
                    reported[sid] = stream.samples_in
                    out.send((wire.DONE, sid, stream.samples_in))
            elif kind == wire.OPEN:
                decoder = idle.pop() if idle else None
                streams[sid] = StreamDecoder(
                    settings, partials=message[2], language=message[3], decoder=decoder
                )
                reported[sid] = 0
            elif kind == wire.CLOSE:
                stream = streams.pop(sid)
                reported.pop(sid, None)
                for result in stream.finish():
                    out.send((wire.RESULT, sid, result))
                out.send((wire.CLOSED, sid, stream.samples_in))
                if len(idle) < settings.idle_decoders:
                    idle.append(stream.reset_for_reuse())
            elif kind == wire.DROP:
                streams.pop(sid, None)
                reported.pop(sid, None)
            else:
                raise wire.WireError(f"unknown message {kind!r}")
        except wire.WireError:
            raise
        except Exception as exc:  # one stream's failure (bad audio, a decoder error) ends that stream only
            streams.pop(sid, None)
            reported.pop(sid, None)
            out.send((wire.ERROR, sid, f"{type(exc).__name__}: {exc}"))
        out.flush()
    return 0


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    # The messages own fd 1; anything else written to stdout (a library's printf) goes to stderr instead.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        return serve(sys.stdin.buffer, out)
    except BrokenPipeError:  # the server is gone
        return 0
    except wire.WireError as exc:
        print(f"siprec-stt-pocketsphinx worker {os.getpid()}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
