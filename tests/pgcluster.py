"""A throwaway PostgreSQL cluster for the tests and the benchmarks.

``start_cluster()`` runs ``initdb`` and ``pg_ctl`` from PATH in a temporary directory,
on a free loopback port, with the socket in that directory. PostgreSQL refuses to run
as root, so as root the binaries run as the ``postgres`` user (through ``runuser``)
and the directory is handed to that user. ``Cluster.stop()`` stops it and deletes
everything.

``contents()`` and ``reset()`` let a test's copy of a database be used again by the next
test: ``reset`` empties again the tables that were empty in the original, provided
nothing else differs from it (its schema, the rows of its other tables).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg


def binaries_available() -> bool:
    """Whether ``initdb`` and ``pg_ctl`` are on PATH (and runuser, when root)."""
    needed = ["initdb", "pg_ctl"] + (["runuser"] if os.geteuid() == 0 else [])
    return all(shutil.which(name) for name in needed)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Cluster:
    """A running cluster; ``dsn(name)`` connects to database ``name`` as a superuser."""

    def __init__(self, directory: Path, port: int, as_user: list[str]) -> None:
        self.directory = directory
        self.port = port
        self._as_user = as_user

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def stop(self) -> None:
        subprocess.run(
            [
                *self._as_user,
                "pg_ctl",
                "-D",
                str(self.directory / "data"),
                "-m",
                "immediate",
                "stop",
            ],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.directory, ignore_errors=True)


def start_cluster(
    *, fsync: bool = False, max_connections: int = 200, settings: tuple[str, ...] = ()
) -> Cluster:
    """initdb and start a cluster; ``fsync=False`` trades crash safety for speed.

    ``settings`` are more server settings, each ``"name=value"``.
    """
    directory = Path(tempfile.mkdtemp(prefix="paysession-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = directory / "data"
    subprocess.run(
        [*as_user, "initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
        + ([] if fsync else ["--no-sync"]),
        check=True,
        capture_output=True,
    )
    options = [
        "-c listen_addresses=127.0.0.1",
        f"-k {directory}",
        f"-c max_connections={max_connections}",
        f"-c fsync={'on' if fsync else 'off'}",
    ]
    if not fsync:
        options += ["-c synchronous_commit=off", "-c full_page_writes=off"]
    options += [f"-c {setting}" for setting in settings]
    last_error = ""
    for _ in range(5):
        port = _free_port()
        started = subprocess.run(
            [
                *as_user,
                "pg_ctl",
                "-D",
                str(data),
                "-l",
                str(directory / "log"),
                "-w",
                "-o",
                " ".join([f"-p {port}", *options]),
                "start",
            ],
            check=False,
            capture_output=True,
            text=True,
        )
        if started.returncode == 0:
            return Cluster(directory, port, as_user)
        last_error = started.stdout + started.stderr
    shutil.rmtree(directory, ignore_errors=True)
    raise RuntimeError(f"could not start PostgreSQL: {last_error}")


def create_database(admin_dsn: str, template: str | None = None) -> str:
    """A new database on the server of ``admin_dsn``, empty or a copy of database
    ``template`` (which nobody may be connected to); returns its name."""
    name = f"paysession_{uuid.uuid4().hex[:16]}"
    copy = "" if template is None else f' TEMPLATE "{template}"'
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    return name


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def with_database(dsn: str, name: str) -> str:
    """``dsn`` with its database replaced by ``name``."""
    return psycopg.conninfo.make_conninfo(dsn, dbname=name)


# Every object of a database that a test could change, one line each: tables and their
# columns, constraints, indexes, triggers, functions, sequences, types, schemas, rules,
# policies, extensions, the database's own settings, prepared transactions.
_SCHEMA = """
SELECT md5(string_agg(line, E'\\n' ORDER BY line)) FROM (
    SELECT concat_ws(' ', 'rel', c.oid::regclass, c.relkind, c.relpersistence,
                     c.relrowsecurity, c.relforcerowsecurity, c.relacl, c.reloptions,
                     c.relreplident) AS line
        FROM pg_class AS c WHERE c.relnamespace = 'public'::regnamespace
    UNION ALL
    SELECT concat_ws(' ', 'column', a.attrelid::regclass, a.attname,
                     format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity,
                     a.attgenerated, a.attacl, pg_get_expr(d.adbin, d.adrelid))
        FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef AS d ON (d.adrelid, d.adnum) = (a.attrelid, a.attnum)
        WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT concat_ws(' ', 'constraint', conrelid::regclass, conname, pg_get_constraintdef(oid))
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
    UNION ALL
    SELECT concat_ws(' ', 'index', pg_get_indexdef(i.indexrelid), i.indisvalid, i.indisready)
        FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
        WHERE c.relnamespace = 'public'::regnamespace
    UNION ALL
    SELECT concat_ws(' ', 'trigger', pg_get_triggerdef(oid), tgenabled)
        FROM pg_trigger WHERE NOT tgisinternal
    UNION ALL
    SELECT concat_ws(' ', 'function', p.oid::regprocedure, md5(pg_get_functiondef(p.oid)),
                     p.proacl)
        FROM pg_proc AS p WHERE p.pronamespace = 'public'::regnamespace
    UNION ALL
    SELECT concat_ws(' ', 'sequence', sequencename, start_value, increment_by, min_value,
                     max_value, cycle)
        FROM pg_sequences WHERE schemaname = 'public'
    UNION ALL
    SELECT concat_ws(' ', 'type', oid::regtype, typtype)
        FROM pg_type WHERE typnamespace = 'public'::regnamespace
    UNION ALL
    SELECT concat_ws(' ', 'schema', nspname, nspacl) FROM pg_namespace
    UNION ALL
    SELECT concat_ws(' ', 'rule', tablename, rulename) FROM pg_rules WHERE schemaname = 'public'
    UNION ALL
    SELECT concat_ws(' ', 'policy', polrelid::regclass, polname) FROM pg_policy
    UNION ALL
    SELECT concat_ws(' ', 'extension', extname, extversion) FROM pg_extension
    UNION ALL
    SELECT concat_ws(' ', 'event trigger', evtname) FROM pg_event_trigger
    UNION ALL
    SELECT concat_ws(' ', 'database', datallowconn, datconnlimit, datacl,
                     (SELECT setconfig FROM pg_db_role_setting
                      WHERE setdatabase = d.oid AND setrole = 0))
        FROM pg_database AS d WHERE datname = current_database()
    UNION ALL
    SELECT concat_ws(' ', 'prepared', gid) FROM pg_prepared_xacts
        WHERE database = current_database()
) AS lines
"""

_TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
_REFERENCES = """
SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint
    WHERE contype = 'f' AND connamespace = 'public'::regnamespace
"""
_SEQUENCES = "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1"


@dataclass(frozen=True)
class Contents:
    """What a database holds, as far as using a copy of it again goes: a digest of its
    schema, a digest of the rows of each table that has some, the tables without rows,
    and where each sequence stands (last value, is_called)."""

    schema: str
    rows: dict[str, str]
    empty: tuple[str, ...]
    sequences: dict[str, tuple[int, bool]]


def contents(dsn: str) -> Contents:
    """What the database at ``dsn`` holds (see ``Contents``); nobody else may write it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        schema = _schema(conn)
        rows, empty = {}, []
        for (table,) in conn.execute(_TABLES).fetchall():
            digest = _rows(conn, table)
            if digest is None:
                empty.append(table)
            else:
                rows[table] = digest
        sequences = {}
        for (name,) in conn.execute(_SEQUENCES).fetchall():
            sequences[name] = _position(conn, name)
    return Contents(schema, rows, tuple(empty), sequences)


def reset(dsn: str, like: Contents) -> bool:
    """Make the database at ``dsn``, a copy of one that held ``like``, hold it again:
    every other connection to it ended, the tables empty in ``like`` that have rows now
    emptied (TRUNCATE: new files, as in a fresh copy) and each sequence put back.
    False, and nothing changed but the connections, when the copy differs from ``like``
    in anything else (its schema, or the rows of a table that had some): it is of no
    more use."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if not _alone(conn):
            return False
        if _schema(conn) != like.schema:
            return False
        if any(_rows(conn, table) != digest for table, digest in like.rows.items()):
            return False
        written = {table for table in like.empty if _has_rows(conn, table)}
        # With them, the empty tables whose foreign keys point at them (as TRUNCATE asks).
        referring = conn.execute(_REFERENCES).fetchall()
        while grown := {a for a, b in referring if b in written and a in like.empty} - written:
            written |= grown
        with conn.transaction():
            if written:
                conn.execute(f"TRUNCATE {', '.join(_quoted(table) for table in sorted(written))}")
            for name, (value, called) in like.sequences.items():
                conn.execute("SELECT setval(%s, %s, %s)", (_quoted(name), value, called))
    return True


def _alone(conn: psycopg.Connection[Any], seconds: float = 5.0) -> bool:
    """End every other connection to the database and wait until their server processes
    are gone (as DROP DATABASE ... WITH (FORCE) does): until then, a later test would
    see them in pg_stat_activity. False if some are still there after ``seconds``.
    The server's own workers (autovacuum) come and go as they please, as they would on
    a fresh copy."""
    others = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
    )
    deadline = time.monotonic() + seconds
    while pids := [pid for (pid,) in conn.execute(others).fetchall()]:
        if time.monotonic() > deadline:
            return False
        conn.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
        time.sleep(0.005)
    return True


def _schema(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute(_SCHEMA).fetchone()
    assert row is not None
    return row[0]


def _rows(conn: psycopg.Connection[Any], table: str) -> str | None:
    """A digest of the table's rows, in any order; None when it has none."""
    query = f"SELECT md5(string_agg(t::text, E'\\n' ORDER BY t::text)) FROM {_quoted(table)} AS t"
    row = conn.execute(query).fetchone()
    return None if row is None else row[0]


def _has_rows(conn: psycopg.Connection[Any], table: str) -> bool:
    row = conn.execute(f"SELECT EXISTS (SELECT FROM {_quoted(table)})").fetchone()
    return bool(row and row[0])


def _position(conn: psycopg.Connection[Any], sequence: str) -> tuple[int, bool]:
    row = conn.execute(f"SELECT last_value, is_called FROM {_quoted(sequence)}").fetchone()
    assert row is not None
    return int(row[0]), bool(row[1])


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
