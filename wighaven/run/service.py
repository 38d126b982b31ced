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
from ..config.settings import ConfigError
from .dispatch import lean_poll
from .drain import Drain, drain_on_sigterm
from ..proxy.forward import ForwardResource
from ..proxy.limits import PeerConnectionLimit
from ..observe.logs import give_observer_to_twistd, log_ring
from ..observe.recent_view import RecentView
from ..proxy.site import GatewaySite
from ..web.pages import GatewayPages
from ..observe.stats import GatewayStats
from ..proxy.tls import BackendTLSPolicy
from ..proxy.transport import address_family, adopt_port, for_connecting, listen_tcp
from ..proxy.upstream import BackendAgent
from ..proxy.upstream_protocol import upstream_pool
from ..routing.connect_guard import GuardedReactor
from ..routing.upstream_guard import UpstreamPolicy
from ..routing.router import Router
from .reload import Reloader

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


def build_site(config, agent, reactor, stats=None, router=None, control=None) -> GatewaySite:
    """
    The gateway's site over C{router} (a L{Router}), or, without one, over
    C{agent} (a L{BackendAgent}) to the environment's one backend; with
    C{control} (AUTH on, a L{wighaven.auth.control.AccessControl}) every
    request passes its gate.
    """
    stats = stats or GatewayStats(reactor)
    if router is None:
        forward = ForwardResource(agent, config, reactor, stats.route)
    else:
        forward = ForwardResource(None, config, reactor, router=router)
    pages = GatewayPages(config, stats, reactor, router, control, forward)
    site = GatewaySite(pages.resource(), forward, config, stats, reactor)
    site.pages = pages
    return site


def open_access_control(config, reactor):
    """The L{AccessControl} of AUTH=on; a store that can't be had stops start-up with one line."""
    from ..auth.control import AccessControl
    from ..store import StoreError

    try:
        return AccessControl.open(config.auth, reactor)
    except (StoreError, ConfigError) as e:
        sys.stderr.write("wighaven: %s\n" % (e,))
        sys.stderr.flush()
        raise SystemExit(1)


def open_reloader(config, router, forward, stats, env, control, reactor) -> Reloader:
    """The L{Reloader}; stored routes that can't be applied stop start-up with one line."""
    if control is None:
        return Reloader(config, router, forward, stats, env)
    try:
        return Reloader(config, router, forward, stats, env, store=control.store,
                        open_sealed=control.secret_box.open, clock=reactor)
    except Exception as e:  # a stored route that no longer validates, a token that won't open
        sys.stderr.write("wighaven: the routes kept in %s cannot be applied: %s\n"
                         % (control.store.path, e))
        sys.stderr.flush()
        raise SystemExit(1)


class UpstreamAgents:
    """
    One L{BackendAgent} per upstream origin and CA bundle, over the one
    shared pool: routes that name the same upstream share its connections
    and its UPSTREAM_MAX_CONNECTIONS; a reload keeps them. Each has its own
    pool key, so a connection verified against one CA bundle never serves
    an upstream that trusts another.
    """

    def __init__(self, reactor, pool, config):
        self._reactor = reactor
        self._pool = pool
        self._config = config
        self._agents = {}
        self._policies = {}

    def tls_policy(self, ca_bundle):
        policy = self._policies.get(ca_bundle)
        if policy is None:
            policy = self._policies[ca_bundle] = BackendTLSPolicy(ca_bundle)
        return policy

    def __call__(self, upstream, source: str = "file") -> BackendAgent:
        """
        The agent of C{upstream}, of a route of C{source}. A stored route's
        (added through the admin API) connects only to the addresses the
        admin's upstream rules allow, judged again at each connection
        (L{wighaven.routing.connect_guard}); its connections are its own,
        never shared with a config file's route to the same origin.
        """
        ca_bundle = upstream.ca_bundle or self._config.backend_ca_bundle
        # What sets its connections apart, in the pool and here, beside the origin.
        extra = ca_bundle if source != "store" else (ca_bundle, "guarded")
        key = (upstream.origin, extra)
        agent = self._agents.get(key)
        if agent is None:
            agent = self._agents[key] = BackendAgent(
                self._reactor, upstream.origin.encode("ascii"), self._pool,
                self.tls_policy(ca_bundle), self._config.upstream_max_connections,
                pool_key_extra=extra,
                connect_reactor=self.connecting_reactor(source, for_connecting(self._reactor)),
            )
        return agent

    def connecting_reactor(self, source: str, reactor=None):
        """
        What connects to an upstream of a route of C{source} (C{reactor},
        default the reactor): for a stored route's, guarded at each
        connection by the admin's upstream rules.
        """
        reactor = self._reactor if reactor is None else reactor
        if source != "store":
            return reactor
        return GuardedReactor(reactor, self._config.auth.upstream_policy or UpstreamPolicy())


class GatewayService(service.Service):
    """
    Listens on the configured port and forwards to the backend over one
    shared, persistent connection pool, closed again on stop.

    @ivar listening: fires with the listening port once the service runs.
    """

    _log = Logger()

    def __init__(self, config, reactor, log_observer=None, handle_signals=False, listen_fd=None,
                 env=None):
        """C{env}: where a reload reads the file's C{env:} secrets (default: os.environ)."""
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
        self.stats = GatewayStats(reactor)
        self.agents = UpstreamAgents(reactor, self.pool, config)
        self.router = Router(
            config.routes, clock=reactor, make_agent=self.agents,
            metrics_for=self._metrics_for, affinity_secret=config.affinity_secret,
            trust_proxy=config.trust_proxy, drain_timeout=config.drain_timeout,
            make_check=self._check_for, open_requests=self._open_requests,
        )
        # AUTH on: the store is opened (and migrated, and ADMIN_USERNAME made) now,
        # before anything listens; a store that can't be had stops start-up.
        self.control = open_access_control(config, reactor) if config.auth.enabled else None
        self.site = build_site(config, None, reactor, self.stats, self.router, self.control)
        # AUTH on: the routes made through the admin API join the table now, and
        # are followed from then on (every worker, within a second of a change).
        self.reloader = open_reloader(config, self.router, self.site._forward, self.stats, env,
                                      self.control, reactor)
        self.recent_logs = log_ring()
        self.recent = None  # with AUTH on, the admin API's recent requests and lines
        if self.control is not None:
            # The Logs screen shows what the log writes, which never holds a
            # token; should a line ever quote one, the route table's current
            # tokens are taken out of it before anyone reads it.
            self.recent_logs.set_secrets_source(self.site.tokens)
            self.recent = RecentView(self.site.keep_recent_requests(), self.recent_logs)
            self.site.pages.enable_admin(
                self.reloader, reactor,
                lambda: self.agents.tls_policy(config.backend_ca_bundle), self.recent)
            # A config import may be larger than other bodies: from an administrator.
            from ..web.admin_api import API_PREFIX
            from ..web.admin_routes import IMPORT_MAX_BYTES, IMPORT_PATH

            gate = self.control.gate
            self.site.allow_large_body(
                b"POST", (API_PREFIX + IMPORT_PATH).encode("ascii"), IMPORT_MAX_BYTES,
                lambda request: gate.admin_refusal(request) is None)
        self.listening = defer.Deferred()
        self._port = None
        self.drain = Drain(self.site, self.stats, reactor, config.drain_timeout)

    def _open_requests(self):
        """Every request under way on the site's open connections."""
        for channel in list(self.site.channels):
            yield from list(channel.requests)

    def _metrics_for(self, route):
        """A route's metrics: PRIVATE_BACKEND_URL's keeps its name of old, C{backend}."""
        name = GatewayStats.ENV_ROUTE if route.source == "env" else route.name
        metrics = self.stats.metrics.route(name)
        return metrics

    def _check_for(self, route, upstream):
        """The active health check of one upstream (health_path, or the Hub), or None."""
        from ..routing.probe import ActiveHealth, check_for, probe_timeout

        interval = route.health_interval
        check = check_for(
            self._reactor, route, upstream, self.config.hf_endpoint,
            self.agents.tls_policy(self.config.backend_ca_bundle),
            self.agents.tls_policy(upstream.ca_bundle or self.config.backend_ca_bundle),
            probe_timeout(interval), token_header=self.config.token_header,
            upstream_reactor=self.agents.connecting_reactor(route.source),
        )
        if check is None:
            return None
        return ActiveHealth(self._reactor, check, interval, name="%s %s" % (route.name, upstream.host))

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
        for route in config.routes:
            for upstream in route.upstreams:
                if upstream.token is None:
                    self._log.warn(
                        "route {route}: {host} has no token: requests reach it without one "
                        "(a private Space will answer 404)", route=route.name, host=upstream.host)
                elif upstream.scheme == "http" and upstream.host not in _LOOPBACK:
                    self._log.warn(
                        "route {route}: {host} is plain http: its token crosses the network "
                        "unencrypted", route=route.name, host=upstream.host)
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
        self._log.info(
            "routes: {routes}; {note}", routes=", ".join(
                "%s (%s%s, %d upstream%s)" % (
                    r.name, ",".join(r.hosts) + " " if r.hosts else "", r.path, len(r.upstreams),
                    "" if len(r.upstreams) == 1 else "s")
                for r in (live.route for live in self.router.routes)),
            note=config.routes_note,
        )
        if self.control is not None:
            self._log.info("access control: AUTH on; {summary}", summary=self.control.describe())
            self.reloader.watch()
        self.listening.callback(self._port)
        if self._handle_signals:  # the process is the gateway's own (twistd, a worker)
            lean_poll(self._reactor)  # its event loop without a logging context per event
            freeze_startup_objects()
            # SIGTERM drains (then exit 0); a second one exits at once.
            self._reactor.callWhenRunning(
                drain_on_sigterm, self._reactor, lambda: self.drain.started, self.drain_then_stop
            )
            # At once, not when the reactor runs: a SIGHUP in between would end the process.
            self.reloader.on_sighup(self._reactor)

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
        self.reloader.stop()
        self.router.stop()
        if self.control is not None:
            self.recent_logs.set_secrets_source(None)
            yield self.control.close()
        yield self.pool.closeCachedConnections()
