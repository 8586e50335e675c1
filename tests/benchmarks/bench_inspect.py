"""The inspector's pages on a SQLite store of a million sessions: server time per page.

``python -m tests.benchmarks.bench_inspect [--sessions N] [--rounds R] [--keep PATH]``.

Builds a store of ``N`` sessions (a million by default) as a bulk copy would: session
rows and their provider events written by SQL in a few large transactions, over four
providers, every status, 90 days of updates, and one session in 200 with an anomaly.
One more session is made through :class:`PaymentSessions` with a trail of 1,000
records. The inspector is then served in-process, read-only, and each page is asked
for ``R`` times through its ASGI app; the figure is the ``Server-Timing`` the app
reports for the page (its own time, from request to response, without the client).

``--write-cost RUNS`` measures instead what the inspector's indexes cost the writers:
moves per second through ``PaymentSessions`` on a fresh SQLite store with them, beside
the same store without them (the yardstick), in alternating runs.

Targets (issue 17): each sessions page, whole or filtered, and the session page of the
1,000-record trail, answer in at most 100 ms of server time (the median; the worst is
shown beside it). Yardstick: the same page's rows read by a bare SELECT of the same
columns with OFFSET pagination on the page as deep, which is what the keyset and the
indexes spare.
"""

from __future__ import annotations

import argparse
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from paysession import PaymentSessions
from paysession.store import SqliteStore
from paysession.store._browse import PageKey

LOCAL = "http://127.0.0.1"  # without a token, the inspector answers only to its own name
PROVIDERS = (("stripe", 50), ("adyen", 30), ("paypal", 15), ("manual", 5))
STATUSES = (
    ("authorized", 55),
    ("canceled", 20),
    ("pending", 12),
    ("requires_more", 5),
    ("error", 8),
)
START = datetime(2026, 8, 1, tzinfo=timezone.utc)
SPAN = timedelta(days=90)
LONG_TRAIL = 1000
TARGET_MS = 100.0
DEEP = 10_000  # pages of 50: half of a million sessions
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _micros(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


def build(path: Path, sessions: int, seed: int = 7) -> str:
    """A store of ``sessions`` sessions, plus one with a 1,000-record trail; its id."""
    SqliteStore(path).migrate()
    rng = random.Random(seed)
    providers = [name for name, weight in PROVIDERS for _ in range(weight)]
    statuses = [name for name, weight in STATUSES for _ in range(weight)]
    start, span = _micros(START), _micros(START + SPAN) - _micros(START)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")
    batch = 50_000
    for first in range(0, sessions, batch):
        rows, events = [], []
        for number in range(first, min(first + batch, sessions)):
            created = start + rng.randrange(span)
            updated = min(created + rng.randrange(3_600_000_000), start + span)
            status = rng.choice(statuses)
            session_id = f"ps_{number:08d}"
            rows.append(
                (
                    session_id,
                    f"cart_{number:08d}",
                    rng.choice(providers),
                    1,
                    int(status != "pending"),
                    status,
                    '{"id":"pi_x"}',
                    None,
                    rng.randrange(100, 100_000),
                    updated if status in ("authorized", "canceled") else None,
                    created,
                    updated,
                    None,
                    1,
                    "0" * 64,
                    int(number % 200 == 0),
                )
            )
            if number % 3 == 0 and number % 200:
                # most sessions' reports were applied: the anomalies are a few among many
                events.append(
                    (
                        session_id,
                        f"evt_{number}",
                        "requires_capture",
                        "authorized",
                        "pending",
                        "applied",
                        updated,
                        updated,
                        1,
                        None,
                        0,
                        None,
                    )
                )
            if number % 200 == 0:
                events.append(
                    (
                        session_id,
                        f"evt_{number}",
                        "requires_capture",
                        "authorized",
                        status,
                        "anomaly",
                        updated,
                        updated,
                        1,
                        None,
                        0,
                        "no_legal_path",
                    )
                )
        with conn:
            conn.executemany(
                "INSERT INTO paysession_sessions (id, cart_id, provider_id, is_selected, "
                "is_initiated, status, data, idempotency_key, amount, payment_authorized_at, "
                "created_at, updated_at, cart, version, head, anomalies) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.executemany(
                "INSERT INTO paysession_provider_events (session_id, event_id, provider_status, "
                "status, session_status, outcome, observed_at, recorded_at, version, guard, "
                "duplicates, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                events,
            )
    conn.execute("ANALYZE")
    conn.close()
    return long_trail(path)


def long_trail(path: Path) -> str:
    """One session with a trail of :data:`LONG_TRAIL` records, made by the service."""
    store = SqliteStore(path, synchronous="NORMAL")
    app = PaymentSessions(store)
    session = app.create(cart_id="cart_long_trail", provider_id="stripe", amount=1200)
    app.fire(session.id, "initiate", data={"id": "pi_long"})
    for _ in range((LONG_TRAIL - 2) // 2):
        app.fire(session.id, "require_more")
        app.fire(session.id, "retry")
    store.close()
    return session.id


_TIMING = re.compile(r"app;dur=([0-9.]+)")


def _server_ms(client: object, url: str, rounds: int) -> tuple[float, float]:
    times = []
    for _ in range(rounds):
        response = client.get(url)  # type: ignore[attr-defined]
        if response.status_code != 200:
            raise SystemExit(f"{url}: {response.status_code} {response.text[:200]}")
        found = _TIMING.search(response.headers.get("server-timing", ""))
        if found is None:
            raise SystemExit(f"{url}: no Server-Timing header")
        times.append(float(found.group(1)))
    return statistics.median(times), max(times)


def _offset_ms(path: Path, where: str, params: tuple[object, ...], depth: int) -> float:
    """The yardstick: a bare SELECT of one page ``depth`` pages deep, by OFFSET."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    began = time.perf_counter()
    conn.execute(
        f"SELECT * FROM paysession_sessions {where} "
        "ORDER BY updated_at DESC, id DESC LIMIT 50 OFFSET ?",
        (*params, depth * 50),
    ).fetchall()
    elapsed = (time.perf_counter() - began) * 1000
    conn.close()
    return elapsed


BROWSE_INDEXES = ("paysession_sessions_updated", "paysession_sessions_anomalous")


def _moves_per_second(synchronous: str, without_indexes: bool) -> float:
    """Moves/s through PaymentSessions on a fresh SQLite store, with the inspector's
    indexes or (the yardstick) without them."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "writes.db"
        SqliteStore(path).migrate()
        if without_indexes:
            conn = sqlite3.connect(path)
            for name in BROWSE_INDEXES:
                conn.execute(f"DROP INDEX {name}")
            conn.commit()
            conn.close()
        store = SqliteStore(path, synchronous=synchronous)  # type: ignore[arg-type]
        app = PaymentSessions(store)
        ids = []
        for number in range(300):
            made = app.create(cart_id=f"cart_{number}", provider_id="stripe", amount=100)
            app.fire(made.id, "initiate", data={"id": "pi"})
            ids.append(made.id)
        began = time.perf_counter()
        for turn in range(8):
            for session_id in ids:
                app.fire(session_id, "require_more" if turn % 2 == 0 else "retry")
        elapsed = time.perf_counter() - began
        store.close()
        return 8 * len(ids) / elapsed


def write_cost(runs: int) -> None:
    """What the inspector's indexes cost every move: moves/s with and without them, in
    alternating runs (each move changes updated_at, so each index on it is updated)."""
    print("\n| synchronous | without the indexes (moves/s) | with them | ratio |")
    print("|---|---:|---:|---:|")
    for synchronous in ("FULL", "NORMAL"):
        without, with_ = [], []
        for _ in range(runs):
            without.append(_moves_per_second(synchronous, True))
            with_.append(_moves_per_second(synchronous, False))
        low, high = statistics.median(without), statistics.median(with_)
        print(f"| {synchronous} | {low:,.0f} | {high:,.0f} | {high / low:.2f}x |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_inspect")
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--keep", type=Path, default=None, help="build (or reuse) this file")
    parser.add_argument(
        "--write-cost",
        type=int,
        default=0,
        metavar="RUNS",
        help="instead, what the indexes cost each move (medians of RUNS alternating runs)",
    )
    args = parser.parse_args(argv)
    if args.write_cost:
        write_cost(args.write_cost)
        return 0

    from starlette.testclient import TestClient

    from paysession.inspector.app import create_app

    with tempfile.TemporaryDirectory() as scratch:
        path = args.keep or Path(scratch) / "inspect.db"
        began = time.perf_counter()
        if args.keep is None or not path.exists():
            long_id = build(path, args.sessions)
        else:
            long_id = _long_trail_id(path)
        print(f"store: {args.sessions:,} sessions built in {time.perf_counter() - began:.0f} s")
        store = SqliteStore(path, read_only=True)
        with (
            TestClient(create_app(store), base_url=LOCAL) as client,
            TestClient(create_app(store, counts_every=0), base_url=LOCAL) as recounting,
        ):
            first = client.get("/")
            deep = re.search(r'href="/\?after=([^"&]+)', first.text)
            after = deep.group(1) if deep else ""
            pages = [
                ("sessions, newest first", "/"),
                ("sessions, second page", f"/?after={after}"),
                ("status = pending", "/?status=pending"),
                ("status = error", "/?status=error"),
                ("provider = manual", "/?provider=manual"),
                ("cart id", "/?cart=cart_00500000"),
                # the worst case of the one index: nothing matches, all of it is walked
                ("provider with no sessions", "/?provider=nobody"),
                ("has anomalies", "/?anomalies=1"),
                ("updated in one day", "/?from=2026-09-01T00:00&to=2026-09-02T00:00"),
                (
                    "status + provider + range",
                    "/?status=error&provider=paypal&from=2026-10-01T00:00",
                ),
                ("anomalies page", "/anomalies"),
                ("activity page", "/activity"),
                (f"session, {LONG_TRAIL}-record trail", f"/sessions/{long_id}"),
                ("API: sessions", "/api/sessions"),
                (f"API: trail of {LONG_TRAIL}", f"/api/sessions/{long_id}/trail"),
            ]
            print("\n| page | median ms | worst ms | target | result |")
            print("|---|---:|---:|---:|---|")
            failed = 0
            pages.insert(1, ("sessions, counts taken afresh", "/"))
            pages.insert(3, (f"sessions, {DEEP:,} pages deep", f"/?after={_deep_token(path)}"))
            for name, url in pages:
                asked = recounting if "afresh" in name else client
                median, worst = _server_ms(asked, url, args.rounds)
                ok = median <= TARGET_MS
                failed += not ok
                print(
                    f"| {name} | {median:.1f} | {worst:.1f} | ≤ {TARGET_MS:.0f} | "
                    f"{'PASS' if ok else 'FAIL'} |"
                )
        store.close()
        print(f"\nYardstick, a bare SELECT of one page by OFFSET (no keyset), {DEEP:,} pages deep:")
        for name, where, params in (
            ("newest first", "", ()),
            ("status = pending", "WHERE status = ?", ("pending",)),
        ):
            print(f"- {name}: {_offset_ms(path, where, params, DEEP):.1f} ms")
    return 1 if failed else 0


def _deep_token(path: Path) -> str:
    """The page token of the row :data:`DEEP` pages down, newest first."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    updated, session_id = conn.execute(
        "SELECT updated_at, id FROM paysession_sessions ORDER BY updated_at DESC, id DESC "
        "LIMIT 1 OFFSET ?",
        (DEEP * 50 - 1,),
    ).fetchone()
    conn.close()
    return PageKey(_EPOCH + timedelta(microseconds=updated), (session_id,)).token()


def _long_trail_id(path: Path) -> str:
    conn = sqlite3.connect(path)
    (session_id,) = conn.execute(
        "SELECT id FROM paysession_sessions WHERE cart_id = 'cart_long_trail'"
    ).fetchone()
    conn.close()
    return str(session_id)


if __name__ == "__main__":
    sys.exit(main())
