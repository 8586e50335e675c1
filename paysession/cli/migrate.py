"""``paysession migrate --db``: bring a store's schema to this paysession's version, or,
with ``--dry-run``, say what that would run and change nothing.

An application's store migrates on first use; this is the same migration, run once by
an operator before a fleet starts (so that no process waits on it at its first write).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from paysession.cli._store import db_name, is_dsn, is_sqlite_file
from paysession.errors import PaySessionError
from paysession.store import SqliteStore, sqlite_schema
from paysession.store._tables import HAS_SCHEMA_TABLE_POSTGRES, HAS_SCHEMA_TABLE_SQLITE


class _Refused(Exception):
    """The database cannot be migrated from here: a usage or input error, exit 2."""


def _version(conn: Any, has_schema_table: str) -> int:
    if conn.execute(has_schema_table).fetchone() is None:
        return 0
    row = conn.execute("SELECT version FROM paysession_schema").fetchone()
    return 0 if row is None else int(row[0])


def _sqlite_version(place: str) -> int | None:
    """The schema version of a SQLite file (None: no file yet), read without a change."""
    path = Path(place)
    if not path.exists():
        return None
    if path.stat().st_size == 0:
        return 0
    if not is_sqlite_file(path):
        raise _Refused(f"{db_name(place)} is not a SQLite database (nor a PostgreSQL DSN)")
    try:
        with sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True) as conn:
            found = _version(conn, HAS_SCHEMA_TABLE_SQLITE)
        conn.close()
    except sqlite3.Error as error:
        raise _Refused(f"cannot read {db_name(place)}: {error}") from None
    return found


def _postgres(place: str) -> tuple[int, Sequence[Sequence[str]]]:
    try:
        # The optional extra: imported here so that every other command runs without it.
        import psycopg

        from paysession.store import postgres_schema
    except ImportError:
        raise _Refused(
            "migrating PostgreSQL needs the postgres extra: pip install 'paysession[postgres]'"
        ) from None
    try:
        with psycopg.connect(place, connect_timeout=10, autocommit=True) as conn:
            found = _version(conn, HAS_SCHEMA_TABLE_POSTGRES)
    except psycopg.Error as error:
        reason = " ".join(str(error).split())
        raise _Refused(f"cannot read {db_name(place)}: {reason}") from None
    return found, postgres_schema.MIGRATIONS


def _plan(place: str) -> tuple[int | None, Sequence[Sequence[str]]]:
    if is_dsn(place):
        return _postgres(place)
    return _sqlite_version(place), sqlite_schema.MIGRATIONS


def _summary(statement: str) -> str:
    line = " ".join(statement.split())
    return line if len(line) <= 96 else line[:95] + "…"


def run(args: argparse.Namespace) -> int:
    place: str = args.db
    try:
        found, migrations = _plan(place)
    except _Refused as error:
        return _fail(str(error))
    target = len(migrations)
    current = found or 0
    if current > target:
        return _fail(
            f"{db_name(place)} is at schema version {current}; this paysession knows up to {target}"
        )
    if current == target:
        print(f"{db_name(place)}: schema version {target}, current; nothing to do")
        return 0
    if args.dry_run:
        made = "would be created, then " if found is None else ""
        print(
            f"{db_name(place)}: {made}migrated from schema version {current} to {target} "
            "(dry run: nothing changed)"
        )
        for version in range(current + 1, target + 1):
            print(f"version {version}:")
            for statement in migrations[version - 1]:
                print(f"  {_summary(statement)}")
        return 0
    try:
        reached = _migrate(place)
    except PaySessionError as error:
        return _fail(f"cannot migrate {db_name(place)}: {error}")
    print(f"{db_name(place)}: migrated from schema version {current} to {reached}")
    return 0


def _migrate(place: str) -> int:
    if is_dsn(place):
        from paysession.store.postgres import PostgresStore  # the optional extra

        with PostgresStore(place, min_size=0, max_size=1, timeout=10.0) as postgres:
            return postgres.migrate()
    with SqliteStore(place) as sqlite:
        return sqlite.migrate()


def _fail(message: str) -> int:
    print(f"paysession migrate: {message}", file=sys.stderr)
    return 2


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``paysession migrate`` to the CLI's subcommands."""
    parser = commands.add_parser(
        "migrate",
        help="bring a store's schema to this paysession's version (--dry-run: only say how)",
        description="Create or upgrade the schema of a SQLite file or PostgreSQL database to "
        "this paysession's version, as a store does on first use. With --dry-run, print "
        "the versions and statements it would run, and change nothing.",
    )
    parser.add_argument(
        "--db", required=True, metavar="PATH_OR_DSN", help="a SQLite file or a PostgreSQL DSN"
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would run; change nothing")
    parser.set_defaults(run=run)


__all__ = ["add_command", "run"]
