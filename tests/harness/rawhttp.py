"""A bare HTTP/1.1 exchange over a socket: headers sent, the body withheld or sent in part.

What an ordinary client cannot show: that the service answered *before* it read a body (an
unauthenticated, oversized or shed request), and what it does while a body is still coming.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class RawRequest:
    """One request on its own connection; ``start`` sends the head and ``body_part`` bytes."""

    def __init__(
        self, url: str, method: str, path: str, headers: dict[str, str], timeout: float = 5.0
    ) -> None:
        parts = urlsplit(url)
        self._address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._head = (
            f"{method} {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + "\r\n"
        ).encode()
        self._timeout = timeout
        self._sock: socket.socket | None = None

    def start(self, body_part: bytes = b"") -> RawRequest:
        self._sock = socket.create_connection(self._address, timeout=self._timeout)
        self._sock.sendall(self._head + body_part)
        return self

    def send(self, data: bytes) -> None:
        assert self._sock is not None
        self._sock.sendall(data)

    def response(self) -> RawResponse:
        """The answer; raises TimeoutError when none comes within the timeout."""
        assert self._sock is not None
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed before a response: {data!r}")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = self._sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return RawResponse(status, headers, rest[:length])

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> RawRequest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
