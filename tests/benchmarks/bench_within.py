"""A move inside the caller's transaction against the same move in its own transaction:
``python -m tests.benchmarks.bench_within [--rounds N] [--per-round N] [--only KIND]``.

Run from the repository root. On a SQLite file (the store's default durability,
``synchronous=FULL``; the file goes where ``tempfile`` puts files: on a disk unless
``TMPDIR`` says otherwise) and on a PostgreSQL cluster this script starts from the
binaries on PATH (fsync on: commits are durable, as in production; as root, run as the
``postgres`` user) or the server of ``PAYSESSION_PG_DSN``. Each round times
``--per-round`` authorizations of each path on fresh initiated sessions (each of its own
cart), the paths in turn and in the other order the next round:

- ``own transaction``: ``PaymentSessions.fire(session_id, "authorize")``, the store's own
  transaction and commit (on PostgreSQL, its pool's connection);
- ``caller's transaction``: on a connection of the caller's own to the same database
  (``sqlite3.connect(path)``, ``psycopg.connect(dsn)``, both as a checkout opens them:
  the driver's defaults), a view made for the transaction with ``sessions.within(conn)``,
  the same ``fire`` through it, then ``view.commit()``.

Each path commits exactly once per move. Printed: the median of the rounds in µs per
move and the median of each round's ratio of the caller's path to the own path timed in
the same round, in wall time and in CPU time: this process's, and on PostgreSQL also
the server processes serving the benchmark's database (read from ``/proc``, the cluster
being local). The machine is shared with other work: the paired CPU ratios are the
figures to trust. Target: the caller's transaction no more than 1.10x the own
transaction, judged on the CPU time (the server's included, where it is read).

For PostgreSQL it also prints the statements each path sends for one move, as the
server logged them (``log_statement = all`` on a connection of its own): each line is
one round trip.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from paysession import PaymentSessions
from paysession.store import SqliteStore
from tests.benchmarks.machine import cpu_model

TARGET = 1.10
PATHS = ("own transaction", "caller's transaction")
ROUND_TRIP = "one round trip (SELECT 1), for scale"
Figures = dict[str, tuple[float, float, float | None]]
"""Per path: wall, this process's CPU and the server's CPU (None when not read), in µs
per move, for one round."""


def _initiated(sessions: PaymentSessions, count: int, tag: str) -> list[str]:
    """Fresh initiated sessions, each the selected one of a cart of its own."""
    made = []
    for n in range(count):
        session = sessions.create(cart_id=f"cart_{tag}_{n}", provider_id="stripe", amount=4200)
        sessions.fire(session.id, "initiate", data={"id": f"pi_{tag}_{n}"})
        made.append(session.id)
    return made


def race(
    sessions: PaymentSessions,
    caller: Any,
    rounds: int,
    per_round: int,
    server_cpu: Callable[[], float] | None = None,
    scale: Callable[[int], int] | None = None,
) -> list[Figures]:
    """The rounds' figures; round 0, a warm-up (statement caches, prepared statements,
    the first ``within`` of the connection), is left out. ``scale``, when given, is
    timed in each round too (as ``ROUND_TRIP``, per what it returns it did)."""

    def own(ids: list[str]) -> int:
        for session_id in ids:
            sessions.fire(session_id, "authorize", actor="checkout")
        return len(ids)

    def callers(ids: list[str]) -> int:
        for session_id in ids:
            view = sessions.within(caller)
            view.fire(session_id, "authorize", actor="checkout")
            view.commit()
        return len(ids)

    work: dict[str, Callable[[list[str]], int]] = {PATHS[0]: own, PATHS[1]: callers}
    if scale is not None:
        work[ROUND_TRIP] = lambda ids: scale(len(ids))
    names = list(work)
    figures: list[Figures] = []
    for number in range(rounds + 1):
        ids = {
            path: _initiated(sessions, per_round, f"{number}_{n}") for n, path in enumerate(PATHS)
        }
        ids[ROUND_TRIP] = ids[PATHS[0]]
        timed: Figures = {}
        for path in names if number % 2 == 0 else names[::-1]:
            server = server_cpu() if server_cpu else 0.0
            wall, cpu = time.perf_counter(), time.process_time()
            done = work[path](ids[path])
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            spent = server_cpu() - server if server_cpu else None
            timed[path] = (
                wall / done * 1e6,
                cpu / done * 1e6,
                None if spent is None else spent / done * 1e6,
            )
        for path in PATHS:
            for session_id in ids[path]:
                assert sessions.get(session_id).status == "authorized", (path, session_id)
        if number:
            figures.append(timed)
    return figures


def summary(figures: list[Figures]) -> dict[str, dict[str, tuple[float, float]]]:
    """For each clock (wall, cpu, and cpu+server when read): per path, the median µs and
    the median of the per-round ratios to the own transaction."""
    clocks: dict[str, Callable[[tuple[float, float, float | None]], float]] = {
        "wall": lambda f: f[0],
        "cpu": lambda f: f[1],
    }
    if figures[0][PATHS[0]][2] is not None:
        clocks["cpu with the server's"] = lambda f: f[1] + (f[2] or 0.0)
    result: dict[str, dict[str, tuple[float, float]]] = {}
    for clock, read in clocks.items():
        result[clock] = {}
        for path in figures[0]:
            values = [read(f[path]) for f in figures]
            ratios = [read(f[path]) / read(f[PATHS[0]]) for f in figures]
            result[clock][path] = (statistics.median(values), statistics.median(ratios))
    return result


def measure_sqlite(rounds: int, per_round: int) -> dict[str, dict[str, tuple[float, float]]]:
    with tempfile.TemporaryDirectory(prefix="paysession-bench-") as place:
        path = Path(place) / "shop.db"
        store = SqliteStore(path)  # synchronous=FULL, the default
        sessions = PaymentSessions(store)
        sessions.create(cart_id=None, provider_id="stripe", amount=1)  # creates, migrates
        caller = sqlite3.connect(path)  # the driver's defaults, as a checkout's
        try:
            (level,) = caller.execute("PRAGMA synchronous").fetchone()
            (mode,) = caller.execute("PRAGMA journal_mode").fetchone()
            print(f"  SQLite {sqlite3.sqlite_version}, {mode}, caller's synchronous={level}")
            print(f"  file: {path}")
            return summary(race(sessions, caller, rounds, per_round))
        finally:
            caller.close()
            store.close()


@contextmanager
def postgres_server() -> Iterator[tuple[str, Path | None]]:
    """An admin DSN, and the server's log file when this script started the server."""
    admin = os.environ.get("PAYSESSION_PG_DSN")
    if admin:
        yield admin, None
        return
    from tests import pgcluster

    if not pgcluster.binaries_available():
        raise SystemExit("PostgreSQL: no PAYSESSION_PG_DSN and no initdb/pg_ctl on PATH")
    cluster = pgcluster.start_cluster(fsync=True, settings=("log_line_prefix=%p:",))
    try:
        yield cluster.dsn(), cluster.directory / "log"
    finally:
        cluster.stop()


def _schedstat_cpu(pids: list[int]) -> Callable[[], float] | None:
    """Seconds of CPU the processes ``pids`` have run so far, or None where /proc does not
    tell (another host, another OS)."""

    def read() -> float:
        total = 0
        for pid in pids:
            with open(f"/proc/{pid}/schedstat", encoding="ascii") as stat:
                total += int(stat.read().split()[0])
        return total / 1e9

    try:
        read()
    except (OSError, ValueError, IndexError):
        return None
    return read


def measure_postgres(
    rounds: int, per_round: int
) -> tuple[dict[str, dict[str, tuple[float, float]]], dict[str, list[str]]]:
    import psycopg

    from paysession.store.postgres import PostgresStore
    from tests import pgcluster

    with postgres_server() as (admin, log):
        dsn = pgcluster.with_database(admin, pgcluster.create_database(admin))
        store = PostgresStore(dsn, max_size=1)
        sessions = PaymentSessions(store)
        sessions.create(cart_id=None, provider_id="stripe", amount=1)  # migrates
        caller = psycopg.connect(dsn)  # the driver's defaults: not autocommit
        watcher = psycopg.connect(dsn, autocommit=True)
        try:
            (version,) = watcher.execute("SHOW server_version").fetchone() or ("?",)
            (fsync,) = watcher.execute("SHOW fsync").fetchone() or ("?",)
            (commit,) = watcher.execute("SHOW synchronous_commit").fetchone() or ("?",)
            print(f"  PostgreSQL {version}, fsync={fsync}, synchronous_commit={commit}")
            rows = watcher.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ).fetchall()
            server_cpu = _schedstat_cpu([pid for (pid,) in rows])

            def round_trips(count: int) -> int:
                """``count`` SELECT 1 in a transaction of the caller's connection; with its
                BEGIN and ROLLBACK, ``count + 2`` round trips."""
                for _ in range(count):
                    caller.execute("SELECT 1").fetchone()
                caller.rollback()
                return count + 2

            figures = summary(race(sessions, caller, rounds, per_round, server_cpu, round_trips))
            statements = _statements(dsn, log) if log is not None else {}
        finally:
            watcher.close()
            caller.close()
            store.close()
        return figures, statements


def _statements(dsn: str, log: Path) -> dict[str, list[str]]:
    """The statements the server ran for one authorization on each path, from its log:
    a store and a caller's connection of their own, with ``log_statement = all``."""
    import psycopg

    from paysession.store.postgres import PostgresStore

    logged = psycopg.conninfo.make_conninfo(dsn, options="-c log_statement=all")
    store = PostgresStore(logged, max_size=1)
    sessions = PaymentSessions(store)
    caller = psycopg.connect(logged)
    try:
        warm = _initiated(sessions, 2, "logged_warm")
        sessions.fire(warm[0], "authorize")
        view = sessions.within(caller)
        view.fire(warm[1], "authorize")
        view.commit()
        own, theirs = _initiated(sessions, 2, "logged")
        seen: dict[str, list[str]] = {}
        for path, move in (
            (PATHS[0], lambda: sessions.fire(own, "authorize", actor="checkout")),
            (PATHS[1], lambda: _in_callers(sessions, caller, theirs)),
        ):
            time.sleep(0.2)  # the server has logged what came before
            start = log.stat().st_size
            move()
            time.sleep(0.2)
            with log.open("rb") as text:
                text.seek(start)
                seen[path] = _logged(text.read().decode("utf-8", "replace"))
        return seen
    finally:
        caller.close()
        store.close()


def _in_callers(sessions: PaymentSessions, caller: Any, session_id: str) -> None:
    view = sessions.within(caller)
    view.fire(session_id, "authorize", actor="checkout")
    view.commit()


def _logged(text: str) -> list[str]:
    """Each statement the log shows, shortened to its first words."""
    found = []
    for line in text.splitlines():
        match = re.match(r"\d+:LOG:\s+(?:statement|execute [^:]+):\s+(.*)", line)
        if match:
            words = match.group(1).split()
            found.append(" ".join(words[:4]) + (" ..." if len(words) > 4 else ""))
    return found


def machine() -> str:
    cpu = cpu_model()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load}, {when}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--only", choices=("sqlite", "postgres"), default=None)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    results: list[tuple[str, dict[str, dict[str, tuple[float, float]]]]] = []
    statements: dict[str, list[str]] = {}
    if args.only != "postgres":
        print("SQLite file:")
        results.append(("SQLite", measure_sqlite(args.rounds, args.per_round)))
    if args.only != "sqlite":
        print("PostgreSQL:")
        figures, statements = measure_postgres(args.rounds, args.per_round)
        results.append(("PostgreSQL", figures))
    missed = False
    print(f"\n{args.rounds} rounds of {args.per_round} moves per path; µs per move, medians")
    print(f"| store | clock | {PATHS[0]} | {PATHS[1]} | ratio | target |")
    print("|---|---|---:|---:|---:|---|")
    for store, figures in results:
        judged = list(figures)[-1]  # cpu, or cpu with the server's where it was read
        for clock, paths in figures.items():
            (own, _), (theirs, ratio) = paths[PATHS[0]], paths[PATHS[1]]
            verdict = ""
            if clock == judged:
                verdict = f"<= {TARGET}x: {'PASS' if ratio <= TARGET else 'FAIL'}"
                missed |= ratio > TARGET
            print(f"| {store} | {clock} | {own:,.0f} | {theirs:,.0f} | {ratio:.3f}x | {verdict} |")
    for store, figures in results:
        for clock, paths in figures.items():
            if ROUND_TRIP in paths:
                trip, ratio = paths[ROUND_TRIP]
                print(f"{store}, {ROUND_TRIP}, {clock}: {trip:,.0f} µs ({ratio:.3f}x a move)")
    for path, sent in statements.items():
        print(f"\nPostgreSQL, {path}: {len(sent)} statements for one move")
        for line in sent:
            print(f"  {line}")
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    raise SystemExit(main())
