"""paysession in a Django project (the ``django`` extra: ``pip install 'paysession[django]'``).

Add ``"paysession.contrib.django"`` to ``INSTALLED_APPS``: ``manage.py migrate`` then
creates and upgrades paysession's tables (``paysession_*``) in the project's database
with the stores' own migrations, so a database migrated by either is current for the
other. Inside ``transaction.atomic()``, ``sessions.within(connection)`` (Django's
``connection``, or ``connections[alias]``) writes the moves in the block's transaction,
on the SQLite and PostgreSQL (psycopg 3) backends; their after-hooks are handed to
``transaction.on_commit``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from paysession.errors import InvalidSessionData, MissingExtra
from paysession.store import migrate_within
from paysession.transaction import Joined

try:
    from django.db import connections, transaction
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.migrations import RunPython
    from django.utils.connection import ConnectionProxy
except ImportError as missing:  # the optional extra is not installed
    raise MissingExtra("paysession.contrib.django", "django") from missing

VENDORS = ("sqlite", "postgresql")
"""The database backends paysession writes through: SQLite, and PostgreSQL on psycopg 3."""


def joined(connection: object) -> Joined:
    """What a Django connection offers ``PaymentSessions.within``: its driver's
    connection, inside the transaction of the ``transaction.atomic()`` block it is in.

    The transaction commits when the outermost block ends (the view's ``commit()`` is
    refused: Django forbids a commit inside a block); the view's ``rollback()`` marks
    the innermost block to roll back as it ends, as ``transaction.set_rollback(True)``
    does. The after-hooks go to ``transaction.on_commit`` (robust: a failing hook is
    logged, and the others still run), so Django drops those of a block rolled back.

    InvalidSessionData naming ``connection`` for anything but a Django connection on
    the SQLite or PostgreSQL (psycopg 3) backend inside an atomic block that can go on.
    """
    wrapper = _wrapper(connection)
    alias = wrapper.alias
    if wrapper.vendor not in VENDORS:
        raise InvalidSessionData(
            {
                "connection": f"the {wrapper.vendor} backend is not one paysession writes "
                "through: use SQLite or PostgreSQL"
            }
        )
    if not wrapper.in_atomic_block:
        # Outside a block Django autocommits each statement and runs on_commit at once:
        # there is no transaction of the caller's to join.
        raise InvalidSessionData(
            {"connection": "must be inside a transaction.atomic() block of its database"}
        )
    if wrapper.needs_rollback:
        raise InvalidSessionData(
            {
                "connection": "its atomic block has failed and must be rolled back: "
                "no query may run until the block ends"
            }
        )
    driver = wrapper.connection
    top = type(driver).__module__.partition(".")[0]
    if not isinstance(driver, sqlite3.Connection) and top != "psycopg":
        raise InvalidSessionData(
            {"connection": "the PostgreSQL backend must run on psycopg 3 (not psycopg2)"}
        )

    def commit() -> None:
        raise InvalidSessionData(
            {"commit": "a Django transaction commits when its outermost atomic block ends"}
        )

    def rollback() -> None:
        transaction.set_rollback(True, using=alias)

    def hand_over(finish: Callable[[], None]) -> None:
        transaction.on_commit(_named(finish), using=alias, robust=True)

    return Joined(driver, commit, rollback, hand_over)


def _wrapper(connection: object) -> BaseDatabaseWrapper:
    """The database wrapper behind ``connection``: ``django.db.connection`` is a proxy to
    this thread's wrapper of the default database."""
    if isinstance(connection, BaseDatabaseWrapper):
        return connection
    if isinstance(connection, ConnectionProxy):
        wrapper = connections[connection.alias]
        if isinstance(wrapper, BaseDatabaseWrapper):
            return wrapper
    raise InvalidSessionData(
        {
            "connection": "must be a Django connection (django.db.connection or "
            f"connections[alias]); got {type(connection).__name__}"
        }
    )


def _named(finish: Callable[[], None]) -> Callable[[], None]:
    """``finish`` under a name Django's robust on_commit can log it by (it reads the
    callable's ``__qualname__``, which a ``functools.partial`` does not have)."""

    def run() -> None:
        finish()

    run.__qualname__ = "paysession's after-hooks"
    return run


def schema_upgrade(**versions: int) -> RunPython:
    """A migration's operation bringing paysession's tables to the schema version given
    for the database's backend (``sqlite=7, postgresql=8``), with the stores' own
    migrations, in the migration's transaction: a database already there is left as it
    is. Irreversible: unapplying it would drop the payments' records."""

    def upgrade(apps: Any, schema_editor: Any) -> None:
        connection = schema_editor.connection
        version = versions.get(connection.vendor)
        if version is None:
            raise InvalidSessionData(
                {
                    "connection": f"the {connection.vendor} backend is not one paysession's "
                    "migrations know: use SQLite or PostgreSQL"
                }
            )
        connection.ensure_connection()
        migrate_within(connection.connection, up_to=version)

    return RunPython(upgrade, elidable=False)


__all__ = ["VENDORS", "joined", "schema_upgrade"]
