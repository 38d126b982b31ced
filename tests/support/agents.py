"""The forwarding path's agent interface (L{wighaven.proxy.upstream.BackendAgent.send})
for fakes that answer the way Twisted's client does.

The unit tests' fake agents are simplest to write with C{request(method,
target, headers, body)} returning a Deferred of an
L{wighaven.proxy.upstream.UpstreamResponse} (a Twisted Response, its connection
headers, C{release}, C{abort}). L{SendsThroughRequest} gives such a fake
the C{send(method, target, headers, body, sink)} the forwarding resource
calls, keeping the real agent's rules: the sink hears the head as
C{(name, value)} pairs (connection headers included), the body as it is
delivered, one end; the handle pauses and resumes the body's transport,
and once aborted the sink hears nothing more.
"""

from twisted.web.client import PotentialDataLoss, ResponseDone
from twisted.web.http_headers import Headers
from twisted.internet.protocol import Protocol


class _Handle(Protocol):
    """The exchange's handle over the fake's Deferred, then the body's protocol."""

    def __init__(self, deferred, sink):
        self._deferred = deferred
        self._sink = sink
        self._upstream = None
        self.live = True
        self.paused = False
        self.released = False
        deferred.addCallbacks(self._answered, self._failed)

    # The handle.

    def release(self):
        if self._upstream is not None and not self.released:
            self.released = True
            self._upstream.release()

    def abort(self):
        if not self.live:
            return
        self.live = False
        if self._upstream is None:
            self._deferred.addErrback(lambda _: None)
            self._deferred.cancel()
        elif self.transport is not None:
            self.transport.stopProducing()
        else:
            self._upstream.abort()
        self.release()

    stopProducing = abort

    def pauseProducing(self):
        self.paused = True
        if self.transport is not None:
            self.transport.pauseProducing()

    def resumeProducing(self):
        self.paused = False
        if self.transport is not None:
            self.transport.resumeProducing()

    # The fake's answer.

    def _answered(self, upstream):
        if not self.live:
            return
        self._upstream = upstream
        response = upstream.response
        pairs = [
            (name, value)
            for headers in (response.headers, upstream.connection_headers)
            for name, values in headers.getAllRawHeaders()
            for value in values
        ]
        self._sink.response_head(response.code, response.phrase, pairs)
        if self.live:
            response.deliverBody(self)

    def _failed(self, failure):
        if self.live:
            self.live = False
            self._sink.response_failed(failure)

    # The body, as Twisted's client delivers it.

    def connectionMade(self):
        if self.paused:
            self.transport.pauseProducing()

    def dataReceived(self, data):
        if self.live:
            self._sink.response_body(data)

    def connectionLost(self, reason):
        if not self.live:
            return
        self.live = False
        if reason.check(ResponseDone, PotentialDataLoss):
            self._sink.response_done()
        else:
            self._sink.response_failed(reason)


class SendsThroughRequest:
    """Mixin: C{send} over the class's own Deferred-returning C{request}."""

    def send(self, method, target, headers, body, sink):
        as_headers = Headers()
        for name, values in headers:
            as_headers.setRawHeaders(name, values)
        return _Handle(self.request(method, target, as_headers, body), sink)
