"""The gateway's HTTP server connection and request objects.

Rule: hostile or broken request heads are refused before anything is
forwarded, with a proper status and a closed connection, and the gateway
goes on serving everyone else:
- a request line over 8 KiB -> 414;
- a header line over 16 KiB, a header block over 64 KiB or more than 100
  header lines -> 431;
- anything llhttp rejects (both Content-Length and Transfer-Encoding,
  malformed lengths, bad header names, unknown methods; see
  L{GatewayChannel}) -> 400;
- a request the gateway answers itself (its own paths, 405, CORS
  preflights, refused targets) with a body over L{OWN_BODY_LIMIT} -> 413:
  such bodies are kept in memory, never spooled to disk, and none of those
  answers needs more than a few KiB; the site may let one endpoint take
  more from an authenticated caller (L{wighaven.proxy.site.GatewaySite.
  own_body_limit}: an administrator's config import, up to 1 MiB).

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

from httptools import (
    HttpParserCallbackError, HttpParserError, HttpParserUpgrade, HttpRequestParser,
)
from twisted.web import http, server

from .headers import origin_form
from .websocket import is_websocket_upgrade

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
    prefix = os.urandom(6).hex().encode("ascii")
    for n in itertools.count(1):
        yield b"%s%012x" % (prefix, n)


_next_request_id = _request_ids().__next__
# Read once: twisted.web.http is a deprecation proxy module, each of whose
# attribute reads costs as much as a dict copy (3.5 us a request, here).
_NO_BODY_CODES = frozenset(http.NO_BODY_CODES)

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    413: b"Content Too Large",
    401: b"Unauthorized",
    403: b"Forbidden",
    429: b"Too Many Requests",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}
_DETAILS = {
    400: "malformed request",
    408: "request head not complete within HEADER_TIMEOUT",
    413: "request body larger than MAX_BODY_SIZE",
    "own_413": "request body larger than the gateway's own paths take (%d bytes; an "
    "administrator's config import, 1 MiB)" % OWN_BODY_LIMIT,
    429: "too many connections from this address",
    "gate_401": "sign in first, or send an access token or API key",
    "gate_403": "your account may not use this route",
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
    challenge = b'WWW-Authenticate: Bearer realm="wighaven"\r\n' if status == 401 else b""
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"%sConnection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), challenge, body)
    )


def _drop(data):
    """A body write after a head that allows none (HEAD, 1xx, 204, 304)."""


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
    upstream_label = None  # which upstream of its route took it (metrics)
    affinity_cookie = None  # a Set-Cookie binding the client to its upstream
    _request_id = None
    body = None  # the StreamingBody when the body streams upstream
    body_received = 0
    _own_body_limit = OWN_BODY_LIMIT  # the site's, for a request the gateway answers itself
    _cleanup_when_body_done = False
    body_complete = False  # has the whole request (head and body) been read?
    _on_client_gone = None
    # Access control (AUTH on): what the gate made of the request's credentials,
    # its refusal if any, and the changes its headers get on the way up.
    gate_seen = None
    gate_refusal = None
    upstream_auth = None

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

    def write_forwarded_head(self, code: int, phrase: bytes, headers) -> None:
        """
        Send a forwarded answer's status line and headers at once: the
        backend's end-to-end headers (C{headers}: (name, [values]) in the
        backend's order and spelling), the gateway's X-Request-ID, whatever
        the gateway set on C{responseHeaders} (Connection: close, a policy
        step's additions), then the framing.

        Why not Request.write: it copies every header into a Headers object
        that re-cases names, groups them and scans values for line breaks,
        and the channel copies them again; that was a tenth of the CPU of a
        small forwarded request. Here nothing is copied, and nothing needs
        the scan: names are tokens and values have no CR or LF, since the
        backend's were parsed by llhttp, the CORS and Location values are
        built from llhttp-parsed requests and validated settings, the
        request id is a checked or generated token, and C{responseHeaders}
        went through Headers. A value is kept as the
        backend wrote it, and so is the name's case, which is more faithful
        than Twisted's re-casing. A backend's own X-Request-ID gives way to
        the gateway's, as every other answer's does.

        Framing is Twisted's rule: an HTTP/1.1 answer without Content-Length
        that may have a body is sent chunked; HEAD answers and 1xx/204/304
        carry no body (later writes are dropped).
        """
        self.code = code
        self.code_message = phrase  # the backend's, even empty (RFC 9112 4)
        self.startedWriting = 1
        channel = self.channel
        out = [self.clientproto, b" %d " % code, self.code_message, b"\r\n"]
        length_given = False
        for name, values in headers:
            size = len(name)
            if size == 14 or size == 12:
                low = name.lower()
                if low == b"content-length":
                    length_given = True
                elif low == b"x-request-id":
                    continue
            for value in values:
                out += (name, b": ", value, b"\r\n")
        out += (b"X-Request-ID: ", self.request_id, b"\r\n")
        own = self.responseHeaders
        if channel.factory.draining:  # shutting down: this answer is the connection's last
            channel.persistent = False
            own.setRawHeaders(b"Connection", [b"close"])
        for name, values in own.getAllRawHeaders():
            if name == b"Content-Length":
                length_given = True
            for value in values:
                out += (name, b": ", value, b"\r\n")
        no_body = self.method == b"HEAD" or code in _NO_BODY_CODES
        if not (length_given or no_body) and self.clientproto == b"HTTP/1.1":
            out.append(b"Transfer-Encoding: chunked\r\n")
            self.chunked = 1
        out.append(b"\r\n")
        channel.writeSequence(out)
        if no_body:
            self.write = _drop

    def mark_logged(self) -> bool:
        """True the first time only: one access line per request."""
        if self._logged:
            return False
        self._logged = True
        return True

    def gotLength(self, length):
        # The channel has set method, uri (origin form), path and clientproto.
        site = self.channel.factory
        if site.max_body_size and length is not None and length > site.max_body_size:
            self.refuse(413)
        elif not site.begin(self, length):
            self._own_body(length)

    def _own_body(self, length):
        """A request the gateway answers itself: a small body, in memory, or 413."""
        refusal = self.gate_refusal
        if refusal is not None and length != 0:
            # Refused by access control: its body is not read at all.
            self.refuse(refusal.status, "gate_%d" % refusal.status)
        else:
            limit = self.channel.factory.own_body_limit(self)
            self._own_body_limit = limit
            if length is not None and length > limit:
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
        elif self.body_received > self._own_body_limit:
            self.refuse(413, "own_413")
        else:
            super().handleContentChunk(data)

    def requestReceived(self, command, path, version):
        self.body_complete = True
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
            # wait for it, or a policy answered first): the rest is read and
            # dropped first, so that a next request on this connection can
            # never start inside it.
            self._cleanup_when_body_done = True
            return
        super()._cleanup()

    def finish(self):
        self._on_client_gone = None  # answered: nothing to tell, and no cycle to keep
        super().finish()

    def when_client_gone(self, callback) -> None:
        """
        Call C{callback(reason)} if the client's connection is lost before
        the answer is finished: notifyFinish's errback without a Deferred
        per request (the forwarding path asks for it on every request).
        """
        self._on_client_gone = callback

    def connectionLost(self, reason):
        site = self.channel.factory if self.channel is not None else None
        super().connectionLost(reason)
        gone, self._on_client_gone = self._on_client_gone, None
        if gone is not None and not self.finished:
            gone(reason)
        if not self.finished and site is not None:
            site.log(self, aborted=not self.refused)


class _Stop(Exception):
    """Raised in a parser callback: parse nothing more of this connection."""


class GatewayChannel(http.HTTPChannel):
    """
    Twisted's HTTPChannel with its request parsing replaced by httptools
    (llhttp, Node's parser), and the gateway's limits and timers.

    Everything after parsing is Twisted's: each request becomes a
    L{GatewayRequest} (the site decides at its head whether it is
    forwarded as it arrives or served by the gateway's own pages, see
    L{GatewaySite.begin}), responses are written through the channel's
    writeHeaders/write, and the producer chain between transport, channel
    and request is HTTPChannel's.

    Parsing: the head is handed on once complete; body pieces (chunked
    framing decoded, trailers dropped) as they come. llhttp refuses
    Content-Length beside Transfer-Encoding, a second or malformed
    Content-Length, bad chunk framing, obsolete line folding, bare LF line
    ends, invalid header names or values and unknown methods: all 400.

    Pipelining: answers go out in order. From the moment a request's body
    is complete until its answer is done, no next request is handed on:
    what the parser has read of it already is kept (C{_parked}, replayed
    then) and later bytes wait unparsed (C{_dataBuffer}); past
    C{_optimisticEagerReadSize} bytes the client is paused, as Twisted
    does, through the same transport pause an upload's backpressure uses.

    Upgrade: llhttp stops at the head of a request that asks for one. A
    WebSocket handshake's later bytes wait in C{_dataBuffer} for the tunnel
    (L{wighaven.proxy.websocket}); for any other, parsing goes on with a fresh
    parser. An upgrade request other than a WebSocket handshake that
    declares a body is refused (400): llhttp leaves such a body unframed.

    Limits and timers:
    - a request line over 8 KiB -> 414; a header line over 16 KiB, a head
      over 64 KiB or more than 100 header lines -> 431;
    - a request head must be complete within HEADER_TIMEOUT of its first
      byte (or of the connection opening), in all: a client trickling a
      byte at a time gets 408, however steadily it trickles;
    - between requests, a keep-alive connection stays open KEEPALIVE_TIMEOUT;
    - while a request body is read, STREAM_IDLE_TIMEOUT of silence (reset by
      every byte) cuts the upload.
    Twisted's own idle timer (reset by every byte, in every phase) is off:
    the site passes timeout=None.
    """

    _refused = False
    deadline = None  # when the current phase times out (L{wighaven.proxy.deadlines})
    _phase_expired = None  # what happens then
    _between_requests = False
    _head_pending = False
    _reading_body = False
    _feeding = False  # inside the parser's feed_data
    _parked = None  # parser events of a next request read while one is handled
    _read_ahead = 0  # bytes parked and held while an answer is written
    _head_bytes = 0  # bytes read while the current head is incomplete
    _head_lines_ended = False
    _done_in_feed = False  # an answer was completed while parsing
    _feed_body = 0  # body bytes parsed from the piece being fed
    _secure = None  # is the connection TLS? (asked once)

    def connectionMade(self):
        super().connectionMade()
        self._parser = HttpRequestParser(self)
        self.factory.deadlines.watch(self)
        self._await_head()

    # Timers: one deadline at a time, the phase's, checked by the site's sweep.

    def _set_phase_deadline(self, seconds, expired):
        self._phase_expired = expired
        self.deadline = self.factory.reactor.seconds() + seconds if expired else None

    def deadline_passed(self):
        expired, self._phase_expired = self._phase_expired, None
        if expired is not None:
            expired()

    def _await_head(self):
        self._between_requests = False
        self._set_phase_deadline(self.factory.header_timeout, self._head_timed_out)

    def _head_timed_out(self):
        self.refuse(408)

    def _await_next_request(self):
        self._between_requests = True
        self._set_phase_deadline(self.factory.keepalive_timeout, self._idle_timed_out)

    def _idle_timed_out(self):
        self.loseConnection()

    def _body_went_silent(self):
        self.loseConnection()

    # Bytes in.

    def dataReceived(self, data):
        if self._refused:
            return
        if self._handlingRequest or self._parked is not None:
            # A request is being answered: the next waits (pipelining).
            self._hold(data)
            return
        if self._between_requests:
            self._await_head()
        elif self._reading_body and self.deadline is not None:
            self.deadline = self.factory.reactor.seconds() + self.factory.stream_idle_timeout
        self._feed(data)

    def _hold(self, data):
        self._dataBuffer.append(data)
        self._read_ahead_by(len(data))

    def _read_ahead_by(self, size):
        """Past Twisted's read-ahead bound, the client is paused until the answer is done."""
        self._read_ahead += size
        if self._read_ahead > self._optimisticEagerReadSize and not self._waitingForTransport:
            self._networkProducer.pauseProducing()

    def _feed(self, data):
        if self._parser is None:
            return  # the connection is gone
        self._feeding = True
        self._feed_body = 0
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade as upgrade:
            self._feeding = False
            self._upgraded(data[upgrade.args[0]:])
            return
        except HttpParserCallbackError as error:
            cause = error.__context__
            if not isinstance(cause, _Stop):
                raise cause from None
        except HttpParserError:
            self._malformed()
        finally:
            self._feeding = False
        if self._done_in_feed:
            self._done_in_feed = False
            if not (self.requests or self._head_pending or self._refused or self._parked):
                self._await_next_request()
        if self._head_pending and not self._refused:
            # A line that never ends would be kept whole by llhttp: count what came
            # (of the piece the head began in, all but the body bytes before it).
            if self._head_bytes is None:
                self._head_bytes = -self._feed_body
            self._head_bytes += len(data)
            self._head_lines_ended = self._head_lines_ended or b"\n" in data
            if self._head_bytes > MAX_HEADER_BLOCK:
                self.refuse(431 if self._head_lines_ended else 414)

    def _malformed(self):
        """llhttp refused what it read (its parser is done): a 400, in its turn."""
        if self._parked is not None:
            self._park(self._bad_request)  # after the answers before it
        elif self._reading_body:
            self.requests[-1].refuse(400)
        elif not self.persistent and not self._head_pending:
            pass  # bytes after a closing connection's last request are ignored
        elif self.requests:
            self._park(self._bad_request)  # an answer is still being written
        else:
            self.refuse(400)

    def _bad_request(self):
        self.refuse(400)
        raise _Stop()

    def _upgraded(self, rest):
        """llhttp stopped at an upgrade request's head: go on with a fresh parser."""
        self._parser = HttpRequestParser(self)
        if rest and not self._refused:
            self.dataReceived(rest)

    # httptools' callbacks: the parts of a request, as they are parsed.

    def on_message_begin(self):
        if self._refused or not self.persistent:
            raise _Stop()  # a closing connection takes no next request
        if self._handlingRequest or self._parked is not None:
            self._park(self._begin)
        else:
            self._begin()

    def on_url(self, url):
        if self._parked is not None:
            self._park(self._url, url)
        else:
            self._url(url)

    def on_header(self, name, value):
        if self._parked is not None:
            self._park(self._header, name, value)
        else:
            self._header(name, value)

    def on_headers_complete(self):
        parser = self._parser
        facts = (parser.get_method(), parser.get_http_version(), parser.should_upgrade())
        if self._parked is not None:
            self._park(self._head, *facts)
        else:
            self._head(*facts)

    def on_body(self, body):
        if self._parked is not None:
            self._park(self._body, body)
        else:
            self._body(body)

    def on_message_complete(self):
        if self._parked is not None:
            self._park(self._message_complete)
        else:
            self._message_complete()

    def _park(self, *event):
        """Keep a parser event of a request that must wait for the one being answered."""
        if self._parked is None:
            self._parked = []
        self._parked.append(event)
        self._read_ahead_by(sum(len(part) for part in event[1:] if isinstance(part, bytes)))

    def _replay(self):
        """The answer is done: hand on what was parked, then what was held."""
        parked, self._parked, self._read_ahead = self._parked, None, 0
        for position, event in enumerate(parked or ()):
            if self._refused or self.transport is None:
                return
            if self._handlingRequest or self._parked is not None:
                if self._parked is None:
                    self._parked = []
                self._parked.extend(parked[position:])
                return
            try:
                event[0](*event[1:])
            except _Stop:
                return
        if self._dataBuffer and not self._handlingRequest:
            data = b"".join(self._dataBuffer)
            self._dataBuffer = []
            self.dataReceived(data)

    # One request.

    def _begin(self):
        if self._between_requests or self._phase_expired is None:
            self._await_head()
        self._head_pending = True
        self._head_bytes = None  # counted from the end of the piece it began in
        self._head_lines_ended = False
        self._url_parts = []
        self._url_size = 0
        self._headers = []
        self._head_size = 0
        self._length = 0
        self._expect_continue = False

    def _url(self, url):
        self._url_parts.append(url)
        self._url_size += len(url)
        # The request line is "METHOD url HTTP/1.1": its method is looked at
        # only when the line may be near the limit.
        if self._url_size > _URL_WITHOUT_CHECK and (
            self._url_size + len(self._parser.get_method() or b"") + 10 > MAX_REQUEST_LINE
        ):
            self.refuse(414)
            raise _Stop()

    def _header(self, name, value):
        if not self._head_pending:
            return  # a trailer: dropped
        value = value.rstrip(b" \t")
        headers = self._headers
        headers.append((name, value))
        line = len(name) + len(value) + 2
        self._head_size += line
        if (line > MAX_HEADER_LINE or len(headers) > MAX_HEADERS
                or self._head_size + self._url_size > MAX_HEADER_BLOCK):
            self.refuse(431)
            raise _Stop()
        if len(name) in _FRAMING_NAME_SIZES:
            low = name.lower()
            if low == b"content-length":
                self._length = int(value)
            elif low == b"transfer-encoding":
                self._length = None
            elif low == b"expect":
                self._expect_continue = value.lower() == b"100-continue"

    def _head(self, method, version, upgrade):
        self._head_pending = False
        url = b"".join(self._url_parts)
        version = b"HTTP/" + version.encode("ascii")
        request = self.requestFactory(self, len(self.requests))
        add = request.requestHeaders.addRawHeader
        for name, value in self._headers:
            add(name, value)
        if upgrade and self._length != 0 and not is_websocket_upgrade(
            method, request.requestHeaders
        ):
            self.refuse(400)  # llhttp would take its body for the upgraded protocol's bytes
            raise _Stop()
        self.requests.append(request)
        request.method, request.clientproto = method, version
        request.uri = origin_form(url)
        request.path = request.uri.split(b"?", 1)[0]
        self._request_line = (method, url, version)
        self.persistent = self.checkPersistence(request, version)
        length = 0 if upgrade else self._length
        self._reading_body = length != 0
        if self._reading_body:
            self._set_phase_deadline(self.factory.stream_idle_timeout, self._body_went_silent)
        else:
            self._set_phase_deadline(0, None)
        request.parseCookies()
        request.gotLength(length)
        if self._expect_continue and version == b"HTTP/1.1" and not self._refused:
            self._send100Continue()
        if self._refused:
            raise _Stop()

    def _body(self, data):
        self._feed_body += len(data)
        if self._reading_body:
            self.requests[-1].handleContentChunk(data)
            if self._refused:
                raise _Stop()

    def _message_complete(self):
        if self._reading_body:
            self._reading_body = False
            self._set_phase_deadline(0, None)
        if self._refused or not self.requests:
            raise _Stop()
        self._handlingRequest = True
        self.requests[-1].requestReceived(*self._request_line)

    def requestDone(self, request):
        if request is not self.requests[0]:
            raise TypeError(request)
        del self.requests[0]
        if not self._waitingForTransport:
            self._networkProducer.resumeProducing()
        if not self.persistent:
            self.loseConnection()
            return
        self._handlingRequest = False
        if self._refused or self.transport is None:
            return
        if not self.requests and not self._feeding and not self._head_pending:
            if self._parked or self._dataBuffer:
                self._await_head()
            else:
                self._await_next_request()
        if self._feeding:  # the parser goes on by itself
            self._done_in_feed = True
        else:
            self._replay()

    def isSecure(self) -> bool:
        # Asked for every forwarded request (X-Forwarded-Proto); an interface
        # adaptation each time in Twisted. A connection never changes its mind.
        secure = self._secure
        if secure is None:
            secure = self._secure = super().isSecure()
        return secure

    def connectionLost(self, reason):
        self._set_phase_deadline(0, None)
        self.factory.deadlines.forget(self)
        self.factory.channels.discard(self)
        super().connectionLost(reason)
        # The parser calls back into this channel: without it, the two would
        # wait for the cyclic garbage collector.
        self._parser = None

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

    def refuse(self, status: int, detail_key=None):
        """Send a self-framed error answer and close; read nothing more."""
        if self._refused:
            return
        self._refused = True
        self._set_phase_deadline(0, None)
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
        self._set_phase_deadline(0, None)
        if complete:
            self.loseConnection()
        else:
            self.transport.abortConnection()

    def _send100Continue(self):
        # The gateway says 100 Continue only to a request it goes on with.
        if self.requests and not self.requests[-1].refused:
            super()._send100Continue()


# A target this long fits the request line with any method llhttp knows (the
# longest, MKACTIVITY or VERSION-CONTROL, has 15 letters).
_URL_WITHOUT_CHECK = MAX_REQUEST_LINE - 32

# Lengths of Content-Length, Transfer-Encoding and Expect: only names of
# these sizes are lowered and compared.
_FRAMING_NAME_SIZES = frozenset([len(b"content-length"), len(b"transfer-encoding"), len(b"expect")])

