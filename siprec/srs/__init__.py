"""srs package."""
