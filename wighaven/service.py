"""Builds the running gateway from a L{wighaven.config.Config}.

Rule: everything that lives as long as the process is made here, once: the
persistent upstream connection pool, the Agent over it, the counters, the
site and its listener. Collaborators (the reactor) are passed in; nothing
is reached for globally, so tests build the same service on port 0.
"""

from __future__ import annotations

from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.logger import Logger
from twisted.web.client import HTTPConnectionPool

from . import __version__
from .forward import ForwardResource
from .site import GatewayPages, GatewaySite
from .stats import GatewayStats
from .tls import BackendTLSPolicy
from .upstream import BackendAgent

__all__ = ["GatewayService", "build_site"]

_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def build_site(config, agent, reactor, stats=None) -> GatewaySite:
    """The gateway's site over C{agent} (a L{BackendAgent})."""
    stats = stats or GatewayStats(reactor)
    pages = GatewayPages(config, stats).resource()
    forward = ForwardResource(agent, config, reactor)
    return GatewaySite(pages, forward, config, stats, reactor)


class GatewayService(service.Service):
    """
    Listens on the configured port and forwards to the backend over one
    shared, persistent connection pool, closed again on stop.

    @ivar listening: fires with the listening port once it is bound.
    """

    _log = Logger(namespace="wighaven.service")

    def __init__(self, config, reactor, log_observer=None):
        self.config = config
        self._reactor = reactor
        self._log_observer = log_observer
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = config.pool_max_per_host
        self.pool.cachedConnectionTimeout = config.pool_idle_timeout
        self.pool.retryAutomatically = True
        agent = BackendAgent(
            reactor,
            config.backend_origin.encode("ascii"),
            self.pool,
            BackendTLSPolicy(config.backend_ca_bundle),
        )
        self.stats = GatewayStats(reactor)
        self.site = build_site(config, agent, reactor, self.stats)
        self.listening = defer.Deferred()
        self._port = None

    def setServiceParent(self, parent):
        """Under twistd, hand it the LOG_LEVEL-filtered observer it logs with."""
        super().setServiceParent(parent)
        if self._log_observer is not None and hasattr(parent, "setComponent"):
            from twisted.logger import ILogObserver

            parent.setComponent(ILogObserver, self._log_observer)

    def _endpoint(self):
        kind = endpoints.TCP6ServerEndpoint if ":" in self.config.interface else endpoints.TCP4ServerEndpoint
        return kind(self._reactor, self.config.port, backlog=1024, interface=self.config.interface)

    def startService(self):
        super().startService()
        config = self.config
        if config.hf_token is None:
            self._log.warn(
                "HF_TOKEN is not set: requests reach the backend without a token "
                "(a private Space will answer 404)"
            )
        elif config.backend_scheme == "http" and config.backend_host not in _LOOPBACK:
            self._log.warn(
                "the backend is plain http: the token crosses the network unencrypted"
            )
        d = self._endpoint().listen(self.site)
        d.addCallback(self._listening)
        d.addErrback(self._listen_failed)

    def _listening(self, port):
        self._port = port
        address = port.getHost()
        self._log.info(
            "WigHaven Gateway {version} listening on {host}:{port}, forwarding to {backend} "
            "(pool: {pool} idle connections kept, upstream timeout {timeout}s)",
            version=__version__,
            host=address.host,
            port=address.port,
            backend=self.config.backend_netloc,
            pool=self.config.pool_max_per_host,
            timeout=self.config.upstream_timeout,
        )
        self.listening.callback(port)

    def _listen_failed(self, failure):
        self._log.error(
            "cannot listen on {host}:{port}: {why}",
            host=self.config.interface,
            port=self.config.port,
            why=failure.getErrorMessage(),
        )
        self.listening.errback(failure)
        if self._reactor.running:
            self._reactor.stop()

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        if self._port is not None:
            yield self._port.stopListening()
        yield self.pool.closeCachedConnections()
