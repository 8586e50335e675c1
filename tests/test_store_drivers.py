"""Each driver's own options and failures: SQLite files and busy databases, PostgreSQL servers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import paysession.store
from paysession import (
    InvalidSessionData,
    PaymentSessions,
    PaymentSessionStatus,
)
from paysession.errors import StoreError
from paysession.store import SqliteStore
from paysession.store.sqlite import MIGRATIONS

from .helpers import initiated, run_without

S = PaymentSessionStatus


class TestSqliteStore:
    def test_options_are_checked(self, tmp_path: Path) -> None:
        """synchronous is FULL or NORMAL; busy_timeout is a number of seconds >= 0."""
        with pytest.raises(InvalidSessionData) as refused:
            SqliteStore(tmp_path / "x.db", synchronous="OFF")  # type: ignore[arg-type]
        assert refused.value.fields == ("synchronous",)
        with pytest.raises(InvalidSessionData) as refused:
            SqliteStore(tmp_path / "x.db", busy_timeout=-1)
        assert refused.value.fields == ("busy_timeout",)

    def test_a_read_never_creates_the_database(self, tmp_path: Path) -> None:
        """Reading a path with no database names the path; the first write creates it."""
        path = tmp_path / "typo.db"
        with SqliteStore(path) as store:
            for read in (store.find, lambda: store.load("ps_1"), lambda: store.history("ps_1")):
                with pytest.raises(StoreError) as refused:
                    read()
                assert str(path) in str(refused.value)
                assert not path.exists()
            sessions = PaymentSessions(store)
            made = sessions.create(cart_id="cart_1", provider_id="stripe", amount=100)
            assert path.exists() and store.find() == [made]

    def test_file_is_in_wal_mode_with_the_schema(self, tmp_path: Path) -> None:
        """First use puts the file in WAL mode and migrates it to the current schema."""
        path = tmp_path / "sessions.db"
        with SqliteStore(path, synchronous="NORMAL") as store:
            assert store.migrate() == len(MIGRATIONS)
            assert store.find() == []
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert conn.execute("SELECT version FROM paysession_schema").fetchall() == [
                (len(MIGRATIONS),)
            ]

    def test_a_busy_database_is_a_store_error(self, tmp_path: Path) -> None:
        """A write that waits longer than busy_timeout for the lock fails with StoreError."""
        path = tmp_path / "sessions.db"
        store = SqliteStore(path, busy_timeout=0.05)
        sessions = PaymentSessions(store)
        session_id = initiated(sessions)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError) as failed:
                sessions.fire(session_id, "fail")
            assert (failed.value.operation, failed.value.detail) == (
                "commit",
                "database is locked",
            )
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert sessions.version(session_id) == 1
        store.close()

    def test_a_closed_store_is_a_store_error(self, tmp_path: Path) -> None:
        """Any use after close() raises StoreError."""
        store = SqliteStore(tmp_path / "sessions.db")
        store.migrate()
        store.close()
        with pytest.raises(StoreError) as failed:
            store.load("ps_1")
        assert (failed.value.operation, failed.value.detail) == ("connect", "the store is closed")


class TestPostgresStore:
    def test_imported_on_first_use(self) -> None:
        """paysession.store.PostgresStore is the psycopg store, loaded when first named."""
        from paysession.store.postgres import PostgresStore

        assert paysession.store.PostgresStore is PostgresStore
        with pytest.raises(AttributeError):
            _ = paysession.store.OracleStore  # type: ignore[attr-defined]

    def test_pool_sizes_are_checked(self) -> None:
        """The pool needs max_size >= 1 and 0 <= min_size <= max_size."""
        from paysession.store.postgres import PostgresStore

        with pytest.raises(InvalidSessionData) as refused:
            PostgresStore("host=127.0.0.1", min_size=3, max_size=2)
        assert refused.value.fields == ("max_size",)

    def test_no_server_is_a_store_error(self) -> None:
        """A server that cannot be reached gives StoreError once the pool gives up."""
        from paysession.store.postgres import PostgresStore

        store = PostgresStore("host=127.0.0.1 port=9 connect_timeout=1", timeout=0.3)
        with pytest.raises(StoreError) as failed:
            store.load("ps_1")
        assert failed.value.operation == "migrate"
        store.close()


class TestMissingExtra:
    def test_postgres_without_its_extra_says_what_to_install(self) -> None:
        """Without psycopg, the import is a MissingExtra (an ImportError) with the pip line."""
        done = run_without(
            "psycopg",
            "from paysession.errors import MissingExtra\n"
            "try:\n"
            "    from paysession.store import PostgresStore\n"
            "except MissingExtra as missing:\n"
            "    assert isinstance(missing, ImportError)\n"
            "    print(missing.part, missing.extra)\n"
            "    print(missing)\n",
        )
        assert (done.returncode, done.stderr) == (0, "")
        assert done.stdout.splitlines() == [
            "PostgresStore postgres",
            "PostgresStore needs the postgres extra: pip install 'paysession[postgres]'",
        ]
