"""PaymentSessions and each store's own options, beyond the shared contract."""

from __future__ import annotations

import pickle
import sqlite3
import threading
from pathlib import Path

import pytest

import paysession.store
from paysession import (
    ConcurrentUpdate,
    InvalidSessionData,
    PaymentSessions,
    PaymentSessionStatus,
    SessionNotFound,
)
from paysession.audit import verify
from paysession.errors import DuplicateSession, SelectionConflict, StoreError
from paysession.store import MemoryStore, SqliteStore
from paysession.store.sqlite import MIGRATIONS

from .helpers import T0, StepClock

S = PaymentSessionStatus


def initiated(sessions: PaymentSessions, cart_id: str = "cart_1", provider: str = "stripe") -> str:
    session = sessions.create(cart_id=cart_id, provider_id=provider, amount=1000)
    sessions.fire(session.id, "initiate", data={"id": "pi_1"})
    return session.id


class TestPaymentSessions:
    def test_moves_are_stamped_by_the_clock(self) -> None:
        """create and every move read the injected clock."""
        clock = StepClock()
        sessions = PaymentSessions(MemoryStore(), clock=clock)
        session = sessions.create(cart_id="cart_1", provider_id="stripe", amount=10)
        record = sessions.fire(session.id, "cancel")
        assert (session.created_at, record.at) == (clock.now - clock.step, clock.now)
        assert session.created_at > T0

    def test_expected_version_must_be_a_version(self) -> None:
        """expected_version is an int >= 0 (not a bool, not a string) or None."""
        sessions = PaymentSessions(MemoryStore())
        session_id = initiated(sessions)
        for bad in ("1", True, -1, 1.0):
            with pytest.raises(InvalidSessionData) as refused:
                sessions.fire(session_id, "fail", expected_version=bad)  # type: ignore[arg-type]
            assert refused.value.fields == ("expected_version",)
        assert sessions.version(session_id) == 1

    def test_find_takes_a_status_or_its_name(self) -> None:
        """find accepts a status or its wire name, and refuses anything else."""
        sessions = PaymentSessions(MemoryStore(), clock=StepClock())
        session_id = initiated(sessions)
        assert [s.id for s in sessions.find(status="pending")] == [session_id]
        assert sessions.find(status=S.ERROR) == []
        with pytest.raises(InvalidSessionData) as refused:
            sessions.find(status="paid")
        assert refused.value.fields == ("status",)

    def test_hmac_key_seals_every_record(self) -> None:
        """With a key, the trail verifies under that key and not without it."""
        sessions = PaymentSessions(MemoryStore(), key=b"audit-key")
        session_id = initiated(sessions)
        sessions.fire(session_id, "authorize")
        assert sessions.verify(session_id).ok
        assert not verify(sessions.history(session_id)).ok
        assert verify(sessions.history(session_id), key=b"audit-key").ok

    def test_attempts_must_be_positive(self) -> None:
        """fire_with_retry needs at least one attempt."""
        sessions = PaymentSessions(MemoryStore())
        session_id = initiated(sessions)
        with pytest.raises(InvalidSessionData) as refused:
            sessions.fire_with_retry(session_id, "fail", attempts=0)
        assert refused.value.fields == ("attempts",)

    def test_repr_names_the_store(self) -> None:
        """repr shows which store the service uses."""
        assert repr(PaymentSessions(MemoryStore())) == "<PaymentSessions <MemoryStore 0 sessions>>"


class TestThreads:
    @pytest.mark.parametrize("path", ["file", ":memory:"])
    def test_threads_share_one_store(self, tmp_path: Path, path: str) -> None:
        """Threads moving the same sessions through one SqliteStore lose no move."""
        store = SqliteStore(tmp_path / "threads.db" if path == "file" else ":memory:")
        sessions = PaymentSessions(store)
        ids = [initiated(sessions, f"cart_{n}") for n in range(3)]
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(10):
                    for session_id in ids:
                        sessions.fire_with_retry(session_id, "update", attempts=50, amount=7)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert [sessions.version(session_id) for session_id in ids] == [41, 41, 41]
        assert all(sessions.verify(session_id).ok for session_id in ids)
        store.close()


class TestSqliteStore:
    def test_options_are_checked(self, tmp_path: Path) -> None:
        """synchronous is FULL or NORMAL; busy_timeout is a number of seconds >= 0."""
        with pytest.raises(InvalidSessionData) as refused:
            SqliteStore(tmp_path / "x.db", synchronous="OFF")  # type: ignore[arg-type]
        assert refused.value.fields == ("synchronous",)
        with pytest.raises(InvalidSessionData) as refused:
            SqliteStore(tmp_path / "x.db", busy_timeout=-1)
        assert refused.value.fields == ("busy_timeout",)

    def test_file_is_in_wal_mode_with_the_schema(self, tmp_path: Path) -> None:
        """First use puts the file in WAL mode and migrates it to the current schema."""
        path = tmp_path / "sessions.db"
        with SqliteStore(path, synchronous="NORMAL") as store:
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


class TestErrors:
    def test_messages(self) -> None:
        """Each error says what happened from its attributes."""
        assert [
            str(SessionNotFound("ps_1")),
            str(ConcurrentUpdate("ps_1", 3, 4)),
            str(ConcurrentUpdate("ps_1", 3)),
            str(SelectionConflict("ps_2", "cart_1")),
            str(DuplicateSession("ps_1", "cart_1", "stripe", ("cart_id", "provider_id"))),
            str(DuplicateSession("ps_1", None, "stripe", ("id",))),
            str(StoreError("commit", "database is locked")),
        ] == [
            "no payment session 'ps_1'",
            "session ps_1 was changed by another move first (expected version 3, found 4); "
            "nothing was written",
            "session ps_1 was changed by another move first (expected version 3); "
            "nothing was written",
            "cannot select session ps_2: another session of cart cart_1 is selected; "
            "nothing was written",
            "cart cart_1 already has a payment session with provider 'stripe'",
            "a payment session with id ps_1 already exists",
            "session store failed during commit: database is locked",
        ]

    def test_errors_cross_process_boundaries(self) -> None:
        """The store errors pickle and unpickle to equal facts (workers send them back)."""
        for error in (
            SessionNotFound("ps_1"),
            ConcurrentUpdate("ps_1", 3, 4),
            SelectionConflict("ps_2", "cart_1"),
            DuplicateSession("ps_1", "cart_1", "stripe", ("id",)),
            StoreError("commit", "database is locked"),
        ):
            copy = pickle.loads(pickle.dumps(error))
            assert (type(copy), vars(copy)) == (type(error), vars(error))

    def test_builtin_families(self) -> None:
        """SessionNotFound is a LookupError; a selection conflict is a concurrent update."""
        assert issubclass(SessionNotFound, LookupError)
        assert issubclass(SelectionConflict, ConcurrentUpdate)
