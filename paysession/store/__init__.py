"""Durable sessions: the SessionStore protocol and its three stores.

- :class:`MemoryStore`: in memory, for tests and prototypes;
- :class:`SqliteStore`: the embedded default (the standard library's sqlite3);
- :class:`PostgresStore`: for fleets sharing one database (the ``postgres`` extra;
  imported on first use, so psycopg is needed only by those who use it).

:func:`migrate_within` brings their tables to the current schema inside a transaction
the caller holds, for the migrations of a framework (Alembic, Django).
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from paysession.errors import InvalidSessionData
from paysession.store.base import (
    Binding,
    EventOutcome,
    LoggedRecord,
    ProviderEvent,
    SessionStore,
    Snapshot,
    Write,
)
from paysession.store.memory import MemoryStore
from paysession.store.sqlite import SqliteStore
from paysession.store.sqlite import migrate_within as _migrate_sqlite

if TYPE_CHECKING:
    from paysession.store.postgres import PostgresStore


def migrate_within(connection: object, *, up_to: int | None = None) -> int:
    """Create or upgrade paysession's tables (``paysession_*``) through ``connection``, a
    ``sqlite3`` or ``psycopg`` connection, inside the transaction its holder has open,
    with the stores' own migrations; nothing is committed. Returns the schema version in
    force. ``up_to`` stops at that version. A database migrated so is one the store finds
    current, and one already current is left as it is.

    InvalidSessionData naming ``connection`` for anything else; StoreError for the
    driver's errors; MigrationRefused as the store's own migration raises it.
    """
    if type(connection).__module__.partition(".")[0] == "psycopg":
        # The postgres extra, loaded only for one of its connections.
        from paysession.store.postgres import migrate_within as migrate_postgres

        return migrate_postgres(connection, up_to)
    if not isinstance(connection, sqlite3.Connection):
        raise InvalidSessionData(
            {
                "connection": "must be a sqlite3 or psycopg connection; "
                f"got {type(connection).__name__}"
            }
        )
    return _migrate_sqlite(connection, up_to)


def __getattr__(name: str) -> Any:
    if name == "PostgresStore":
        from paysession.store.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Binding",
    "EventOutcome",
    "LoggedRecord",
    "MemoryStore",
    "PostgresStore",
    "ProviderEvent",
    "SessionStore",
    "Snapshot",
    "SqliteStore",
    "Write",
    "migrate_within",
]
