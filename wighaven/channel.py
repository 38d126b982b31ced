"""The gateway's HTTP server connection and request objects.

Rule: hostile or broken request heads are refused before anything is
forwarded, with a proper status and a closed connection, and the gateway
goes on serving everyone else:
- a request line over 8 KiB -> 414;
- a header line over 16 KiB, a header block over 64 KiB or more than 100
  header lines -> 431;
- anything Twisted's parser rejects (both Content-Length and
  Transfer-Encoding, malformed lengths, bad header names) -> 400.

L{GatewayRequest} records when a request began and whether its stream was
broken off, so every request gets exactly one access-log line, including
those that never finish normally.
"""

from __future__ import annotations

import json

from twisted.web import http, server

__all__ = ["GatewayChannel", "GatewayRequest"]

MAX_REQUEST_LINE = 8 * 1024
MAX_HEADER_LINE = 16 * 1024
MAX_HEADER_BLOCK = 64 * 1024
MAX_HEADERS = 100

_REASONS = {
    400: b"Bad Request",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}
_DETAILS = {
    400: "malformed request",
    414: "request line longer than %d bytes" % MAX_REQUEST_LINE,
    431: "request headers too large (%d bytes per line, %d in all, %d lines at most)"
    % (MAX_HEADER_LINE, MAX_HEADER_BLOCK, MAX_HEADERS),
}


def refusal(status: int) -> bytes:
    """A complete, self-framed HTTP/1.1 response that closes the connection."""
    body = json.dumps({"error": _REASONS[status].decode().lower().replace(" ", "_"),
                       "detail": _DETAILS[status]}).encode()
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body)
    )


class GatewayRequest(server.Request):
    """A request that knows when it started and whether it was forwarded."""

    forwarded = False
    broken_off = False

    def __init__(self, channel, *args, **kwargs):
        super().__init__(channel, *args, **kwargs)
        self.started = channel.factory.reactor.seconds()
        self._logged = False

    def mark_logged(self) -> bool:
        """True the first time only: one access line per request."""
        if self._logged:
            return False
        self._logged = True
        return True

    def connectionLost(self, reason):
        site = self.channel.factory if self.channel is not None else None
        super().connectionLost(reason)
        if not self.finished and site is not None:
            site.log(self, aborted=True)


class GatewayChannel(http.HTTPChannel):
    """HTTPChannel with the gateway's limits on request heads."""

    MAX_LENGTH = MAX_HEADER_BLOCK + 1
    totalHeadersSize = MAX_HEADER_BLOCK
    maxHeaders = MAX_HEADERS
    _header_lines = 0
    _refused = False

    def lineReceived(self, line):
        if self._refused:
            return
        first_line = self._HTTPChannel__first_line
        if first_line:
            if len(line) > MAX_REQUEST_LINE:
                return self._refuse(414)
            self._header_lines = 0
        elif line:
            self._header_lines += 1
            if len(line) > MAX_HEADER_LINE or self._header_lines > MAX_HEADERS:
                return self._refuse(431)
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            return self._refuse(431)
        return super().lineReceived(line)

    def lineLengthExceeded(self, line):
        self._refuse(414 if self._HTTPChannel__first_line else 431)

    def _respondToBadRequestAndDisconnect(self):
        self._refuse(400)

    def _refuse(self, status: int):
        self._refused = True
        self.transport.write(refusal(status))
        self.loseConnection()
