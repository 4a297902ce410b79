"""The HTTP server's side: uvicorn's httptools protocol with a bound on a request's head.

httptools sets no limit on the request line and headers: a client could send megabytes of
headers (128 MiB stalled a worker for seconds and starved its other connections). A head (the
request line and the headers, up to the blank line) longer than MAX_HEADER_BYTES is answered
431 and the connection closed, before the parser has buffered it. A proxy in front should
enforce its own limit too (README, Deploy).
"""

from __future__ import annotations

import functools

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from todo_api.core.config import load_settings

# uvicorn's `http=` option: an import string works in every worker process.
PROTOCOL = "todo_api.web.server:BoundedHttpToolsProtocol"
_HEAD_END = b"\r\n\r\n"


@functools.cache
def max_header_bytes() -> int:
    """MAX_HEADER_BYTES, read once per worker process (uvicorn builds a protocol per connection)."""
    return load_settings().max_header_bytes


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """Counts the bytes of each request's head as they arrive; refuses it past the bound."""

    _head_bytes = 0
    _in_head = True
    _tail = b""  # the last bytes seen, for a blank line split across two reads

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            seen = self._tail + data
            end = seen.find(_HEAD_END)
            self._head_bytes += len(data) if end < 0 else max(end + 4 - len(self._tail), 0)
            self._tail = seen[-3:]
            if self._head_bytes > max_header_bytes():
                self._refuse_head()
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes, self._tail = False, 0, b""
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        super().on_message_complete()

    def _refuse_head(self) -> None:
        message = b"Request header fields too large."
        self.transport.write(
            STATUS_LINE[431]
            + b"content-type: text/plain; charset=utf-8\r\n"
            + b"content-length: "
            + str(len(message)).encode()
            + b"\r\nconnection: close\r\n\r\n"
            + message
        )
        self.transport.close()
        self._in_head = False  # the connection is closing: nothing more is read
