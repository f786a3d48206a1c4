"""PocketSphinx speech-to-text provider for the siprec recording server (entry point `siprec.stt` = pocketsphinx)."""

from siprec_stt_pocketsphinx.config import PocketsphinxConfig
from siprec_stt_pocketsphinx.provider import PocketsphinxProvider

__all__ = ["PocketsphinxConfig", "PocketsphinxProvider"]
__version__ = "0.1.0"
