"""`GoogleProvider`: Google Cloud Speech-to-Text v1 over gRPC (entry point `google`).

Credentials: `stt.google.credentials_file` (a service account key), else Application Default Credentials
(GOOGLE_APPLICATION_CREDENTIALS, gcloud's, or the metadata server); loaded at start, so a missing or unreadable key
fails the start with its reason. Post-call files are streamed through the same StreamingRecognize calls as live legs
(in blocks, as fast as Google takes them), so a long leg needs no Cloud Storage bucket.
Audio leaves the machine: only configure it where your recording policy allows a cloud processor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import grpc
import soundfile
from google.api_core import exceptions as google_errors
from google.auth import credentials as auth_credentials
from google.auth import default as default_credentials
from google.auth import exceptions as auth_errors
from google.cloud import speech_v1
from google.cloud.speech_v1.services.speech.transports import SpeechGrpcAsyncIOTransport
from google.oauth2 import service_account

from siprec.stt.provider import Capabilities, StreamParams, SttError, Transcript
from siprec_stt_google.config import GoogleConfig
from siprec_stt_google.stream import GoogleStream

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class GoogleProvider:
    name: ClassVar[str] = "google"
    capabilities: ClassVar[Capabilities] = Capabilities(
        streaming=True,
        partials=True,
        word_timestamps=True,
        languages=("*",),  # Google refuses a language the model lacks when the stream opens (INVALID_ARGUMENT)
        sample_rates=(8000, 16000, 48000),  # LINEAR16 at the leg's own rate: G.711 legs are sent as they are
    )
    config_model: ClassVar[type[GoogleConfig]] = GoogleConfig

    def __init__(self, config: GoogleConfig | None = None) -> None:
        self.config = config if config is not None else GoogleConfig()
        self._client: speech_v1.SpeechAsyncClient | None = None
        self._channel: grpc.aio.Channel | None = None

    async def start(self) -> None:
        c = self.config
        if c.insecure:
            self._channel = grpc.aio.insecure_channel(c.endpoint)
            transport = SpeechGrpcAsyncIOTransport(
                channel=self._channel, credentials=auth_credentials.AnonymousCredentials()
            )
            self._client = speech_v1.SpeechAsyncClient(transport=transport)
            return
        try:  # in a thread: Application Default Credentials may ask the metadata server, with time-outs
            if c.credentials_file:
                creds = await asyncio.to_thread(
                    service_account.Credentials.from_service_account_file, c.credentials_file, scopes=SCOPES
                )
            else:
                creds, _ = await asyncio.to_thread(default_credentials, scopes=SCOPES)
        except (OSError, ValueError, auth_errors.GoogleAuthError) as exc:
            where = c.credentials_file or "Application Default Credentials"
            raise SttError(f"no usable Google credentials ({where}): {exc}") from None
        self._client = speech_v1.SpeechAsyncClient(credentials=creds, client_options={"api_endpoint": c.endpoint})

    def open_stream(self, params: StreamParams) -> GoogleStream:
        if self._client is None:
            raise SttError("the Google provider is not started")
        return GoogleStream(self._client, self.config, params)

    async def transcribe_file(self, path: Path, *, language: str) -> Sequence[Transcript]:
        if self._client is None:
            raise SttError("the Google provider is not started")
        try:
            pcm, rate = await asyncio.to_thread(soundfile.read, str(path), dtype="int16", always_2d=True)
        except (OSError, RuntimeError) as exc:
            raise SttError(f"cannot read {path}: {exc}") from None
        mono = pcm.mean(axis=1).astype("int16") if pcm.shape[1] > 1 else pcm[:, 0]
        stream = GoogleStream(
            self._client, self.config,
            StreamParams(sample_rate=rate, language=language, partials=False, stream_label=Path(path).name),
        )  # fmt: skip
        block = max(1, int(self.config.file_block_s * rate))
        for i in range(0, len(mono), block):
            stream.feed(mono[i : i + block], i / rate)
        await stream.close()
        try:
            return [t async for t in stream if t.is_final]
        except google_errors.GoogleAPIError as exc:
            raise SttError(f"Google Speech: {exc}") from None

    async def close(self) -> None:
        self._client = None
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
