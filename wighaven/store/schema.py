"""The store's schema, as numbered migrations (SQLite's C{user_version} holds
the number applied).

Rule: a migration is never edited once released; a change is a new number.
Each runs in one transaction with the version bump, so a failed one leaves
the database as it was. Secrets are never stored: passwords as Argon2
hashes, API keys, session ids and refresh tokens as hashes of the values
handed out. Every user_id column is indexed: removing a user cascades to
its keys, sessions and refresh tokens.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

MIGRATIONS = (
    (1, (
        """CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            password_hash TEXT,
            roles TEXT NOT NULL DEFAULT '[]',
            disabled INTEGER NOT NULL DEFAULT 0,
            totp_secret TEXT,
            token_version INTEGER NOT NULL DEFAULT 0,
            email TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            secret_hash BLOB NOT NULL,
            name TEXT,
            route TEXT,
            expires_at REAL,
            last_used_at REAL,
            created_at REAL NOT NULL,
            revoked_at REAL
        )""",
        "CREATE INDEX api_keys_user ON api_keys(user_id)",
        """CREATE TABLE sessions (
            id_hash BLOB PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            via TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            revoked_at REAL,
            address TEXT,
            user_agent TEXT
        )""",
        "CREATE INDEX sessions_user ON sessions(user_id)",
        """CREATE TABLE refresh_tokens (
            token_hash BLOB PRIMARY KEY,
            family TEXT NOT NULL,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            token_version INTEGER NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            used_at REAL,
            revoked_at REAL
        )""",
        "CREATE INDEX refresh_tokens_family ON refresh_tokens(family)",
        "CREATE INDEX refresh_tokens_user ON refresh_tokens(user_id)",
        """CREATE TABLE audit_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            actor TEXT,
            kind TEXT NOT NULL,
            source TEXT,
            detail TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX audit_events_at ON audit_events(at)",
        "CREATE INDEX audit_events_actor ON audit_events(actor, id)",
        "CREATE INDEX audit_events_kind ON audit_events(kind, id)",
    )),
    (2, (
        # Routes made at run time (the admin API), beside the config file's.
        # spec: the config file's keys of one route as JSON, each upstream's
        # token sealed (wighaven.store.secret_box) or an env:/file: reference.
        # version: moves with every change, for optimistic concurrency.
        """CREATE TABLE routes (
            name TEXT PRIMARY KEY,
            spec TEXT NOT NULL,
            version INTEGER NOT NULL DEFAULT 1,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            updated_by TEXT
        )""",
    )),
    (3, (
        # One-use invitation links: a person sets their own password. Only the
        # SHA-256 of the link's token is kept.
        """CREATE TABLE invites (
            token_hash BLOB PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            used_at REAL,
            created_by TEXT
        )""",
        "CREATE INDEX invites_user ON invites(user_id)",
    )),
)
