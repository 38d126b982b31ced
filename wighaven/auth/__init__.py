"""Access control: who a request comes from and what it may reach (being
built: passwords, API keys and access tokens so far, not yet used by the
gateway)."""
