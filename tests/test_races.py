"""Many OS processes on one database: races, crashes and repeated requests.

Workers are started with the "spawn" method (fresh interpreters, as separate hosts
would be) and open their own store on the test's SQLite file or PostgreSQL database.
After each run the database is checked as a whole: every trail verifies, every row is
the replay of its trail, the feed holds each record once with each session's in seq
order (and on SQLite positions run from 1 without a gap), and every stored idempotency
key names an existing record that carries it.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import psycopg
import pytest

from paysession import (
    ConcurrentUpdate,
    IdempotencyConflict,
    PaymentSessions,
    PaymentSessionStatus,
)
from paysession.audit import replay
from paysession.lifecycle import ALLOWED
from paysession.store import LoggedRecord, SessionStore, SqliteStore

from .conftest import StoreFactory

pytestmark = pytest.mark.slow


SPAWN = multiprocessing.get_context("spawn")
WORKERS = 8
S = PaymentSessionStatus


def open_store(kind: str, place: str) -> SessionStore:
    if kind == "sqlite":
        return SqliteStore(place)
    from paysession.store.postgres import PostgresStore

    return PostgresStore(place, max_size=2)


def prepare(sessions: PaymentSessions, count: int, carts: int | None = None) -> list[str]:
    """``count`` initiated pending sessions with an amount, spread over ``carts`` carts."""
    carts = carts or count
    ids = []
    for n in range(count):
        session = sessions.create(
            cart_id=f"cart_{n % carts}", provider_id=f"provider_{n // carts}", amount=1000 + n
        )
        sessions.fire(session.id, "initiate", data={"id": f"pi_{n}", "client_secret": "s"})
        ids.append(session.id)
    return ids


class Follower:
    """A consumer in a thread, reading every record from a cursor while others write."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store
        self.seen: list[LoggedRecord] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow)

    def _follow(self) -> None:
        cursor = None
        while True:
            stopping = self._stop.is_set()
            page = self.store.records_since(cursor, 500)
            self.seen += page
            if page:
                cursor = page[-1].cursor
            elif stopping:
                return
            else:
                time.sleep(0.001)

    def __enter__(self) -> Follower:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_workers(target: Any, args: Sequence[tuple[Any, ...]], timeout: float = 120) -> list[Any]:
    """Start one spawned process per argument tuple; return what each put on the queue."""
    queue = SPAWN.Queue()
    processes = [SPAWN.Process(target=target, args=(*a, queue)) for a in args]
    for process in processes:
        process.start()
    try:
        results = [queue.get(timeout=timeout) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise failures[0]
    return results


def check_database(factory: StoreFactory, sessions: PaymentSessions, ids: Sequence[str]) -> int:
    """The whole-database checks every test here ends with; returns the record count."""
    trails = {}
    for session_id in ids:
        trail = sessions.history(session_id)
        row = sessions.get(session_id)
        assert sessions.verify(session_id).ok, session_id
        assert replay(trail, data=row.data, cart=row.cart) == row
        assert sessions.version(session_id) == trail[-1].seq
        trails[session_id] = trail
    logged = sessions.records_since(None, 1_000_000)
    if factory.kind != "postgres":  # positions there number records, not commits
        assert [entry.position for entry in logged] == list(range(1, len(logged) + 1))
    assert len({entry.cursor for entry in logged}) == len(logged)
    last_seq: dict[str, int] = {}
    for entry in logged:  # each session's records in seq order, without a gap
        assert entry.record.seq == last_seq.get(entry.record.session_id, -1) + 1, entry
        last_seq[entry.record.session_id] = entry.record.seq
    assert sorted((e.record.session_id, e.record.seq) for e in logged) == sorted(
        (r.session_id, r.seq) for trail in trails.values() for r in trail
    )
    for entry in logged:
        assert trails[entry.record.session_id][entry.record.seq] == entry.record
    for session_id, key, seq, trigger in stored_keys(factory):
        record = trails[session_id][seq]
        assert (record.idempotency_key, record.trigger) == (key, trigger)
    return len(logged)


def stored_keys(factory: StoreFactory) -> list[tuple[str, str, int, str]]:
    """Every persisted key with the trigger of the record it names (None: no record)."""
    query = (
        "SELECT k.session_id, k.key, k.seq, r.trigger FROM paysession_keys AS k "
        "LEFT JOIN paysession_records AS r ON r.session_id = k.session_id AND r.seq = k.seq"
    )
    if factory.kind == "sqlite":
        with sqlite3.connect(factory.place) as conn:
            rows = conn.execute(query).fetchall()
    else:
        with psycopg.connect(factory.place) as pg:
            rows = pg.execute(query).fetchall()
    assert all(row[3] is not None for row in rows), "a key names a missing record"
    return [tuple(row) for row in rows]


# ---------------------------------------------------------------------------------------
# Worker processes (module level: spawn imports them by name)


def race_worker(
    kind: str, place: str, trigger: str, ids: list[str], barrier: Any, queue: Any
) -> None:
    try:
        store = open_store(kind, place)
        sessions = PaymentSessions(store)
        versions = {session_id: sessions.version(session_id) for session_id in ids}
        barrier.wait()
        won, lost = {}, 0
        for session_id in ids:
            try:
                record = sessions.fire(
                    session_id, trigger, expected_version=versions[session_id], actor=trigger
                )
                won[session_id] = record.to_dict()
            except ConcurrentUpdate:
                lost += 1
        store.close()
        queue.put((trigger, versions, won, lost))
    except BaseException as error:
        queue.put(error)


def idempotent_worker(kind: str, place: str, ids: list[str], barrier: Any, queue: Any) -> None:
    try:
        store = open_store(kind, place)
        sessions = PaymentSessions(store)
        barrier.wait()
        answers = {}
        for session_id in ids:
            record = sessions.fire(
                session_id,
                "update",
                idempotency_key=f"checkout-{session_id}",
                amount=4242,
                data={"attempt": "the same"},
            )
            answers[session_id] = record.to_dict()
        store.close()
        queue.put(answers)
    except BaseException as error:
        queue.put(error)


# Moves that keep a session alive (no cancel, no authorize: both lead to dead ends).
CRASH_MOVES = {
    status: sorted(ALLOWED[status] - {"cancel", "authorize"})
    for status in (S.PENDING, S.REQUIRES_MORE, S.ERROR)
}


def crash_args(trigger: str, rng: random.Random) -> dict[str, object]:
    if trigger == "update":
        return {"amount": rng.randrange(1, 10_000)}
    if trigger == "initiate":
        return {"data": {"id": f"pi_{rng.randrange(10**6)}"}}
    return {}


def crash_worker(kind: str, place: str, ids: list[str], seed: int, intents: Connection) -> None:
    """Fire random legal moves until killed; announce each request before making it."""
    store = open_store(kind, place)
    sessions = PaymentSessions(store)
    rng = random.Random(seed)
    intents.send(None)  # ready
    for n in range(1_000_000):
        session_id = rng.choice(ids)
        status = sessions.get(session_id).status
        trigger = rng.choice(CRASH_MOVES[status])
        args = crash_args(trigger, rng)
        key = f"w{seed}-{n}" if rng.random() < 0.7 else None
        intents.send((session_id, trigger, args, key))
        if trigger == "select":
            sessions.select(session_id, idempotency_key=key)
        else:
            sessions.fire(session_id, trigger, idempotency_key=key, **args)


class TestRaces:
    store_kinds = ("sqlite", "postgres")

    def test_exactly_one_winner_per_session(self, store_factory: StoreFactory) -> None:
        """8 processes race authorize/cancel/fail on 200 sessions: one commit per version."""
        sessions = PaymentSessions(store_factory())
        ids = prepare(sessions, 200)
        triggers = ["authorize", "cancel", "fail"] * 3
        barrier = SPAWN.Barrier(WORKERS)
        with Follower(store_factory()) as follower:
            results = run_workers(
                race_worker,
                [
                    (store_factory.kind, store_factory.place, triggers[n], ids, barrier)
                    for n in range(WORKERS)
                ],
            )
        winners: dict[str, dict[str, Any]] = {}
        for trigger, versions, won, lost in results:
            assert versions == dict.fromkeys(ids, 1)
            assert len(won) + lost == len(ids)
            for session_id, record in won.items():
                assert session_id not in winners, "two winners"
                assert record["trigger"] == trigger
                winners[session_id] = record
        assert sorted(winners) == sorted(ids)
        for session_id in ids:
            trail = sessions.history(session_id)
            assert [r.trigger for r in trail[:2]] == ["create", "initiate"]
            assert len(trail) == 3
            assert trail[2].to_dict() == winners[session_id]
        assert check_database(store_factory, sessions, ids) == 3 * len(ids)
        # A consumer that followed the race from a cursor missed nothing: no record
        # ever became visible behind a cursor it had already passed.
        assert follower.seen == sessions.records_since(None, 1_000_000)

    def test_one_record_for_a_key_fired_everywhere_at_once(
        self, store_factory: StoreFactory
    ) -> None:
        """The same key, trigger and arguments from 8 processes: one record, for every caller."""
        sessions = PaymentSessions(store_factory())
        ids = prepare(sessions, 40)
        barrier = SPAWN.Barrier(WORKERS)
        results = run_workers(
            idempotent_worker,
            [(store_factory.kind, store_factory.place, ids, barrier)] * WORKERS,
        )
        for session_id in ids:
            trail = sessions.history(session_id)
            assert [r.trigger for r in trail] == ["create", "initiate", "update"]
            assert [answers[session_id] for answers in results] == [trail[2].to_dict()] * WORKERS
            with pytest.raises(IdempotencyConflict) as conflict:
                sessions.fire(session_id, "fail", idempotency_key=f"checkout-{session_id}")
            assert vars(conflict.value) == {
                "key": f"checkout-{session_id}",
                "trigger": "update",
                "attempted": "fail",
            }
        check_database(store_factory, sessions, ids)

    def test_killed_workers_leave_a_consistent_database(self, store_factory: StoreFactory) -> None:
        """Workers SIGKILLed at random points during 1,000 moves leave nothing half-written."""
        sessions = PaymentSessions(store_factory())
        ids = prepare(sessions, 30, carts=10)
        created = 2 * len(ids)
        rng = random.Random(5)
        kills = repeated = 0
        while (moves := len(sessions.records_since(None, 1_000_000)) - created) < 1000:
            assert kills < 200, "the workers make no progress"
            intents, child_end = SPAWN.Pipe(duplex=False)
            worker = SPAWN.Process(
                target=crash_worker,
                args=(store_factory.kind, store_factory.place, ids, kills, child_end),
            )
            worker.start()
            child_end.close()
            assert intents.poll(60), "the worker did not start"
            intents.recv()
            # Kill after a random number of announced requests, a random instant into
            # the next one: anywhere from planning to the middle of a commit.
            last = None
            for _ in range(rng.randint(20, 250)):
                if not intents.poll(30):
                    break
                try:
                    last = intents.recv()
                except EOFError:
                    break
            time.sleep(rng.uniform(0, 0.004))
            os.kill(worker.pid or 0, signal.SIGKILL)
            worker.join()
            assert worker.exitcode == -signal.SIGKILL, "the worker failed on its own"
            kills += 1
            while intents.poll():
                try:
                    last = intents.recv()
                except (EOFError, OSError):
                    break
            if last is not None and last[3] is not None:
                # The request the killed worker was making, repeated with its key: the
                # stored record if it committed, a fresh move if it did not.
                session_id, trigger, args, key = last
                if trigger == "select":
                    record = sessions.select(session_id, idempotency_key=key)
                else:
                    record = sessions.fire(session_id, trigger, idempotency_key=key, **args)
                assert (record.trigger, record.idempotency_key) == (trigger, key)
                keyed = [r for r in sessions.history(session_id) if r.idempotency_key == key]
                assert keyed == [record]
                repeated += 1
        assert moves >= 1000
        assert kills >= 3 and repeated >= 1
        check_database(store_factory, sessions, ids)
