"""Benchmarks: each module has run() -> list[dict] rows (name, value, unit, target)."""
