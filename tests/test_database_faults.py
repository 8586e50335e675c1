"""Database faults: a read-only SQLite file, a full disk, PostgreSQL stopped and restarted.

Each fault is a StoreError (never a raw sqlite3 or psycopg error), leaves nothing
half-written (a move's row, its records and its key are all there or none), and once
the database is back the same store, in the same process, works again.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from paysession import PaymentSessions, StoreError, TransitionRecord
from paysession.store import SqliteStore

from . import pgcluster
from .conftest import StoreFactory
from .faultfs import read_only_view, small_disk
from .test_races import check_database

pytestmark = pytest.mark.slow


BLOB = "x" * 60_000


def prepare(sessions: PaymentSessions, count: int) -> list[str]:
    """``count`` initiated pending sessions, each in a cart of its own."""
    ids = []
    for n in range(count):
        session = sessions.create(cart_id=f"cart_{n}", provider_id="stripe", amount=1000)
        sessions.fire(session.id, "initiate", data={"id": f"pi_{n}"})
        ids.append(session.id)
    return ids


def keyed(sessions: PaymentSessions, session_id: str, key: str, amount: int) -> TransitionRecord:
    """The move every fault test makes: a keyed update with a large data blob."""
    return sessions.fire(
        session_id, "update", idempotency_key=key, amount=amount, data={"blob": BLOB}
    )


def assert_not_applied(sessions: PaymentSessions, session_id: str, key: str, before: int) -> None:
    """A refused move left nothing: no record, no key, the row still at its version."""
    trail = sessions.history(session_id)
    assert len(trail) == before + 1
    assert sessions.version(session_id) == before
    assert [r for r in trail if r.idempotency_key == key] == []


class TestSqliteReadOnly:
    def test_reads_work_writes_fail_then_work_again(self, tmp_path: Path) -> None:
        """On a read-only file, reads work, writes are StoreErrors; writable again, they work."""
        with read_only_view(tmp_path) as view:
            writer = SqliteStore(view.source / "sessions.db")
            ids = prepare(PaymentSessions(writer), 2)
            writer.load(ids[0])  # the writer keeps the -wal and -shm files open
            view.read_only()
            store = SqliteStore(view.path / "sessions.db")
            sessions = PaymentSessions(store)
            assert [s.id for s in sessions.find()] == ids
            assert sessions.verify(ids[0]).ok
            with pytest.raises(StoreError) as caught:
                keyed(sessions, ids[0], "k-read-only", 2000)
            assert (caught.value.operation, caught.value.detail) == (
                "commit",
                "attempt to write a readonly database",
            )
            assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
            with pytest.raises(StoreError) as refused:
                sessions.create(cart_id="cart_new", provider_id="stripe", amount=1)
            assert refused.value.operation == "create"
            assert_not_applied(sessions, ids[0], "k-read-only", 1)
            assert len(sessions.find()) == 2
            view.writable()
            record = keyed(sessions, ids[0], "k-read-only", 2000)
            assert keyed(sessions, ids[0], "k-read-only", 2000) == record
            assert sessions.get(ids[0]).amount == 2000
            check_database(StoreFactory("sqlite", str(view.source / "sessions.db")), sessions, ids)
            store.close()
            writer.close()

    def test_a_file_that_cannot_be_opened(self, tmp_path: Path) -> None:
        """A WAL file SQLite cannot open read-only is a StoreError on every call, until it can."""
        with read_only_view(tmp_path) as view:
            writer = SqliteStore(view.source / "sessions.db")
            ids = prepare(PaymentSessions(writer), 1)
            writer.close()  # the last connection out removes the -wal and -shm files
            view.read_only()
            place = view.path / "sessions.db"
            sessions = PaymentSessions(SqliteStore(place))
            for _ in range(2):
                with pytest.raises(StoreError) as caught:
                    sessions.get(ids[0])
                assert (caught.value.operation, caught.value.detail) == (
                    "connect",
                    f"cannot open {place}: unable to open database file",
                )
            view.writable()
            assert sessions.get(ids[0]).amount == 1000
            sessions.store.close()


class TestSqliteDiskFull:
    def test_moves_refused_whole_then_accepted(self, tmp_path: Path) -> None:
        """A full disk refuses whole moves (no row, record or key); with room, they go through."""
        with small_disk(tmp_path, "4m") as disk:
            path = disk.path / "sessions.db"
            store = SqliteStore(path)
            sessions = PaymentSessions(store)
            ids = prepare(sessions, 4)
            disk.fill()
            refused: list[tuple[str, str, int]] = []
            for n in range(300):
                session_id = ids[n % len(ids)]
                before = sessions.version(session_id)
                try:
                    keyed(sessions, session_id, f"k{n}", 2000 + n)
                except StoreError as error:
                    assert error.operation == "commit"
                    assert isinstance(error.__cause__, sqlite3.Error)
                    assert_not_applied(sessions, session_id, f"k{n}", before)
                    refused.append((session_id, f"k{n}", 2000 + n))
                    if len(refused) == 3:
                        break
            assert len(refused) == 3, "the disk never filled"
            assert sessions.get(ids[0]).amount >= 1000  # reads still work
            disk.free()
            for session_id, key, amount in refused:
                record = keyed(sessions, session_id, key, amount)
                assert keyed(sessions, session_id, key, amount) == record
                assert sessions.get(session_id).amount == amount
            check_database(StoreFactory("sqlite", str(path)), sessions, ids)
            with sqlite3.connect(path) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            store.close()


# ---------------------------------------------------------------------------------------
# PostgreSQL, on a cluster of this module's own, stopped and started under a store


class Server:
    """A throwaway cluster that the tests may stop and start again on the same port."""

    def __init__(self, cluster: pgcluster.Cluster) -> None:
        self.cluster = cluster

    def new_database(self) -> str:
        """A DSN to a new, empty database on this server."""
        admin = self.cluster.dsn()
        return pgcluster.with_database(admin, pgcluster.create_database(admin))

    def _ctl(self, *args: str) -> None:
        data = str(self.cluster.directory / "data")
        subprocess.run(
            [*self.cluster._as_user, "pg_ctl", "-D", data, *args], check=True, capture_output=True
        )

    def stop(self, mode: str) -> None:
        """``immediate`` is a crash (recovery on the next start); ``fast`` a clean shutdown."""
        self._ctl("-m", mode, "stop")

    def start(self) -> None:
        directory = self.cluster.directory
        options = f"-p {self.cluster.port} -c listen_addresses=127.0.0.1 -k {directory}"
        self._ctl("-l", str(directory / "log"), "-w", "-o", options, "start")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    if not pgcluster.binaries_available():
        message = "PostgreSQL outage tests need initdb and pg_ctl on PATH"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    # fsync on: an immediate stop is a crash, and a crash must not lose a commit.
    cluster = pgcluster.start_cluster(fsync=True, max_connections=20)
    try:
        yield Server(cluster)
    finally:
        cluster.stop()


class Mover:
    """A thread firing keyed moves round the sessions until stopped; keeps every outcome."""

    def __init__(self, sessions: PaymentSessions, ids: list[str]) -> None:
        self.sessions = sessions
        self.ids = ids
        self.outcomes: list[tuple[float, str, str, int, TransitionRecord | BaseException]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            session_id, key, amount = self.ids[n % len(self.ids)], f"m{n}", 3000 + n
            outcome: TransitionRecord | BaseException
            try:
                outcome = keyed(self.sessions, session_id, key, amount)
            except BaseException as error:  # everything is kept and judged by the test
                outcome = error
            self.outcomes.append((time.monotonic(), session_id, key, amount, outcome))
            n += 1
            time.sleep(0.005)

    def __enter__(self) -> Mover:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class TestPostgresOutage:
    def test_stopped_and_restarted_mid_run(self, server: Server) -> None:
        """A crash mid-run: StoreErrors while down, moves again once back; nothing half-written."""
        from paysession.store.postgres import PostgresStore

        dsn = server.new_database()
        store = PostgresStore(dsn, max_size=4, timeout=1.0)
        sessions = PaymentSessions(store)
        ids = prepare(sessions, 4)
        with Mover(sessions, ids) as mover:
            time.sleep(0.3)
            server.stop("immediate")
            time.sleep(1.5)
            server.start()
            back = time.monotonic()
            deadline = back + 10
            while time.monotonic() < deadline and not any(
                at > back and isinstance(o, TransitionRecord) for at, *_, o in mover.outcomes
            ):
                time.sleep(0.05)
            time.sleep(0.3)
        errors = [o for *_, o in mover.outcomes if isinstance(o, BaseException)]
        assert errors, "the outage went unnoticed"
        assert {type(e) for e in errors} == {StoreError}
        # "write": the server died in the middle of the commit's statement.
        operations = {e.operation for e in errors if isinstance(e, StoreError)}
        assert operations <= {"load", "commit", "write"}
        # Once a move succeeds after the restart, every later one does too.
        after = [o for at, *_, o in mover.outcomes if at > back]
        first = next(n for n, o in enumerate(after) if isinstance(o, TransitionRecord))
        assert all(isinstance(o, TransitionRecord) for o in after[first:])
        assert len(after) - first >= 3
        # A move whose commit broke may have committed or not: its key says which, and
        # repeating it makes it exactly once.
        for _, session_id, key, amount, outcome in mover.outcomes:
            again = keyed(sessions, session_id, key, amount)
            if isinstance(outcome, TransitionRecord):
                assert again == outcome
            assert [r for r in sessions.history(session_id) if r.idempotency_key == key] == [again]
        check_database(StoreFactory("postgres", dsn), sessions, ids)
        store.close()

    @pytest.mark.parametrize("mode", ["fast", "immediate"])
    def test_idle_pool_after_a_restart(self, server: Server, mode: str) -> None:
        """A restart while the pool sits idle costs no request: dead connections are replaced."""
        from paysession.store.postgres import PostgresStore

        dsn = server.new_database()
        store = PostgresStore(dsn, min_size=4, max_size=4, timeout=5.0)
        sessions = PaymentSessions(store)
        ids = prepare(sessions, 1)
        threads = [
            threading.Thread(target=lambda: [sessions.get(ids[0]) for _ in range(20)])
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        server.stop(mode)
        server.start()
        records = [keyed(sessions, ids[0], f"after-{n}", 5000 + n) for n in range(6)]
        assert [r.seq for r in records] == list(range(2, 8))
        check_database(StoreFactory("postgres", dsn), sessions, ids)
        store.close()

    def test_errors_while_down_are_store_errors(self, server: Server) -> None:
        """Every call while the server is down raises StoreError, caused by psycopg's error."""
        from paysession.store.postgres import PostgresStore

        dsn = server.new_database()
        store = PostgresStore(dsn, max_size=2, timeout=0.2)
        sessions = PaymentSessions(store)
        ids = prepare(sessions, 1)
        server.stop("fast")
        try:
            calls = {
                "get": lambda: sessions.get(ids[0]),
                "fire": lambda: keyed(sessions, ids[0], "down", 1),
                "create": lambda: sessions.create(cart_id="c", provider_id="p", amount=1),
                "history": lambda: sessions.history(ids[0]),
                "find": lambda: sessions.find(cart_id="cart_0"),
                "records_since": lambda: sessions.records_since(0),
            }
            for name, call in calls.items():
                with pytest.raises(StoreError) as caught:
                    call()
                assert isinstance(caught.value.__cause__, psycopg.Error), name
        finally:
            server.start()
        # The pool reconnects in the background, backing off from 1 s: a request with a
        # short timeout may come before it does.
        deadline = time.monotonic() + 10
        while True:
            try:
                assert_not_applied(sessions, ids[0], "down", 1)
                break
            except StoreError:
                assert time.monotonic() < deadline, "the store did not come back"
                time.sleep(0.1)
        store.close()
