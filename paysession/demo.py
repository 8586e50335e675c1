"""``paysession demo``: a checkout simulation on SQLite, with webhooks racing the storefront.

Carts are shared out among K storefront processes (spawned), each running the cart
completion of :mod:`paysession.checkout` against its own :class:`SimulatedProvider`.
The provider sends a webhook for every status change the moment it happens, before
the storefront has its answer; one more process delivers them, late, twice and out of
order (:class:`WebhookChannel`), through ``PaymentSessions.reconcile``. All of them
share one SQLite file. Per cart (all chosen by the seed): authorized at once, 3-D
Secure, a decline then a new attempt, or a lost answer (timeout) then a retry; a few
customers cancel their order once it is authorized (at the provider, then here), and a
few carts expire while the customer is in 3-D Secure: the storefront cancels the
session without telling the provider, the customer completes 3-D Secure anyway, and
the provider's authorization of a canceled session is the anomaly reconciliation must
catch (recorded, never applied).

At the end every trail is verified and a summary printed; the exit code is 1 when a
trail fails to verify or a process failed.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import random
import sqlite3
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any, TextIO

from paysession.audit import verify
from paysession.checkout import (
    CompletionOutcome,
    CompletionTimeout,
    cancel_payment,
    complete_cart,
)
from paysession.errors import ConcurrentUpdate
from paysession.providers import (
    ReconciliationAnomaly,
    SimulatedProvider,
    Webhook,
    WebhookChannel,
)
from paysession.record import TransitionRecord
from paysession.service import PaymentSessions
from paysession.status import PaymentSessionStatus
from paysession.store.base import EventOutcome
from paysession.store.sqlite import SqliteStore

DEFAULT_DB = "paysession-demo.db"
DEFAULT_CARTS = 200
DEFAULT_WORKERS = 2

_MARKER = "paysession_demo"
CANCEL_AFTER = 0.05
"""Share of authorized orders the customer cancels."""
EXPIRE_IN_3DS = 0.15
"""Share of 3-D Secure carts that expire while the customer is away (then authorized)."""


class DemoError(Exception):
    """The demo cannot run as asked (the database path is not a demo database)."""


def _open(path: str) -> PaymentSessions:
    # NORMAL: in WAL mode a crashed process loses nothing; only a power cut could lose
    # the last commits of this throwaway database.
    return PaymentSessions(SqliteStore(path, synchronous="NORMAL"))


def fresh_database(path: Path) -> None:
    """Remove a database left by an earlier demo run; refuse any other existing file."""
    if not path.exists():
        return
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_MARKER,)
            ).fetchone()
    except sqlite3.Error:
        found = None
    if found is None:
        raise DemoError(
            f"{path} exists and is not a paysession demo database; "
            "pass --db with another path (the demo starts from a fresh file)"
        )
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)


# -- the processes


def storefront(
    db: str,
    seed: int,
    index: int,
    workers: int,
    carts: int,
    notices: Any,
    progress: Synchronized[int],
    results: Any,
) -> None:
    """A storefront process: creates, selects and completes its share of the carts."""
    try:
        sessions = _open(db)
        provider = SimulatedProvider(seed, send=notices.put)
        tally: Counter[str] = Counter()
        for number in range(index, carts, workers):
            _checkout(sessions, provider, number, random.Random(f"{seed}:cart:{number}"), tally)
            with progress.get_lock():
                progress.value += 1
        tally["provider authorizations"] = sum(provider.authorizations.values())
        tally["keys authorized twice"] = sum(1 for n in provider.authorizations.values() if n > 1)
        sessions.store.close()
        # Flush this process's notices before reporting: once every storefront has
        # reported, the parent tells the webhook process to stop, and notices still in
        # this process's queue buffer would be lost (and its exit would wait on them).
        notices.close()
        notices.join_thread()
        results.put(("storefront", dict(tally), None))
    except BaseException:
        results.put(("storefront", {}, traceback.format_exc()))


def _checkout(
    sessions: PaymentSessions,
    provider: SimulatedProvider,
    number: int,
    rng: random.Random,
    tally: Counter[str],
) -> None:
    cart_id = f"cart_{number:05d}"
    session = sessions.create(
        cart_id=cart_id, provider_id="stripe", amount=rng.randrange(500, 50_000)
    )
    sessions.select(session.id, actor="storefront")
    expires = rng.random() < EXPIRE_IN_3DS
    cancels = rng.random() < CANCEL_AFTER
    for _ in range(10):
        try:
            done = complete_cart(sessions, provider, cart_id, actor="storefront")
        except CompletionTimeout:
            tally["timeouts resumed"] += 1
            continue
        tally["storefront races lost"] += done.lost_races
        if done.outcome is CompletionOutcome.DECLINED:
            tally["declines retried"] += 1
            continue
        if done.outcome is CompletionOutcome.REQUIRES_MORE:
            tally["3-D Secure challenges"] += 1
            if expires:
                # The cart expires while the customer is away; they finish 3-D Secure
                # anyway, and the provider authorizes a session we have canceled.
                sessions.fire_with_retry(
                    session.id, "cancel", actor="storefront", reason="cart expired"
                )
                provider.customer_acts(session.id)
                return
            provider.customer_acts(session.id)
            continue
        break
    else:
        raise RuntimeError(f"{cart_id} did not complete in 10 rounds")
    if cancels:
        cancel_payment(sessions, provider, session.id, actor="storefront")


def webhooks(db: str, seed: int, notices: Any, results: Any) -> None:
    """The webhook endpoint process: delivers the providers' notices, scrambled."""
    try:
        sessions = _open(db)
        channel = WebhookChannel(seed)
        tally: Counter[str] = Counter()
        retry: list[Webhook] = []
        while True:
            notice = notices.get()
            if notice is None:
                break
            for due in channel.push(notice):
                _deliver(sessions, due, tally, retry)
        for due in [*channel.flush(), *retry]:
            _deliver(sessions, due, tally, [])
        sessions.store.close()
        results.put(("webhooks", dict(tally), None))
    except BaseException:
        results.put(("webhooks", {}, traceback.format_exc()))


def _deliver(
    sessions: PaymentSessions, notice: Webhook, tally: Counter[str], retry: list[Webhook]
) -> None:
    tally["webhooks delivered"] += 1
    try:
        result = sessions.reconcile_result(
            notice.session_id,
            notice.provider_status,
            event_id=notice.event_id,
            observed_at=notice.observed_at,
            attempts=8,
        )
    except ReconciliationAnomaly:
        tally["anomaly"] += 1
        return
    except ConcurrentUpdate:
        # What a webhook endpoint answering 500 gets: the provider delivers it again.
        tally["redelivered after losing every race"] += 1
        retry.append(notice)
        return
    tally[result.outcome.value] += 1
    tally["webhook races lost"] += result.lost_races


# -- the parent


def run(
    db: str | os.PathLike[str] = DEFAULT_DB,
    *,
    carts: int = DEFAULT_CARTS,
    workers: int = DEFAULT_WORKERS,
    seed: int = 0,
    out: TextIO,
) -> int:
    """Run the simulation, print progress and the summary; return the exit code."""
    path = Path(db)
    try:
        fresh_database(path)
    except DemoError as error:
        out.write(f"paysession demo: {error}\n")
        return 2
    sessions = _open(str(path))
    sessions.store.migrate()
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE {_MARKER} (seed INTEGER, carts INTEGER, workers INTEGER)")
        conn.execute(f"INSERT INTO {_MARKER} VALUES (?, ?, ?)", (seed, carts, workers))
    conn.close()
    out.write(
        f"paysession demo: {carts} carts, {workers} storefront process(es) and a webhook "
        f"process on {path} (SQLite), seed {seed}\n"
    )
    out.flush()
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    notices = context.Queue()
    results = context.Queue()
    progress = context.Value("i", 0)
    processes = [context.Process(target=webhooks, args=(str(path), seed, notices, results))]
    processes += [
        context.Process(
            target=storefront,
            args=(str(path), seed, k, workers, carts, notices, progress, results),
        )
        for k in range(workers)
    ]
    for process in processes:
        process.start()
    tallies: list[tuple[str, dict[str, int], str | None]] = []
    show = _Progress(out, carts)
    storefronts_left, stopped = workers, False
    while len(tallies) < workers + 1:
        try:
            tally = results.get(timeout=0.1)
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in processes):
                break  # died without a word (killed): nothing more will come
        else:
            tallies.append(tally)
            storefronts_left -= tally[0] == "storefront"
        if storefronts_left == 0 and not stopped:
            notices.put(None)  # every notice is queued: the webhook process may finish
            stopped = True
        show(progress.value, time.perf_counter() - started)
    show.finish(progress.value, time.perf_counter() - started)
    for process in processes:
        process.join(30)
    failures = [error for _, _, error in tallies if error] + [
        f"a process exited with code {p.exitcode}" for p in processes if p.exitcode not in (0,)
    ]
    for failure in failures:
        out.write(f"\nprocess failed:\n{failure}\n")
    ok = _summary(sessions, tallies, out, time.perf_counter() - started)
    sessions.store.close()
    return 0 if ok and not failures else 1


class _Progress:
    """A bar redrawn in place on a terminal; a plain line at each quarter otherwise."""

    def __init__(self, out: TextIO, total: int) -> None:
        self.out = out
        self.total = max(total, 1)
        self.tty = out.isatty()
        self.shown = -1

    def __call__(self, done: int, elapsed: float) -> None:
        if self.tty:
            filled = 30 * done // self.total
            self.out.write(
                f"\r  [{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} carts "
                f"{elapsed:5.1f} s"
            )
            self.out.flush()
            return
        quarter = 4 * done // self.total
        if quarter > self.shown:
            if quarter > 0:
                self.out.write(f"  {done}/{self.total} carts completed ({elapsed:.1f} s)\n")
                self.out.flush()
            self.shown = quarter

    def finish(self, done: int, elapsed: float) -> None:
        self(done, elapsed)
        if self.tty:
            self.out.write("\n")
        self.out.flush()


def _all_records(sessions: PaymentSessions) -> Iterator[TransitionRecord]:
    position = 0
    while True:
        page = sessions.records_since(position, 5000)
        if not page:
            return
        yield from (logged.record for logged in page)
        position = page[-1].position


def _summary(
    sessions: PaymentSessions,
    tallies: list[tuple[str, dict[str, int], str | None]],
    out: TextIO,
    elapsed: float,
) -> bool:
    from paysession.cli import format_table

    tally: Counter[str] = Counter()
    for _, counts, _ in tallies:
        tally.update(counts)
    records = list(_all_records(sessions))
    report = verify(records)
    statuses = Counter(session.status for session in sessions.find())
    moves = Counter(record.trigger for record in records if record.seq > 0)
    authorized_by = Counter(
        "webhook" if (record.actor or "").startswith("provider:") else "storefront"
        for record in records
        if record.trigger == "authorize"
    )
    events = sessions.provider_events()
    outcomes = Counter(event.outcome for event in events if event.event_id.startswith("evt_"))
    rows: list[tuple[str, object]] = [
        *((f"sessions {status.value}", statuses[status]) for status in PaymentSessionStatus),
        ("moves recorded", sum(moves.values())),
        *((f"  {trigger}", count) for trigger, count in sorted(moves.items())),
        ("authorizations recorded by the storefront", authorized_by["storefront"]),
        ("authorizations recorded by a webhook first", authorized_by["webhook"]),
        ("storefront races lost (reloaded, decided again)", tally["storefront races lost"]),
        ("webhook races lost (reloaded, path recomputed)", tally["webhook races lost"]),
        ("3-D Secure challenges", tally["3-D Secure challenges"]),
        ("declines, then a new attempt", tally["declines retried"]),
        ("provider timeouts, resumed with the same key", tally["timeouts resumed"]),
        ("webhooks delivered", tally["webhooks delivered"]),
        ("  applied", outcomes[EventOutcome.APPLIED]),
        ("  no-ops", outcomes[EventOutcome.NOOP]),
        ("  duplicates ignored", sum(event.duplicates for event in events)),
        ("  stale reports ignored", outcomes[EventOutcome.STALE]),
        ("  anomalies caught (recorded, not applied)", outcomes[EventOutcome.ANOMALY]),
        ("provider authorizations", tally["provider authorizations"]),
        ("  keys authorized twice", tally["keys authorized twice"]),
    ]
    out.write("\n" + format_table(("", "count"), rows) + "\n")
    anomalies = sessions.anomalies()
    if anomalies:
        first = anomalies[0]
        out.write(
            f"\nan anomaly, for example: session {first.session_id} was "
            f"{first.session_status.value} when the provider reported "
            f"{first.provider_status!r} ({first.status.value})\n"
        )
    verdict = "ok" if report.ok else f"FAILED ({len(report.problems)} bad sessions)"
    out.write(
        f"\ntrails verified: {report.sessions} sessions, {report.records} records: {verdict}\n"
    )
    for problem in report.problems[:10]:
        out.write(f"  session {problem.session_id} seq {problem.seq}: {problem.message}\n")
    out.write(f"finished in {elapsed:.1f} s\n")
    return report.ok


__all__ = ["DEFAULT_CARTS", "DEFAULT_DB", "DEFAULT_WORKERS", "DemoError", "run"]
