"""Bundled model folders (data only)."""
