"""The store a command reads: ``--db`` names a SQLite file or a PostgreSQL DSN.

The one rule for telling them apart is :func:`is_dsn`; every command (the audit, the
inspector, the demo, ``sessions``, ``migrate``) asks it.
"""

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
    """Whether ``--db`` is a PostgreSQL URL or key=value DSN rather than a file: it
    starts with ``postgres://`` or ``postgresql://``, or holds ``=`` and names no file
    that is there (a file that is there is a file, ``=`` in its name or not)."""
    if place.startswith(("postgres://", "postgresql://")):
        return True
    return "=" in place and not Path(place).exists()


SQLITE_HEADER = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file."""


def is_sqlite_file(path: Path) -> bool:
    """Whether ``path`` is a SQLite database (by its header): given where a trail file
    is meant, it is a ``--db`` forgotten, not a trail to report line by line."""
    try:
        with path.open("rb") as stream:
            return stream.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def sqlite_given_as_file(path: Path) -> str | None:
    """The usage error for a SQLite database given where a file is meant (None if not)."""
    if str(path) == "-" or not is_sqlite_file(path):
        return None
    name = printable(str(path))
    return f"{name} is a SQLite database, not a JSON Lines trail: use --db {name}"


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
    path = Path(place)
    if not path.is_file():
        raise NoStore(f"no database file {printable(place)}")
    if path.stat().st_size == 0:
        raise NoStore(f"{printable(place)} is an empty file, not a paysession database")
    if not is_sqlite_file(path):
        raise NoStore(f"{printable(place)} is not a SQLite database (nor a PostgreSQL DSN)")
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


__all__ = [
    "CONNECT_TIMEOUT",
    "SQLITE_HEADER",
    "NoStore",
    "db_name",
    "is_dsn",
    "is_sqlite_file",
    "open_read_only",
    "sqlite_given_as_file",
]
