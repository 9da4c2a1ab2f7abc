"""HOST:PORT parsing and binding for the commands that serve (sandbox, webhook serve)."""

from __future__ import annotations

import socket

from reconciler.errors import ReconcilerError

BACKLOG = 2048


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen address must be HOST:PORT with a port from 0 to 65535, not {text!r}")
    return host.strip("[]"), int(port)


def shown_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket listening on HOST:PORT (connections queue from now on); ReconcilerError, one line, when the
    address is taken or cannot be used."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        reason = (error.strerror or str(error)).lower()  # "address already in use", "permission denied"...
        raise ReconcilerError(f"cannot listen on {shown_address(host, port)}: {reason}") from None
    return sock
