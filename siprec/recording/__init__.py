"""recording package."""
