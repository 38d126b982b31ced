"""The gateway's store: users, API keys, sessions and refresh tokens, audit
events, and routes made at run time (L{wighaven.store.routes}; the admin
API that writes them is being built), behind one interface so that another database
(PostgreSQL, for several machines) can take SQLite's place without touching
its callers.

Rules:
  - One URL says where: DATABASE_URL, default C{sqlite:///data/wighaven.sqlite3}
    (relative to the working directory; L{wighaven.store.url}).
  - The schema is versioned (L{wighaven.store.schema}): opening the store
    applies the migrations it lacks, each in one transaction, before the
    gateway listens; a database newer than the code stops start-up with one
    line.
  - In the gateway, calls return Deferreds and run on the store's own
    thread, never on the reactor's: nothing on the forwarding path waits
    for a disk. The console command and start-up open it synchronous
    (C{sync=True}): calls return their results.
  - Identities are checked from memory (signed tokens, cached key hashes),
    loaded by C{read_identities} and reloaded whenever the revision file
    (L{wighaven.store.revision}) changes: any process changing users, keys
    or sessions bumps it after its commit.
"""

from .errors import StaleVersion, StoreError
from .revision import RevisionFile
from .sqlite import SqliteStore
from .url import DEFAULT_DATABASE_URL, sqlite_path

__all__ = ["DEFAULT_DATABASE_URL", "RevisionFile", "SqliteStore", "StaleVersion", "StoreError",
           "open_store", "sqlite_path"]


def open_store(database_url: str, reactor=None, sync: bool = False) -> SqliteStore:
    """The store at C{database_url}, migrated (L{StoreError} with one line when it can't be)."""
    return SqliteStore.open(sqlite_path(database_url), reactor, sync=sync)
