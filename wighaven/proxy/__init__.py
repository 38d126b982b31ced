"""The HTTP engine: the listening channel and site, the forwarding resource, the upstream client and pool, headers, bodies, tunnels, TLS, timers and limits."""
