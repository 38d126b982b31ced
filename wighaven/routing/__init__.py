"""Routing: which route and which upstream take a request. The live table
(router), its matching (table), balancers, affinity, passive health,
active probes and the Hub's stages (probe), and retries."""
