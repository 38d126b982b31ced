"""A real backend for integration tests: Twisted web over TLS (or plain
HTTP) on 127.0.0.1, with endpoints that exercise each forwarding rule.

Every request it receives is recorded (method, target, headers), and every
connection it accepts is counted, so tests can check exactly what crossed
the gateway, and what did not.
"""

import gzip
import hashlib
import json
import weakref

from twisted.internet import defer, endpoints, interfaces, reactor, ssl
from twisted.web import resource, server
from zope.interface import implementer

from .certs import pki

GZIPPED = gzip.compress(b"compressed hello " * 500, mtime=0)
CHUNK = b"\x00" * 65536
_producers = weakref.WeakSet()


def live_producers():
    """The body producers of /big responses still referenced."""
    return list(_producers)


@implementer(interfaces.IPushProducer)
class _Zeros:
    """Streams C{size} zero bytes, honouring the consumer's pause/resume."""

    def __init__(self, request, size):
        self.request = request
        self.left = size
        self.paused = False
        self.stopped = False
        _producers.add(self)

    def start(self):
        self.request.registerProducer(self, True)
        self._pump()

    def _pump(self):
        while not self.paused and not self.stopped and self.left > 0:
            n = min(self.left, len(CHUNK))
            self.left -= n
            self.request.write(CHUNK[:n])
        if self.left == 0 and not self.stopped:
            self.stopped = True
            self.request.unregisterProducer()
            self.request.finish()

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        reactor.callLater(0, self._pump)

    def stopProducing(self):
        self.stopped = True


class Backend(resource.Resource):
    """The test backend's single resource; the path picks the behaviour."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.requests = []
        self.origin = None  # set once listening: scheme://host:port

    def render(self, request):
        headers = [
            [name.decode("latin-1"), value.decode("latin-1")]
            for name, values in request.requestHeaders.getAllRawHeaders()
            for value in values
        ]
        self.requests.append({"method": request.method, "uri": request.uri, "headers": headers})
        path = request.path
        name = path.split(b"/")[1].decode("latin-1") if path.count(b"/") else ""
        handler = getattr(self, "do_" + name.replace("-", "_"), self.do_echo)
        return handler(request, headers)

    def do_echo(self, request, headers):
        body = request.content.read()
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(
            {
                "method": request.method.decode("latin-1"),
                "uri": request.uri.decode("latin-1"),
                "headers": headers,
                "body_length": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
            }
        ).encode()

    def do_upload(self, request, headers):
        digest = hashlib.sha256()
        length = 0
        while True:
            block = request.content.read(1 << 20)
            if not block:
                break
            digest.update(block)
            length += len(block)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"length": length, "sha256": digest.hexdigest()}).encode()

    def do_cookies(self, request, headers):
        request.responseHeaders.setRawHeaders(
            b"Set-Cookie", [b"a=1; Path=/", b"b=2; Path=/; HttpOnly", b"c=3; Path=/; Secure"]
        )
        received = request.requestHeaders.getRawHeaders(b"cookie", [])
        return json.dumps({"cookie": [c.decode() for c in received]}).encode()

    def do_gzip(self, request, headers):
        request.setHeader(b"Content-Encoding", b"gzip")
        request.setHeader(b"Content-Type", b"text/plain")
        seen = request.requestHeaders.getRawHeaders(b"accept-encoding", [b"(none)"])
        request.setHeader(b"X-Seen-Accept-Encoding", b", ".join(seen))
        return GZIPPED

    def do_redirect_internal(self, request, headers):
        request.setResponseCode(302)
        request.setHeader(b"Location", self.origin.encode() + b"/landed?x=1")
        return b""

    def do_redirect_external(self, request, headers):
        request.setResponseCode(302)
        request.setHeader(b"Location", b"https://elsewhere.example/landed")
        return b""

    def do_landed(self, request, headers):
        return b"landed"

    def do_no_type(self, request, headers):
        request.responseHeaders.removeHeader(b"content-type")
        request.defaultContentType = None
        request.responseHeaders.removeHeader(b"server")
        return b"raw bytes, no type"

    def do_hop(self, request, headers):
        out = request.responseHeaders
        out.setRawHeaders(b"Connection", [b"X-Internal"])
        out.setRawHeaders(b"X-Internal", [b"secret"])
        out.setRawHeaders(b"Keep-Alive", [b"timeout=5"])
        out.setRawHeaders(b"Proxy-Authenticate", [b"Basic"])
        out.setRawHeaders(b"Proxy-Connection", [b"keep-alive"])
        out.setRawHeaders(b"X-Kept", [b"yes"])
        return b"hop"

    def do_status(self, request, headers):
        code = int(request.path.split(b"/")[2])
        request.setResponseCode(code)
        if code in (204, 304):
            return b""
        return b"status %d" % code

    def do_sse(self, request, headers):
        count = int(request.args.get(b"n", [b"3"])[0])
        interval = float(request.args.get(b"every", [b"0.3"])[0])
        request.setHeader(b"Content-Type", b"text/event-stream")
        request.setHeader(b"Cache-Control", b"no-cache")

        pending = []

        def send(i):
            pending.clear()
            request.write(b"data: event %d\n\n" % i)
            if i + 1 < count:
                pending.append(reactor.callLater(interval, send, i + 1))
            else:
                request.finish()

        def gone(_):
            for call in pending:
                call.cancel()

        request.notifyFinish().addErrback(gone)
        send(0)
        return server.NOT_DONE_YET

    def do_big(self, request, headers):
        size = int(request.args.get(b"size", [b"1048576"])[0])
        if request.args.get(b"length", [b"1"])[0] == b"1":
            request.setHeader(b"Content-Length", b"%d" % size)
        request.setHeader(b"Content-Type", b"application/octet-stream")
        _Zeros(request, size).start()
        return server.NOT_DONE_YET

    def do_hang(self, request, headers):
        return server.NOT_DONE_YET

    def do_die(self, request, headers):
        if request.args.get(b"length", [b"1"])[0] == b"1":
            request.setHeader(b"Content-Length", b"1000000")
        request.write(b"x" * 1000)
        reactor.callLater(0.05, request.channel.transport.abortConnection)
        return server.NOT_DONE_YET

    def do_head(self, request, headers):
        request.setHeader(b"Content-Length", b"1234")
        request.setHeader(b"Content-Type", b"text/plain")
        return b"" if request.method == b"HEAD" else b"h" * 1234


class RecordingRequest(server.Request):
    """Notes when request body bytes arrive, and can stall reading them."""

    def handleContentChunk(self, data):
        site = self.channel.site
        if site.body_bytes == 0:
            site.first_body_at = reactor.seconds()
            if site.stall_uploads_for:
                transport = self.channel.transport
                transport.pauseProducing()
                reactor.callLater(site.stall_uploads_for, transport.resumeProducing)
        site.body_bytes += len(data)
        super().handleContentChunk(data)


class CountingSite(server.Site):
    """
    A site that counts the connections it accepts, tracks open ones, and
    records when request body bytes first arrive (C{first_body_at},
    C{body_bytes}); C{stall_uploads_for} seconds makes it stop reading a
    body after its first bytes, like a slow backend.
    """

    noisy = False
    requestFactory = RecordingRequest

    def __init__(self, resource):
        super().__init__(resource)
        self.connections = 0
        self.open = set()
        self.first_body_at = None
        self.body_bytes = 0
        self.stall_uploads_for = 0

    def buildProtocol(self, addr):
        self.connections += 1
        return track_open(self.open, super().buildProtocol(addr))


def track_open(open_protocols: set, proto):
    """Keep C{proto} in C{open_protocols} until its connection is lost."""
    open_protocols.add(proto)
    lost = proto.connectionLost

    def connectionLost(reason):
        open_protocols.discard(proto)
        return lost(reason)

    proto.connectionLost = connectionLost
    return proto


@defer.inlineCallbacks
def start_backend(testcase, tls=True, identity="good"):
    """
    Start a backend on 127.0.0.1 for the duration of C{testcase}.

    @param identity: which certificate of the test PKI it serves (good,
        wrong_host, untrusted).
    @return: a Deferred firing with (Backend resource, CountingSite, origin).
    """
    root = Backend()
    site = CountingSite(root)
    root.origin = yield serve_locally(testcase, site, tls, identity)
    return root, site, root.origin


@defer.inlineCallbacks
def serve_locally(testcase, site, tls=True, identity="good"):
    """
    Serve C{site} (a L{CountingSite}) on 127.0.0.1 for the duration of
    C{testcase}, over TLS with the test PKI's C{identity} unless C{tls} is
    false; its open connections are cut at the end.

    @return: a Deferred firing with its origin, e.g. C{https://localhost:PORT}.
    """
    if tls:
        with open(getattr(pki(), identity), "rb") as f:
            cert = ssl.PrivateCertificate.loadPEM(f.read())
        endpoint = endpoints.SSL4ServerEndpoint(reactor, 0, cert.options(), interface="127.0.0.1")
    else:
        endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    port = yield endpoint.listen(site)
    testcase.addCleanup(_stop, port, site)
    host = "localhost" if tls else "127.0.0.1"
    return "%s://%s:%d" % ("https" if tls else "http", host, port.getHost().port)


def _stop(port, site):
    abort_open(site.open)
    return port.stopListening()


def abort_open(open_protocols):
    """Cut every connection of C{open_protocols} (see L{track_open})."""
    for proto in list(open_protocols):
        # Twisted's Site hands out a wrapper whose channel holds the transport.
        transport = getattr(getattr(proto, "_channel", proto), "transport", None)
        if transport is not None:
            transport.abortConnection()
