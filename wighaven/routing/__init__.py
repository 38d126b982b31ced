"""Routing: which route a request belongs to (the route table and its
matching); balancing, affinity, health and retries join it."""
