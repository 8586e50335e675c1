"""One order, one charge, under fire: 8 processes, 300 carts, switches, webhooks and kills.

Every cart has 2 or 3 payment sessions (three provider ids on one simulated processor
whose ledger all processes share). Eight worker processes pick carts at random and
complete them, switch the customer's method, finish 3-D Secure (or let an asynchronous
payment settle), change a session's amount (and tell the processor), cancel a session
here without its processor (the storefront's plain cancel), and deliver the processor's
webhooks (each its share, some twice), all racing each other. The processor speaks like
Stripe: its webhooks carry whole seconds, some payments answer ``processing`` first.
Workers are SIGKILLed at random, some while a request is at the provider and some after
its yes, before the commit: both while holding the cart's claim. Killed workers are
replaced.

Then, as the shop's background jobs would, the payments still in flight settle, the rest
of the webhooks are delivered and abandoned sessions expired (which sweeps the holds of
canceled sessions); and for every cart:

- at most one session is authorized;
- every hold in the processor's ledger belongs to its cart's authorized session, for the
  session's own amount;
- every hold voided as an extra is a recorded void call, answers an anomaly (or the
  storefront's plain cancel), and its session is canceled;
- no session holds money it cannot keep (``unreleased_holds``);
- every trail verifies.

The shop's variant runs the same fleet as a shop's request handlers would: each action
of a worker (and of the background jobs) is a transaction of its own on a connection of
its own to the store's database (``sqlite3``, ``psycopg``), paysession's moves made in it
through ``PaymentSessions.within``. When they authorized a session, the shop places an
order in the same transaction (a row of its ``shop_orders`` table, beside paysession's
tables), and when they took an authorization back (the storefront's plain cancel), it
cancels the order there; then it commits. An action that lost rolls back, unless the
processor was asked something during it: what paysession recorded of the answer (a
hold, a void) is kept, the transaction committed without an order. Workers are also
killed after an order is written, before the commit. Besides the rules above:

- every authorized session has exactly one order, placed;
- no order is placed for a session that is not authorized, a canceled order's session
  was authorized and then canceled, and no session ever had two orders (the table has
  no rule that would refuse a second: they are counted).

``PAYSESSION_STRESS_CARTS`` changes the number of carts (300 by default). The figures
are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from paysession import PaymentSessions, PaymentSessionStatus, TransitionEvent, TransitionRecord
from paysession.checkout import complete_cart
from paysession.errors import (
    CartBusy,
    ConcurrentUpdate,
    IllegalTransition,
    NoSelectedSession,
    PaySessionError,
)
from paysession.expiry import Expiry, expire_sessions
from paysession.hooks import Hooks
from paysession.providers import (
    STRIPE,
    ProviderTimeout,
    ReconciliationAnomaly,
    SimulatedProvider,
    register_status_map,
)
from paysession.store.base import AnomalyKind, CallAction

from .conftest import StoreFactory, open_store

pytestmark = pytest.mark.slow

S = PaymentSessionStatus
SPAWN = multiprocessing.get_context("spawn")
CARTS = int(os.environ.get("PAYSESSION_STRESS_CARTS", "300"))
WORKERS = 8
ROUNDS = max(CARTS // 2, 20)
"""Actions per worker: about four per cart in all."""
PROVIDERS = ("stripe", "stripe_eu", "stripe_us")
LEASE = timedelta(milliseconds=500)
KILL = 0.02
"""Chance that a worker dies at each of the two kill points of a completion."""
MAX_KILLS = 30
SEED = int(os.environ.get("PAYSESSION_STRESS_SEED", "20261130"))


def providers(ledger: str, seed: int, **kwargs: Any) -> dict[str, SimulatedProvider]:
    for name in PROVIDERS[1:]:
        register_status_map(name, STRIPE, like="stripe")
    return {
        name: SimulatedProvider(seed, provider_id=name, ledger=ledger, **kwargs)
        for name in PROVIDERS
    }


Changes = list[tuple[str, bool]]
"""What an action did to authorizations, by session id: True for a session it
authorized, False for one whose authorization it took back."""

Work = Callable[[PaymentSessions], Changes]
"""One action, through the service it is given (the store's own, or a view)."""

Request = Callable[[Work], None]
"""How an action is run: in the store's own transactions, or as a shop's request."""


def changes(records: Iterable[TransitionRecord]) -> Changes:
    """The authorizations that moves made or took back."""
    found: Changes = []
    for record in records:
        if record.dest is S.AUTHORIZED and record.source is not S.AUTHORIZED:
            found.append((record.session_id, True))
        elif record.source is S.AUTHORIZED and record.dest is not S.AUTHORIZED:
            found.append((record.session_id, False))
    return found


ORDERS = {
    "sqlite": "CREATE TABLE shop_orders (id INTEGER PRIMARY KEY, cart_id TEXT NOT NULL, "
    "session_id TEXT NOT NULL, status TEXT NOT NULL)",
    "postgres": "CREATE TABLE shop_orders (id bigserial PRIMARY KEY, cart_id text NOT NULL, "
    "session_id text NOT NULL, status text NOT NULL)",
}
"""The shop's orders: nothing but the key, so that an order placed twice is counted."""


def asked(chosen: dict[str, SimulatedProvider]) -> Callable[[], int]:
    """How many calls this process has made to the processor, so far."""
    return lambda: sum(len(provider.calls) for provider in chosen.values())


def connect(kind: str, place: str) -> Any:
    """A connection of the shop's own to the store's database, with the driver's defaults."""
    if kind == "sqlite":
        return sqlite3.connect(place, timeout=120)
    import psycopg

    return psycopg.connect(place)


class Shop:
    """The shop's request handlers: one transaction per request on a connection of its
    own, paysession's moves made in it through ``within``, and in it an order placed for
    each session they authorized and canceled for each authorization they took back.

    A request that lost (CartBusy, ConcurrentUpdate, an illegal move, ...) rolls back,
    unless the processor was asked something during it (``asked`` counts the calls
    made to it): what paysession recorded of its answers (a hold, a void, the anomaly
    it answered) is then a fact the shop keeps, as ``docs/transactions.md`` asks, and
    the request commits; so does one that ended in a ReconciliationAnomaly, recorded.
    Either way no order is written for a request that raised. ``before_commit`` runs
    once an order is written, before the commit (a kill point).
    """

    def __init__(
        self,
        kind: str,
        place: str,
        sessions: PaymentSessions,
        asked: Callable[[], int],
        before_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.conn = connect(kind, place)
        self.mark = "?" if kind == "sqlite" else "%s"
        self.sessions = sessions
        self.asked = asked
        self.before_commit = before_commit
        self.tally: Counter[str] = Counter()

    def request(self, work: Work) -> None:
        view = self.sessions.within(self.conn)
        asked = self.asked()
        try:
            done = work(view)
        except PaySessionError as refused:
            if isinstance(refused, ReconciliationAnomaly) or self.asked() != asked:
                view.commit()
                self.tally["shop: refused, committed what the processor said"] += 1
            else:
                view.rollback()
                self.tally["shop: refused, rolled back"] += 1
            raise
        except BaseException:
            view.rollback()
            raise
        m = self.mark
        for session_id, authorized in done:
            if authorized:
                cart_id = view.get(session_id).cart_id
                self.conn.execute(
                    f"INSERT INTO shop_orders (cart_id, session_id, status) VALUES ({m}, {m}, {m})",
                    (cart_id, session_id, "placed"),
                )
            else:
                self.conn.execute(
                    f"UPDATE shop_orders SET status = 'canceled' WHERE session_id = {m} "
                    "AND status = 'placed'",
                    (session_id,),
                )
        if done:
            self.before_commit()
        view.commit()
        self.tally["shop: committed"] += 1
        self.tally["shop: orders placed"] += sum(1 for _, authorized in done if authorized)
        self.tally["shop: orders canceled"] += sum(1 for _, authorized in done if not authorized)

    def orders(self) -> list[tuple[str, str, str]]:
        """Every order as committed: (cart id, session id, status)."""
        rows = self.conn.execute("SELECT cart_id, session_id, status FROM shop_orders")
        found = [(row[0], row[1], row[2]) for row in rows.fetchall()]
        self.conn.commit()
        return found

    def close(self) -> None:
        self.conn.close()


def deliver(
    request: Request,
    chosen: dict[str, SimulatedProvider],
    notices: list[Any],
    tally: Counter[str],
) -> None:
    for notice in notices:

        def reconcile(sessions: PaymentSessions, notice: Any = notice) -> Changes:
            done = sessions.reconcile(
                notice.session_id,
                notice.provider_status,
                event_id=notice.event_id,
                observed_at=notice.observed_at,
                attempts=10,
                provider=dict(chosen),
                amount=notice.amount,
                decline=notice.decline,
            )
            return changes(done.records)

        try:
            request(reconcile)
            tally["webhooks delivered"] += 1
        except ReconciliationAnomaly as anomaly:
            tally[f"webhook anomaly ({anomaly.kind})"] += 1
        except ConcurrentUpdate:
            tally["webhooks lost every race"] += 1


def worker(
    kind: str, place: str, ledger: str, seed: int, shop: bool, index: int, results: Any
) -> None:
    """Random actions on random carts until ROUNDS are done, or until killed; with
    ``shop``, each action a shop's request (see :class:`Shop`)."""
    rng = random.Random(f"{seed}:{index}")

    def maybe_die(*_: object) -> None:
        if rng.random() < KILL:
            os.kill(os.getpid(), signal.SIGKILL)

    hooks = Hooks()

    @hooks.before("authorize")
    def after_the_yes(event: TransitionEvent) -> None:
        maybe_die()

    sessions = PaymentSessions(open_store(kind, place), hooks=hooks)
    chosen = providers(ledger, SEED, on_authorize=maybe_die)
    processor = chosen["stripe"]
    the_shop = Shop(kind, place, sessions, asked(chosen), maybe_die) if shop else None

    def request(work: Work) -> None:
        if the_shop is None:
            work(sessions)
        else:
            the_shop.request(work)

    tally: Counter[str] = Counter()
    cursor = 0
    for _ in range(ROUNDS):
        cart_id = f"cart_{rng.randrange(CARTS):04d}"
        action = rng.random()
        try:
            if action < 0.4:

                def complete(sessions: PaymentSessions, cart_id: str = cart_id) -> Changes:
                    done = complete_cart(sessions, chosen, cart_id, lease=LEASE)
                    tally[f"completion {done.outcome.value}"] += 1
                    tally["claims taken over"] += done.taken_over
                    return changes(done.records)

                request(complete)
            elif action < 0.65:

                def switch(sessions: PaymentSessions, cart_id: str = cart_id) -> Changes:
                    cart = sessions.find(cart_id=cart_id)
                    others = [s for s in cart if not s.is_selected]
                    sessions.select(rng.choice(others).id, actor="customer")
                    tally["switches"] += 1
                    return []

                request(switch)
            elif action < 0.75:
                session = rng.choice(sessions.find(cart_id=cart_id))
                chosen[session.provider_id].customer_acts(session.id)
            elif action < 0.8:
                # A new amount (another item in the cart): refused while a completion
                # is at the provider; the processor is told of it afterwards.
                updated: list[str] = []

                def update(
                    sessions: PaymentSessions, cart_id: str = cart_id, updated: list[str] = updated
                ) -> Changes:
                    session = rng.choice(sessions.find(cart_id=cart_id))
                    sessions.fire(session.id, "update", amount=session.amount + 1)
                    updated.append(session.id)
                    return []

                request(update)
                changed = sessions.get(updated[0])
                chosen[changed.provider_id].update(changed)
                tally["amounts changed"] += 1
            elif action < 0.82:
                # The storefront cancels without asking the processor; the customer may
                # still finish 3-D Secure there: a late authorization to void.

                def cancel(sessions: PaymentSessions, cart_id: str = cart_id) -> Changes:
                    session = rng.choice(sessions.find(cart_id=cart_id))
                    record = sessions.fire(session.id, "cancel", actor="storefront")
                    tally["plain cancels"] += 1
                    return changes([record])

                request(cancel)
            else:
                sent = processor.sent(cursor)
                if sent:
                    cursor = sent[-1][0]
                mine = [n for number, n in sent if number % WORKERS == index % WORKERS]
                extra = [n for _, n in sent if rng.random() < 0.05]
                batch = mine + extra
                rng.shuffle(batch)
                deliver(request, chosen, batch, tally)
        except CartBusy:
            tally["refused: cart busy"] += 1
        except (IllegalTransition, ConcurrentUpdate, NoSelectedSession, ProviderTimeout):
            tally["refused or lost"] += 1
        except ReconciliationAnomaly:
            tally["anomaly"] += 1
    if the_shop is not None:
        tally.update(the_shop.tally)
        the_shop.close()
    sessions.store.close()
    results.put(dict(tally))


def run_fleet(
    store_factory: StoreFactory, ledger: str, shop: bool = False
) -> tuple[Counter[str], int, float]:
    results = SPAWN.Queue()
    started = time.perf_counter()
    kinds = (store_factory.kind, store_factory.place, ledger, SEED, shop)
    running = {
        index: SPAWN.Process(target=worker, args=(*kinds, index, results))
        for index in range(WORKERS)
    }
    for process in running.values():
        process.start()
    tally: Counter[str] = Counter()
    deadline = time.monotonic() + 1200
    try:
        return _supervise(running, results, kinds, tally, deadline, started)
    finally:
        for process in running.values():
            process.kill()


def _supervise(
    running: dict[int, Any],
    results: Any,
    kinds: tuple[str, str, str, int, bool],
    tally: Counter[str],
    deadline: float,
    started: float,
) -> tuple[Counter[str], int, float]:
    kills = finished = 0
    spawned = WORKERS
    while running:
        assert time.monotonic() < deadline, "the workers did not finish"
        time.sleep(0.05)
        while not results.empty():
            tally.update(results.get())
            finished += 1
        for index, process in list(running.items()):
            if process.exitcode is None:
                continue
            del running[index]
            if process.exitcode == -signal.SIGKILL:
                kills += 1
                if kills <= MAX_KILLS:
                    # A replacement takes the dead worker's place (another random walk).
                    replacement = SPAWN.Process(target=worker, args=(*kinds, spawned, results))
                    running[spawned] = replacement
                    spawned += 1
                    replacement.start()
            else:
                assert process.exitcode == 0
    while finished < spawned - kills:
        tally.update(results.get(timeout=60))
        finished += 1
    return tally, kills, time.perf_counter() - started


class TestStress:
    store_kinds = ("sqlite", "postgres")

    def test_one_charge_per_cart(self, store_factory: StoreFactory, tmp_path: Path) -> None:
        stress(store_factory, tmp_path, shop=False)

    def test_one_order_per_charge_in_the_shops_transactions(
        self, store_factory: StoreFactory, tmp_path: Path
    ) -> None:
        """The shop's variant: every action a transaction of the shop's, the order
        placed in it when the action authorized."""
        stress(store_factory, tmp_path, shop=True)


def stress(store_factory: StoreFactory, tmp_path: Path, *, shop: bool) -> None:
    ledger = str(tmp_path / "provider.db")
    sessions = PaymentSessions(store_factory())
    chosen = providers(ledger, SEED)
    rng = random.Random(SEED)
    for number in range(CARTS):
        cart_id = f"cart_{number:04d}"
        made = [
            sessions.create(cart_id=cart_id, provider_id=name, amount=1000 + number)
            for name in PROVIDERS[: rng.choice((2, 3))]
        ]
        sessions.select(rng.choice(made).id, actor="customer")
    kind, place = store_factory.kind, store_factory.place
    the_shop = None
    if shop:
        setup = connect(kind, place)
        setup.execute(ORDERS[kind])
        setup.commit()
        setup.close()
        the_shop = Shop(kind, place, sessions, asked(chosen))

    def request(work: Work) -> None:
        if the_shop is None:
            work(sessions)
        else:
            the_shop.request(work)

    tally, kills, elapsed = run_fleet(store_factory, ledger, shop)

    # The shop's background jobs: the claims of the dead lapse, the remaining
    # webhooks are delivered, abandoned sessions expire.
    time.sleep(LEASE.total_seconds())
    after: Counter[str] = Counter()
    for session in sessions.find():  # asynchronous payments settle at last
        chosen[session.provider_id].customer_acts(session.id)
    deliver(request, chosen, [n for _, n in chosen["stripe"].sent()], after)
    expired_ids: list[str] = []
    for _ in range(10):
        # A lapsed claim is finished first, which may leave its session waiting for
        # 3-D Secure (moved), or its provider may time out once (unanswered); a claim
        # of a worker killed at the very end may still be live (busy): the next pass
        # expires those.
        passes: list[Expiry] = []

        def expire(sessions: PaymentSessions, passes: list[Expiry] = passes) -> Changes:
            done = expire_sessions(
                sessions, chosen, older_than=timedelta(microseconds=1), limit=10 * CARTS
            )
            passes.append(done)
            # Recorded, or voided when the cart could not keep it.
            return [(i, True) for i in done.authorized if sessions.get(i).status is S.AUTHORIZED]

        request(expire)
        (expired,) = passes
        expired_ids += expired.canceled
        for session_id in expired.in_flight:
            # Asked again by a takeover during this pass, it went in flight: it settles.
            chosen[sessions.get(session_id).provider_id].customer_acts(session_id)
        if not (expired.moved or expired.unanswered or expired.busy or expired.in_flight):
            break
        time.sleep(LEASE.total_seconds() if expired.busy else 0)
    deliver(request, chosen, [n for _, n in chosen["stripe"].sent()], after)

    found = sessions.find()
    authorized = Counter(s.cart_id for s in found if s.status is S.AUTHORIZED)
    keeps = {s.id for s in found if s.status is S.AUTHORIZED}
    by_id = {s.id: s for s in found}
    holds = chosen["stripe"].holds()
    voided = chosen["stripe"].voided()
    doubles = sessions.anomalies(kind=AnomalyKind.DOUBLE_AUTHORIZATION)
    anomalous = {event.session_id for event in sessions.anomalies()}
    orders = the_shop.orders() if the_shop is not None else []
    report = {
        "carts": CARTS,
        "sessions": len(found),
        "workers killed": kills,
        "seconds": round(elapsed, 1),
        "carts authorized": len(authorized),
        "carts authorized twice": sum(1 for n in authorized.values() if n > 1),
        "holds": len(holds),
        "orphaned holds": sum(1 for h in holds if h.session_id not in keeps),
        "holds voided as extras": len(voided),
        "double authorizations recorded": len(doubles),
        "abandoned sessions expired": len(expired_ids),
        **({"orders": len(orders)} if shop else {}),
        **tally,
        **{f"settling: {k}": v for k, v in after.items()},
        **({f"settling: {k}": v for k, v in the_shop.tally.items()} if the_shop else {}),
    }
    where = " in the shop's transactions" if shop else ""
    print(f"\nstress on {store_factory.kind}{where}:")
    for name, value in report.items():
        print(f"  {name}: {value}")

    assert report["carts authorized twice"] == 0
    assert report["orphaned holds"] == 0
    assert {hold.session_id for hold in holds} == keeps
    # No amount authorized that differs from what the processor holds.
    assert {h.session_id: h.amount for h in holds} == {
        s.id: s.amount for s in found if s.status is S.AUTHORIZED
    }
    assert sessions.unreleased_holds(limit=10 * CARTS) == []
    for session_id in voided:
        # Every void is a recorded fact; it answers an anomaly, or a storefront's plain
        # cancel of a session whose money was held (voided by expiry's sweep).
        calls = sessions.store.provider_calls(session_id)
        assert any(c.action is CallAction.VOID and c.releases for c in calls)
        plain = any(
            r.trigger == "cancel" and r.actor == "storefront" for r in sessions.history(session_id)
        )
        assert session_id in anomalous or plain
        assert by_id[session_id].status is S.CANCELED
    for event in doubles:
        assert by_id[event.session_id].status is S.CANCELED
        assert event.session_id not in {hold.session_id for hold in holds}
    assert kills > 0 and tally["completion authorized"] > 0
    assert all(s.status in (S.AUTHORIZED, S.CANCELED) for s in found)
    for session in found:
        assert sessions.verify(session.id).ok, session.id
    if the_shop is None:
        return
    # One order per authorization, in the transaction that made it: counted, not
    # refused by any rule of the shop's table.
    per_session = Counter(session_id for _, session_id, _ in orders)
    assert [sid for sid, n in per_session.items() if n > 1] == []
    placed = {session_id for _, session_id, status in orders if status == "placed"}
    assert placed == keeps
    assert len(placed) > 0
    for cart_id, session_id, status in orders:
        session = by_id[session_id]
        assert session.cart_id == cart_id
        if status == "canceled":
            triggers = [r.trigger for r in sessions.history(session_id)]
            assert session.status is S.CANCELED and "authorize" in triggers, session_id
        else:
            assert status == "placed"
    the_shop.close()
