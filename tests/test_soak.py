"""Soak: many carts through the service with 8 processes, on SQLite and on PostgreSQL.

On demand only (about half an hour at the default size on two cores; ``-k`` picks runs):

    PAYSESSION_SOAK=1 pytest tests/test_soak.py
    PAYSESSION_SOAK=1 PAYSESSION_SOAK_CARTS=20000 pytest tests/test_soak.py -k sqlite

``PAYSESSION_SOAK_CARTS`` sets the number of carts of each run (default 100,000). Three
runs: ``paysession demo`` itself (the checkout simulation, SQLite, webhooks racing the
storefronts), the demo's storefront and webhook processes on a PostgreSQL database, and
PaymentSessions driven directly on each store. After each, every trail verifies and the
database holds every cart. Memory: each process's RSS is sampled as it runs. The direct
runs hold nothing per cart, so their RSS must stay flat once warm (the stores' snapshot
caches full); the demo's simulated provider and webhook channel keep a little per cart
by design (a payment provider's side, not paysession's), which the demo runs allow for.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import random
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from paysession import IllegalTransition, PaymentSessions
from paysession.audit import verify
from paysession.cli import demo
from paysession.expiry import expire_sessions
from paysession.record import TransitionRecord
from paysession.store import SessionStore, SqliteStore

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("PAYSESSION_SOAK") != "1", reason="soak runs on demand: PAYSESSION_SOAK=1"
    ),
]

CARTS = int(os.environ.get("PAYSESSION_SOAK_CARTS", "100000"))
WORKERS = 8
SPAWN = multiprocessing.get_context("spawn")
MIB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

FLAT = 8 * MIB
"""How much a process running the direct workload may grow once warm (allocator noise)."""
CACHED = 4096
"""Sessions a store's snapshot cache keeps (paysession.store._sql.SnapshotCache)."""
DEMO_PER_CART = 4096
"""What the demo's simulated provider and webhook channel may keep per cart, in bytes."""


def rss(pid: int | str = "self") -> int | None:
    """Resident memory of a process in bytes (Linux), or None."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            resident = int(statm.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return None
    return resident or None  # a zombie (exited, not yet reaped) has none


def descendants(root: int) -> list[int]:
    """The pids of ``root``'s children, grandchildren and so on (Linux)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Sampler:
    """Samples the RSS of a process and its descendants every ``every`` seconds."""

    def __init__(self, root: int, every: float = 0.5) -> None:
        self.root = root
        self.every = every
        self.samples: dict[int, list[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for pid in [self.root, *descendants(self.root)]:
                size = rss(pid)
                if size is not None:
                    self.samples.setdefault(pid, []).append(size)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def workers(self) -> dict[int, list[int]]:
        """The samples of the root's descendants that lived long enough to judge."""
        return {
            pid: sizes
            for pid, sizes in self.samples.items()
            if pid != self.root and len(sizes) >= 8
        }


def growth(sizes: Sequence[int]) -> int:
    """RSS growth over the second half of a process's samples (the first half warms up)."""
    half = sizes[len(sizes) // 2 :]
    return max(half[len(half) // 2 :]) - half[0]


def report(title: str, series: dict[int, list[int]]) -> None:
    """Print each process's RSS at start, middle and end (shown with ``pytest -s``)."""
    print(f"\n{title}: RSS in MiB at start / middle / end, growth over the second half")
    for pid, sizes in sorted(series.items()):
        if sizes:
            points = (sizes[0], sizes[len(sizes) // 2], sizes[-1])
            print(
                f"  {pid}: {' / '.join(f'{p / MIB:.1f}' for p in points)}"
                f"  (+{growth(sizes) / MIB:.1f})"
            )


def check_trails(store: SessionStore, carts: int) -> Counter[str]:
    """Every trail in the store verifies and every cart has a session; returns statuses."""
    sessions = PaymentSessions(store)

    def everything() -> Iterator[TransitionRecord]:
        cursor = None
        while page := sessions.records_since(cursor, 10_000):
            yield from (logged.record for logged in page)
            cursor = page[-1].cursor

    report = verify(everything())
    assert report.ok, report.problems[:5]
    found = sessions.find()
    assert report.sessions == len(found)
    assert len({session.cart_id for session in found}) == carts
    return Counter(session.status.value for session in found)


# ---------------------------------------------------------------------------------------
# paysession demo, as its users run it


class TestDemoOnSqlite:
    def test_demo(self, tmp_path: Path) -> None:
        """``paysession demo`` with 8 storefront processes: exit 0, trails verify, RSS bounded."""
        db = tmp_path / "soak.db"
        command = [sys.executable, "-m", "paysession", "demo", "--db", str(db)]
        command += ["--carts", str(CARTS), "--workers", str(WORKERS), "--seed", "11"]
        log = tmp_path / "demo.log"
        limit = 120 + CARTS / 50
        with log.open("w") as out:
            demo = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
            with Sampler(demo.pid) as sampler:
                try:
                    code = demo.wait(timeout=limit)
                except subprocess.TimeoutExpired:
                    for pid in [*descendants(demo.pid), demo.pid]:
                        os.kill(pid, 9)
                    demo.wait()
                    tail = log.read_text()[-2000:]
                    pytest.fail(f"the demo did not finish in {limit:.0f} s (hung?):\n{tail}")
        output = log.read_text()
        assert code == 0, output[-3000:]
        assert re.search(r"trails verified: \d+ sessions, \d+ records: ok", output), output
        statuses = check_trails(SqliteStore(db), CARTS)
        assert statuses.keys() <= {"authorized", "canceled"}, statuses
        report("paysession demo on SQLite", sampler.samples)
        per_process = CARTS / WORKERS * DEMO_PER_CART
        for pid, sizes in sampler.workers().items():
            assert growth(sizes) <= FLAT + per_process, (pid, sizes[:: max(len(sizes) // 20, 1)])


# ---------------------------------------------------------------------------------------
# The demo's processes on PostgreSQL


def demo_process(role: str, dsn: str, *args: Any) -> None:
    """A demo storefront or webhook process, on a PostgreSQL database instead of a file."""
    (demo.storefront if role == "storefront" else demo.webhooks)(dsn, *args)


def kill_survivors(processes: Sequence[multiprocessing.process.BaseProcess]) -> None:
    for process in processes:
        process.join(10)
        if process.is_alive():
            process.kill()


class TestDemoOnPostgres:
    def test_demo_processes(self, postgres_dsn: str, tmp_path: Path) -> None:
        """The demo's 8 storefronts and its webhook process on PostgreSQL: every trail verifies."""
        from paysession.store.postgres import PostgresStore

        PostgresStore(postgres_dsn).migrate()
        ledger = str(tmp_path / "provider.db")
        stop, results = SPAWN.Event(), SPAWN.Queue()
        progress = SPAWN.Value("i", 0)
        hook = SPAWN.Process(
            target=demo_process, args=("webhooks", postgres_dsn, ledger, 11, stop, results)
        )
        fronts = [
            SPAWN.Process(
                target=demo_process,
                args=("storefront", postgres_dsn, ledger, 11, k, WORKERS, CARTS, progress, results),
            )
            for k in range(WORKERS)
        ]
        for process in [hook, *fronts]:
            process.start()
        samplers = [Sampler(p.pid or 0, every=1.0) for p in [hook, *fronts]]
        tallies = []
        deadline = time.monotonic() + 120 + CARTS / 25
        with contextlib.ExitStack() as stack:
            for sampler in samplers:
                stack.enter_context(sampler)
            stack.callback(kill_survivors, [hook, *fronts])
            for process in fronts:
                # Joined before the webhook process is told to stop: every notice is in
                # the provider's ledger by then.
                while process.is_alive():
                    assert time.monotonic() < deadline, "the storefronts did not finish"
                    with contextlib.suppress(queue.Empty):
                        tallies.append(results.get(timeout=1))
                assert process.exitcode == 0
            stop.set()
            while len(tallies) < WORKERS + 1:
                tallies.append(results.get(timeout=max(deadline - time.monotonic(), 1)))
            hook.join(60)
        assert [error for _, _, error in tallies if error] == []
        # As the demo does at its end: the sessions nobody finished are abandoned.
        expire_sessions(
            PaymentSessions(PostgresStore(postgres_dsn)),
            demo._providers(ledger, 11),
            older_than=timedelta(microseconds=1),
            limit=10 * CARTS,
        )
        statuses = check_trails(PostgresStore(postgres_dsn), CARTS)
        assert statuses.keys() <= {"authorized", "canceled"}, statuses
        report(
            "demo processes on PostgreSQL", {x.root: x.samples.get(x.root, []) for x in samplers}
        )
        per_process = CARTS / WORKERS * DEMO_PER_CART
        for sampler in samplers:
            sizes = sampler.samples.get(sampler.root, [])
            if len(sizes) >= 8:
                assert growth(sizes) <= FLAT + per_process, sizes[:: max(len(sizes) // 20, 1)]


# ---------------------------------------------------------------------------------------
# PaymentSessions driven directly: nothing kept per cart, so memory must stay flat


def checkout(sessions: PaymentSessions, cart: int, rng: random.Random) -> None:
    """One cart's checkout, with its retries, 3-D Secure, declines and cancels."""
    session = sessions.create(cart_id=f"cart_{cart}", provider_id="stripe", amount=1000 + cart)
    sessions.select(session.id, actor="storefront")
    sessions.fire(
        session.id,
        "initiate",
        data={"id": f"pi_{cart}", "client_secret": f"pi_{cart}_secret"},
        idempotency_key=f"initiate:{cart}",
    )
    roll = rng.random()
    if roll < 0.15:
        sessions.fire(session.id, "require_more", reason="requires_action")
    elif roll < 0.25:
        sessions.fire(session.id, "fail", reason="card_declined")
        sessions.fire(session.id, "retry", actor="customer")
        sessions.fire(session.id, "update", amount=2000 + cart, data={"id": f"pi_{cart}_2"})
    elif roll < 0.30:
        sessions.fire(session.id, "cancel", actor="customer")
        return
    key = f"authorize:{cart}"
    record = sessions.fire(session.id, "authorize", idempotency_key=key, actor="storefront")
    if rng.random() < 0.2:  # the storefront retries after a lost answer
        assert sessions.fire(session.id, "authorize", idempotency_key=key) == record
    if rng.random() < 0.05:
        try:
            sessions.fire(session.id, "authorize")
        except IllegalTransition:
            pass
        else:
            raise AssertionError("authorized twice")
        sessions.fire(session.id, "cancel", actor="customer", reason="order canceled")


def direct_worker(kind: str, place: str, index: int, carts: int, results: Any) -> None:
    try:
        if kind == "sqlite":
            # NORMAL: what is soaked is the service, not the disk's fsync rate.
            store: SessionStore = SqliteStore(place, synchronous="NORMAL")
        else:
            from paysession.store.postgres import PostgresStore

            store = PostgresStore(place, max_size=2)
        sessions = PaymentSessions(store)
        rng = random.Random(index)
        mine = range(index, carts, WORKERS)
        sizes = []
        for done, cart in enumerate(mine):
            checkout(sessions, cart, rng)
            if done % 250 == 0:
                sizes.append(rss() or 0)
        sizes.append(rss() or 0)
        store.close()
        results.put((index, len(mine), sizes, None))
    except BaseException as error:
        results.put((index, 0, [], repr(error)))


class TestDirect:
    store_kinds = ("sqlite", "postgres")

    def test_many_carts(self, store_factory: Any) -> None:
        """8 processes check out every cart through PaymentSessions; trails verify; RSS flat."""
        store = store_factory()
        store.migrate()
        results = SPAWN.Queue()
        workers = [
            SPAWN.Process(
                target=direct_worker,
                args=(store_factory.kind, store_factory.place, k, CARTS, results),
            )
            for k in range(WORKERS)
        ]
        for worker in workers:
            worker.start()
        try:
            finished = [results.get(timeout=120 + CARTS / 20) for _ in workers]
        finally:
            for worker in workers:
                worker.join(30)
                if worker.is_alive():
                    worker.kill()
        assert [error for *_, error in finished if error] == []
        assert sum(count for _, count, _, _ in finished) == CARTS
        report(f"direct on {store_factory.kind}", {index: sizes for index, _, sizes, _ in finished})
        for index, _, sizes, _ in finished:
            # A store's snapshot cache keeps up to 4,096 sessions (sizes are sampled every
            # 250 carts): once it is full, RSS is flat. Runs too short to fill it are
            # judged from a quarter of the way in, allowing for the cache.
            full = CACHED // 250 + 1
            if len(sizes) - full >= 8:
                warm, allowed = sizes[full:], FLAT
            else:
                warm, allowed = sizes[len(sizes) // 4 :], FLAT + 16 * MIB
            assert max(warm) - warm[0] <= allowed, (index, [size // MIB for size in sizes])
        statuses = check_trails(store, CARTS)
        assert statuses.keys() <= {"authorized", "canceled", "requires_more"}
        if store_factory.kind == "sqlite":
            with sqlite3.connect(store_factory.place) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        else:
            with psycopg.connect(store_factory.place) as pg:
                row = pg.execute("SELECT count(*) FROM paysession_keys").fetchone()
                assert row is not None and row[0] > CARTS
