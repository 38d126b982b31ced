"""The gateway's HTTP server connection and request objects.

Rule: hostile or broken request heads are refused before anything is
forwarded, with a proper status and a closed connection, and the gateway
goes on serving everyone else:
- a request line over 8 KiB -> 414;
- a header line over 16 KiB, a header block over 64 KiB or more than 100
  header lines -> 431;
- anything Twisted's parser rejects (both Content-Length and
  Transfer-Encoding, malformed lengths, bad header names) -> 400;
- a request the gateway answers itself (its own paths, 405, CORS
  preflights, refused targets) with a body over L{OWN_BODY_LIMIT} -> 413:
  such bodies are kept in memory, never spooled to disk, and none of those
  answers needs more than a few KiB.

L{GatewayRequest} records when a request began and whether its stream was
broken off, so every request gets exactly one access-log line, including
those that never finish normally.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re

from twisted.web import http, server

from .headers import origin_form

__all__ = ["GatewayChannel", "GatewayRequest"]

MAX_REQUEST_LINE = 8 * 1024
MAX_HEADER_LINE = 16 * 1024
MAX_HEADER_BLOCK = 64 * 1024
MAX_HEADERS = 100
OWN_BODY_LIMIT = 16 * 1024
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:+=@/-]{1,128}$")


def _request_ids():
    """
    Fresh request ids: 12 random hex digits drawn once per process, then a
    12-digit hex counter. Unique within the process and, with overwhelming
    likelihood, across processes; one random draw per process instead of a
    system call per request (ids are labels, not secrets).
    """
    prefix = os.urandom(6).hex()
    for n in itertools.count(1):
        yield ("%s%012x" % (prefix, n)).encode("ascii")


_next_request_id = _request_ids().__next__

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    413: b"Content Too Large",
    429: b"Too Many Requests",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}
_DETAILS = {
    400: "malformed request",
    408: "request head not complete within HEADER_TIMEOUT",
    413: "request body larger than MAX_BODY_SIZE",
    "own_413": "request body larger than %d bytes, the most the gateway's own paths take"
    % OWN_BODY_LIMIT,
    429: "too many connections from this address",
    414: "request line longer than %d bytes" % MAX_REQUEST_LINE,
    431: "request headers too large (%d bytes per line, %d in all, %d lines at most)"
    % (MAX_HEADER_LINE, MAX_HEADER_BLOCK, MAX_HEADERS),
}


def refusal(status: int, detail_key=None) -> bytes:
    """
    A complete, self-framed HTTP/1.1 response that closes the connection;
    C{detail_key} picks another detail than the status's own.
    """
    body = json.dumps({"error": _REASONS[status].decode().lower().replace(" ", "_"),
                       "detail": _DETAILS[detail_key or status]}).encode()
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body)
    )


class GatewayRequest(server.Request):
    """
    A request that knows when it started, and that can be forwarded while
    its body is still arriving.

    Twisted reads a whole request body (into memory or a temporary file)
    before rendering. For forwarded requests the gateway instead starts the
    upstream request as soon as the head is in (L{gotLength}), and hands
    each piece of the body on as it arrives (L{handleContentChunk}); the
    site decides which requests stream (L{GatewaySite.begin}). Requests for
    the gateway's own pages, or answered by the gateway itself, take
    Twisted's usual path.

    An absolute-form target (C{GET http://host/path}) is reduced to its
    origin form first, so the dispatch and the log see the real path.
    """

    forwarded = False
    broken_off = False
    refused = False
    headers_at = None  # when the backend's response headers arrived
    exchange = None  # an ExchangeRecord when LOG_BODIES is on
    _request_id = None
    body = None  # the StreamingBody when the body streams upstream
    body_received = 0
    _cleanup_when_body_done = False

    def __init__(self, channel, *args, **kwargs):
        super().__init__(channel, *args, **kwargs)
        self.started = channel.factory.reactor.seconds()
        self._logged = False

    @property
    def request_id(self) -> bytes:
        """
        The client's X-Request-ID when it is sane (up to 128 safe
        characters), else a fresh random one; sent upstream and back.
        """
        if self._request_id is None:
            given = self.requestHeaders.getRawHeaders(b"x-request-id")
            if given and _REQUEST_ID.match(given[0]):
                self._request_id = given[0]
            else:
                self._request_id = _next_request_id()
        return self._request_id

    def setHeader(self, name, value):
        # Twisted's Request.process stamps "Server: TwistedWeb/<version>" on
        # every answer; the gateway's own answers don't advertise it, and a
        # forwarded one carries the backend's own Server header.
        if value is server.version and name == b"Server":
            return
        super().setHeader(name, value)

    def mark_logged(self) -> bool:
        """True the first time only: one access line per request."""
        if self._logged:
            return False
        self._logged = True
        return True

    def gotLength(self, length):
        channel = self.channel
        self.method, self.clientproto = channel._command, channel._version
        self.uri = origin_form(channel._path)
        self.path = self.uri.split(b"?", 1)[0]
        site = channel.factory
        if site.max_body_size and length is not None and length > site.max_body_size:
            self.refuse(413)
        elif not site.begin(self, length):
            self._own_body(length)

    def _own_body(self, length):
        """A request the gateway answers itself: a small body, in memory, or 413."""
        if length is not None and length > OWN_BODY_LIMIT:
            self.refuse(413, "own_413")
        else:
            self.content = io.BytesIO()

    def handleContentChunk(self, data):
        if self.refused:
            return
        self.body_received += len(data)
        limit = self.channel.factory.max_body_size
        if limit and self.body_received > limit:
            self.refuse(413)
        elif self.body is not None:
            if self.exchange is not None:
                self.exchange.request_body(data)
            self.body.write(data)
        elif self.forwarded:
            pass  # a body nobody wants (the upstream request is over)
        elif self.body_received > OWN_BODY_LIMIT:
            self.refuse(413, "own_413")
        else:
            super().handleContentChunk(data)

    def requestReceived(self, command, path, version):
        if self.refused:
            return
        if self.forwarded:
            # The upstream request is under way already: no render.
            if self.body is not None:
                self.body.end()
            if self._cleanup_when_body_done:
                super()._cleanup()
            return
        super().requestReceived(command, origin_form(path), version)

    @property
    def body_complete(self) -> bool:
        """Has the whole request body been read from the client?"""
        return self.body is None or self.body.ended

    def refuse(self, status: int, detail_key=None):
        """
        Answer C{status} at once and close the connection, whatever the state.
        When an answer has begun already (the backend answered before the
        body was read), no second answer may follow it: the connection is
        closed after a complete answer, and cut in the middle of one.
        """
        self.refused = True
        if self.body is not None:
            self.body.stopProducing()
        if self.startedWriting:
            self.channel.stop_after_answer(complete=self.finished)
            return
        self.setResponseCode(status)
        self.channel.refuse(status, detail_key)

    def _cleanup(self):
        if not self.body_complete and not self._disconnected:
            # Answered before the whole body came in (the backend did not
            # wait for it): the rest is read and dropped first, so that a
            # next request on this connection can never start inside it.
            self._cleanup_when_body_done = True
            return
        super()._cleanup()

    def connectionLost(self, reason):
        site = self.channel.factory if self.channel is not None else None
        super().connectionLost(reason)
        if not self.finished and site is not None:
            site.log(self, aborted=not self.refused)


class GatewayChannel(http.HTTPChannel):
    """
    HTTPChannel with the gateway's limits on request heads, and its timers:
    - a request head must be complete within HEADER_TIMEOUT of its first
      byte (or of the connection opening), in all: a client trickling a
      byte at a time gets 408, however steadily it trickles;
    - between requests, a keep-alive connection stays open KEEPALIVE_TIMEOUT;
    - while a request body is read, STREAM_IDLE_TIMEOUT of silence (reset by
      every byte) cuts the upload.
    Twisted's own idle timer (reset by every byte, in every phase) is off:
    the site passes timeout=None.
    """

    MAX_LENGTH = MAX_HEADER_BLOCK + 1
    totalHeadersSize = MAX_HEADER_BLOCK
    maxHeaders = MAX_HEADERS
    _header_lines = 0
    _refused = False
    _phase_timer = None
    _between_requests = False
    _head_pending = True
    _reading_body = False

    def connectionMade(self):
        super().connectionMade()
        self._await_head()

    def _set_phase_timer(self, seconds, expired):
        if self._phase_timer is not None and self._phase_timer.active():
            self._phase_timer.cancel()
        self._phase_timer = self.callLater(seconds, expired) if expired else None

    def _await_head(self):
        self._between_requests = False
        self._head_pending = True
        self._set_phase_timer(self.factory.header_timeout, self._head_timed_out)

    def _head_timed_out(self):
        self._phase_timer = None
        self.refuse(408)

    def _await_next_request(self):
        self._between_requests = True
        self._set_phase_timer(self.factory.keepalive_timeout, self._idle_timed_out)

    def _idle_timed_out(self):
        self._phase_timer = None
        self.loseConnection()

    def _body_went_silent(self):
        self._phase_timer = None
        self.loseConnection()

    def dataReceived(self, data):
        if self._between_requests:
            self._await_head()
        elif self._reading_body and self._phase_timer is not None:
            self._phase_timer.reset(self.factory.stream_idle_timeout)
        super().dataReceived(data)

    def allHeadersReceived(self):
        self._head_pending = False
        # A body follows unless the length is 0 (None: chunked).
        self._reading_body = self.length != 0
        if self._reading_body:
            self._set_phase_timer(self.factory.stream_idle_timeout, self._body_went_silent)
        else:
            self._set_phase_timer(0, None)
        super().allHeadersReceived()

    def requestDone(self, request):
        super().requestDone(request)
        if self._refused or self.transport is None or not self.persistent:
            return
        if not self.requests:
            if self._buffer:  # a next request's first bytes, still without a line end
                self._await_head()
            else:
                self._await_next_request()
        elif self._head_pending and not self._between_requests and self._phase_timer is None:
            self._await_head()

    def connectionLost(self, reason):
        self._set_phase_timer(0, None)
        self.factory.channels.discard(self)
        super().connectionLost(reason)

    def writeHeaders(self, version, code, reason, headers):
        if self.factory.draining:
            # Shutting down: this answer is the connection's last.
            self.persistent = False
            headers.setRawHeaders(b"Connection", [b"close"])
        super().writeHeaders(version, code, reason, headers)

    def close_if_idle(self) -> bool:
        """Close the connection if no request is in progress on it."""
        if self.requests or self.transport is None:
            return False
        self.loseConnection()
        return True

    def lineReceived(self, line):
        if self._refused:
            return
        first_line = self._HTTPChannel__first_line
        if first_line:
            self._head_pending = True
            if len(line) > MAX_REQUEST_LINE:
                return self.refuse(414)
            self._header_lines = 0
        elif line:
            self._header_lines += 1
            if len(line) > MAX_HEADER_LINE or self._header_lines > MAX_HEADERS:
                return self.refuse(431)
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            return self.refuse(431)
        return super().lineReceived(line)

    def lineLengthExceeded(self, line):
        self.refuse(414 if self._HTTPChannel__first_line else 431)

    def _respondToBadRequestAndDisconnect(self):
        self.refuse(400)

    def refuse(self, status: int, detail_key=None):
        """Send a self-framed error answer and close; read nothing more."""
        if self._refused:
            return
        self._refused = True
        self._set_phase_timer(0, None)
        self.transport.write(refusal(status, detail_key))
        self.loseConnection()

    def stop_after_answer(self, complete: bool):
        """
        Read nothing more and close: after the answer already written when
        it is C{complete}, else at once (the client must not take a cut
        answer for a whole one).
        """
        if self._refused:
            return
        self._refused = True
        self._set_phase_timer(0, None)
        if complete:
            self.loseConnection()
        else:
            self.transport.abortConnection()

    def _send100Continue(self):
        # The gateway says 100 Continue only to a request it goes on with.
        if self.requests and not self.requests[-1].refused:
            super()._send100Continue()

    def allContentReceived(self):
        if self._reading_body:
            self._reading_body = False
            self._set_phase_timer(0, None)
        if self._refused or not self.requests:
            return
        super().allContentReceived()

    def rawDataReceived(self, data):
        if self._refused or not self.requests:
            return
        super().rawDataReceived(data)
