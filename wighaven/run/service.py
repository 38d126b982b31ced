"""Builds the running gateway from a L{wighaven.config.settings.Config}.

Rule: everything that lives as long as the process is made here, once: the
persistent upstream connection pool, the BackendAgent over it, the
counters, the site and its listener. Collaborators (the reactor) are passed in; nothing
is reached for globally, so tests build the same service on port 0.
"""

from __future__ import annotations

import gc
import os
import resource
import sys

from twisted.application import service
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from .. import __version__
from .dispatch import lean_poll
from .drain import Drain, drain_on_sigterm
from ..proxy.forward import ForwardResource
from ..proxy.limits import PeerConnectionLimit
from ..observe.logs import give_observer_to_twistd
from ..proxy.site import GatewaySite
from ..web.pages import GatewayPages
from ..observe.stats import GatewayStats
from ..proxy.tls import BackendTLSPolicy
from ..proxy.transport import address_family, adopt_port, listen_tcp
from ..proxy.upstream import BackendAgent
from ..proxy.upstream_protocol import upstream_pool

__all__ = ["GatewayService", "build_site"]

_LOOPBACK = ("localhost", "127.0.0.1", "::1")
# A burst of thousands of connections must queue in the kernel, not be
# dropped: Twisted's default backlog of 50 makes clients wait for SYN
# retransmits (1 s, 3 s, 7 s...). The kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = 8192


def raise_open_files_limit(ceiling: int = 1 << 20) -> int:
    """
    Raise the soft limit on open files to the hard one: every proxied
    exchange holds two descriptors, and a soft limit of 1024 (a common
    default) would refuse connections long before the machine is busy.
    Returns the limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return soft


def exit_cannot_listen(config, reason) -> None:
    """Stop start-up with one line: the configured address can't be had."""
    sys.stderr.write(
        "wighaven: cannot listen on %s:%d: %s\n" % (config.interface, config.port, reason)
    )
    sys.stderr.flush()
    raise SystemExit(1)


def freeze_startup_objects() -> None:
    """
    Move everything alive after start-up (modules, classes, the site, the
    pool: some hundred thousand objects) out of the cyclic garbage
    collector's reach. They live as long as the process, yet every full
    collection would walk them all again, a pause of several milliseconds
    in the middle of serving requests: freezing them cut the small-request
    p99 latency in half and raised throughput by about 7% in the bench.

    The collector's thresholds stay Python's: a forwarded exchange makes no
    reference cycle (tests/test_garbage.py), so it is freed by reference
    counting and young collections are rare (25 per 10,000 requests in
    benchmarks/profile.py). Raising the threshold was measured too: no
    faster once the cycles were gone, and before that it let cyclic
    garbage pile up (600 MiB under 10,000 connections).
    """
    gc.collect()
    gc.freeze()


def build_site(config, agent, reactor, stats=None) -> GatewaySite:
    """The gateway's site over C{agent} (a L{BackendAgent})."""
    stats = stats or GatewayStats(reactor)
    pages = GatewayPages(config, stats, reactor).resource()
    forward = ForwardResource(agent, config, reactor, stats.route)
    return GatewaySite(pages, forward, config, stats, reactor)


class GatewayService(service.Service):
    """
    Listens on the configured port and forwards to the backend over one
    shared, persistent connection pool, closed again on stop.

    @ivar listening: fires with the listening port once the service runs.
    """

    _log = Logger()

    def __init__(self, config, reactor, log_observer=None, handle_signals=False, listen_fd=None):
        self.config = config
        self._listen_fd = listen_fd  # a worker's socket, bound by its parent
        self._handle_signals = handle_signals
        self._reactor = reactor
        self._log_observer = log_observer
        # Before the site is built: MAX_WEBSOCKETS and MAX_STREAMS 'auto' follow it.
        raise_open_files_limit()
        self.pool = upstream_pool(reactor)
        self.pool.maxPersistentPerHost = config.pool_max_per_host
        self.pool.cachedConnectionTimeout = config.pool_idle_timeout
        agent = BackendAgent(
            reactor,
            config.backend_origin.encode("ascii"),
            self.pool,
            BackendTLSPolicy(config.backend_ca_bundle),
            config.upstream_max_connections,
        )
        self.stats = GatewayStats(reactor)
        self.site = build_site(config, agent, reactor, self.stats)
        self.listening = defer.Deferred()
        self._port = None
        self.drain = Drain(self.site, self.stats, reactor, config.drain_timeout)

    def setServiceParent(self, parent):
        """Under twistd, hand it the LOG_LEVEL-filtered observer it logs with."""
        super().setServiceParent(parent)
        give_observer_to_twistd(parent, self._log_observer)

    def _factory(self):
        """The site, behind the per-address connection limit when one is set."""
        if self.config.max_connections_per_ip:
            return PeerConnectionLimit(
                self.site, self.config.max_connections_per_ip, self.config.trust_proxy
            )
        return self.site

    def privilegedStartService(self):
        """
        Bind the port now, before the reactor runs: a port that can't be had
        stops start-up with one line and exit status 1, instead of a gateway
        that runs without listening.
        """
        super().privilegedStartService()
        raise_open_files_limit()
        config = self.config
        if self._listen_fd is not None:
            family = address_family(config.interface)
            self._port = adopt_port(self._reactor, self._listen_fd, family, self._factory())
            os.close(self._listen_fd)  # the port holds its own copy
            self._listen_fd = None
            return
        try:
            self._port = listen_tcp(
                self._reactor, config.port, self._factory(), LISTEN_BACKLOG, config.interface
            )
        except CannotListenError as e:
            exit_cannot_listen(config, e.socketError.strerror if e.socketError else e)

    def startService(self):
        if self._port is None:
            self.privilegedStartService()
        super().startService()
        config = self.config
        if config.hf_token is None:
            self._log.warn(
                "HF_TOKEN is not set: requests reach the backend without a token "
                "(a private Space will answer 404)"
            )
        elif config.backend_scheme == "http" and config.backend_host not in _LOOPBACK:
            self._log.warn("the backend is plain http: the token crosses the network unencrypted")
        address = self._port.getHost()
        tunnels = self.site._forward.tunnels.maxima
        self._log.info(
            "WigHaven Gateway {version} listening on {host}:{port}, forwarding to {backend} "
            "(pool: {pool} idle connections kept, {inflight} requests in flight at most, "
            "upstream timeout {timeout}s, open files limit {files}, at most {websockets} "
            "WebSockets and {streams} event streams; TRUST_PROXY {trust})",
            version=__version__,
            host=address.host,
            port=address.port,
            backend=config.backend_netloc,
            pool=config.pool_max_per_host,
            inflight=config.upstream_max_connections,
            timeout=config.upstream_timeout,
            files=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            websockets=tunnels["websocket"],
            streams=tunnels["stream"],
            trust=config.trust_proxy_reason,
        )
        self.listening.callback(self._port)
        if self._handle_signals:  # the process is the gateway's own (twistd, a worker)
            lean_poll(self._reactor)  # its event loop without a logging context per event
            freeze_startup_objects()
            # SIGTERM drains (then exit 0); a second one exits at once.
            self._reactor.callWhenRunning(
                drain_on_sigterm, self._reactor, lambda: self.drain.started, self.drain_then_stop
            )

    def drain_then_stop(self):
        """Drain, then stop the reactor (the process exits 0)."""
        if self.drain.started:
            return
        d = self.drain.run(self._stop_listening)
        d.addBoth(lambda _: self._reactor.stop())

    def _stop_listening(self):
        port, self._port = self._port, None
        return port.stopListening() if port is not None else None

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        yield self.drain.run(self._stop_listening)
        self.site.stop_timers()
        yield self.pool.closeCachedConnections()
