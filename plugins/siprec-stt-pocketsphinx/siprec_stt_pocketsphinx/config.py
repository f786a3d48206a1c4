"""The `stt.pocketsphinx` options and the settings every decoder process is built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field, field_validator

from siprec.stt.provider import ProviderConfig

SAMPLE_RATE = 16000  # the en-us acoustic model in the pocketsphinx wheel is a 16 kHz model

# Initial cepstral mean for narrowband (8 kHz telephone) speech resampled to 16 kHz. The model's own default
# (40,3,-1) is far from it because the band above 4 kHz is empty, and live CMN needs several utterances to get
# there: on the two-party call fixture (streamed), the word error rate is 0.39 with this value and 0.51 with the
# model's. Measured with live CMN over the eSpeak NG fixture clips (a different voice than the call's), rounded.
TELEPHONE_CMNINIT = "44,17.7,-30,41,-31.5,-8.1,4.9,-24.3,9.1,-17,4,5.7,-16.9"

# Decoder options that differ from pocketsphinx's defaults. fwdflat (a second search pass at the end of each
# utterance) delays every final by 250-450 ms and costs about a third more CPU, for a word error rate 0.02 lower
# on the call fixture (0.37 instead of 0.39); `options: {fwdflat: true}` turns it back on.
DEFAULT_DECODER_OPTIONS: dict[str, str | float | int | bool] = {"fwdflat": False}

OptionValue = str | float | int | bool


class PocketsphinxConfig(ProviderConfig):
    """`stt.pocketsphinx` in the YAML. Paths left empty mean the en-us model inside the pocketsphinx wheel."""

    hmm: str = ""  # acoustic model directory (16 kHz)
    lm: str = ""  # n-gram language model (.lm / .lm.bin)
    dictionary: str = ""  # pronunciation dictionary
    # initial cepstral mean, 13 comma-separated numbers; "" = the acoustic model's own default
    cmninit: str = TELEPHONE_CMNINIT
    partial_interval_s: Annotated[float, Field(ge=0.1, le=10.0)] = 0.4  # of audio, between partial checks
    vad_mode: Annotated[int, Field(ge=0, le=3)] = 0  # 0 = loose ... 3 = strict speech detection
    vad_window_s: Annotated[float, Field(ge=0.09, le=3.0)] = 0.3  # endpointer decision window
    vad_ratio: Annotated[float, Field(gt=0.0, lt=1.0)] = (
        0.9  # share of the window that switches speech on/off
    )
    max_utterance_s: Annotated[float, Field(ge=2.0, le=300.0)] = 20.0  # a final at least this often
    workers: Annotated[int, Field(ge=0, le=64)] = 0  # decoder processes; 0 = one per CPU
    worker_nice: Annotated[int, Field(ge=0, le=19)] = 5  # media before transcription when CPU is short
    # decoders a process keeps after their streams closed (~90 MB each): building one for a new stream takes
    # ~0.5 s, and the process's other streams wait meanwhile
    idle_decoders: Annotated[int, Field(ge=0, le=64)] = 2
    max_backlog_s: Annotated[float, Field(gt=0.0)] = 30.0  # a stream this far behind fails
    options: dict[str, OptionValue] = Field(default_factory=dict)  # any other pocketsphinx option, e.g. lw

    @field_validator("cmninit")
    @classmethod
    def _cmninit_numbers(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        parts = value.split(",")
        try:
            [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"cmninit must be comma-separated numbers (got {value!r})") from None
        if len(parts) > 13:
            raise ValueError(f"cmninit has at most 13 numbers (got {len(parts)})")
        return value

    @field_validator("options")
    @classmethod
    def _no_managed_options(cls, value: dict[str, OptionValue]) -> dict[str, OptionValue]:
        managed = sorted(set(value) & {"hmm", "lm", "dict", "cmninit", "samprate", "logfn", "loglevel"})
        if managed:
            raise ValueError(f"set {', '.join(managed)} with the provider's own keys, not in options")
        return value

    def decoder_settings(self) -> DecoderSettings:
        return DecoderSettings(
            hmm=self.hmm,
            lm=self.lm,
            dictionary=self.dictionary,
            cmninit=self.cmninit,
            options={**DEFAULT_DECODER_OPTIONS, **self.options},
            partial_interval_s=self.partial_interval_s,
            vad_mode=self.vad_mode,
            vad_window_s=self.vad_window_s,
            vad_ratio=self.vad_ratio,
            max_utterance_s=self.max_utterance_s,
            idle_decoders=self.idle_decoders,
        )


@dataclass(frozen=True)
class DecoderSettings:
    """What a decoder process needs to build decoders and segment a stream (picklable, no pydantic)."""

    hmm: str = ""
    lm: str = ""
    dictionary: str = ""
    cmninit: str = TELEPHONE_CMNINIT
    options: dict[str, OptionValue] = field(default_factory=lambda: dict(DEFAULT_DECODER_OPTIONS))
    partial_interval_s: float = 0.4
    vad_mode: int = 0
    vad_window_s: float = 0.3
    vad_ratio: float = 0.9
    max_utterance_s: float = 20.0
    idle_decoders: int = 2
    sample_rate: int = SAMPLE_RATE
