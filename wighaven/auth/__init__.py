"""Access control: who a request comes from and what it may reach (being
built: passwords and API keys so far, not yet used by the gateway)."""
