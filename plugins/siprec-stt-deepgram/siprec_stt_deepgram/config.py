"""`stt.deepgram` options."""

from __future__ import annotations

from pydantic import Field, field_validator

from siprec.stt.provider import ProviderConfig

API_KEY_VARIABLE = "DEEPGRAM_API_KEY"  # read when stt.deepgram.api_key is empty


class DeepgramConfig(ProviderConfig):
    api_key: str = Field("", repr=False)  # empty: the DEEPGRAM_API_KEY environment variable
    url: str = "https://api.deepgram.com"  # the API's base; the live stream uses its ws(s):// form
    model: str = "nova-2"
    punctuate: bool = True
    smart_format: bool = False
    endpointing_ms: int = Field(300, ge=10)  # silence that ends an utterance (Deepgram's endpointing)
    keepalive_s: float = Field(4.0, gt=0)  # Deepgram closes a stream that gets nothing for 10 s (NET-0001)
    connect_timeout_s: float = Field(10.0, gt=0)
    file_timeout_s: float = Field(600.0, gt=0)  # a post-call file upload and its transcription
    check_key: bool = True  # start() asks the API whether the key is valid (GET /v1/projects)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// for a local test server)")
        return value.rstrip("/")
