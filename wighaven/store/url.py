"""DATABASE_URL: where the store lives.

Only SQLite for now, the embedded default that needs no other server:
C{sqlite:///relative/path} (relative to the working directory, as SQLAlchemy
reads it) or C{sqlite:////absolute/path}. PostgreSQL comes with several
machines; until then any other scheme stops start-up with one line.
"""

from __future__ import annotations

import os

from ..config.settings import ConfigError

__all__ = ["DEFAULT_DATABASE_URL", "sqlite_path"]

DEFAULT_DATABASE_URL = "sqlite:///data/wighaven.sqlite3"
_PREFIX = "sqlite:///"


def sqlite_path(database_url: str) -> str:
    """The SQLite file C{database_url} names, as an absolute path."""
    url = (database_url or "").strip()
    if not url.startswith(_PREFIX):
        raise ConfigError(
            "DATABASE_URL must be sqlite:///path/to/file.sqlite3 (relative to the working "
            "directory) or sqlite:////absolute/path; other databases are not supported yet")
    path = url[len(_PREFIX):]
    if not path or path.endswith("/") or "?" in path or "\0" in path:
        raise ConfigError("DATABASE_URL must name a file, e.g. sqlite:///data/wighaven.sqlite3")
    return os.path.abspath(path)
