"""Offline speech to text for siprec: faster-whisper with the bundled tiny.en model (entry point `whisper`)."""

from .config import WhisperConfig
from .provider import WhisperProvider

__all__ = ["WhisperConfig", "WhisperProvider"]
