"""The client's request body, streamed to the backend as it arrives.

Rule: bytes go upstream the moment they are read from the client; nothing is
spooled. Backpressure works both ways through the client's transport: when
the upstream connection can't take more (the backend reads slowly), the
client connection stops being read, so the client slows down instead of the
gateway's memory growing; when the upstream connection drains, reading
resumes. Before the upstream connection exists (connect, TLS handshake) at
most L{PENDING_LIMIT} bytes are held before the client is paused.

It is an IBodyProducer for Twisted's HTTP client: C{length} is the client's
Content-Length (the backend gets the same framing) or UNKNOWN_LENGTH for a
chunked upload (sent chunked).

A C{listener} (the exchange's relay) hears when the body starts going
upstream and when its last byte has been handed on: UPSTREAM_TIMEOUT does
not run in between, since an upload may take as long as the link needs.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet import defer
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

__all__ = ["StreamingBody", "PENDING_LIMIT"]

PENDING_LIMIT = 64 * 1024


@implementer(IBodyProducer)
class StreamingBody:
    """
    A request body fed by L{write} and L{end} as the client sends it.

    @param client: the client's transport (an IPushProducer: it is paused and
        resumed to apply backpressure).
    @param length: the body's length when the client declared it, else None.
    """

    def __init__(self, client, length: Optional[int]):
        self.length = UNKNOWN_LENGTH if length is None else length
        self._client = client
        self._consumer = None
        self._pending = []
        self._pending_size = 0
        self._ended = False
        self._stopped = False
        self._client_paused = False
        self._done = None
        self.listener = None  # has upload_started() and upload_finished()

    @property
    def ended(self) -> bool:
        """Has the client sent the whole body?"""
        return self._ended

    def startProducing(self, consumer):
        self._consumer = consumer
        self._done = done = defer.Deferred(lambda _: self.stopProducing())
        if self.listener is not None:
            self.listener.upload_started()
        pending, self._pending, self._pending_size = self._pending, [], 0
        for chunk in pending:
            consumer.write(chunk)
        if self._ended:
            self._finish()
        elif not self._stopped:
            self._resume_client()
        return done

    def write(self, data: bytes) -> None:
        """A piece of the body has arrived from the client."""
        if self._stopped:
            return
        if self._consumer is None:
            self._pending.append(data)
            self._pending_size += len(data)
            if self._pending_size > PENDING_LIMIT:
                self._pause_client()
        else:
            self._consumer.write(data)

    def end(self) -> None:
        """The client has sent the whole body."""
        self._ended = True
        if self._consumer is not None:
            self._finish()

    def _finish(self):
        done, listener = self._done, self.listener
        if self._stopped or done is None or done.called:
            return
        self._let_go()
        done.callback(None)
        if listener is not None:
            listener.upload_finished()

    def _let_go(self):
        """
        Over (sent whole, or stopped): drop the consumer, the Deferred and
        the listener, each of which points back here, so that the exchange
        is freed by reference counting instead of waiting for the cyclic
        garbage collector.
        """
        self._consumer = self._done = self.listener = None

    # IPushProducer, driven by the upstream connection.

    def pauseProducing(self):
        self._pause_client()

    def resumeProducing(self):
        if not self._stopped:
            self._resume_client()

    def stopProducing(self):
        """The upstream request is over (failed or cancelled): drop what comes."""
        self._stopped = True
        self._pending = []
        self._let_go()
        self._resume_client()

    def _pause_client(self):
        if not self._client_paused and not self._ended:
            self._client_paused = True
            self._client.pauseProducing()
            self._watch_hangup(True)

    def _resume_client(self):
        if self._client_paused:
            self._client_paused = False
            self._watch_hangup(False)
            self._client.resumeProducing()

    def _watch_hangup(self, on: bool):
        """
        While the upload is held back, a client that hangs up is noticed at
        once (L{wighaven.proxy.transport}); other transports (tests' fakes, TLS)
        notice it when they read again.
        """
        watch = getattr(self._client, "watch_hangup", None)
        if watch is not None:
            watch(on)
