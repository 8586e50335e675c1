"""A fleet of writers on one PostgreSQL primary: paysession's moves/s against the ideal move.

Run from the repository root::

    python -m tests.benchmarks.bench_fleet [--writers 1 4 16] [--chunks N] [--strict]

It starts its own cluster from the binaries on PATH, with fsync on and a commit latency
simulated by ``commit_delay=2000`` (2 ms) with ``commit_siblings=1``: production commits
wait 1-5 ms for network storage or a synchronous replica, and at such latencies a
design that queues every commit behind the previous one caps the whole fleet near
1/latency moves per second. The cluster is removed afterwards.

For each number of writers, that many processes (spawned) each move sessions of their
own, so that no two writers contend on a session: the figure is how commits of
different sessions scale, not contention. The contenders take turns in short chunks on
the same cluster and the same processes, the order rotating:

- ``paysession``: ``PaymentSessions.fire`` over ``PostgresStore`` (require_more, update
  with an amount, retry, round and round), each move read, planned, sealed and
  committed, and announced to followers;
- ``ideal``: the yardstick, the durable move written by hand as a careful developer
  writes it: read the session's row (any server may have moved it last), build and hash
  the same kind of record with ``json`` and ``hashlib``, then one transaction (BEGIN,
  the compare-and-set UPDATE of the session row, the INSERT of its record, COMMIT), in
  tables of its own with nothing but their primary keys, and no global row;
- ``ideal, one statement``: the same, with the compare-and-set and the insert sent as
  one statement (data-modifying CTEs), as paysession sends its own: one round trip and
  one implicit transaction instead of four round trips. Shown for scale; the targets
  are against ``ideal``.
Figures: moves committed per second by all writers together, each contender's moves
over the wall time of its chunks. Targets: at 4 and at 16 writers paysession commits at
least 0.7x the ideal's moves/s, and paysession's moves/s do not fall from 4 to 16.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from tests.benchmarks.machine import cpu_model

SPAWN = multiprocessing.get_context("spawn")
CYCLE = ("require_more", "update", "retry")
SESSIONS_EACH = 9
CHUNK = 3 * SESSIONS_EACH * 2  # moves per writer per chunk: every session back where it was
TARGET = 0.7
LEAN = "ideal, one statement"
NAMES = ("paysession", "ideal", LEAN)
SERVER_SETTINGS = ("commit_delay=2000", "commit_siblings=1", "max_connections=200")

IDEAL_TABLES = (
    """
    CREATE TABLE ideal_sessions (
        id text PRIMARY KEY, status text NOT NULL, amount bigint, updated_at timestamptz,
        version integer NOT NULL, head text NOT NULL
    )
    """,
    """
    CREATE TABLE ideal_records (
        session_id text NOT NULL, seq integer NOT NULL, at timestamptz NOT NULL,
        hash text NOT NULL, wire text NOT NULL, PRIMARY KEY (session_id, seq)
    )
    """,
)
IDEAL_UPDATE = (
    "UPDATE ideal_sessions SET status = %s, amount = %s, updated_at = %s, version = %s, "
    "head = %s WHERE id = %s AND version = %s"
)
IDEAL_INSERT = (
    "INSERT INTO ideal_records (session_id, seq, at, hash, wire) VALUES (%s, %s, %s, %s, %s)"
)
IDEAL_ONE_STATEMENT = (
    f"WITH moved AS ({IDEAL_UPDATE} RETURNING id) "
    "INSERT INTO ideal_records (session_id, seq, at, hash, wire) "
    "SELECT moved.id, %s, %s, %s, %s FROM moved"
)
IDEAL_READ = "SELECT status, amount, version, head FROM ideal_sessions WHERE id = %s"
DEST = {"require_more": "requires_more", "retry": "pending", "update": None}


class Ideal:
    """The hand-written move: read the row, then compare-and-set and record, one transaction."""

    def __init__(self, dsn: str, prefix: str, *, one_statement: bool = False) -> None:
        import psycopg

        self.one_statement = one_statement
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.ids = [f"{prefix}_{n}" for n in range(SESSIONS_EACH)]
        for session_id in self.ids:
            self.conn.execute(
                "INSERT INTO ideal_sessions VALUES (%s, 'pending', 1000, now(), 0, %s)",
                (session_id, "0" * 64),
            )

    def move(self, session_id: str, trigger: str, amount: int) -> None:
        row = self.conn.execute(IDEAL_READ, (session_id,)).fetchone()
        assert row is not None
        status, old_amount, version, head = row
        dest = DEST[trigger] or status
        at = datetime.now(timezone.utc)
        body = {
            "session_id": session_id,
            "seq": version + 1,
            "trigger": trigger,
            "source": status,
            "dest": dest,
            "at": at.isoformat(),
            "changes": {"amount": [old_amount, amount]} if trigger == "update" else {},
            "prev_hash": head,
        }
        sealed = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        body["hash"] = sealed
        wire = json.dumps(body, sort_keys=True)
        new_amount = amount if trigger == "update" else old_amount
        moved = (dest, new_amount, at, version + 1, sealed, session_id, version)
        record = (version + 1, at, sealed, wire)
        if self.one_statement:
            if self.conn.execute(IDEAL_ONE_STATEMENT, (*moved, *record)).rowcount != 1:
                raise RuntimeError("lost a race it cannot lose")
            return
        with self.conn.transaction():
            if self.conn.execute(IDEAL_UPDATE, moved).rowcount != 1:
                raise RuntimeError("lost a race it cannot lose")
            self.conn.execute(IDEAL_INSERT, (session_id, *record))

    def close(self) -> None:
        self.conn.close()


def writer(dsn: str, number: int, chunks: int, barrier: Any, results: Any) -> None:
    from paysession import PaymentSessions
    from paysession.store.postgres import PostgresStore

    store = PostgresStore(dsn, max_size=1)
    sessions = PaymentSessions(store)
    ids = []
    for n in range(SESSIONS_EACH):
        made = sessions.create(cart_id=f"w{number}_c{n}", provider_id="stripe", amount=1000)
        sessions.fire(made.id, "initiate", data={"id": f"pi_{number}_{n}"})
        ids.append(made.id)
    ideal = Ideal(dsn, f"w{number}")
    lean = Ideal(dsn, f"w{number}_lean", one_statement=True)

    def library(session_id: str, trigger: str, amount: int) -> None:
        if trigger == "update":
            sessions.fire(session_id, trigger, amount=amount)
        else:
            sessions.fire(session_id, trigger)

    with store._connection("benchmark") as conn:  # the pool's only connection
        backend = _backend(conn)
    contenders = [
        ("paysession", library, ids, backend),
        ("ideal", ideal.move, ideal.ids, _backend(ideal.conn)),
        (LEAN, lean.move, lean.ids, _backend(lean.conn)),
    ]
    step = 0
    # Chunk 0 is a warm-up (statement caches, connections); the order rotates.
    for chunk in range(chunks + 1):
        turn = chunk % len(contenders)
        for name, fire, own, pid in contenders[turn:] + contenders[:turn]:
            barrier.wait()
            started, client, server = time.monotonic(), time.process_time(), _cpu(pid)
            for n in range(CHUNK):
                trigger = CYCLE[(n // SESSIONS_EACH) % 3]
                fire(own[n % SESSIONS_EACH], trigger, 1000 + (step + n) % 7)
            cpu = (time.process_time() - client, _cpu(pid) - server)
            results.put((name, chunk, started, time.monotonic(), cpu))
            step += CHUNK
    ideal.close()
    lean.close()
    store.close()


def _backend(conn: Any) -> int:
    """The process id of the server process behind a connection (the cluster is local)."""
    return int(conn.info.backend_pid)


def _cpu(pid: int) -> float:
    """CPU seconds (user and system) a local process has used so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(dsn: str, writers: int, chunks: int) -> dict[str, tuple[float, float, float]]:
    """Each contender's moves per second with ``writers`` processes, and its CPU seconds
    per move in the writers and in their server processes."""
    barrier = SPAWN.Barrier(writers)
    results = SPAWN.Queue()
    processes = [
        SPAWN.Process(target=writer, args=(dsn, w, chunks, barrier, results))
        for w in range(writers)
    ]
    for process in processes:
        process.start()
    spans: dict[tuple[str, int], list[tuple[float, float]]] = {}
    cpu: dict[str, list[float]] = {}
    for _ in range(writers * 3 * (chunks + 1)):
        name, chunk, started, ended, (client, server) = results.get(timeout=900)
        spans.setdefault((name, chunk), []).append((started, ended))
        if chunk > 0:
            totals = cpu.setdefault(name, [0.0, 0.0])
            totals[0] += client
            totals[1] += server
    for process in processes:
        process.join(timeout=60)
        if process.exitcode != 0:
            raise RuntimeError(f"a writer failed (exit code {process.exitcode})")
    walls: dict[str, float] = {}
    for (name, chunk), group in spans.items():
        if chunk > 0:
            wall = max(end for _, end in group) - min(start for start, _ in group)
            walls[name] = walls.get(name, 0.0) + wall
    moves = writers * CHUNK * chunks
    return {
        name: (moves / wall, cpu[name][0] / moves, cpu[name][1] / moves)
        for name, wall in walls.items()
    }


def _machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv: Sequence[str] | None = None) -> int:
    import psycopg

    from paysession.store.postgres import PostgresStore
    from tests.pgcluster import create_database, start_cluster, with_database

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--chunks", type=int, default=6)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    cluster = start_cluster(fsync=True, settings=SERVER_SETTINGS)
    rows: list[tuple[int, Any, Any, Any]] = []
    costs: list[tuple[int, dict[str, tuple[float, float, float]]]] = []
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            version = admin.execute("SHOW server_version").fetchone()
        for writers in args.writers:
            dsn = with_database(cluster.dsn(), create_database(cluster.dsn()))
            with PostgresStore(dsn) as store:
                store.migrate()
            with psycopg.connect(dsn, autocommit=True) as conn:
                for statement in IDEAL_TABLES:
                    conn.execute(statement)
            print(f"  {writers} writer(s)...", file=sys.stderr, flush=True)
            rates = measure(dsn, writers, args.chunks)
            rows.append((writers, rates["paysession"], rates["ideal"], rates[LEAN]))
            costs.append((writers, rates))
    finally:
        cluster.stop()
    print(
        f"PostgreSQL {version[0] if version else '?'}, fsync on, {', '.join(SERVER_SETTINGS[:2])}"
    )
    print(f"on {_machine()}\n")
    print(
        "| writers | paysession moves/s | ideal moves/s | paysession / ideal "
        "| ideal, one statement | paysession / that |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for writers, ours, ideal, lean in rows:
        print(
            f"| {writers} | {ours[0]:,.0f} | {ideal[0]:,.0f} | {ours[0] / ideal[0]:.2f}x "
            f"| {lean[0]:,.0f} | {ours[0] / lean[0]:.2f}x |"
        )
    print("\nCPU per move, in microseconds: in the writer process / in its server process")
    print("\n| writers | paysession | ideal | ideal, one statement |")
    print("|---:|---:|---:|---:|")
    for writers, rates in costs:
        shown = [f"{rates[n][1] * 1e6:,.0f} / {rates[n][2] * 1e6:,.0f}" for n in NAMES]
        print(f"| {writers} | {' | '.join(shown)} |")
    by_writers = {writers: (ours[0], ideal[0]) for writers, ours, ideal, _ in rows}
    failed = []
    for writers in (4, 16):
        if writers in by_writers:
            ours, ideal = by_writers[writers]
            verdict = "PASS" if ours >= TARGET * ideal else "FAIL"
            failed += [] if verdict == "PASS" else [writers]
            print(f"\n{writers} writers: paysession / ideal >= {TARGET}x: {verdict}", end="")
    if 4 in by_writers and 16 in by_writers:
        holds = by_writers[16][0] >= by_writers[4][0]
        failed += [] if holds else [0]
        print(f"\npaysession at 16 writers >= at 4: {'PASS' if holds else 'FAIL'}", end="")
    print()
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
