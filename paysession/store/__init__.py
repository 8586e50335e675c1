"""Durable sessions: the SessionStore protocol and its three stores.

- :class:`MemoryStore`: in memory, for tests and prototypes;
- :class:`SqliteStore`: the embedded default (the standard library's sqlite3);
- :class:`PostgresStore`: for fleets sharing one database (the ``postgres`` extra;
  imported on first use, so psycopg is needed only by those who use it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from paysession.store.postgres import PostgresStore


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
]
