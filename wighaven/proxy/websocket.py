"""WebSocket: the Upgrade handshake forwarded with the token, then a raw
byte tunnel.

Rule: a GET with C{Upgrade: websocket} (and Connection naming upgrade) is
sent to the backend on a connection of its own, with the same headers any
forwarded request gets (token injected, Host the backend's) plus
C{Connection: Upgrade} and C{Upgrade: websocket}; the client's
Sec-WebSocket-* headers, subprotocols and cookies pass untouched. Then:
- the backend answers 101: its answer goes to the client (hop-by-hop headers
  removed, the upgrade pair restored) and from there on bytes are relayed
  both ways as they are, frames never parsed, until either side closes,
  which closes the other; each side's connection is the producer of the
  other's, so a slow reader slows the sender;
- the backend answers anything else: that answer is relayed as a normal
  response (through Twisted's request, body decoded from the backend's
  framing and framed again for the client) and the backend connection closed.

Why not Twisted's HTTP client: it treats 101 as an informational answer and
waits for another; and Twisted's message-level websocket client can carry
neither the token header nor the client's subprotocols. Taking over the
client's connection after 101 uses Twisted's private hook
C{HTTPChannel._protocolUpgradeForWebsockets} (tested by name in
tests/test_twisted_private.py; setup.py caps Twisted where it passes).
"""

from __future__ import annotations

from typing import Optional, Tuple

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.web.http import _ChunkedTransferDecoder, _IdentityTransferDecoder

from . import errors
from .headers import end_to_end, HeaderList

__all__ = ["is_websocket_upgrade", "parse_response_head", "WebSocketRelay"]

MAX_HEAD = 64 * 1024
_UPGRADE_PAIR = [(b"Connection", [b"Upgrade"]), (b"Upgrade", [b"websocket"])]


def _tokens(values) -> set:
    return {t.strip().lower() for v in values or () for t in v.split(b",")}


def is_websocket_upgrade(method: bytes, headers) -> bool:
    """Is this request a WebSocket handshake (RFC 6455 section 4.1)?"""
    return (
        method == b"GET"
        and b"websocket" in _tokens(headers.getRawHeaders(b"upgrade"))
        and b"upgrade" in _tokens(headers.getRawHeaders(b"connection"))
    )


def parse_response_head(head: bytes) -> Optional[Tuple[int, bytes, HeaderList]]:
    """
    (status, reason, headers) of an HTTP/1.1 response head (without the blank
    line), duplicates kept in order; None when it is not a valid head.
    """
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        return None
    status, reason = int(parts[1]), (parts[2] if len(parts) == 3 else b"")
    headers: HeaderList = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            return None
        if headers and headers[-1][0].lower() == name.lower():
            headers[-1][1].append(value.strip())
        else:
            headers.append((name, [value.strip()]))
    return status, reason, headers


def request_head(method: bytes, target: bytes, headers: HeaderList) -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1"]
    lines.extend(name + b": " + value for name, values in headers for value in values)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def response_head(status: int, reason: bytes, headers: HeaderList) -> bytes:
    lines = [b"HTTP/1.1 %d %s" % (status, reason)]
    lines.extend(name + b": " + value for name, values in headers for value in values)
    return b"\r\n".join(lines) + b"\r\n\r\n"


class WebSocketRelay:
    """
    One forwarded WebSocket handshake and, after 101, its tunnel.

    @param request: the client's GatewayRequest (its head is in).
    @param endpoint: a client endpoint to the backend (TLS verified).
    @param headers: the upstream headers (token in, hop-by-hop out).
    """

    _log = Logger()

    deadline = None  # L{wighaven.proxy.deadlines}: the answer's, then the tunnel's idle one

    def __init__(self, request, endpoint, target: bytes, headers: HeaderList, reactor,
                 timeout: float, deadlines, idle_timeout: float = 0, route=None, closed=None):
        self._request = request
        self._closed = closed  # told once the tunnel's client side has closed
        self._reactor = reactor
        self._route = route
        self._idle_timeout = idle_timeout
        self._deadlines = deadlines  # the forwarding resource's sweep
        self._head = request_head(b"GET", target, list(headers) + _UPGRADE_PAIR)
        self._upstream: Optional[_Upstream] = None
        self._client: Optional[_ClientSide] = None
        self._gone = False
        self._waiting = True  # for the answer's head, at most UPSTREAM_TIMEOUT
        self.deadline = reactor.seconds() + timeout
        self._deadlines.watch(self)
        request.notifyFinish().addErrback(self._client_left).addBoth(self._forget)
        self._connecting = endpoint.connect(Factory.forProtocol(lambda: _Upstream(self)))
        self._connecting.addErrback(self._failed)

    # Before the answer.

    def upstream_connected(self, upstream):
        self._connecting = None
        self._upstream = upstream
        upstream.transport.write(self._head)

    def _failed(self, failure):
        self._connecting = None
        self._answer_error(errors.classify_failure(failure))

    def deadline_passed(self):
        if self._waiting:
            self._time_out()
        elif self._client is not None:
            self._idle()

    def _forget(self, _):
        self._deadlines.forget(self)

    def _stop_waiting(self):
        self._waiting = False
        self.deadline = None

    def _time_out(self):
        """No answer head within UPSTREAM_TIMEOUT: 504, and give up on the backend."""
        self._answer_error(errors.GATEWAY_TIMEOUT)
        if self._connecting is not None:
            self._connecting.cancel()
        if self._upstream is not None:
            self._upstream.transport.abortConnection()

    def _answer_error(self, err):
        """Answer the client with C{err}, unless an answer is under way already."""
        self._stop_waiting()
        request = self._request
        if self._gone or request.startedWriting or request.finished:
            return
        self._log.warn("websocket handshake failed: {detail}", detail=err.detail)
        request.write(errors.respond_with_error(request, err))
        request.finish()

    def _client_left(self, _):
        self._gone = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self._upstream is not None:
            self._upstream.transport.abortConnection()

    def answered(self, status: int, reason: bytes, headers: HeaderList, rest: bytes):
        """The backend's answer head is in; C{rest} is what followed it."""
        self._stop_waiting()
        if self._gone:
            self._upstream.transport.abortConnection()
        elif status == 101:
            self._tunnel(reason, headers, rest)
        else:
            self._relay_response(status, reason, headers, rest)

    def upstream_broke(self, reason):
        """The backend closed before a complete answer head."""
        if self._waiting:
            self._answer_error(errors.classify_failure(reason))

    # 101: the tunnel.

    def _tunnel(self, reason, headers, rest):
        request = self._request
        request.setResponseCode(101, reason)
        request.headers_at = self._reactor.seconds()
        if self._route is not None:
            self._route.websocket_opened()
        channel = request.channel
        transport = channel.transport
        transport.write(response_head(101, reason or b"Switching Protocols",
                                      end_to_end(headers) + _UPGRADE_PAIR))
        buffered = b"".join(channel._dataBuffer)
        channel._dataBuffer = []
        self._client = _ClientSide(self)
        transport.unregisterProducer()
        channel._protocolUpgradeForWebsockets(self._client)
        upstream = self._upstream
        upstream.tunnel = True
        transport.registerProducer(upstream.transport, True)
        upstream.transport.registerProducer(transport, True)
        transport.resumeProducing()
        if rest:
            self.to_client(rest)
        if buffered:
            self.to_backend(buffered)
        self._touch()

    def to_client(self, data: bytes):
        self._request.sentLength += len(data)
        self._client.transport.write(data)
        self._touch()

    def to_backend(self, data: bytes):
        self._request.body_received += len(data)
        self._upstream.transport.write(data)
        self._touch()

    def _touch(self):
        if self._idle_timeout:
            self.deadline = self._reactor.seconds() + self._idle_timeout

    def _idle(self):
        self._log.info("websocket idle for {seconds}s: closed", seconds=self._idle_timeout)
        self._client.transport.loseConnection()
        self._upstream.transport.loseConnection()

    def tunnel_closed(self, side):
        """Either side closed: close the other, once; log the exchange."""
        self.deadline = None
        self._deadlines.forget(self)
        other = self._upstream if side is self._client else self._client
        if other is not None and other.transport is not None:
            other.transport.loseConnection()
        if side is self._client:
            if self._closed is not None:
                self._closed()
            if self._route is not None:
                self._route.websocket_closed()
            self._request.channel.factory.log(self._request)

    # Any other answer: a normal response.

    def _relay_response(self, status, reason, headers, rest):
        request = self._request
        request.setResponseCode(status, reason)
        request.defaultContentType = None
        out = request.responseHeaders
        out.removeHeader(b"date")
        for name, values in end_to_end(headers):
            out.setRawHeaders(name, values)
        framing = {name.lower(): values for name, values in headers}
        upstream = self._upstream
        upstream.body_decoder = _decoder_for(status, framing, request.write, self._response_done)
        request.registerProducer(upstream.transport, True)
        if upstream.body_decoder is None:
            self._response_done(b"")
        elif rest:
            upstream.body_decoder.dataReceived(rest)

    def _response_done(self, extra=b""):
        upstream = self._upstream
        upstream.body_decoder = None
        request = self._request
        request.unregisterProducer()
        upstream.transport.loseConnection()
        if not self._gone:
            request.finish()

    def body_broke(self):
        """The backend closed mid-body: abort the client, like any forwarded body."""
        request = self._request
        if not self._gone:
            request.unregisterProducer()
            request.broken_off = True
            request.channel.transport.abortConnection()


def _decoder_for(status, framing, write, done):
    """A transfer decoder for the backend's body framing, or None for no body."""
    if status in (204, 304) or 100 <= status < 200:
        return None
    if b"transfer-encoding" in framing:
        return _ChunkedTransferDecoder(write, done)
    if b"content-length" in framing:
        try:
            length = int(framing[b"content-length"][0])
        except ValueError:
            length = 0
        return _IdentityTransferDecoder(length, write, done) if length > 0 else None
    return _UntilClose(write)


class _UntilClose:
    """A body that ends when the backend closes the connection."""

    def __init__(self, write):
        self.dataReceived = write

    def noMoreData(self):
        pass


class _Upstream(Protocol):
    """The backend side: reads the answer head, then relays."""

    tunnel = False
    body_decoder = None

    def __init__(self, relay: WebSocketRelay):
        self._relay = relay
        self._buffer = b""
        self._answered = False

    def connectionMade(self):
        self._relay.upstream_connected(self)

    def dataReceived(self, data):
        if self.tunnel:
            return self._relay.to_client(data)
        if self._answered:
            if self.body_decoder is not None:
                self.body_decoder.dataReceived(data)
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD:
                self.transport.abortConnection()
            return
        parsed = parse_response_head(self._buffer[:end])
        rest, self._buffer = self._buffer[end + 4:], b""
        if parsed is None:
            self.transport.abortConnection()
            return
        self._answered = True
        self._relay.answered(*parsed, rest)

    def connectionLost(self, reason):
        relay = self._relay
        if self.tunnel:
            relay.tunnel_closed(self)
        elif not self._answered:
            relay.upstream_broke(reason)
        elif self.body_decoder is not None:
            if isinstance(self.body_decoder, _UntilClose):
                relay._response_done()
            else:
                relay.body_broke()


class _ClientSide(Protocol):
    """The client side after 101: the taken-over connection's bytes."""

    def __init__(self, relay: WebSocketRelay):
        self._relay = relay

    def dataReceived(self, data):
        self._relay.to_backend(data)

    def connectionLost(self, reason):
        self._relay.tunnel_closed(self)
