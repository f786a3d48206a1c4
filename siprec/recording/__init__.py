"""Recording: leg and combined WAV files written incrementally, the manifest, and crash recovery."""
