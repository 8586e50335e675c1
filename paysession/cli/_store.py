"""The store a command reads: ``--db`` names a SQLite file or a PostgreSQL DSN."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from paysession._text import printable
from paysession.store import SqliteStore

if TYPE_CHECKING:
    from paysession.store._browse import BrowsableStore

CONNECT_TIMEOUT = 10.0
"""Seconds a command waits for PostgreSQL before it gives up."""


class NoStore(Exception):
    """``--db`` names no store this command can read (a usage error: exit 2)."""


def is_dsn(place: str) -> bool:
    """Whether ``--db`` is a PostgreSQL URL or key=value DSN rather than a file (a file
    that is there is a file, ``=`` in its name or not)."""
    if place.startswith(("postgres://", "postgresql://")):
        return True
    return "=" in place and not Path(place).exists()


def open_read_only(place: str, *, connections: int = 1) -> BrowsableStore:
    """A SQLite file that must exist, or a PostgreSQL URL or DSN, opened read-only: never
    a new database, never a migration, never a write (reading a database never changes
    it). ``connections`` is the most PostgreSQL connections it may hold."""
    if is_dsn(place):
        try:
            # The optional extra: imported here so that every other command runs without it.
            from paysession.store.postgres import PostgresStore
        except ImportError:
            raise NoStore(
                "reading PostgreSQL needs the postgres extra: pip install 'paysession[postgres]'"
            ) from None
        return PostgresStore(place, max_size=connections, timeout=CONNECT_TIMEOUT, read_only=True)
    if not Path(place).is_file():
        raise NoStore(f"no database file {printable(place)}")
    return SqliteStore(place, read_only=True)


def db_name(place: str) -> str:
    """A database as an error may name it: a DSN's password is never shown."""
    if not is_dsn(place):
        return printable(place)
    try:
        import psycopg  # the optional extra
    except ImportError:
        return "the PostgreSQL database"
    try:
        parts = psycopg.conninfo.conninfo_to_dict(place)
    except psycopg.Error:  # a malformed DSN: named by its kind alone
        return "the PostgreSQL database"
    shown = {name: str(value) for name, value in parts.items() if name != "password"}
    return printable(str(psycopg.conninfo.make_conninfo(**shown)))


__all__ = ["CONNECT_TIMEOUT", "NoStore", "db_name", "is_dsn", "open_read_only"]
