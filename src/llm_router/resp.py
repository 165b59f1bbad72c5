"""Redis's wire format (RESP2), the one client both Redis users share: the supervisor's probe and `call`
(redis_service.py) and the usage stream of every LiteLLM worker (usage_share.py, which runs inside LiteLLM and
so cannot use a client from a layer above the store). Standard library only.

`exchange` sends commands in one round trip and reads one reply each. An error reply (`-ERR ...`) is returned as a
`ReplyError` value, not raised, so a caller sees which command failed; a short read, a line that is not RESP, a
bulk string over MAX_BULK or arrays nested deeper than MAX_DEPTH raise ConnectionError, like a dropped connection
(nothing we send is answered with more: the largest reply is an XREAD of 500 usage rows).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # socket itself is imported on the first connect: redis_service is on the CLI's start-up path
    import socket

MAX_LINE = 1 << 20  # a status, error or length line longer than this is not Redis
MAX_BULK = 64 << 20  # bytes of one bulk string (read whole: a bogus length must not allocate gigabytes)
MAX_DEPTH = 16  # nested arrays (XREAD's reply is 4 deep)


class ReplyError(Exception):
    """An error reply from Redis (`-ERR ...`, `-NOAUTH ...`); its text is Redis's, cut to 200 characters."""


def encode(parts: tuple[str, ...]) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def read_reply(reader, depth: int = 0) -> object:
    """The next reply on `reader` (a binary file of the socket): str, int, None, a list of those, or ReplyError."""
    line = reader.readline(MAX_LINE)
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode(errors="replace")
    if kind == b"-":
        return ReplyError(rest.decode(errors="replace")[:200])
    if kind not in (b":", b"$", b"*"):
        raise ConnectionError(f"not a Redis reply: {line[:40]!r}")
    try:
        number = int(rest)
    except ValueError:
        raise ConnectionError(f"not a Redis reply: {line[:40]!r}") from None
    if kind == b":":
        return number
    if number < 0:
        return None
    if kind == b"$":
        if number > MAX_BULK:
            raise ConnectionError(f"a {number}-byte reply is not one we asked for")
        data = reader.read(number + 2)
        if len(data) != number + 2:
            raise ConnectionError("connection closed")
        return data[:-2].decode(errors="replace")
    if depth >= MAX_DEPTH:
        raise ConnectionError("a reply nested deeper than any we asked for")
    return [read_reply(reader, depth + 1) for _ in range(number)]


def connect(host: str, port: int, timeout: float, tls: bool = False) -> socket.socket:
    """A connected socket (TLS-wrapped with the system's trust store when `tls`); OSError when unreachable."""
    import socket

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
