"""The feed: ``records_since`` and ``follow`` on every store, cursors, and the fleet proof.

The fleet proof (``TestFleet``) runs 8 writer processes and 2 follower processes on one
SQLite file or PostgreSQL database. Writers are SIGKILLed at random, mid-transaction as
often as not, and replaced; one follower is SIGKILLed mid-run and restarted from the
cursor it saved. Each follower writes one line per record (its cursor, session and
seq) in a single write, so the last whole line is the saved cursor. In the end each
follower has received every committed record exactly once, each session's records in
seq order, and in the feed's final order: no record ever appeared behind its cursor.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import DictRow, dict_row

from paysession import AsyncPaymentSessions, InvalidSessionData, PaymentSessions
from paysession.store import LoggedRecord, PostgresStore, SessionStore, SqliteStore

from .conftest import StoreFactory

SPAWN = multiprocessing.get_context("spawn")


def made(sessions: PaymentSessions, cart: str, provider: str = "stripe") -> str:
    """A created and initiated session of ``cart``: two records."""
    session = sessions.create(cart_id=cart, provider_id=provider, amount=700)
    sessions.fire(session.id, "initiate", data={"id": f"pi_{cart}_{provider}"})
    return session.id


def keys(logged: list[LoggedRecord]) -> list[tuple[str, int]]:
    return [(entry.record.session_id, entry.record.seq) for entry in logged]


class TestFollow:
    def test_follow_yields_the_whole_feed_then_ends_when_idle(self, store: SessionStore) -> None:
        """From the start, a page at a time, in the order records_since gives."""
        sessions = PaymentSessions(store)
        ids = [made(sessions, f"cart_{n}") for n in range(4)]
        sessions.fire(ids[0], "authorize")
        followed = list(sessions.follow(batch=3, idle=0))
        assert followed == sessions.records_since(None, 100)
        assert len(followed) == 9
        assert [entry.record.session_id for entry in followed[:2]] == [ids[0], ids[0]]

    def test_follow_resumes_after_a_saved_cursor(self, store: SessionStore) -> None:
        """Nothing before the cursor comes again, nothing after it is missed."""
        sessions = PaymentSessions(store)
        one = made(sessions, "cart_1")
        first = list(sessions.follow(idle=0))
        two = made(sessions, "cart_2")
        sessions.fire(one, "cancel")
        rest = list(sessions.follow(first[-1].cursor, batch=1, idle=0))
        assert keys(rest) == [(two, 0), (two, 1), (one, 2)]
        assert list(sessions.follow(rest[-1].cursor, idle=0)) == []

    def test_follow_waits_for_a_record_committed_later(self, store_factory: StoreFactory) -> None:
        """A caught-up follower gets a move that commits while it waits."""
        sessions = PaymentSessions(store_factory())
        session_id = made(sessions, "cart_1")
        start = sessions.records_since(None, 10)[-1].cursor
        writer = PaymentSessions(store_factory())
        timer = threading.Timer(0.2, lambda: writer.fire(session_id, "require_more"))
        timer.start()
        try:
            # idle bounds the wait should the record never come; it comes first.
            got = next(iter(sessions.follow(start, idle=30)), None)
        finally:
            timer.join()
        assert got is not None
        assert (got.record.session_id, got.record.trigger) == (session_id, "require_more")

    def test_the_async_twin_follows(self, store: SessionStore) -> None:
        sessions = PaymentSessions(store)
        made(sessions, "cart_1")

        async def collect() -> list[LoggedRecord]:
            twin = AsyncPaymentSessions(sessions)
            return [entry async for entry in twin.follow(batch=1, idle=0)]

        assert asyncio.run(collect()) == sessions.records_since(None, 10)

    def test_cancelling_an_async_follower_closes_its_feed(
        self, store: SessionStore, store_factory: StoreFactory
    ) -> None:
        """A task waiting on a quiet feed is cancelled; the feed (on PostgreSQL, its
        listening connection) is closed once the wait in flight has ended."""
        sessions = PaymentSessions(store)
        made(sessions, "cart_1")
        got: list[LoggedRecord] = []

        async def follow_forever() -> None:
            async for entry in AsyncPaymentSessions(sessions).follow(idle=None):
                got.append(entry)

        async def scenario() -> None:
            task = asyncio.create_task(follow_forever())
            while len(got) < 2:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(scenario())
        assert [entry.record.trigger for entry in got] == ["create", "initiate"]
        if isinstance(store, PostgresStore):
            with psycopg.connect(store_factory.place, autocommit=True) as pg:
                listening = pg.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
                ).fetchone()
            assert listening == (0,)

    def test_leaving_the_loop_early_closes_the_feed(self, store: SessionStore) -> None:
        sessions = PaymentSessions(store)
        made(sessions, "cart_1")
        feed = sessions.follow(idle=None)
        assert next(feed).record.trigger == "create"
        feed.close()
        with pytest.raises(StopIteration):
            next(feed)

    @pytest.mark.parametrize(
        ("arguments", "field"),
        [
            ({"batch": 0}, "batch"),
            ({"batch": 10_001}, "batch"),
            ({"batch": "5"}, "batch"),
            ({"batch": True}, "batch"),
            ({"idle": -1}, "idle"),
            ({"idle": math.nan}, "idle"),
            ({"idle": math.inf}, "idle"),
            ({"idle": "1"}, "idle"),
            ({"cursor": 1.5}, "cursor"),
            ({"cursor": -1}, "cursor"),
            ({"cursor": 2**63}, "cursor"),
            ({"cursor": b"1"}, "cursor"),
        ],
    )
    def test_bad_arguments_are_refused_at_the_call(
        self, store: SessionStore, arguments: dict[str, Any], field: str
    ) -> None:
        sessions = PaymentSessions(store)
        with pytest.raises(InvalidSessionData) as refused:
            sessions.follow(**arguments)
        assert refused.value.fields == (field,)

    def test_a_foreign_cursor_is_refused_at_the_first_read(self, store: SessionStore) -> None:
        sessions = PaymentSessions(store)
        made(sessions, "cart_1")
        foreign = "12" if isinstance(store, PostgresStore) else "1-12"
        feed = sessions.follow(foreign, idle=0)
        with pytest.raises(InvalidSessionData) as refused:
            next(feed)
        assert refused.value.fields == ("cursor",)


class TestWakeups:
    def test_postgres_announces_each_commit_to_listeners(self, store_factory: StoreFactory) -> None:
        """A LISTENing follower is woken by a commit of another store (another process)."""
        listener = store_factory()
        if not isinstance(listener, PostgresStore):
            with listener.wakeups() as wakeup:
                assert wakeup.wait(0.001) is False  # SQLite and memory only poll
            return
        session_id = made(PaymentSessions(listener), "cart_1")
        with listener.wakeups() as wakeup:
            assert wakeup.wait(0) is False  # nothing announced since it began listening
            PaymentSessions(store_factory()).fire(session_id, "require_more")
            assert wakeup.wait(30) is True
            assert wakeup.wait(0) is False  # the notices so far counted as one wakeup


class _EarlyTransaction(PostgresStore):
    """A store whose commits run inside a transaction that took its id beforehand."""

    def __init__(self, dsn: str, conn: psycopg.Connection[DictRow]) -> None:
        super().__init__(dsn)
        self.early = conn

    def _connection(self, operation: str) -> AbstractContextManager[Any]:
        return nullcontext(self.early) if operation == "commit" else super()._connection(operation)


class TestPostgresFeedKeys:
    def test_keys_sort_as_numbers_across_a_power_of_ten(self, postgres_dsn: str) -> None:
        """A key of more digits comes after one of fewer (they are not sorted as text)."""
        sessions = PaymentSessions(PostgresStore(postgres_dsn))
        before = made(sessions, "cart_1")
        with psycopg.connect(postgres_dsn, autocommit=True) as pg:
            (now,) = pg.execute("SELECT pg_current_xact_id()::text").fetchone() or ("",)
            # Spend transaction ids, one transaction each, up to the next power of ten.
            pg.execute(
                f"DO $$ BEGIN FOR i IN 1..{10 ** len(now) - int(now)} LOOP "
                "PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$"
            )
        after = made(sessions, "cart_2")
        feed = sessions.records_since(None, 100)
        assert keys(feed) == [(before, 0), (before, 1), (after, 0), (after, 1)]
        assert len(feed[2].cursor.split("-")[0]) > len(feed[1].cursor.split("-")[0])
        assert list(sessions.follow(feed[1].cursor, batch=1, idle=0)) == feed[2:]

    def test_a_record_never_sorts_before_its_sessions_previous_one(self, postgres_dsn: str) -> None:
        """A write whose transaction took its id before the session's previous record's
        transaction still comes after that record in the feed (the key is raised)."""
        sessions = PaymentSessions(PostgresStore(postgres_dsn))
        session_id = made(sessions, "cart_1")
        # Rows by column name, as the store's own connections read them.
        with psycopg.connect(postgres_dsn, row_factory=dict_row) as early:
            taken = early.execute("SELECT pg_current_xact_id()::text AS xact").fetchone()
            early_id = "" if taken is None else taken["xact"]
            sessions.fire(session_id, "require_more")  # a later transaction id, committed
            late = PaymentSessions(_EarlyTransaction(postgres_dsn, early))
            late.fire(session_id, "retry")
            early.commit()
        feed = sessions.records_since(None, 100)
        assert [entry.record.seq for entry in feed] == [0, 1, 2, 3]
        assert int(feed[3].cursor.split("-")[0]) > int(early_id)


# ---------------------------------------------------------------------------------------
# The fleet proof.

WRITERS = 8
RUN_SECONDS = 12.0


def open_store(kind: str, place: str) -> SessionStore:
    return SqliteStore(place) if kind == "sqlite" else PostgresStore(place, max_size=2)


def fleet_writer(kind: str, place: str, name: str) -> None:
    """Carts of two sessions each, moved until killed: single and multi-session commits."""
    sessions = PaymentSessions(open_store(kind, place))
    rng = random.Random(name)
    for n in range(1_000_000):
        cart = f"{name}_cart_{n}"
        one, two = made(sessions, cart, "stripe"), made(sessions, cart, "paypal")
        sessions.select(one)
        sessions.select(two)  # deselects one: two sessions in one transaction
        for _ in range(rng.randint(1, 4)):
            sessions.fire(one, "require_more")
            sessions.fire(one, "retry")
        sessions.fire(two, rng.choice(["authorize", "cancel", "fail"]))


def read_log(path: Path) -> list[tuple[str, str, int]]:
    """A follower's whole lines: (cursor, session id, seq); a torn last line is dropped."""
    if not path.exists():
        return []
    text = path.read_text(encoding="ascii")
    lines = text.split("\n")[:-1]  # the part after the last newline is torn or empty
    return [(c, s, int(q)) for c, s, q in (line.split("\t") for line in lines)]


def fleet_follower(kind: str, place: str, log: str, done: str) -> None:
    """Follow from the saved cursor, one line per record in one write, until ``done``."""
    sessions = PaymentSessions(open_store(kind, place))
    path = Path(log)
    saved = read_log(path)
    if path.exists():  # cut a torn last line, as a restart must
        whole = path.read_bytes()
        with path.open("r+b") as out:
            out.truncate(whole.rfind(b"\n") + 1)
    cursor = saved[-1][0] if saved else None
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        while True:
            finished = os.path.exists(done)  # read before the pass that drains the feed
            for entry in sessions.follow(cursor, batch=200, idle=1.0):
                line = f"{entry.cursor}\t{entry.record.session_id}\t{entry.record.seq}\n"
                os.write(fd, line.encode("ascii"))
                cursor = entry.cursor
            if finished:
                return
    finally:
        os.close(fd)


def committed(kind: str, place: str) -> list[tuple[str, int]]:
    """Every record in the database, read with the driver, not the library."""
    query = "SELECT session_id, seq FROM paysession_records"
    if kind == "sqlite":
        with sqlite3.connect(place) as conn:
            rows = conn.execute(query).fetchall()
        conn.close()
    else:
        with psycopg.connect(place) as pg:
            rows = pg.execute(query).fetchall()
    return sorted((str(s), int(q)) for s, q in rows)


@pytest.fixture(params=["sqlite", "postgres"])
def fleet_place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield "sqlite", str(tmp_path / "fleet.db")
    else:
        yield "postgres", request.getfixturevalue("postgres_dsn")


@pytest.mark.slow
class TestFleet:
    def test_every_record_reaches_each_follower_once_in_order(
        self, fleet_place: tuple[str, str], tmp_path: Path
    ) -> None:
        kind, place = fleet_place
        first = open_store(kind, place)
        first.migrate()  # the database and its schema, before the fleet starts
        first.close()
        rng = random.Random(20261130)
        done = str(tmp_path / "done")
        logs = [str(tmp_path / f"follower_{n}.log") for n in range(2)]
        followers = [
            SPAWN.Process(target=fleet_follower, args=(kind, place, log, done)) for log in logs
        ]
        started = 0

        def writer() -> Any:
            nonlocal started
            started += 1
            process = SPAWN.Process(target=fleet_writer, args=(kind, place, f"w{started}"))
            process.start()
            return process

        for process in followers:
            process.start()
        writers = [writer() for _ in range(WRITERS)]
        kills = 0
        follower_restarted = False
        deadline = time.monotonic() + RUN_SECONDS
        # The run lasts its time and until the fleet has committed enough to judge: on a
        # busy machine a respawned writer takes seconds to start, and kills come every
        # few tenths of one. The cap keeps a fleet that commits nothing from running on.
        cap = deadline + 10 * RUN_SECONDS
        try:
            while time.monotonic() < deadline or (
                time.monotonic() < cap and len(committed(kind, place)) <= 200
            ):
                time.sleep(rng.uniform(0.05, 0.4))
                victim = rng.randrange(WRITERS)
                os.kill(writers[victim].pid, signal.SIGKILL)
                writers[victim].join()
                writers[victim] = writer()
                kills += 1
                if not follower_restarted and time.monotonic() > deadline - RUN_SECONDS / 2:
                    os.kill(followers[0].pid, signal.SIGKILL)
                    followers[0].join()
                    followers[0] = SPAWN.Process(
                        target=fleet_follower, args=(kind, place, logs[0], done)
                    )
                    followers[0].start()
                    follower_restarted = True
        finally:
            for process in writers:
                process.kill()
                process.join()
        if kind == "postgres":
            # A killed writer's server process rolls back once it sees the client gone;
            # until then its transaction holds the feed back (as it should).
            with psycopg.connect(place, autocommit=True) as pg:
                while pg.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND backend_xid IS NOT NULL"
                ).fetchone() != (0,):
                    time.sleep(0.05)
        Path(done).touch()
        for process in followers:
            process.join(timeout=120)
            assert process.exitcode == 0, process.exitcode
        assert follower_restarted and kills >= 10

        everything = committed(kind, place)
        assert len(everything) > 200
        store = open_store(kind, place)
        try:
            sessions = PaymentSessions(store)
            final = [(e.cursor, e.record.session_id, e.record.seq) for e in sessions.follow(idle=0)]
            assert sessions.verify_all().ok
        finally:
            store.close()
        for log in logs:
            received = read_log(Path(log))
            seen: dict[tuple[str, int], str] = {}
            twice = []
            for cursor, session_id, seq in received:
                if (session_id, seq) in seen:
                    twice.append((log, session_id, seq, seen[(session_id, seq)], cursor))
                seen[(session_id, seq)] = cursor
            assert twice == []
            # Exactly once: every committed record, no other, none twice.
            assert sorted((s, q) for _, s, q in received) == everything
            # In the feed's final order: nothing appeared behind a cursor already passed.
            assert received == final
            last: dict[str, int] = {}
            for _, session_id, seq in received:
                assert seq == last.get(session_id, -1) + 1, (session_id, seq)
                last[session_id] = seq
