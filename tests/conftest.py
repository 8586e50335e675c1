"""Fixtures shared by the store tests: a PostgreSQL server and a store of each kind.

PostgreSQL comes from ``PAYSESSION_PG_DSN`` (a role that may create databases) when it
is set, else from a throwaway cluster started once per test session from the binaries
on PATH (see ``tests/pgcluster.py``) and stopped at the end. Each test gets a database
of its own. Without either, PostgreSQL tests are skipped, except under ``CI=true``,
where a missing PostgreSQL fails them.

A database that many tests start from (migrated, or filled by a fixture) is made once per
test session and copied for each test (``filled``): a file copy for SQLite, CREATE
DATABASE ... TEMPLATE for PostgreSQL, instead of creating, migrating and filling it again.
A PostgreSQL copy is then used again by a later test once emptied back to what the
original held (``pgcluster.reset``), and dropped instead when a test changed more.

The tests' files (tmp_path, tempfile) go to memory, /dev/shm, where the machine has room
there and neither TMPDIR nor --basetemp says otherwise: a SQLite store commits with
synchronous=FULL, and on a disk shared with other work each commit's fsync costs
milliseconds, most of the time of the store tests. Kills and crashes keep what a process
wrote either way; only a power cut would tell the two apart.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from paysession.store import MemoryStore, PostgresStore, SessionStore, SqliteStore

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


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session: pytest.Session) -> Iterator[None]:
    """Collecting imports the test modules (rewriting their asserts) and the libraries
    they use: some 200,000 objects that stay, over which the cycle collector made 18
    full passes as they came, 1.3 of the 4.3 s a worker spent collecting. It is off
    until collection ends; the few thousand cycles made meanwhile are collected after,
    as any others."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class PostgresServer:
    """Where the tests' databases are made: an admin DSN on a running server."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self._made: list[str] = []
        self._kept: list[str] = []

    def new_database(self) -> str:
        """A fresh, empty database; returns a DSN to it. It is dropped by the next
        ``drop_all``."""
        name = pgcluster.create_database(self.admin_dsn)
        self._made.append(name)
        return pgcluster.with_database(self.admin_dsn, name)

    def kept_database(self, like: str | None = None) -> str:
        """A fresh database, empty or a copy of the one at DSN ``like``, kept until
        ``drop`` or the end of the test session; returns a DSN to it."""
        template = None if like is None else _name(like)
        name = pgcluster.create_database(self.admin_dsn, template)
        self._kept.append(name)
        return pgcluster.with_database(self.admin_dsn, name)

    def drop(self, dsn: str) -> None:
        self._kept.remove(_name(dsn))
        pgcluster.drop_database(self.admin_dsn, _name(dsn))

    def drop_all(self) -> None:
        while self._made:
            pgcluster.drop_database(self.admin_dsn, self._made.pop())

    def drop_kept(self) -> None:
        while self._kept:
            pgcluster.drop_database(self.admin_dsn, self._kept.pop())


def _name(dsn: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    dsn = os.environ.get("PAYSESSION_PG_DSN")
    if dsn:
        server = PostgresServer(dsn)
        try:
            yield server
        finally:
            server.drop_kept()
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


T = TypeVar("T")


class Sources:
    """The databases that ``filled`` copies, each filled once per test session: by kind
    and filling function, the place of the source and what the function returned; and
    for PostgreSQL, what each source holds and the copies ready to be used again."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.made: dict[tuple[str, Callable[[str], Any]], tuple[str, Any]] = {}
        self.contents: dict[str, pgcluster.Contents] = {}
        self.spare: dict[str, list[str]] = {}


@pytest.fixture(scope="session")
def filled_sources(tmp_path_factory: pytest.TempPathFactory) -> Sources:
    return Sources(tmp_path_factory.mktemp("sources"))


class Filled:
    """Databases for one test, copied from ones filled once per test session."""

    def __init__(self, sources: Sources, folder: Path, request: pytest.FixtureRequest) -> None:
        self._sources = sources
        self._folder = folder
        self._request = request

    def __call__(
        self, kind: str, fill: Callable[[str], T], name: str = "sessions.db"
    ) -> tuple[str, T]:
        """A database of ``kind`` ("sqlite" or "postgres") for this test alone, holding
        what ``fill(place)`` wrote into an empty one, and what ``fill`` returned (shared
        by every copy: read it, don't change it). ``fill`` closes every store it opens:
        a copy is made of a database nobody is connected to. A SQLite copy is the file
        ``name`` in the test's tmp_path; a PostgreSQL one is, after the test, emptied
        back for the next or dropped."""
        key = (kind, fill)
        if kind == "sqlite":
            if key not in self._sources.made:
                source = self._sources.folder / f"{fill.__module__}.{fill.__qualname__}.db"
                self._sources.made[key] = (str(source), fill(str(source)))
            source, made = self._sources.made[key]
            for suffix in ("-wal", "-journal"):
                assert not Path(source + suffix).exists(), f"{fill} left {source} open"
            place = self._folder / name
            shutil.copyfile(source, place)
            return str(place), made
        server: PostgresServer = self._request.getfixturevalue("postgres_server")
        if key not in self._sources.made:
            source = server.kept_database()
            self._sources.made[key] = (source, fill(source))
            self._sources.contents[source] = pgcluster.contents(source)
            self._sources.spare[source] = []
        source, made = self._sources.made[key]
        # A copy the last test left as the source was, but for the rows it wrote to
        # tables that were empty, is emptied again and used instead of a new one (a
        # CREATE DATABASE and a DROP cost about 50 ms of the server's time); any other
        # change (its schema, the source's own rows) and it is dropped.
        spare = self._sources.spare[source]
        copy = spare.pop() if spare else server.kept_database(like=source)

        def give_back() -> None:
            if pgcluster.reset(copy, self._sources.contents[source]):
                spare.append(copy)
            else:
                server.drop(copy)

        self._request.addfinalizer(give_back)
        return copy, made


@pytest.fixture
def filled(filled_sources: Sources, tmp_path: Path, request: pytest.FixtureRequest) -> Filled:
    """Databases copied from ones filled once per test session (see ``Filled``)."""
    return Filled(filled_sources, tmp_path, request)


def migrated(place: str) -> None:
    """Fills a database with the current schema, as the first store to open it would."""
    store: SessionStore = SqliteStore(place) if place.endswith(".db") else PostgresStore(place)
    store.migrate()
    store.close()


def open_store(kind: str, place: str) -> SessionStore:
    """A store of ``kind`` on ``place`` (a file path for SQLite, a DSN for PostgreSQL)."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        store = SqliteStore(place)
        store.migrate()  # the database a test's store stands for exists, empty or not
        return store
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
def store_fill() -> Callable[[str], object]:
    """What the databases of ``store_factory`` hold: what this function writes into an
    empty one (see ``Filled``), here the current schema. A module whose tests need more
    beside it (a table of the caller's own) overrides this fixture."""
    return migrated


@pytest.fixture
def store_factory(
    request: pytest.FixtureRequest, filled: Filled, store_fill: Callable[[str], object]
) -> Iterator[StoreFactory]:
    """Opens stores of the parametrized kind; each test gets a new database, with the
    current schema (the schema's own tests start from empty ones: test_migrations), or
    what the module's ``store_fill`` writes."""
    kind: str = request.param
    place = "" if kind == "memory" else filled(kind, store_fill)[0]
    factory = StoreFactory(kind, place)
    yield factory
    factory.close_all()


@pytest.fixture(params=["sqlite", "postgres"])
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Stores of each SQL kind on a new, empty database: no schema yet, which is what
    the tests of migrating it do (the shared store fixture's databases come migrated)."""
    if request.param == "sqlite":
        place = str(tmp_path / "empty.db")
    else:
        place = request.getfixturevalue("postgres_dsn")
    factory = StoreFactory(request.param, place)
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
