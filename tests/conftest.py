"""Fixtures shared by the store tests: a PostgreSQL server and a store of each kind.

PostgreSQL comes from ``PAYSESSION_PG_DSN`` (a role that may create databases) when it
is set, else from a throwaway cluster started once per test session from the binaries
on PATH (see ``tests/pgcluster.py``) and stopped at the end. Each test gets a database
of its own. Without either, PostgreSQL tests are skipped, except under ``CI=true``,
where a missing PostgreSQL fails them.

The tests' files (tmp_path, tempfile) go to memory, /dev/shm, where the machine has room
there and neither TMPDIR nor --basetemp says otherwise: a SQLite store commits with
synchronous=FULL, and on a disk shared with other work each commit's fsync costs
milliseconds, most of the time of the store tests. Kills and crashes keep what a process
wrote either way; only a power cut would tell the two apart.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from paysession.store import MemoryStore, SessionStore, SqliteStore

from . import pgcluster

STORE_KINDS = ("memory", "sqlite", "postgres")

MEMORY = "/dev/shm"
MEMORY_NEEDED = 2 * 2**30  # bytes free there, or the tests' files stay on disk


def pytest_configure(config: pytest.Config) -> None:
    if config.option.basetemp or "TMPDIR" in os.environ:
        return  # the user chose where
    try:
        free = os.statvfs(MEMORY)
    except OSError:
        return
    if os.access(MEMORY, os.W_OK) and free.f_bavail * free.f_frsize >= MEMORY_NEEDED:
        # TMPDIR for the processes the tests start, tempfile.tempdir for this one (and so
        # for pytest's tmp_path).
        os.environ["TMPDIR"] = MEMORY
        tempfile.tempdir = MEMORY


class PostgresServer:
    """Where the tests' databases are made: an admin DSN on a running server."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self._made: list[str] = []

    def new_database(self) -> str:
        """A fresh, empty database; returns a DSN to it."""
        name = pgcluster.create_database(self.admin_dsn)
        self._made.append(name)
        return pgcluster.with_database(self.admin_dsn, name)

    def drop_all(self) -> None:
        while self._made:
            pgcluster.drop_database(self.admin_dsn, self._made.pop())


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    dsn = os.environ.get("PAYSESSION_PG_DSN")
    if dsn:
        yield PostgresServer(dsn)
        return
    if not pgcluster.binaries_available():
        message = "PostgreSQL: neither PAYSESSION_PG_DSN nor initdb/pg_ctl on PATH"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    cluster = pgcluster.start_cluster()
    try:
        yield PostgresServer(cluster.dsn())
    finally:
        cluster.stop()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A DSN to a database made for this test alone, dropped after it."""
    dsn = postgres_server.new_database()
    try:
        yield dsn
    finally:
        postgres_server.drop_all()


def open_store(kind: str, place: str) -> SessionStore:
    """A store of ``kind`` on ``place`` (a file path for SQLite, a DSN for PostgreSQL)."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        store = SqliteStore(place)
        store.migrate()  # the database a test's store stands for exists, empty or not
        return store
    from paysession.store.postgres import PostgresStore

    return PostgresStore(place)


class StoreFactory:
    """Opens stores of one kind, all on one database (the same MemoryStore for memory)."""

    def __init__(self, kind: str, place: str) -> None:
        self.kind = kind
        self.place = place
        self.opened: list[SessionStore] = []
        self._memory = MemoryStore()

    def __call__(self) -> SessionStore:
        store = self._memory if self.kind == "memory" else open_store(self.kind, self.place)
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens stores of the parametrized kind; each test gets a new database."""
    kind: str = request.param
    if kind == "postgres":
        place = request.getfixturevalue("postgres_dsn")
    else:
        place = str(tmp_path / "sessions.db")
    factory = StoreFactory(kind, place)
    yield factory
    factory.close_all()


@pytest.fixture
def store(store_factory: StoreFactory) -> SessionStore:
    """A fresh store of each kind: memory, SQLite (a file in tmp_path), PostgreSQL."""
    return store_factory()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A test class narrows the kinds with a ``store_kinds`` attribute.
    if "store_factory" in metafunc.fixturenames:
        kinds = getattr(metafunc.cls, "store_kinds", STORE_KINDS)
        metafunc.parametrize("store_factory", kinds, indirect=True)
