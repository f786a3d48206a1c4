"""Conversation analytics on the final transcripts: keywords, sentiment and per-call snapshots
(CONTRACT.md `analytics` section; docs/analytics.md)."""
