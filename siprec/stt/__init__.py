"""stt package."""
