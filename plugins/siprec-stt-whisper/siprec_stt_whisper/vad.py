"""Frame voice-activity detectors: Silero (the ONNX model bundled with faster-whisper) and an energy detector.

Both classify fixed frames of FRAME_SAMPLES float32 samples at 16 kHz, one call per frame, with hysteresis: a frame
starts speech above the onset level and continues it above a lower level, so a word's soft tail is not cut off.
"""

from __future__ import annotations

import math
import os
from typing import Protocol

import numpy as np

SAMPLE_RATE = 16000
FRAME_SAMPLES = 512  # Silero's window at 16 kHz (32 ms); the energy detector uses the same frames
FRAME_S = FRAME_SAMPLES / SAMPLE_RATE


class FrameVad(Protocol):
    def is_speech(self, frame: np.ndarray, active: bool) -> bool:
        """Whether `frame` (FRAME_SAMPLES float32 in [-1, 1]) is speech; `active`: the previous frame was."""
        ...


class SileroModel:
    """One ONNX session shared by every stream (onnxruntime sessions may be run from several threads at once)."""

    CONTEXT_SAMPLES = 64  # the v6 model sees the last 64 samples of the previous window before each window

    def __init__(self) -> None:
        import onnxruntime
        from faster_whisper.utils import get_assets_path

        options = onnxruntime.SessionOptions()
        # One frame is ~0.1 ms of work: thread pools would cost more than they save, and must not fight the decoders.
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.log_severity_level = 4
        self.session = onnxruntime.InferenceSession(
            os.path.join(get_assets_path(), "silero_vad_v6.onnx"),
            providers=["CPUExecutionProvider"],
            sess_options=options,
        )


class SileroVad:
    """Per-stream Silero state (LSTM state and the previous window's tail) over a shared model."""

    ONSET = 0.5  # faster-whisper's defaults: speech above 0.5, still speech above 0.35 once started
    OFFSET = 0.35

    def __init__(self, model: SileroModel) -> None:
        self._session = model.session
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._input = np.zeros((1, SileroModel.CONTEXT_SAMPLES + FRAME_SAMPLES), dtype=np.float32)

    def probability(self, frame: np.ndarray) -> float:
        self._input[0, SileroModel.CONTEXT_SAMPLES :] = frame
        out, self._h, self._c = self._session.run(None, {"input": self._input, "h": self._h, "c": self._c})
        self._input[0, : SileroModel.CONTEXT_SAMPLES] = frame[-SileroModel.CONTEXT_SAMPLES :]
        return float(out.reshape(-1)[0])

    def is_speech(self, frame: np.ndarray, active: bool) -> bool:
        return self.probability(frame) >= (self.OFFSET if active else self.ONSET)


class EnergyVad:
    """Frame level against a tracked noise floor: speech is ONSET_DB above the floor (and above an absolute
    minimum), continues while OFFSET_DB above it. The floor drops to a quieter frame at once and rises towards a
    louder one by FLOOR_RISE_DB_PER_S, so a steady background is learnt within seconds while an utterance lifts it
    by little."""

    MIN_DB = -50.0  # below this a frame is never speech (digital silence, line hiss)
    ONSET_DB = 12.0
    OFFSET_DB = 6.0
    FLOOR_RISE_DB_PER_S = 1.0
    FLOOR_START_DB = -60.0

    def __init__(self) -> None:
        self._floor_db = self.FLOOR_START_DB
        self._rise = self.FLOOR_RISE_DB_PER_S * FRAME_S

    @staticmethod
    def level_db(frame: np.ndarray) -> float:
        power = float(np.dot(frame, frame)) / len(frame)
        return 10.0 * math.log10(power) if power > 1e-12 else -120.0

    def is_speech(self, frame: np.ndarray, active: bool) -> bool:
        level = self.level_db(frame)
        margin = self.OFFSET_DB if active else self.ONSET_DB
        speech = level >= self.MIN_DB and level >= self._floor_db + margin
        self._floor_db = (
            max(-90.0, level) if level < self._floor_db else min(level, self._floor_db + self._rise)
        )
        return speech
