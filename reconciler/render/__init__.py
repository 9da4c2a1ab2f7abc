"""Renderers: pure functions that write a result to an injected text stream."""
