"""Google Cloud Speech-to-Text for siprec (entry point `google`): every leg over the v1 StreamingRecognize gRPC
call, a new stream before Google's ~5-minute limit, post-call files through the same streams."""

from siprec_stt_google.config import GoogleConfig
from siprec_stt_google.provider import GoogleProvider

__all__ = ["GoogleConfig", "GoogleProvider"]
