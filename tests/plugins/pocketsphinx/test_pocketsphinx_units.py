"""siprec-stt-pocketsphinx, the parts without decoder processes: the sample clock, the config model, the wire
format, and StreamDecoder (in this process) cutting a long utterance at max_utterance_s on real speech."""

from __future__ import annotations

import asyncio
import io
from importlib.util import find_spec

import numpy as np
import pytest
import soundfile
import soxr
from pydantic import ValidationError

from siprec.stt.provider import Transcript, Word
from tests.support import FIXTURES, require

if find_spec("siprec_stt_pocketsphinx") is not None:
    from siprec_stt_pocketsphinx import PocketsphinxConfig, wire
    from siprec_stt_pocketsphinx.config import DEFAULT_DECODER_OPTIONS, TELEPHONE_CMNINIT, DecoderSettings
    from siprec_stt_pocketsphinx.decoder import ModelError, StreamDecoder, clean_word, make_decoder


@pytest.fixture(autouse=True)
def _plugin() -> None:
    require(
        find_spec("siprec_stt_pocketsphinx") is not None,
        "the siprec-stt-pocketsphinx plugin (.venv/bin/pip install -e plugins/siprec-stt-pocketsphinx)",
    )


# ---------------------------------------------------------------- config


def test_config_defaults_and_decoder_settings() -> None:
    config = PocketsphinxConfig()
    assert (config.hmm, config.lm, config.dictionary) == ("", "", "")
    assert config.cmninit == TELEPHONE_CMNINIT and config.partial_interval_s == 0.4
    assert (config.vad_mode, config.vad_window_s, config.vad_ratio) == (0, 0.3, 0.9)
    assert (config.workers, config.worker_nice, config.idle_decoders, config.max_backlog_s) == (0, 5, 2, 30.0)
    assert PocketsphinxConfig(idle_decoders=0).decoder_settings().idle_decoders == 0
    settings = PocketsphinxConfig(options={"lw": 7.5, "fwdflat": True}).decoder_settings()
    assert settings.options == {"fwdflat": True, "lw": 7.5} and settings.sample_rate == 16000
    assert PocketsphinxConfig().decoder_settings().options == DEFAULT_DECODER_OPTIONS


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cmninit": "1,2,x"}, "comma-separated numbers"),
        ({"cmninit": ",".join(["1"] * 14)}, "at most 13"),
        ({"options": {"hmm": "/x"}}, "hmm"),
        ({"options": {"samprate": 8000}}, "samprate"),
        ({"vad_mode": 4}, "less than or equal to 3"),
        ({"partial_interval_s": 0}, "greater than or equal to 0.1"),
        ({"modle": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_config_refuses_bad_values(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PocketsphinxConfig.model_validate(options)


def test_decoder_refuses_missing_model_and_unknown_option() -> None:
    with pytest.raises(ModelError, match="no mdef"):
        make_decoder(DecoderSettings(hmm="/nonexistent/model"))
    with pytest.raises(ModelError, match="dictionary '/nonexistent.dict' is not a file"):
        make_decoder(DecoderSettings(dictionary="/nonexistent.dict"))
    with pytest.raises(ModelError, match=r"unknown pocketsphinx option\(s\): bogus"):
        make_decoder(DecoderSettings(options={"bogus": 1}))


def test_clean_word() -> None:
    assert clean_word("your(2)") == "your"
    assert clean_word("don't") == "don't"
    assert [clean_word(w) for w in ("<s>", "</s>", "<sil>", "[NOISE]", "+breath+")] == [None] * 5


# ---------------------------------------------------------------- wire


def test_wire_round_trip_blocking_and_asyncio() -> None:
    result = Transcript("hello", True, 1.0, 2.0, 0.5, (Word("hello", 1.0, 2.0, 0.5),), "en-US")
    messages = [(wire.AUDIO, 3, b"\x01\x00" * 320, 1.25), (wire.RESULT, 3, result), (wire.CLOSED, 3, 320)]
    data = b"".join(wire.encode(m) for m in messages)
    stream = io.BytesIO(data)
    assert [wire.read_message(stream) for _ in range(4)] == [*messages, None]

    async def read_all() -> list[object]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return [await wire.read_message_async(reader) for _ in range(4)]

    assert asyncio.run(read_all()) == [*messages, None]


def test_wire_refuses_truncated_and_foreign_data() -> None:
    whole = wire.encode((wire.DONE, 1, 10))
    with pytest.raises(wire.WireError, match="inside a message"):
        wire.read_message(io.BytesIO(whole[:-2]))
    with pytest.raises(wire.WireError, match="exceeds"):
        wire.read_message(io.BytesIO(b"\xff\xff\xff\xff" + b"x" * 10))
    with pytest.raises(wire.WireError, match="undecodable"):
        wire.read_message(io.BytesIO(b"\x00\x00\x00\x03abc"))


# ---------------------------------------------------------------- StreamDecoder on real speech


def test_long_utterance_is_cut_at_max_utterance_s() -> None:
    """s10 (the card number, about 6.2 s of speech) with max_utterance_s 2: finals at least every 2 s, back to
    back, on the feed() clock (the clip fed from t = 100 s)."""
    path = FIXTURES / "audio" / "piper" / "s10.wav"
    require(path.is_file(), f"fixture {path}")
    audio, rate = soundfile.read(str(path), dtype="int16")
    pcm = soxr.resample(audio, rate, 16000).astype(np.int16)
    decoder = StreamDecoder(DecoderSettings(max_utterance_s=2.0), partials=False, language="en-US")
    results: list[Transcript] = []
    for i in range(0, len(pcm), 320):
        results += decoder.feed(pcm[i : i + 320], 100.0 + i / 16000)
    results += decoder.finish()
    assert all(r.is_final and r.language == "en-US" for r in results)
    assert len(results) >= 3, [r.text for r in results]
    assert 100.0 <= results[0].start < 100.5 and results[-1].end <= 100.0 + len(pcm) / 16000 + 1e-6
    for a, b in zip(results, results[1:], strict=False):
        assert a.end - a.start <= 2.0 + 0.03  # one endpointer frame over at most
        assert b.start == pytest.approx(a.end)  # cut, not lost
    words = [w for r in results for w in r.words]
    assert sum(w.text == "one" for w in words) >= 8
    assert all(r.start - 1e-6 <= w.start < w.end <= r.end + 1e-6 for r in results for w in r.words)
    assert decoder.finish() == []  # finishing twice yields nothing more
    with pytest.raises(RuntimeError):
        decoder.feed(pcm[:320], 0.0)
