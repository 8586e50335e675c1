"""Committed moves per second through the stores, against the same SQL written by hand.

Run from the repository root::

    python -m tests.benchmarks.bench_store [--quick] [--chunks N]

PostgreSQL comes from ``PAYSESSION_PG_DSN`` (a role that may create databases) or from
a cluster this script starts from the binaries on PATH (with fsync on: commits are
durable, as in production) and removes afterwards.

Each configuration runs in worker processes (spawned), each moving sessions of its
own through a cycle of three legal moves (require_more, update with an amount, retry),
so that the figure is throughput, not contention. The two contenders take turns in
short chunks (54 moves per worker), on the same database and the same workers, so
that both meet the same moments of a machine that other work keeps busy:

- ``paysession``: ``PaymentSessions.fire`` over the store;
- ``by hand``: what careful code without the library would run for the same durable
  move on the same driver and settings: read the row (the store's query), work out
  the new status and timestamps with plain dicts, build and hash the same audit record
  with ``json`` and ``hashlib``, then the store's write statements (SQLite: BEGIN
  IMMEDIATE, the compare-and-set UPDATE, max(position), the record INSERT, COMMIT;
  PostgreSQL: the one-statement commit), written out in this file with positional
  parameters and rows read as tuples. No validation, no hooks, no table.

The figure is moves committed per second by all workers together: a contender's moves
divided by the wall time of its chunks (each from the moment the workers are released
at once until the last one is done). Target: paysession >= 0.7x by hand.

A second table shows what one cart completion costs, with 8 worker processes each
completing carts of its own (one selected, initiated session each; a provider that
authorizes at once, so that the figure is paysession's, not a simulator's). The two
contenders take turns in chunks as above:

- ``complete_cart``: the claim, the provider call, the answer's commit (which releases
  the claim);
- ``answer only``: the same provider call and the same answer's commit through
  ``PaymentSessions.record_answer``, with no claim: what a completion cost before
  claims, and the yardstick for the one extra commit a claim may add.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

SPAWN = multiprocessing.get_context("spawn")
CYCLE = ("require_more", "update", "retry")
DEST = {"require_more": "requires_more", "retry": "pending"}
TARGET = 0.7


# --------------------------------------------------------------------------------------
# The hand-written move.


def _iso(value: datetime) -> str:
    value = value.astimezone(timezone.utc)
    micro = value.microsecond
    frac = f"{micro // 1000:03d}" if micro % 1000 == 0 else f"{micro:06d}"
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + frac + "Z"


def _record(row: Sequence[Any], trigger: str, amount: int, at: datetime) -> tuple[Any, ...]:
    """The new row values and the sealed record of a move, with plain dicts and json."""
    session_id, status, old_amount, updated_at, version, head = (
        row[0],
        row[5],
        row[8],
        row[11],
        row[13],
        row[14],
    )
    dest = DEST.get(trigger, status)
    now_text = _iso(at)
    changes: dict[str, list[Any]] = {"updated_at": [_iso(updated_at), now_text]}
    new_amount = old_amount
    if trigger == "update" and amount != old_amount:
        changes["amount"] = [old_amount, amount]
        new_amount = amount
    body = {
        "session_id": session_id,
        "seq": version + 1,
        "trigger": trigger,
        "source": status,
        "dest": dest,
        "at": now_text,
        "actor": None,
        "reason": None,
        "idempotency_key": None,
        "changes": changes,
        "prev_hash": head,
    }
    sealed = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    body["hash"] = sealed
    wire = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return dest, new_amount, version + 1, sealed, wire


# The statements both stores run for such a move, written out: the yardstick stays the
# same code whatever the stores' modules look like inside.
_COLUMNS = (
    "id, cart_id, provider_id, is_selected, is_initiated, status, data, idempotency_key, "
    "amount, payment_authorized_at, created_at, updated_at, cart, version, head"
)
SQLITE_LOAD = f"SELECT {_COLUMNS} FROM paysession_sessions WHERE id = ?"
SQLITE_UPDATE = (
    "UPDATE paysession_sessions SET is_selected = ?, is_initiated = ?, status = ?, data = ?, "
    "idempotency_key = ?, amount = ?, payment_authorized_at = ?, updated_at = ?, cart = ?, "
    "version = ?, head = ? WHERE id = ? AND version = ?"
)
SQLITE_LAST_POSITION = "SELECT coalesce(max(position), 0) FROM paysession_records"
SQLITE_INSERT_RECORD = (
    "INSERT INTO paysession_records (session_id, seq, position, trigger, at, hash, wire) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
POSTGRES_LOAD = f"SELECT {_COLUMNS} FROM paysession_sessions WHERE id = %s"
POSTGRES_COMMIT = (
    "WITH moved AS (UPDATE paysession_sessions SET is_selected = %s, is_initiated = %s, "
    "status = %s, data = %s::json, idempotency_key = %s, amount = %s, "
    "payment_authorized_at = %s, updated_at = %s, cart = %s::json, version = %s, head = %s, "
    "xact = greatest(xact, pg_current_xact_id()) WHERE id = %s AND version = %s "
    "RETURNING id, xact) "
    "INSERT INTO paysession_records (session_id, seq, xact, trigger, at, hash, wire) "
    "SELECT r.session_id, r.seq, moved.xact, r.trigger, r.at, r.hash, r.wire FROM moved, "
    "(VALUES (1, %s::text, %s::integer, %s::text, %s::timestamptz, %s::text, %s::text)) "
    "AS r (n, session_id, seq, trigger, at, hash, wire) ORDER BY r.n"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _micros(value: datetime) -> int:
    """An instant as SQLite's time columns keep it: integer microseconds since the epoch."""
    return (value - _EPOCH) // timedelta(microseconds=1)


class SqliteByHand:
    def __init__(self, path: str, synchronous: str) -> None:
        import sqlite3

        self.conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.conn.execute("PRAGMA busy_timeout = 30000")
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute(f"PRAGMA synchronous = {synchronous}")
        self.conn.execute("PRAGMA foreign_keys = ON")

    def move(self, session_id: str, trigger: str, amount: int) -> None:
        conn = self.conn
        row = list(conn.execute(SQLITE_LOAD, (session_id,)).fetchone())
        row[11] = _EPOCH + timedelta(microseconds=row[11])
        at = max(datetime.now(timezone.utc), row[11])
        dest, new_amount, version, sealed, wire = _record(row, trigger, amount, at)
        micros = _micros(at)
        conn.execute("BEGIN IMMEDIATE")
        try:
            cursor = conn.execute(
                SQLITE_UPDATE,
                [
                    *(row[3], row[4], dest, row[6], row[7], new_amount, row[9], micros),
                    *(row[12], version, sealed, session_id, version - 1),
                ],
            )
            if cursor.rowcount != 1:
                raise RuntimeError("lost a race")
            (last,) = conn.execute(SQLITE_LAST_POSITION).fetchone()
            conn.execute(
                SQLITE_INSERT_RECORD, (session_id, version, last + 1, trigger, micros, sealed, wire)
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.conn.close()


class PostgresByHand:
    def __init__(self, dsn: str) -> None:
        import psycopg

        self.conn = psycopg.connect(dsn, autocommit=True)

    def move(self, session_id: str, trigger: str, amount: int) -> None:
        conn = self.conn
        row = conn.execute(POSTGRES_LOAD, (session_id,)).fetchone()
        assert row is not None
        at = max(datetime.now(timezone.utc), row[11])
        dest, new_amount, version, sealed, wire = _record(row, trigger, amount, at)
        params = [
            row[3],
            row[4],
            dest,
            json.dumps(row[6], separators=(",", ":")),
            row[7],
            new_amount,
            row[9],
            at,
            None if row[12] is None else json.dumps(row[12], separators=(",", ":")),
            version,
            sealed,
            session_id,
            version - 1,
            session_id,
            version,
            trigger,
            at,
            sealed,
            wire,
        ]
        cursor = conn.execute(POSTGRES_COMMIT, params)
        if cursor.rowcount != 1:
            raise RuntimeError("lost a race")

    def close(self) -> None:
        self.conn.close()


# --------------------------------------------------------------------------------------
# Workers.


def _open_store(kind: str, place: str, synchronous: str) -> Any:
    from paysession.store import SqliteStore

    if kind == "sqlite":
        return SqliteStore(place, synchronous=synchronous)  # type: ignore[arg-type]
    from paysession.store.postgres import PostgresStore

    return PostgresStore(place, max_size=1)


def worker(
    kind: str,
    place: str,
    synchronous: str,
    ids: list[str],
    chunk: int,
    chunks: int,
    barrier: Any,
    results: Any,
) -> None:
    from paysession import PaymentSessions

    store = _open_store(kind, place, synchronous)
    sessions = PaymentSessions(store)
    by_hand = SqliteByHand(place, synchronous) if kind == "sqlite" else PostgresByHand(place)
    step = 0

    def run(fire: Any) -> tuple[float, float]:
        nonlocal step
        barrier.wait()
        start = time.monotonic()
        for _ in range(chunk):
            trigger = CYCLE[(step // len(ids)) % 3]
            fire(ids[step % len(ids)], trigger, 1000 + step % 7)
            step += 1
        return start, time.monotonic()

    def library(session_id: str, trigger: str, amount: int) -> None:
        if trigger == "update":
            sessions.fire(session_id, trigger, amount=amount)
        else:
            sessions.fire(session_id, trigger)

    # Short chunks, alternating (and alternating which goes first), so that both
    # contenders meet the same moments of a busy machine; chunk 0 is a warm-up
    # (statement caches, prepared statements). Every chunk ends where it began in the
    # cycle, so both contenders always meet the same statuses.
    contenders = [("paysession", library), ("by hand", by_hand.move)]
    for number in range(chunks + 1):
        for name, fire in contenders if number % 2 == 0 else contenders[::-1]:
            results.put((name, number, run(fire)))
    by_hand.close()
    store.close()


def _rates(
    processes: list[Any], results: Any, workers: int, chunk: int, chunks: int
) -> dict[str, float]:
    """Start the workers; each contender's operations per second over its chunks' walls.

    A chunk's wall runs from its earliest start to its latest end across the workers;
    chunk 0 is a warm-up and not counted.
    """
    for process in processes:
        process.start()
    spans: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _ in range(workers * 2 * (chunks + 1)):
        name, number, span = results.get(timeout=600)
        spans.setdefault((name, number), []).append(span)
    for process in processes:
        process.join()
    walls: dict[str, float] = {}
    for (name, number), group in spans.items():
        if number > 0:
            wall = max(end for _, end in group) - min(start for start, _ in group)
            walls[name] = walls.get(name, 0.0) + wall
    return {name: workers * chunk * chunks / wall for name, wall in walls.items()}


def measure(
    kind: str, place: str, synchronous: str, workers: int, chunk: int, chunks: int
) -> dict[str, float]:
    """Moves per second of each contender: all its moves over the wall time of its chunks."""
    from paysession import PaymentSessions

    store = _open_store(kind, place, synchronous)
    sessions = PaymentSessions(store)
    # Three moves per session per cycle: a chunk that is a multiple of 3 x 9 moves
    # leaves every session where it found it.
    per_worker = 9
    batches = []
    for w in range(workers):
        ids = []
        for n in range(per_worker):
            session = sessions.create(cart_id=f"w{w}_c{n}", provider_id="stripe", amount=1000)
            sessions.fire(session.id, "initiate", data={"id": f"pi_{w}_{n}"})
            ids.append(session.id)
        batches.append(ids)
    store.close()
    barrier = SPAWN.Barrier(workers)
    results = SPAWN.Queue()
    processes = [
        SPAWN.Process(
            target=worker,
            args=(kind, place, synchronous, batches[w], chunk, chunks, barrier, results),
        )
        for w in range(workers)
    ]
    return _rates(processes, results, workers, chunk, chunks)


# --------------------------------------------------------------------------------------
# Completions.


class InstantProvider:
    """A provider that authorizes every request at once (the simulator would dominate)."""

    id = "stripe"

    def _reply(self, status: str) -> Any:
        from paysession.providers import ProviderReply

        return ProviderReply(status)

    def initiate(self, session: Any) -> Any:
        return self._reply("requires_payment_method")

    def update(self, session: Any) -> Any:
        return self._reply("requires_payment_method")

    def authorize(self, session: Any, *, idempotency_key: str) -> Any:
        return self._reply("requires_capture")

    def cancel(self, session: Any, *, idempotency_key: str) -> Any:
        return self._reply("canceled")

    def status(self, session: Any) -> Any:
        return self._reply("requires_capture")


def completion_worker(
    kind: str,
    place: str,
    carts: dict[str, list[str]],
    chunk: int,
    chunks: int,
    barrier: Any,
    results: Any,
) -> None:
    from paysession import PaymentSessions
    from paysession.checkout import complete_cart

    store = _open_store(kind, place, "FULL")
    sessions = PaymentSessions(store)
    provider = InstantProvider()
    queues = {name: list(ids) for name, ids in carts.items()}

    def with_claim(cart_id: str) -> None:
        complete_cart(sessions, provider, cart_id)

    def answer_only(cart_id: str) -> None:
        chosen = sessions.selected(cart_id)
        assert chosen is not None
        key = chosen.idempotency_key or chosen.id
        reply = provider.authorize(chosen, idempotency_key=key)
        sessions.record_answer(
            chosen.id,
            [("authorize", {})],
            provider_status=reply.status,
            idempotency_key=f"complete:{key}",
        )

    contenders = [("complete_cart", with_claim), ("answer only", answer_only)]
    for number in range(chunks + 1):
        for name, complete in contenders if number % 2 == 0 else contenders[::-1]:
            todo = [queues[name].pop() for _ in range(chunk)]
            barrier.wait()
            start = time.monotonic()
            for cart_id in todo:
                complete(cart_id)
            results.put((name, number, (start, time.monotonic())))
    store.close()


def measure_completions(kind: str, place: str, workers: int, chunk: int, chunks: int) -> Any:
    """Completions per second of each contender, all workers together."""
    from paysession import PaymentSessions

    store = _open_store(kind, place, "NORMAL")
    sessions = PaymentSessions(store)
    plans = []
    for w in range(workers):
        carts: dict[str, list[str]] = {}
        for name in ("complete_cart", "answer only"):
            carts[name] = []
            for n in range(chunk * (chunks + 1)):
                cart_id = f"{name[:6]}_w{w}_{n}"
                session = sessions.create(cart_id=cart_id, provider_id="stripe", amount=1000)
                sessions.fire(session.id, "initiate", data={"id": f"pi_{w}_{n}"})
                sessions.select(session.id)
                carts[name].append(cart_id)
        plans.append(carts)
    store.close()
    barrier = SPAWN.Barrier(workers)
    results = SPAWN.Queue()
    processes = [
        SPAWN.Process(
            target=completion_worker,
            args=(kind, place, plans[w], chunk, chunks, barrier, results),
        )
        for w in range(workers)
    ]
    return _rates(processes, results, workers, chunk, chunks)


# --------------------------------------------------------------------------------------
# The run.


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer chunks")
    parser.add_argument("--chunks", type=int, default=None, help="chunks per contender")
    parser.add_argument(
        "--only", choices=("moves", "completions"), default=None, help="one table only"
    )
    args = parser.parse_args(argv)
    chunks = args.chunks or (10 if args.quick else 60)
    chunk = 54  # moves per worker per chunk: a multiple of 3 x 9

    root = Path(__file__).resolve().parents[2]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from tests import pgcluster

    configurations: list[tuple[str, str, int]] = [
        ("sqlite", "FULL", 1),
        ("sqlite", "NORMAL", 1),
        ("postgres", "", 1),
        ("postgres", "", 4),
        ("postgres", "", 8),
    ]
    rows = []
    completions = []
    cluster = None
    admin = os.environ.get("PAYSESSION_PG_DSN")
    try:
        for kind, synchronous, workers in configurations if args.only != "completions" else []:
            if kind == "sqlite":
                directory = tempfile.mkdtemp(prefix="paysession-bench-")
                place = os.path.join(directory, "sessions.db")
                label = f"SQLite WAL, synchronous={synchronous}"
            else:
                if admin is None:
                    if not pgcluster.binaries_available():
                        print("PostgreSQL: no PAYSESSION_PG_DSN and no initdb; skipped")
                        continue
                    cluster = pgcluster.start_cluster(fsync=True)
                    admin = cluster.dsn()
                place = pgcluster.with_database(admin, pgcluster.create_database(admin))
                label = "PostgreSQL, fsync on"
            rates = measure(kind, place, synchronous, workers, chunk, chunks)
            ratio = rates["paysession"] / rates["by hand"]
            rows.append((label, workers, rates["paysession"], rates["by hand"], ratio))
            print(f"  measured {label}, {workers} worker(s)", file=sys.stderr)
        for kind in ("sqlite", "postgres") if args.only != "moves" else ():
            if kind == "sqlite":
                directory = tempfile.mkdtemp(prefix="paysession-bench-")
                place = os.path.join(directory, "sessions.db")
                label = "SQLite WAL, synchronous=FULL"
            else:
                if admin is None:
                    if not pgcluster.binaries_available():
                        print("PostgreSQL: no PAYSESSION_PG_DSN and no initdb; skipped")
                        continue
                    cluster = pgcluster.start_cluster(fsync=True)
                    admin = cluster.dsn()
                place = pgcluster.with_database(admin, pgcluster.create_database(admin))
                label = "PostgreSQL, fsync on"
            per = 6  # completions per worker per chunk
            rates = measure_completions(kind, place, 8, per, max(chunks // 3, 4))
            completions.append((label, rates["complete_cart"], rates["answer only"]))
            print(f"  measured completions on {label}", file=sys.stderr)
    finally:
        if cluster is not None:
            cluster.stop()

    failed = False
    if rows:
        print("| store | workers | paysession moves/s | by hand moves/s | ratio | target |")
        print("|---|---:|---:|---:|---:|---|")
    for label, workers, ours, theirs, ratio in rows:
        verdict = "PASS" if ratio >= TARGET else "FAIL"
        failed |= ratio < TARGET
        print(
            f"| {label} | {workers} | {ours:,.0f} | {theirs:,.0f} | {ratio:.2f}x | "
            f">= {TARGET}x {verdict} |"
        )
    if completions:
        print("\n| store | workers | complete_cart /s | answer only /s | ratio |")
        print("|---|---:|---:|---:|---:|")
    for label, with_claim, answer_only in completions:
        print(
            f"| {label} | 8 | {with_claim:,.0f} | {answer_only:,.0f} | "
            f"{with_claim / answer_only:.2f}x |"
        )
    print(
        f"\n{chunks} alternating chunks of {chunk} moves per worker and contender; "
        f"CPU count {os.cpu_count()}, Python {sys.version.split()[0]}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
