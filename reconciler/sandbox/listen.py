"""HOST:PORT parsing for the commands that serve (sandbox, webhook serve)."""

from __future__ import annotations


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen address must be HOST:PORT with a port from 0 to 65535, not {text!r}")
    return host.strip("[]"), int(port)
