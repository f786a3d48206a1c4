"""`StreamDecoder`: one leg's audio in, partial and final transcripts out (synchronous, no I/O).

pocketsphinx's Endpointer (WebRTC-style VAD with a decision window) cuts the stream into utterances; the speech
it lets through goes to a Decoder between start_utt() and end_utt(). While an utterance is open its hypothesis is
checked every `partial_interval_s` of audio and yielded as a partial when the text changed; at the end of the
utterance (the endpointer leaves speech, the utterance reaches `max_utterance_s`, or the stream ends) a final is
yielded with its words. All times go through a `SampleClock`, so they are on the clock of the feed() timestamps.

This runs in a decoder process (see worker.py): pocketsphinx holds the GIL while it decodes.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
import pocketsphinx

from siprec.stt.provider import Transcript, Word
from siprec.stt.sampleclock import SampleClock
from siprec_stt_pocketsphinx.config import DecoderSettings

_ALTERNATE = re.compile(r"\(\d+\)$")  # "your(2)": the dictionary's second pronunciation of "your"


class ModelError(ValueError):
    """The configured model files or decoder options cannot make a decoder; the message says which."""


def model_paths(settings: DecoderSettings) -> dict[str, str]:
    """hmm / lm / dict paths, the wheel's en-us model for those left empty; missing files named."""
    defaults = pocketsphinx.Config()
    paths = {
        "hmm": settings.hmm or defaults["hmm"],
        "lm": settings.lm or defaults["lm"],
        "dict": settings.dictionary or defaults["dict"],
    }
    if not os.path.isfile(os.path.join(paths["hmm"], "mdef")):
        raise ModelError(f"hmm {paths['hmm']!r} is not an acoustic model directory (no mdef file in it)")
    for key, name in (("lm", "lm"), ("dict", "dictionary")):
        if not os.path.isfile(paths[key]):
            raise ModelError(f"{name} {paths[key]!r} is not a file")
    return paths


def make_decoder(settings: DecoderSettings) -> pocketsphinx.Decoder:
    """A decoder for `settings` (takes about half a second and 90 MB with the default model)."""
    kwargs: dict[str, Any] = {
        **model_paths(settings),
        **settings.options,
        "samprate": settings.sample_rate,
        "loglevel": "FATAL",
    }
    if settings.cmninit:
        kwargs["cmninit"] = settings.cmninit
    known = pocketsphinx.Config()
    unknown = sorted(k for k in settings.options if not known.exists(k))
    if unknown:
        raise ModelError(f"unknown pocketsphinx option(s): {', '.join(unknown)}")
    try:
        return pocketsphinx.Decoder(**kwargs)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise ModelError(f"pocketsphinx refused the configuration: {exc}") from None


def clean_word(word: str) -> str | None:
    """The spoken word of a segment, None for silence, noise and sentence markers."""
    if word.startswith(("<", "[", "+")):
        return None
    return _ALTERNATE.sub("", word)


class StreamDecoder:
    def __init__(
        self,
        settings: DecoderSettings,
        *,
        partials: bool,
        language: str | None = None,
        decoder: pocketsphinx.Decoder | None = None,
    ) -> None:
        self.settings = settings
        self.partials = partials
        self.language = language
        self.decoder = decoder if decoder is not None else make_decoder(settings)
        self.rate = settings.sample_rate
        self._frate = int(self.decoder.config["frate"])
        self._endpointer = pocketsphinx.Endpointer(
            window=settings.vad_window_s,
            ratio=settings.vad_ratio,
            vad_mode=settings.vad_mode,
            sample_rate=self.rate,
        )
        self._frame_bytes = self._endpointer.frame_bytes
        self._pending = bytearray()
        self.clock = SampleClock(self.rate)
        self._utt_start: int | None = None  # sample offset of the open utterance's first sample
        self._utt_samples = 0
        self._partial_checked = 0  # utterance samples at the last partial check
        self._partial_text = ""
        self._max_utt = int(settings.max_utterance_s * self.rate)
        self._partial_every = int(settings.partial_interval_s * self.rate)
        self.finished = False

    @property
    def samples_in(self) -> int:
        """Samples fed so far (the caller's measure of what this decoder has processed)."""
        return self.clock.samples

    def feed(self, pcm: bytes | np.ndarray, timestamp: float) -> list[Transcript]:
        """int16 mono samples at the settings' rate, the first at `timestamp`; the results they completed."""
        if self.finished:
            raise RuntimeError("feed() after finish()")
        data = pcm.astype("<i2", copy=False).tobytes() if isinstance(pcm, np.ndarray) else bytes(pcm)
        if len(data) % 2:
            raise ValueError("PCM must be whole 16-bit samples")
        if not data:
            return []
        self.clock.note(timestamp, len(data) // 2)
        self._pending += data
        out: list[Transcript] = []
        fb = self._frame_bytes
        while len(self._pending) >= fb:
            frame = bytes(self._pending[:fb])
            del self._pending[:fb]
            self._speech(self._endpointer.process(frame), out)
        return out

    def finish(self) -> list[Transcript]:
        """End of the stream: the open utterance's final, if any."""
        out: list[Transcript] = []
        if self.finished:
            return out
        self.finished = True
        if self._endpointer.in_speech:
            # end_stream() takes a short frame but not an empty one (pocketsphinx indexes its first byte); one
            # zero sample stands in, and _end_utterance() keeps the end at the last sample really fed
            tail = bytes(self._pending) or b"\x00\x00"
            self._speech(self._endpointer.end_stream(tail), out, last=True)
        self._pending.clear()
        if self._utt_start is not None:
            self._end_utterance(out)
        return out

    def reset_for_reuse(self) -> pocketsphinx.Decoder:
        """The decoder, ready for another stream: the front end rebuilt, so the cepstral mean and noise estimate
        this stream adapted do not carry over (another stream's words then come out as from a new decoder)."""
        if self._utt_start is not None:
            self.decoder.end_utt()
        self.decoder.reinit_feat()
        return self.decoder

    # ---------------------------------------------------------------- internals

    def _speech(self, speech: bytes | None, out: list[Transcript], *, last: bool = False) -> None:
        if not speech:
            if self._utt_start is not None and not self._endpointer.in_speech and not last:
                self._end_utterance(out)
            return
        if self._utt_start is None:
            start = round(self._endpointer.speech_start * self.rate)
            self._start_utterance(start)
        self.decoder.process_raw(speech, False, False)
        self._utt_samples += len(speech) // 2
        if not self._endpointer.in_speech and not last:
            self._end_utterance(out)
        elif self._utt_samples >= self._max_utt and not last:
            # a long monologue (or noise the VAD takes for speech) still yields finals regularly
            next_start = self._utt_start + self._utt_samples  # type: ignore[operator]
            self._end_utterance(out)
            self._start_utterance(next_start)
        elif self.partials and self._utt_samples - self._partial_checked >= self._partial_every:
            self._partial(out)

    def _start_utterance(self, start: int) -> None:
        self.clock.forget_before(start)
        self.decoder.start_utt()
        self._utt_start, self._utt_samples = start, 0
        self._partial_checked, self._partial_text = 0, ""

    def _partial(self, out: list[Transcript]) -> None:
        self._partial_checked = self._utt_samples
        hyp = self.decoder.hyp()
        text = hyp.hypstr.strip() if hyp is not None else ""
        if text and text != self._partial_text:
            self._partial_text = text
            start = self._utt_start or 0
            out.append(
                Transcript(
                    text=text,
                    is_final=False,
                    start=self.clock.at(start),
                    end=self.clock.at(start + self._utt_samples),
                    language=self.language,
                )
            )

    def _end_utterance(self, out: list[Transcript]) -> None:
        start = self._utt_start or 0
        n = min(self._utt_samples, self.clock.samples - start)
        self._utt_start, self._utt_samples = None, 0
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        text = hyp.hypstr.strip() if hyp is not None else ""
        if not text:
            return  # noise the VAD let through: nothing was said
        per_frame = self.rate / self._frate
        words: list[Word] = []
        for seg in self.decoder.seg():
            word = clean_word(seg.word)
            if word is None:
                continue
            words.append(
                Word(
                    text=word,
                    start=self.clock.at(start + round(seg.start_frame * per_frame)),
                    end=self.clock.at(start + round((seg.end_frame + 1) * per_frame)),
                    confidence=float(seg.prob),
                )
            )
        confidence = sum(w.confidence or 0.0 for w in words) / len(words) if words else None
        out.append(
            Transcript(
                text=text,
                is_final=True,
                start=self.clock.at(start),
                end=self.clock.at(start + n),
                confidence=confidence,
                words=tuple(words),
                language=self.language,
            )
        )
