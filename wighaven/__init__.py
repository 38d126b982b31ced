"""WigHaven Gateway: a streaming reverse proxy that puts a private Hugging
Face Space (or any private HTTP app) safely on the public internet.

The request pipeline, in the order a request meets it:

  1. proxy.channel.GatewayChannel parses the client's bytes with httptools
     (llhttp) and refuses broken or oversized heads (400, 408, 413, 414,
     431) before anything else sees them; each request becomes a
     proxy.channel.GatewayRequest (a twisted.web Request) the moment its
     head is complete, its body still to come.
  2. proxy.site.GatewaySite.begin dispatches on the path: the gateway's own pages
     (the dashboard, /gateway-health, /_gateway/...) go to the Klein tree
     of web.pages.GatewayPages once their (small) body is in; every other path
     goes to the forwarding resource at once, its body streaming.
  3. route: routing.router.Router.route_for picks the request's
     routing.router.LiveRoute (its host, then the longest path prefix);
     none is a 404 no_route.
     (later: identity, policy, rate limit, cache)
  4. balance: LiveRoute.choose picks the upstream (a LiveUpstream): the
     one its affinity names while that one is up, else the route's
     balancer among the healthy ones.
  5. forward: proxy.forward.ForwardResource owns the forwarding rule: method and
     target checks, CORS preflights, WebSocket handshakes
     (proxy/websocket.py), the upstream headers (proxy.headers.
     upstream_headers: hop-by-hop dropped, that upstream's token injected,
     X-Forwarded-* rebuilt), then one exchange through that upstream's
     proxy.upstream.BackendAgent.send over the persistent pool of
     proxy.upstream_protocol.UpstreamProtocol connections, the response
     relayed by a proxy.forward._Relay as it arrives, both ways with
     backpressure; a failure before any header may be retried on another
     upstream (routing.retry).
  6. proxy.site.GatewaySite.log writes the one access line and counts the
     request once it ends, however it ends.

Where later policy steps (identity, rate limits, cache) plug in: between
the route (3) and the balance (4), on the forwarding resource, never on
the channel. What such a step receives and may do:
  - it receives the GatewayRequest with its head complete and its body
    possibly still arriving: C{method}, C{uri} (origin form), C{path},
    C{clientproto}, C{requestHeaders} (a Twisted Headers), C{request_id},
    C{getClientAddress()}, C{isSecure()}, and the configuration; behind a
    proxy, the client's address is C{config.trust.TrustedProxies.client_address};
  - it may answer the request itself and stop the pipeline, with
    C{proxy.errors.respond_with_error(request, GatewayError(...))} (a JSON
    error) or C{setResponseCode}/C{responseHeaders}/C{write}/C{finish}:
    the body not yet read is then read and dropped by the channel, never
    forwarded, and the connection stays usable;
  - it may change what goes upstream: the header list handed to
    C{BackendAgent.send} (a list of C{(name, [values])}, already rebuilt)
    and the target; it must not read the body whole (it streams:
    C{request.body}, a proxy.body.StreamingBody, when there is one);
  - it may look at the response's head and body pieces as the relay sees
    them (the C{IExchangeSink} calls), never hold them back unboundedly;
  - it must not block: anything slow (a database, a token check over the
    network) happens off the request path, from memory kept fresh beside
    it; a step that needs to wait returns to the reactor and resumes.
Timeouts a step adds are deadlines on the resource's proxy.deadlines.
Deadlines sweep (an attribute and a callback), not callLater timers.

The subpackages, each with one job:
  run/      start-up and the process model: twistd options (tap), the
            running service, WORKERS (cluster, worker), drain, the event
            loop's tuning (dispatch);
  config/   the settings from the environment and twistd options, validated
            into a frozen configuration; TRUST_PROXY's parsed form; the
            config file's routes (the frozen route model);
  proxy/    the HTTP engine: the pipeline above, with its transports,
            timers, limits, tunnels, TLS and error answers;
  observe/  metrics, the dashboard's figures, logs, the exchange log and
            the live feed;
  web/      the gateway's own pages: the Klein tree and the dashboard (its
            HTML, CSS and JS are package data files beside it).
  routing/  which route and which upstream take a request: the live
            route table and its reload (router), matching (table),
            balancers, affinity, passive and active health, retries.
  store/    users, API keys, sessions, audit events on SQLite (the
            foundation of access control; not yet used by the gateway).
  auth/     access control: passwords (Argon2id), API keys and access
            tokens (JWT) so far, not yet used by the gateway.
Later parts get their own: admin/, limits/, cache/, spaces/. The README's Layout lists
every module.
"""

__version__ = "0.1.0"
