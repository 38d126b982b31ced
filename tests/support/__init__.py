"""Shared test fixtures: a test CA, a real TLS backend, a gateway to test."""
