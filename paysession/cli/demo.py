"""``paysession demo``: a checkout simulation on SQLite, with webhooks racing the storefront.

Carts are shared out among K storefront processes (spawned), each running the cart
completion of :mod:`paysession.checkout`. The payment processor is a
:class:`SimulatedProvider` whose ledger (a second SQLite file beside the database) all
processes share, as they would share one real processor; it plays two provider ids,
``stripe`` and ``stripe_eu``. It sends a webhook for every status change the moment it
happens, before the storefront has its answer; one more process delivers them, late,
twice and out of order (:class:`WebhookChannel`), through ``PaymentSessions.reconcile``
with the provider at hand, so that a hold the cart cannot keep is voided.

Per cart (all chosen by the seed): authorized at once, 3-D Secure, a decline then a
new attempt, or a lost answer (timeout) then a retry. Besides:

- a few customers cancel their order once it is authorized (at the provider, then here);
- a few carts expire while the customer is in 3-D Secure: the storefront cancels the
  session without telling the provider, the customer completes 3-D Secure anyway, and
  the provider's authorization of a canceled session is an anomaly (recorded, never
  applied, its hold voided);
- some customers have two payment sessions and switch method while the completion is
  in flight: the switch is refused (CartBusy) until the provider's answer is committed;
- a few completions crash (their process dies) after the provider said yes, leaving
  their claim on the cart; the customer switches method once the claim has lapsed,
  and the next completion takes the claim over, finds the earlier authorization under
  the same key and voids it (a double authorization, recorded).

At the end, abandoned sessions are expired (``expire_sessions``), every trail is
verified, the provider's holds are checked against the carts, and a summary is printed;
the exit code is 1 when a trail fails to verify, a cart is authorized twice, a hold is
orphaned, or a process failed.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import queue
import random
import shlex
import shutil
import signal
import sqlite3
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from multiprocessing import resource_tracker
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any, TextIO

from paysession.checkout import (
    CompletionOutcome,
    CompletionTimeout,
    cancel_payment,
    complete_cart,
)
from paysession.cli._demo_report import Progress, summary
from paysession.cli._store import is_dsn
from paysession.errors import (
    CartBusy,
    ConcurrentUpdate,
    IllegalTransition,
    PaySessionError,
    ReconciliationAnomaly,
    StoreError,
)
from paysession.expiry import expire_sessions
from paysession.hooks import Hooks, TransitionEvent
from paysession.providers import (
    STRIPE,
    PaymentProvider,
    SimulatedProvider,
    Webhook,
    WebhookChannel,
    register_status_map,
)
from paysession.service import PaymentSessions
from paysession.status import PaymentSessionStatus
from paysession.store.sqlite import SqliteStore


class DemoError(PaySessionError):
    """The demo cannot run as asked (the database path is not a demo database)."""


DEFAULT_DB = "paysession-demo.db"
DEFAULT_CARTS = 200
DEFAULT_WORKERS = 2

_MARKER = "paysession_demo"
CANCEL_AFTER = 0.05
"""Share of authorized orders the customer cancels."""
EXPIRE_IN_3DS = 0.15
"""Share of 3-D Secure carts that expire while the customer is away (then authorized)."""
SWITCH = 0.15
"""Share of carts whose customer tries to switch method while the completion is in flight."""
CRASH = 0.03
"""Share of carts whose first completion crashes after the provider's answer."""
LEASE = timedelta(milliseconds=300)
"""The claim's lease in the demo: short, so that a crashed completion's cart is free soon."""
PROVIDERS = ("stripe", "stripe_eu")
_EXIT_CRASHED = 17
_EXIT_ORPHANED = 18
STOP_WAIT = 5.0
"""Seconds the demo gives its processes to end once told to, before it kills them."""


def command_name() -> str:
    """The command as the user ran it, for the hints the demo prints: the script's path
    when it was run by one (``.venv/bin/paysession``), else ``python -m paysession``."""
    script = sys.argv[0] if sys.argv else ""
    if Path(script).name == "paysession":
        # Run from PATH, the shell gives the script's full path: the user typed the name.
        found = shutil.which("paysession")
        on_path = found is not None and Path(found).resolve() == Path(script).resolve()
        return "paysession" if on_path else shlex.quote(script)
    if Path(script).name == "__main__.py":
        return f"{shlex.quote(sys.executable)} -m paysession"
    return "paysession"


def ledger_path(db: str | os.PathLike[str]) -> Path:
    """The simulated processor's ledger beside the demo database."""
    return Path(f"{os.fspath(db)}-provider")


def _open(place: str, hooks: Hooks | None = None) -> PaymentSessions:
    """The demo's sessions on a SQLite file, or on a PostgreSQL DSN (the soak test's)."""
    if is_dsn(place):
        # The postgres extra is optional: loaded only when a DSN asks for it.
        from paysession.store.postgres import PostgresStore

        return PaymentSessions(PostgresStore(place, max_size=2), hooks=hooks)
    # NORMAL: in WAL mode a crashed process loses nothing; only a power cut could lose
    # the last commits of this throwaway database.
    return PaymentSessions(SqliteStore(place, synchronous="NORMAL"), hooks=hooks)


def _providers(ledger: str, seed: int) -> dict[str, SimulatedProvider]:
    register_status_map("stripe_eu", STRIPE, like="stripe")
    return {name: SimulatedProvider(seed, provider_id=name, ledger=ledger) for name in PROVIDERS}


def fresh_database(path: Path) -> None:
    """Remove what an earlier demo run left at ``path``: its database and the ledger
    beside it, each with its WAL files; refuse any other existing file.

    Each is checked on its own: a ledger left behind by a run whose database was
    deleted would otherwise deliver that run's webhooks into the new one.
    """
    ledger = ledger_path(path)
    for place, table, what in ((path, _MARKER, "database"), (ledger, _LEDGER_TABLE, "ledger")):
        if place.exists() and not _holds_table(place, table):
            raise DemoError(
                f"{place} exists and is not a paysession demo {what}; "
                "pass --db with another path (the demo starts from a fresh file)"
            )
    for place in (path, ledger):
        for leftover in (place, Path(f"{place}-wal"), Path(f"{place}-shm")):
            leftover.unlink(missing_ok=True)


def _holds_table(path: Path, table: str) -> bool:
    try:
        # As a file URI, quoted: in a plain "file:" string a ?, # or % in the path
        # would be read as URI syntax and name another file.
        with sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True) as conn:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).fetchone()
        conn.close()
    except sqlite3.Error:
        return False
    return found is not None


_LEDGER_TABLE = "sim_intents"
"""A table every simulated processor's ledger has."""


# -- the processes


def _belong_to_parent() -> None:
    """Make this process (a storefront, the webhooks, a crashing completion) end with the
    process that started it, whatever ends that one.

    Ctrl-C reaches every process of the terminal's group: here it is ignored, and the
    parent, which sees it too, stops its processes and says so once. (The parent starts
    each process with the stopping signals blocked, see _start, so that even one still
    starting up has no KeyboardInterrupt to print; ignoring SIGINT here discards one
    already pending, and a pending SIGTERM or SIGHUP ends this process here, quietly.)
    Any other end of the parent (a signal, a closed output, a kill -9) closes the pipe
    this process was started through: a watcher thread sees it and exits at once, so
    that no process goes on writing to a database its demo has left.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        # Started while the stopping signals are still blocked (as this process was
        # started), the watcher keeps them blocked: a signal sent to this process is then
        # taken by the main thread alone, and waits while it starts a process of its
        # own. Taken by the watcher, it would end this process half-way through such a
        # start, and the process being started would print a traceback.
        threading.Thread(
            target=_exit_when_gone, args=(parent.sentinel,), name="parent-watch", daemon=True
        ).start()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPPING)


def _exit_when_gone(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    # Not while this process is starting one of its own: cut off half-way through
    # reading what it was started with, that one would print a traceback.
    _STARTING.acquire()
    os._exit(_EXIT_ORPHANED)


_STARTING = threading.Lock()
"""Held while this process starts another (see _exit_when_gone)."""


def _start(process: Any) -> None:
    """Start ``process`` with the stopping signals blocked, here and (the mask is
    inherited) in the process: a signal that comes while it starts waits until the
    start is done, in the parent (so that no half-started process is left unknown to
    it), and until the process is ready to take it (_belong_to_parent), in the process
    (so that none prints a KeyboardInterrupt from its start-up). An orphaned process
    exits only once a start it is making is done."""
    with _blocked(*_STOPPING), _STARTING:
        process.start()


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (the process that frees the demo's
    semaphores) deaf to a hangup: it ignores Ctrl-C and SIGTERM itself, but a SIGHUP sent
    to the group would kill it, and the demo would then print its complaints while it
    stops. It ends on its own once the demo has gone."""
    with _blocked(signal.SIGHUP):
        resource_tracker.ensure_running()


_STOPPING = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@contextlib.contextmanager
def _blocked(*signums: signal.Signals) -> Iterator[None]:
    before = signal.pthread_sigmask(signal.SIG_BLOCK, signums)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _stop(processes: list[Any], stop: Any) -> None:
    """End every process this demo started: asked (SIGTERM), then killed if it lingers."""
    stop.set()
    for process in processes:
        if process.pid is not None and process.exitcode is None:
            process.terminate()
    deadline = time.monotonic() + STOP_WAIT
    for process in processes:
        if process.pid is None:
            continue
        process.join(max(0.0, deadline - time.monotonic()))
        if process.exitcode is None:
            process.kill()
            process.join()


def storefront(
    db: str,
    ledger: str,
    seed: int,
    index: int,
    workers: int,
    carts: int,
    progress: Synchronized[int],
    results: Any,
) -> None:
    """A storefront process: creates, selects and completes its share of the carts."""
    _belong_to_parent()
    try:
        sessions = _open(db)
        providers = _providers(ledger, seed)
        tally: Counter[str] = Counter()
        for number in range(index, carts, workers):
            rng = random.Random(f"{seed}:cart:{number}")
            _checkout(sessions, providers, (db, ledger), seed, number, rng, tally)
            with progress.get_lock():
                progress.value += 1
        sessions.store.close()
        results.put(("storefront", dict(tally), None))
    except BaseException:
        results.put(("storefront", {}, traceback.format_exc()))


def _checkout(
    sessions: PaymentSessions,
    providers: dict[str, SimulatedProvider],
    places: tuple[str, str],
    seed: int,
    number: int,
    rng: random.Random,
    tally: Counter[str],
) -> None:
    cart_id = f"cart_{number:05d}"
    amount = rng.randrange(500, 50_000)
    choice = rng.random()
    expires = rng.random() < EXPIRE_IN_3DS
    cancels = rng.random() < CANCEL_AFTER
    session = sessions.create(cart_id=cart_id, provider_id="stripe", amount=amount)
    other = None
    if choice < CRASH + SWITCH:
        other = sessions.create(cart_id=cart_id, provider_id="stripe_eu", amount=amount)
    sessions.select(session.id, actor="storefront")
    if other is not None and choice < CRASH:
        _crash_then_switch(sessions, providers, places, seed, cart_id, other.id, tally)
        return
    stripe = providers["stripe"]
    if other is not None:
        switch_to = other.id

        def switch_while_in_flight(_: object, __: str) -> None:
            stripe.on_authorize = None
            try:
                sessions.select(switch_to, actor="customer")
            except CartBusy:
                tally["switches refused while a completion was in flight"] += 1

        stripe.on_authorize = switch_while_in_flight
    try:
        _complete(sessions, providers, cart_id, session.id, expires, tally)
    finally:
        stripe.on_authorize = None
    if cancels and sessions.get(session.id).status is PaymentSessionStatus.AUTHORIZED:
        cancel_payment(sessions, providers, session.id, actor="storefront", lease=LEASE)


def _complete(
    sessions: PaymentSessions,
    providers: dict[str, SimulatedProvider],
    cart_id: str,
    session_id: str,
    expires: bool,
    tally: Counter[str],
) -> None:
    for _ in range(40):
        try:
            done = complete_cart(sessions, providers, cart_id, actor="storefront", lease=LEASE)
        except CompletionTimeout:
            tally["timeouts resumed"] += 1
            continue
        except CartBusy:
            time.sleep(LEASE.total_seconds() / 3)
            continue
        tally["storefront races lost"] += done.lost_races
        tally["claims taken over after a crash"] += done.taken_over
        if done.outcome is CompletionOutcome.DECLINED:
            tally["declines retried"] += 1
            continue
        if done.outcome is CompletionOutcome.PROCESSING:
            # An asynchronous method: the payment settles at the provider, and the next
            # completion asks it where the payment is.
            tally["payments processing, then settled"] += 1
            providers[done.session.provider_id].customer_acts(done.session.id)
            continue
        if done.outcome is CompletionOutcome.REQUIRES_MORE:
            tally["3-D Secure challenges"] += 1
            provider = providers[done.session.provider_id]
            if expires:
                # The cart expires while the customer is away; they finish 3-D Secure
                # anyway, and the provider authorizes a session we have canceled.
                sessions.fire_with_retry(
                    session_id, "cancel", actor="storefront", reason="cart expired"
                )
                provider.customer_acts(session_id)
                return
            provider.customer_acts(done.session.id)
            continue
        return
    raise RuntimeError(f"{cart_id} did not complete in 40 rounds")


def _crash_then_switch(
    sessions: PaymentSessions,
    providers: dict[str, SimulatedProvider],
    places: tuple[str, str],
    seed: int,
    cart_id: str,
    other_id: str,
    tally: Counter[str],
) -> None:
    """A completion dies after the provider's yes; the customer switches once it lapses."""
    child = multiprocessing.get_context("spawn").Process(
        target=complete_and_die, args=(*places, seed, cart_id)
    )
    _start(child)
    child.join(120)
    tally["completions crashed"] += child.exitcode == _EXIT_CRASHED
    time.sleep(LEASE.total_seconds())
    # Refused when a webhook authorized the first choice meanwhile: then it stands.
    with contextlib.suppress(IllegalTransition, CartBusy, ConcurrentUpdate):
        sessions.select(other_id, actor="customer")
    chosen = sessions.selected(cart_id)
    session_id = other_id if chosen is None else chosen.id
    _complete(sessions, providers, cart_id, session_id, False, tally)


def complete_and_die(db: str, ledger: str, seed: int, cart_id: str) -> None:
    """Complete the cart, and die (os._exit) once the provider said yes, before the commit."""
    _belong_to_parent()
    hooks = Hooks()

    @hooks.before("authorize")
    def die(event: TransitionEvent) -> None:
        os._exit(_EXIT_CRASHED)

    sessions = _open(db, hooks)
    # A completion that ends without the provider's yes (3-D Secure, a decline) leaves
    # nothing to crash on: the storefront finishes whatever it left.
    with contextlib.suppress(Exception):
        complete_cart(sessions, _providers(ledger, seed), cart_id, actor="storefront", lease=LEASE)


def webhooks(db: str, ledger: str, seed: int, stop: Any, results: Any) -> None:
    """The webhook endpoint process: delivers the provider's notices, scrambled."""
    _belong_to_parent()
    try:
        sessions = _open(db)
        providers = _providers(ledger, seed)
        processor = providers["stripe"]
        channel = WebhookChannel(seed)
        tally: Counter[str] = Counter()
        retry: list[Webhook] = []
        cursor = 0
        while True:
            stopping = stop.is_set()
            sent = processor.sent(cursor)
            for number, notice in sent:
                cursor = number
                for due in channel.push(notice):
                    _deliver(sessions, providers, due, tally, retry)
            if stopping and not sent:
                break
            if not sent:
                time.sleep(0.005)
        for due in [*channel.flush(), *retry]:
            _deliver(sessions, providers, due, tally, [])
        sessions.store.close()
        results.put(("webhooks", dict(tally), None))
    except BaseException:
        results.put(("webhooks", {}, traceback.format_exc()))


def _supervise(
    processes: list[Any],
    results: Any,
    progress: Synchronized[int],
    stop: Any,
    workers: int,
    tallies: list[tuple[str, dict[str, int], str | None]],
    show: Progress,
) -> None:
    """Collect each process's tally, showing progress; stop the webhooks after the carts."""
    started = time.perf_counter()
    storefronts_left = workers
    while len(tallies) < workers + 1:
        try:
            tally = results.get(timeout=0.1)
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in processes):
                break  # died without a word (killed): nothing more will come
        else:
            tallies.append(tally)
            storefronts_left -= tally[0] == "storefront"
        if storefronts_left == 0:
            stop.set()  # every notice is in the ledger: the webhook process may finish
        show(progress.value, time.perf_counter() - started)
    show.finish(progress.value, time.perf_counter() - started)


def _deliver(
    sessions: PaymentSessions,
    providers: dict[str, SimulatedProvider],
    notice: Webhook,
    tally: Counter[str],
    retry: list[Webhook],
) -> None:
    tally["webhooks delivered"] += 1
    chosen: dict[str, PaymentProvider] = dict(providers)
    try:
        result = sessions.reconcile(
            notice.session_id,
            notice.provider_status,
            event_id=notice.event_id,
            observed_at=notice.observed_at,
            attempts=8,
            provider=chosen,
            amount=notice.amount,
            decline=notice.decline,
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
        sessions = _open(str(path))
        sessions.store.migrate()
    except DemoError as error:
        sys.stderr.write(f"paysession demo: {error}\n")
        return 2
    except StoreError as error:
        sys.stderr.write(
            f"paysession demo: cannot use {path} as the demo database: {error.detail}\n"
        )
        return 2
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
    ledger = str(ledger_path(path))
    context = multiprocessing.get_context("spawn")
    _start_resource_tracker()
    stop = context.Event()
    results = context.Queue()
    progress = context.Value("i", 0)
    processes = [context.Process(target=webhooks, args=(str(path), ledger, seed, stop, results))]
    processes += [
        context.Process(
            target=storefront,
            args=(str(path), ledger, seed, k, workers, carts, progress, results),
        )
        for k in range(workers)
    ]
    tallies: list[tuple[str, dict[str, int], str | None]] = []
    try:
        for process in processes:
            _start(process)
        _supervise(processes, results, progress, stop, workers, tallies, Progress(out, carts))
    except BaseException:
        # The parent cannot go on (a closed output, Ctrl-C, SIGTERM): its processes end
        # with it, and before it, so that none goes on writing the database.
        _stop(processes, stop)
        raise
    for process in processes:
        process.join(30)
    failures = [error for _, _, error in tallies if error] + [
        f"a process exited with code {p.exitcode}" for p in processes if p.exitcode not in (0,)
    ]
    for failure in failures:
        out.write(f"\nprocess failed:\n{failure}\n")
    providers = _providers(ledger, seed)
    # Asynchronous payments still in flight (the customer switched method meanwhile)
    # settle at last: expiry asks the provider first, finds them authorized, and voids
    # what their cart cannot keep.
    for waiting in sessions.find(status=PaymentSessionStatus.PENDING):
        providers[waiting.provider_id].customer_acts(waiting.id)
    # Every storefront is done: whatever is neither authorized nor canceled now was
    # abandoned (a method the customer did not use, a 3-D Secure never finished).
    expired = expire_sessions(
        sessions, providers, older_than=timedelta(microseconds=1), limit=10 * carts + 10
    )
    ok = summary(
        sessions,
        providers["stripe"],
        tallies,
        len(expired.canceled),
        out,
        time.perf_counter() - started,
    )
    for provider in providers.values():
        provider.close()
    sessions.store.close()
    where = shlex.quote(str(path))
    out.write(f"see every session: {command_name()} inspect --db {where}\n")
    out.write(f"list them:         {command_name()} sessions --db {where}\n")
    return 0 if ok and not failures else 1


__all__ = ["DEFAULT_CARTS", "DEFAULT_DB", "DEFAULT_WORKERS", "DemoError", "run"]
