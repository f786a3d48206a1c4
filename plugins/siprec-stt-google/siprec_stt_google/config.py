"""`stt.google` options."""

from __future__ import annotations

from pydantic import Field

from siprec.stt.provider import ProviderConfig


class GoogleConfig(ProviderConfig):
    credentials_file: str = ""  # a service account key (JSON); "" = Application Default Credentials
    endpoint: str = "speech.googleapis.com"  # host[:port] of the API
    insecure: bool = False  # plaintext gRPC, no credentials: a local emulator or test server only
    model: str = "phone_call"
    use_enhanced: bool = True
    punctuation: bool = True
    # Google ends a stream after ~305 s of audio (OUT_OF_RANGE): a new one starts at this much audio.
    stream_limit_s: float = Field(280.0, gt=1, le=300)
    idle_s: float = Field(3.0, gt=0)  # no audio this long (a paused leg): the stream ends, the next audio opens one
    file_block_s: float = Field(1.0, gt=0)  # post-call files are streamed in blocks of this length
