"""The upstream HTTP/1.1 client protocol: requests written at once, responses
parsed with httptools (llhttp, Node's parser) and handed on as they arrive,
on connections kept by Twisted's persistent HTTPConnectionPool.

Rule: one exchange at a time per connection, full duplex.
L{UpstreamProtocol.send} writes the request head at once and streams the
body; the response reaches the sink piece by piece the moment it is
parsed, even while the body is still going up, so a backend that answers
before it has read the whole upload, or streams while it reads, works.
Nothing is buffered whole, and no Deferred, Headers or Response is made
per request (a request with a body adds its producer's Deferred and one
small consumer).

The request (L{request_head}): C{METHOD target HTTP/1.1}, then the caller's
headers as given, one line per value (Host included; the caller has
dropped hop-by-hop headers and must not send C{Connection: close}), then
the framing this protocol adds from the body, nothing else: no body gives
no framing header (C{Content-Length: 0} for POST and PUT, as Twisted's
client does); an IBodyProducer of known C{length} gives C{Content-Length}
and may write exactly that many bytes (more or fewer fail the upload: a
body can never run into a next request); C{UNKNOWN_LENGTH} is sent
chunked, each write framed as a chunk. The producer is registered as the
transport's streaming producer, so a backend that reads slowly pauses it;
it is stopped when the exchange is abandoned. A head with CR or LF inside
one of its lines is refused (ValueError) before anything is written.

The response, to the sink (L{IResponseSink}):
  - 1xx interim answers (100 Continue, 103) are dropped; the final answer
    follows on the same parser. A 101 goes to C{response_head} once llhttp
    has seen the switch (Upgrade and C{Connection: upgrade}; without them
    the 101 is a bad response, RFC 9110 7.8), and the connection becomes a
    raw tunnel: the bytes after the head and every later byte reach
    C{response_body} as they are, the backend's close ends it like a
    connection-delimited body, and the connection is never reused (the
    caller writes the client's bytes with C{protocol.transport.write}).
  - No body for a HEAD, whatever Content-Length says (llhttp cannot know
    the request was a HEAD: this protocol ends the response at its head),
    nor for 204 and 304 (llhttp's own rule).
  - Chunked bodies are decoded; their trailers are read and dropped.
    Content-Length beside Transfer-Encoding, a second Content-Length and
    bad chunk framing are refused by llhttp: C{bad_response}
    (RFC 9112 6.3).
  - A body with neither length nor chunked framing ends at the backend's
    close: a clean close is C{response_done}, a reset C{closed_mid_body}.

Reuse: the connection goes back to the pool (C{quiescent_callback(self)},
once, before the sink's C{response_done}, so that the next request can
take it at once) only after a complete exchange that allows it: the
backend keeps the connection alive (not C{Connection: close}, not an
HTTP/1.0 answer without keep-alive, not delimited by its close, and a HEAD
answer only when it has a length), the request body was sent whole, and
nothing came after the response. A response complete while its upload is
still going closes the connection and stops the body producer. Bytes that
arrive on an idle connection (a backend's late garbage, or the start of its
close) make it unusable; a closed idle connection leaves the pool at the
next L{take_idle} or at its idle expiry, whichever comes first.

Backpressure on the response: the sink (or whoever reads for it) calls
L{UpstreamProtocol.pause_reading} and L{UpstreamProtocol.resume_reading}
while its exchange is in flight (from C{send} until C{response_done} or
C{response_failed}, and for as long as a tunnel lasts); calls at other
times do nothing, and a connection handed back to the pool is never left
paused. The caller stops calling once its exchange has ended: the
connection may already serve another.

L{UpstreamProtocol.abort} closes the connection at once; the sink of the
exchange then hears nothing more. An exception raised by the sink is
logged and aborts the connection the same way. Timeouts are not kept here:
the caller keeps its own deadlines and aborts.

The pool's contract, as Twisted's HTTP11ClientProtocol keeps it (the pool
reads C{state == "QUIESCENT"}, closes idle connections with
C{transport.loseConnection()} on idle expiry and past
C{maxPersistentPerHost}, and C{abort()}s them in
C{closeCachedConnections}, gathering the Deferreds it returns). The pool's
private names this module touches (setup.py caps Twisted at the releases
on which tests/test_twisted_private.py, one test each, passes):
  - C{_factory}: L{upstream_pool} makes new connections L{UpstreamFactory}
    ones, built with the pool's quiescent callback;
  - C{_newConnection}: L{new_connection} connects with that factory when no
    idle connection is there, without getConnection's cached take;
  - C{_connections} and C{_timeouts}: L{take_idle} takes an idle connection
    and cancels its idle timer synchronously, as getConnection does but
    without a Deferred;
  - C{_putConnection}: what the quiescent callback calls (not named here):
    it keeps a QUIESCENT connection with an idle timer, at most
    maxPersistentPerHost per key.
"""

from __future__ import annotations

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpResponseParser,
)
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import HTTPConnectionPool
from twisted.web.iweb import UNKNOWN_LENGTH
from zope.interface import Interface, implementer

__all__ = [
    "BAD_RESPONSE", "CLOSED_BEFORE_HEAD", "CLOSED_MID_BODY", "UPLOAD_FAILED",
    "IResponseSink", "UpstreamFactory", "UpstreamProtocol",
    "ends_at_close", "new_connection", "request_head", "take_idle", "upstream_pool",
]

# Why an exchange failed (IResponseSink.response_failed).
CLOSED_BEFORE_HEAD = "closed_before_head"
CLOSED_MID_BODY = "closed_mid_body"
BAD_RESPONSE = "bad_response"
UPLOAD_FAILED = "upload_failed"

# UpstreamProtocol.state; the pool reads QUIESCENT.
QUIESCENT = "QUIESCENT"  # idle: may take a request
BUSY = "BUSY"  # an exchange in flight
UPGRADED = "UPGRADED"  # a raw tunnel after 101
CLOSING = "CLOSING"  # closed by this side, or unusable; not lost yet
CLOSED = "CLOSED"  # the connection is gone

_EMPTY_BODY_FRAMING = {b"POST": b"Content-Length: 0\r\n", b"PUT": b"Content-Length: 0\r\n"}


class IResponseSink(Interface):
    """
    Where a response goes, as it is parsed. Each exchange ends with exactly
    one C{response_done} or C{response_failed}, unless it is aborted.
    """

    def response_head(status, reason, headers):
        """
        The final response's head, the moment it is in (1xx interim answers
        are dropped; a 101 makes the connection a tunnel: see the module).

        @param status: the status code, an int.
        @param reason: the reason phrase, bytes (maybe empty).
        @param headers: a list of C{(name, value)} bytes pairs as received:
            names as sent, duplicates as separate items, in order, every
            header included (Connection, Content-Length, Transfer-Encoding:
            the caller filters hop-by-hop headers itself). The list is the
            sink's to keep.
        """

    def response_body(data):
        """A piece of the (decoded) body, as it arrives."""

    def response_done():
        """
        The body ended cleanly: Content-Length reached, the chunked
        terminator read, no body at all (HEAD, 204, 304), or a
        connection-delimited body (or a tunnel) ended by a clean close.
        """

    def response_failed(reason):
        """
        The exchange failed; the connection is closed. C{reason}:
          - C{"closed_before_head"}: the connection closed before a complete
            head, or was already closed when sent on (a kept-alive
            connection the backend had just closed). Only a request that is
            idempotent and has no body (GET, HEAD, OPTIONS, TRACE, or PUT
            and DELETE without a body) is safe to send again, on a new
            connection; any other may have reached the backend.
          - C{"closed_mid_body"}: the backend broke off after the head: the
            caller aborts its client, which must not take a cut body for a
            whole one.
          - C{"bad_response"}: an unparseable head or body framing (before
            the head: a 502; after it: abort the client).
          - C{"upload_failed"}: the request body could not be sent whole
            (its producer failed, or wrote more or fewer bytes than its
            length).
        """


class _Nowhere:
    """
    The sink of a connection with no exchange in flight, or of an exchange
    that has ended: hears nothing. An ended exchange lets go of its real
    sink, so that the two never form a reference cycle that only the
    garbage collector could free.
    """

    def response_head(self, status, reason, headers):
        pass

    def response_body(self, data):
        pass

    def response_done(self):
        pass

    def response_failed(self, reason):
        pass


NOWHERE = _Nowhere()


def request_head(method: bytes, target: bytes, headers, body) -> bytes:
    """
    The request line and headers of C{method} C{target}, framed for C{body}
    (None, or an IBodyProducer): see the module. Raises ValueError when a
    header would hold CR or LF (a split line would inject a header).
    """
    pieces = [method, b" ", target, b" HTTP/1.1\r\n"]
    lines = 2  # the request line and the blank line
    for name, values in headers:
        for value in values:
            pieces += (name, b": ", value, b"\r\n")
            lines += 1
    if body is None:
        framing = _EMPTY_BODY_FRAMING.get(method, b"")
    elif body.length is UNKNOWN_LENGTH:
        framing = b"Transfer-Encoding: chunked\r\n"
    else:
        framing = b"Content-Length: %d\r\n" % (body.length,)
    if framing:
        pieces.append(framing)
        lines += 1
    pieces.append(b"\r\n")
    head = b"".join(pieces)
    if head.count(b"\n") != lines or head.count(b"\r") != lines:
        raise ValueError("CR or LF in the request line or a header")
    return head


def ends_at_close(headers) -> bool:
    """
    Does a response with these headers end only when its connection closes?
    (RFC 9112 6.3: no Content-Length, and no Transfer-Encoding whose final
    coding is chunked.)
    """
    codings = []
    for name, value in headers:
        name = name.lower()
        if name == b"content-length":
            return False
        if name == b"transfer-encoding":
            codings += value.split(b",")
    return not codings or codings[-1].strip().lower() != b"chunked"


@implementer(IPushProducer)
class _Upload:
    """
    One request body on its way up: the consumer its producer writes to
    (framing chunks for an unknown length, refusing more bytes than a known
    one) and the push producer registered on the transport for it. Detached
    once the exchange no longer wants it: the producer's later writes and
    its Deferred then do nothing, and cannot reach a next exchange.
    """

    __slots__ = ("_protocol", "_producer", "_left")

    def __init__(self, protocol, producer):
        self._protocol = protocol
        self._producer = producer
        self._left = None if producer.length is UNKNOWN_LENGTH else producer.length

    def start(self):
        try:
            done = self._producer.startProducing(self)
        except Exception:
            self.failed(Failure())
        else:
            done.addCallbacks(self.sent, self.failed)

    def write(self, data: bytes) -> None:
        protocol = self._protocol
        if protocol is None or not data:
            return  # detached, or empty (an empty chunk would end the body)
        if self._left is None:
            protocol.transport.writeSequence((b"%x\r\n" % len(data), data, b"\r\n"))
            return
        self._left -= len(data)
        if self._left < 0:
            protocol._upload_failed()
        else:
            protocol.transport.write(data)

    def sent(self, _):
        protocol = self._protocol
        if protocol is None:
            return
        if self._left:
            protocol._upload_failed()  # fewer bytes than its length
            return
        if self._left is None:
            protocol.transport.write(b"0\r\n\r\n")
        self._protocol = None
        protocol._upload_sent()

    def failed(self, failure):
        # The producer's failure is the caller's to know (it made it); the
        # failure of one this side stopped is the stop itself.
        if self._protocol is not None:
            self._protocol._upload_failed()

    def detach(self):
        """Stop the producer, once."""
        if self._protocol is not None:
            self._protocol = None
            self._producer.stopProducing()

    # IPushProducer, driven by the transport.

    def pauseProducing(self):
        if self._protocol is not None:
            self._producer.pauseProducing()

    def resumeProducing(self):
        if self._protocol is not None:
            self._producer.resumeProducing()

    stopProducing = detach  # the connection is going; connectionLost follows


class UpstreamProtocol(Protocol):
    """
    One connection to the backend (see the module for its rules).

    @ivar state: QUIESCENT, BUSY, UPGRADED, CLOSING or CLOSED; the pool
        reuses only QUIESCENT ones.
    @ivar lost_reason: the Failure the connection was lost with (a TLS
        handshake's error, a reset...), set before the sink hears of it;
        None until then.
    """

    _log = Logger()

    def __init__(self, quiescent_callback):
        self._quiescent_callback = quiescent_callback
        self._parser = HttpResponseParser(self)
        self.state = QUIESCENT
        self.lost_reason = None
        self._sink = NOWHERE
        self._upload = None
        self._paused = False
        self._lost_waiters = None  # Deferreds of abort() calls
        # The exchange in flight.
        self._head = False  # the request is a HEAD: no body follows the head
        self._head_done = False  # the final head went to the sink
        self._complete = False  # the response is complete
        self._garbage = False  # bytes came after the complete response
        self._keep_alive = False
        # The response message being parsed.
        self._reason = b""
        self._headers = []

    def send(self, method: bytes, target: bytes, headers, body, sink) -> None:
        """
        Send a request and hand its response to C{sink} (an
        L{IResponseSink}), which may hear from it before this returns.

        @param headers: a list of C{(name, [values])} pairs, written as given.
        @param body: None, or an IBodyProducer.
        @raise RuntimeError: an exchange is already in flight here.
        """
        if self.state != QUIESCENT:
            if self.state not in (CLOSING, CLOSED):
                raise RuntimeError("this connection is " + self.state)
            sink.response_failed(CLOSED_BEFORE_HEAD)
            return
        head = request_head(method, target, headers, body)
        self.state = BUSY
        self._sink = sink
        self._head = method == b"HEAD"
        self._head_done = self._complete = self._garbage = False
        self.transport.write(head)
        if body is not None:
            self._upload = _Upload(self, body)
            self.transport.registerProducer(self._upload, True)
            self._upload.start()

    def pause_reading(self) -> None:
        """Stop reading the response for now (the sink's reader is slow)."""
        if not self._paused and self.state in (BUSY, UPGRADED):
            self._paused = True
            self.transport.pauseProducing()

    def resume_reading(self) -> None:
        if self._paused and self.state in (BUSY, UPGRADED):
            self._paused = False
            self.transport.resumeProducing()

    def abort(self):
        """
        Close the connection at once; the sink hears nothing more.

        @return: a Deferred that fires once the connection is gone.
        """
        if self.state == CLOSED:
            return succeed(None)
        lost = Deferred()
        if self._lost_waiters is None:
            self._lost_waiters = []
        self._lost_waiters.append(lost)
        self._end(CLOSING)
        self.transport.abortConnection()
        return lost

    # Twisted's side.

    def dataReceived(self, data: bytes) -> None:
        if self.state != BUSY:
            if self.state == UPGRADED:
                self._sink.response_body(data)
            elif self.state == QUIESCENT:  # nothing was asked for
                self.state = CLOSING
                self.transport.loseConnection()
            return
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade as upgrade:
            self._upgrade(data[upgrade.args[0]:])
            return
        except HttpParserCallbackError as error:
            self._crashed(error.__context__ or error)
            return
        except HttpParserError:
            if not self._complete:
                if self.state == BUSY:
                    self._fail(BAD_RESPONSE)
                return
            self._garbage = True  # what came after the response
        if self._complete and self.state == BUSY:
            self._finish()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost_reason = reason
        state = self.state
        upload, self._upload = self._upload, None
        if upload is not None:  # the transport has let go of it already
            upload.detach()
        sink = self._end(CLOSED)
        if state == BUSY and not self._head_done:
            sink.response_failed(CLOSED_BEFORE_HEAD)
        elif state in (BUSY, UPGRADED):
            clean = reason.check(ConnectionDone) is not None
            if clean and (state == UPGRADED or ends_at_close(self._headers)):
                sink.response_done()
            else:
                sink.response_failed(CLOSED_MID_BODY)
        waiters, self._lost_waiters = self._lost_waiters, None
        for lost in waiters or ():
            lost.callback(None)

    # httptools' callbacks.

    def on_message_begin(self):
        if self._complete:
            self._garbage = True  # a second response: nothing asked for it
        self._reason = b""
        self._headers = []

    def on_status(self, reason: bytes):
        self._reason += reason

    def on_header(self, name: bytes, value: bytes):
        if not self._head_done:  # else a trailer: dropped
            self._headers.append((name, value))

    def on_headers_complete(self):
        status = self._parser.get_status_code()
        if status < 200 or self._complete:
            return  # interim: dropped (a 101 is handed on in _upgrade); or garbage
        self._head_done = True
        self._sink.response_head(status, self._reason, self._headers)
        if self._head:
            self._complete = True
            self._keep_alive = self._parser.should_keep_alive()

    def on_body(self, body: bytes):
        if self._complete:
            self._garbage = True  # a body for a HEAD
        else:
            self._sink.response_body(body)

    def on_message_complete(self):
        if self._head_done and not self._complete:
            self._complete = True
            self._keep_alive = self._parser.should_keep_alive()

    # The exchange's end.

    def _finish(self):
        """The response is complete: reuse the connection, or close it."""
        uploading = self._upload is not None
        if self._keep_alive and not uploading and not self._garbage:
            sink = self._end(QUIESCENT)
            if self._paused:
                self._paused = False
                self.transport.resumeProducing()
            if self._head:  # llhttp still waits for that body
                self._parser = HttpResponseParser(self)
            self._quiescent_callback(self)
        else:
            sink = self._end(CLOSING)
            if uploading:  # its bytes may never leave: don't wait for them
                self.transport.abortConnection()
            else:
                self.transport.loseConnection()
        sink.response_done()

    def _upgrade(self, rest: bytes):
        self.state = UPGRADED
        sink = self._sink
        sink.response_head(101, self._reason, self._headers)
        if rest and self.state == UPGRADED:
            sink.response_body(rest)

    def _upload_sent(self):
        self._upload = None
        self.transport.unregisterProducer()

    def _upload_failed(self):
        if self.state == BUSY:
            self._fail(UPLOAD_FAILED)

    def _fail(self, reason: str):
        sink = self._end(CLOSING)
        self.transport.abortConnection()
        sink.response_failed(reason)

    def _crashed(self, error: BaseException):
        self._log.failure(
            "Upstream response handling failed; connection aborted",
            Failure(error, type(error), error.__traceback__),
        )
        self._end(CLOSING)
        self.transport.abortConnection()

    def _end(self, state: str):
        """Leave the exchange (its upload stopped) for C{state}; its sink."""
        sink, self._sink = self._sink, NOWHERE
        self.state = state
        upload, self._upload = self._upload, None
        if upload is not None:
            self.transport.unregisterProducer()
            upload.detach()
        return sink


class UpstreamFactory(Factory):
    """
    The factory HTTPConnectionPool builds for each new connection (its
    C{_factory}): C{UpstreamFactory(quiescentCallback, metadata)}.
    """

    noisy = False

    def __init__(self, quiescent_callback, metadata):
        self._quiescent_callback = quiescent_callback
        self._metadata = metadata  # the endpoint's repr

    def __repr__(self) -> str:
        return "UpstreamFactory(%s)" % (self._metadata,)

    def buildProtocol(self, addr):
        return UpstreamProtocol(self._quiescent_callback)


def upstream_pool(reactor) -> HTTPConnectionPool:
    """
    A persistent HTTPConnectionPool whose connections are
    L{UpstreamProtocol}s (set its maxPersistentPerHost and
    cachedConnectionTimeout as usual). Take connections with L{take_idle}
    and L{new_connection}; its getConnection never retries (its retry speaks
    Twisted's client protocol).
    """
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool._factory = UpstreamFactory
    pool.retryAutomatically = False
    return pool


def take_idle(pool, key):
    """
    An idle connection of C{pool} under C{key}, taken out of the pool with
    its idle timer cancelled, or None. The most recently used comes first:
    it is the least likely to have been closed by the backend's own
    keep-alive timeout, and the others are left to expire. Connections
    found closed on the way are dropped.
    """
    connections = pool._connections.get(key)
    while connections:
        connection = connections.pop()
        pool._timeouts.pop(connection).cancel()
        if connection.state == QUIESCENT:
            return connection
    return None


def new_connection(pool, key, endpoint) -> Deferred:
    """
    A new connection through C{endpoint}, given back to C{pool} under
    C{key} when its exchanges allow: a Deferred firing with an
    L{UpstreamProtocol} (QUIESCENT), or failing to connect.
    """
    return pool._newConnection(key, endpoint)
