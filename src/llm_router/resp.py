"""Redis's wire format (RESP2), the one client both Redis users share: the supervisor's probe and `call`
(redis_service.py) and the usage stream of every LiteLLM worker (usage_share.py, which runs inside LiteLLM and
so cannot use a client from a layer above the store). Standard library only.

`exchange` sends commands in one round trip and reads one reply each. An error reply (`-ERR ...`) is returned as a
`ReplyError` value, not raised, so a caller sees which command failed; a short read or a line that is not RESP
raises ConnectionError, like a dropped connection.
"""
from __future__ import annotations

import socket

MAX_LINE = 1 << 20  # a status, error or length line longer than this is not Redis


class ReplyError(Exception):
    """An error reply from Redis (`-ERR ...`, `-NOAUTH ...`); its text is Redis's, cut to 200 characters."""


def encode(parts: tuple[str, ...]) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def read_reply(reader) -> object:
    """The next reply on `reader` (a binary file of the socket): str, int, None, a list of those, or ReplyError."""
    line = reader.readline(MAX_LINE)
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode(errors="replace")
    if kind == b"-":
        return ReplyError(rest.decode(errors="replace")[:200])
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = reader.read(size + 2)
        if len(data) != size + 2:
            raise ConnectionError("connection closed")
        return data[:-2].decode(errors="replace")
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [read_reply(reader) for _ in range(count)]
    raise ConnectionError(f"not a Redis reply: {line[:40]!r}")


def connect(host: str, port: int, timeout: float, tls: bool = False) -> socket.socket:
    """A connected socket (TLS-wrapped with the system's trust store when `tls`); OSError when unreachable."""
    sock = socket.create_connection((host, port), timeout=timeout)
    if tls:
        import ssl

        try:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
    return sock


def exchange(sock: socket.socket, reader, commands: list[tuple[str, ...]]) -> list[object]:
    """Send `commands` in one round trip; one reply each (error replies as ReplyError values)."""
    sock.sendall(b"".join(encode(c) for c in commands))
    return [read_reply(reader) for _ in commands]
