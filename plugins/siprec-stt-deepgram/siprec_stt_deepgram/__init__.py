"""Deepgram speech to text for siprec: live legs over Deepgram's streaming WebSocket API, post-call jobs over its
pre-recorded REST API (entry point `deepgram`)."""

from siprec_stt_deepgram.config import DeepgramConfig
from siprec_stt_deepgram.provider import DeepgramProvider

__all__ = ["DeepgramConfig", "DeepgramProvider"]
