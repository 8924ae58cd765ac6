"""Placeholder: filled in by the decolle implementation."""
