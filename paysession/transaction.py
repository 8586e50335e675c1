"""The caller's transaction: a connection the checkout holds, which paysession writes
through without committing (``PaymentSessions.within``).

:func:`join` reads what a connection offers: the driver's own connection (``sqlite3`` or
``psycopg``), how its holder commits and rolls back, and, when a framework owns it, the
framework's hook for work to run once a commit has happened. SQLAlchemy's connections
and sessions and Django's connections are read by ``paysession.contrib.sqlalchemy`` and
``paysession.contrib.django``, each needing its extra.
"""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import Callable

import attrs

from paysession.errors import InvalidSessionData

_FRAMEWORKS = {
    "sqlalchemy": "paysession.contrib.sqlalchemy",
    "django": "paysession.contrib.django",
}
"""The adapter module of each framework whose connections ``within`` takes, by the top
package of the connection's type."""


@attrs.frozen
class Joined:
    """A connection paysession writes through inside its holder's transaction.

    ``connection`` is the driver's connection (a ``sqlite3.Connection`` or a
    ``psycopg.Connection``); ``commit`` and ``rollback`` end the holder's transaction the
    way its holder would; ``hand_over``, when a framework owns the connection, gives the
    framework a callable to run once the transaction has committed (and to drop if it
    rolls back). Without it, the view's own ``commit()`` runs them.
    """

    connection: object
    commit: Callable[[], None]
    rollback: Callable[[], None]
    hand_over: Callable[[Callable[[], None]], None] | None = None


def join(connection: object) -> Joined:
    """What ``connection`` offers paysession; InvalidSessionData naming ``connection``
    for anything but a connection of a kind paysession can write through."""
    if isinstance(connection, sqlite3.Connection):
        return Joined(connection, connection.commit, connection.rollback)
    top = type(connection).__module__.partition(".")[0]
    if top == "psycopg":
        commit = getattr(connection, "commit", None)
        rollback = getattr(connection, "rollback", None)
        if callable(commit) and callable(rollback):
            return Joined(connection, commit, rollback)
    adapter = _FRAMEWORKS.get(top)
    if adapter is not None:
        # An optional extra, loaded only for a connection of its framework.
        joined: Joined = importlib.import_module(adapter).joined(connection)
        return joined
    raise InvalidSessionData(
        {
            "connection": "must be a sqlite3 or psycopg connection, a SQLAlchemy Connection "
            f"or Session, or a Django connection; got {type(connection).__name__}"
        }
    )


__all__ = ["Joined", "join"]
