"""Audio codecs: payload bytes to PCM16."""
