"""``PaymentSessions.within(connection)``: the checkout's own transaction.

An order row of the shop and a move of paysession written through one connection
commit together or not at all: on SQLite (``sqlite3``) and PostgreSQL (``psycopg``), a
commit keeps both, a rollback leaves neither and runs no hook, a move that loses its
race raises when it is made, and a process killed before its commit leaves nothing.
"""

from __future__ import annotations

import sqlite3
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from paysession import (
    AuthorizationConflict,
    ConcurrentUpdate,
    Hooks,
    InvalidSessionData,
    PaymentSessions,
    PaymentSessionStatus,
    StoreError,
    TransitionEvent,
)
from paysession.store import MemoryStore
from paysession.store.postgres_feed import ANNOUNCE_EVERY

from .conftest import StoreFactory, migrated
from .helpers import kill_once_moved

S = PaymentSessionStatus
ORDERS = "CREATE TABLE shop_orders (cart_id TEXT PRIMARY KEY, session_id TEXT NOT NULL)"


def connect(factory: StoreFactory) -> Any:
    """A connection of the shop's own, to the store's database."""
    if factory.kind == "sqlite":
        return sqlite3.connect(factory.place)
    import psycopg

    return psycopg.connect(factory.place)


def param(factory: StoreFactory) -> str:
    return "?" if factory.kind == "sqlite" else "%s"


def orders(factory: StoreFactory) -> list[tuple[str, str]]:
    """The shop's orders as committed, read on a connection of their own."""
    conn = connect(factory)
    try:
        rows = conn.execute("SELECT cart_id, session_id FROM shop_orders ORDER BY cart_id")
        return [(row[0], row[1]) for row in rows.fetchall()]
    finally:
        conn.close()


def with_orders(place: str) -> None:
    """The current schema, and the shop's orders table beside paysession's."""
    migrated(place)
    conn = connect(StoreFactory("sqlite" if place.endswith(".db") else "postgres", place))
    conn.execute(ORDERS)
    conn.commit()
    conn.close()


@pytest.fixture
def store_fill() -> Callable[[str], None]:
    """The databases of this module's stores hold the shop's orders table too."""
    return with_orders


@pytest.fixture
def shop(store_factory: StoreFactory) -> StoreFactory:
    """The store's database with the shop's orders table beside paysession's (made
    once per test session, and copied for each test: see ``store_fill``)."""
    return store_factory


class AfterHooks:
    """Counts the after-hooks run, by trigger."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.hooks = Hooks()

        @self.hooks.after()
        def seen(event: TransitionEvent) -> None:
            self.seen.append(event.trigger)


def initiated(sessions: PaymentSessions, cart_id: str) -> str:
    session = sessions.create(cart_id=cart_id, provider_id="stripe", amount=1500)
    sessions.fire(session.id, "initiate", data={"id": f"pi_{cart_id}"})
    sessions.select(session.id)
    return session.id


class TestWithin:
    store_kinds = ("sqlite", "postgres")

    def test_commit_keeps_the_order_and_the_move(self, shop: StoreFactory) -> None:
        after = AfterHooks()
        sessions = PaymentSessions(shop(), hooks=after.hooks)
        session_id = initiated(sessions, "cart_1")
        after.seen.clear()
        conn = connect(shop)
        view = sessions.within(conn)
        view.fire(session_id, "authorize", actor="checkout", idempotency_key="auth-1")
        conn.execute(
            f"INSERT INTO shop_orders VALUES ({param(shop)}, {param(shop)})", ("cart_1", session_id)
        )
        assert view.get(session_id).status is S.AUTHORIZED  # the view reads its own writes
        assert sessions.get(session_id).status is S.PENDING  # nobody else does yet
        assert after.seen == [] and orders(shop) == []
        view.commit()
        conn.close()
        assert after.seen == ["authorize"]
        assert sessions.get(session_id).status is S.AUTHORIZED
        assert orders(shop) == [("cart_1", session_id)]
        assert sessions.verify(session_id).ok

    def test_rollback_leaves_nothing_and_no_hook_runs(self, shop: StoreFactory) -> None:
        after = AfterHooks()
        sessions = PaymentSessions(shop(), hooks=after.hooks)
        session_id = initiated(sessions, "cart_2")
        after.seen.clear()
        before = sessions.history(session_id)
        conn = connect(shop)
        view = sessions.within(conn)
        view.fire(session_id, "authorize", idempotency_key="auth-2")
        view.reconcile(session_id, "requires_capture", event_id="evt_2")
        claim = view.claim_of("cart_2")
        assert claim is None
        conn.execute(
            f"INSERT INTO shop_orders VALUES ({param(shop)}, {param(shop)})", ("cart_2", session_id)
        )
        view.rollback()
        conn.close()
        assert after.seen == []
        assert sessions.history(session_id) == before
        assert sessions.provider_events(session_id=session_id) == []
        assert orders(shop) == []
        # The key was never bound: the same key now makes a move of its own.
        record = sessions.fire(session_id, "authorize", idempotency_key="auth-2")
        assert record.seq == before[-1].seq + 1 and after.seen == ["authorize"]

    def test_a_claim_taken_inside_is_rolled_back_with_it(self, shop: StoreFactory) -> None:
        sessions = PaymentSessions(shop())
        initiated(sessions, "cart_3")
        conn = connect(shop)
        view = sessions.within(conn)
        view.claim_cart("cart_3")
        assert view.claim_of("cart_3") is not None
        view.rollback()
        conn.close()
        assert sessions.claim_of("cart_3") is None

    def test_a_lost_race_raises_when_the_move_is_made(self, shop: StoreFactory) -> None:
        """The caller read version 2; another writer moved the session since: the view's
        move fails at once, and the caller's rollback leaves the winner's move intact."""
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_4")
        seen = sessions.version(session_id)
        winner = sessions.fire(session_id, "require_more", actor="webhook")
        conn = connect(shop)
        view = sessions.within(conn)
        conn.execute(
            f"INSERT INTO shop_orders VALUES ({param(shop)}, {param(shop)})", ("cart_4", session_id)
        )
        with pytest.raises(ConcurrentUpdate):
            view.fire(session_id, "authorize", expected_version=seen)
        view.rollback()
        conn.close()
        assert sessions.history(session_id)[-1] == winner
        assert orders(shop) == []

    def test_one_authorized_session_per_cart_holds_inside(self, shop: StoreFactory) -> None:
        """Another session of the cart authorized first, on another connection: the view's
        authorization is refused when it is made, by the database's rule."""
        sessions = PaymentSessions(shop())
        first = initiated(sessions, "cart_5")
        second = sessions.create(cart_id="cart_5", provider_id="paypal", amount=1500)
        sessions.fire(second.id, "initiate", data={"id": "PAYID-5"})
        sessions.fire(first, "authorize")
        conn = connect(shop)
        view = sessions.within(conn)
        with pytest.raises(AuthorizationConflict):
            view.fire(second.id, "authorize")
        # The refused write was a savepoint: the rest of the transaction goes on.
        conn.execute(
            f"INSERT INTO shop_orders VALUES ({param(shop)}, {param(shop)})", ("cart_5", first)
        )
        view.commit()
        conn.close()
        assert sessions.get(second.id).status is S.PENDING
        assert orders(shop) == [("cart_5", first)]

    def test_the_callers_savepoints_nest_with_the_views_writes(self, shop: StoreFactory) -> None:
        """Savepoints of the caller's own around the view's moves: one rolled back takes
        the moves made since, one released keeps them; a move refused inside leaves the
        moves before it; the view's later moves and the commit go on."""
        sessions = PaymentSessions(shop())
        first = initiated(sessions, "cart_n1")
        second = initiated(sessions, "cart_n2")
        third = initiated(sessions, "cart_n3")
        fourth = sessions.create(cart_id="cart_n3", provider_id="paypal", amount=1500)
        sessions.fire(fourth.id, "initiate", data={"id": "PAYID-n3"})
        conn = connect(shop)
        view = sessions.within(conn)
        view.fire(first, "require_more")
        conn.execute("SAVEPOINT mine")
        view.fire(second, "authorize")
        conn.execute("ROLLBACK TO mine")
        conn.execute("SAVEPOINT theirs")
        view.fire(third, "authorize")
        conn.execute("RELEASE theirs")
        with pytest.raises(AuthorizationConflict):
            view.fire(fourth.id, "authorize")  # the cart's third is authorized, here
        view.fire(first, "retry")
        view.fire(second, "require_more")
        view.commit()
        conn.close()
        assert [r.trigger for r in sessions.history(first)][-2:] == ["require_more", "retry"]
        assert [r.trigger for r in sessions.history(second)][-1] == "require_more"
        assert sessions.get(third).status is S.AUTHORIZED
        assert sessions.get(fourth.id).status is S.PENDING
        for session_id in (first, second, third, fourth.id):
            assert sessions.verify(session_id).ok

    def test_a_connection_to_another_database_is_refused(
        self, shop: StoreFactory, tmp_path: Path, request: pytest.FixtureRequest
    ) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_6")
        if shop.kind == "sqlite":
            other: Any = sqlite3.connect(tmp_path / "another.db")
        else:
            import psycopg

            server = request.getfixturevalue("postgres_server")
            other = psycopg.connect(server.new_database())
        with pytest.raises(StoreError) as refused:
            sessions.within(other)
        assert "another database" in str(refused.value)
        other.close()
        assert sessions.version(session_id) == 2

    def test_killed_before_the_commit_leaves_neither(self, shop: StoreFactory) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_7")
        before = sessions.history(session_id)
        script = textwrap.dedent(
            f"""
            import sqlite3, sys, time
            from paysession import PaymentSessions
            from paysession.store import SqliteStore
            kind, place = {shop.kind!r}, {shop.place!r}
            if kind == "sqlite":
                store = SqliteStore(place)
                conn = sqlite3.connect(place)
                mark = "?"
            else:
                import psycopg
                from paysession.store.postgres import PostgresStore
                store = PostgresStore(place)
                conn = psycopg.connect(place)
                mark = "%s"
            view = PaymentSessions(store).within(conn)
            view.fire({session_id!r}, "authorize", actor="checkout")
            insert = f"INSERT INTO shop_orders VALUES ({{mark}}, {{mark}})"
            conn.execute(insert, ("cart_7", {session_id!r}))
            print("moved", flush=True)
            time.sleep(120)
            """
        )
        kill_once_moved(["-c", script])
        assert sessions.history(session_id) == before
        assert orders(shop) == []
        assert sessions.verify(session_id).ok
        # The killed transaction held nothing back: the move is made now.
        assert sessions.fire(session_id, "authorize").seq == before[-1].seq + 1


class TestWithinRefusals:
    def test_a_memory_store_has_nothing_to_join(self) -> None:
        sessions = PaymentSessions(MemoryStore())
        with pytest.raises(InvalidSessionData) as refused:
            sessions.within(sqlite3.connect(":memory:"))
        assert "connection" in refused.value.problems

    def test_not_a_connection(self, tmp_path: Path) -> None:
        from paysession.store import SqliteStore

        sessions = PaymentSessions(SqliteStore(tmp_path / "s.db"))
        with pytest.raises(InvalidSessionData) as refused:
            sessions.within(object())
        assert "connection" in refused.value.problems

    def test_commit_and_rollback_belong_to_a_view(self) -> None:
        sessions = PaymentSessions(MemoryStore())
        with pytest.raises(InvalidSessionData):
            sessions.commit()
        with pytest.raises(InvalidSessionData):
            sessions.rollback()


class TestPostgresIsolation:
    """Which isolation levels of the caller's transaction are supported, and how."""

    store_kinds = ("postgres",)

    @pytest.mark.parametrize("level", ["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"])
    def test_each_level_commits_the_order_and_the_move(
        self, shop: StoreFactory, level: str
    ) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_iso")
        conn = connect(shop)
        conn.execute(f"SET TRANSACTION ISOLATION LEVEL {level}")
        view = sessions.within(conn)
        view.fire(session_id, "authorize", idempotency_key="iso")
        conn.execute("INSERT INTO shop_orders VALUES (%s, %s)", ("cart_iso", session_id))
        view.commit()
        conn.close()
        assert sessions.get(session_id).status is S.AUTHORIZED
        assert orders(shop) == [("cart_iso", session_id)]

    @pytest.mark.parametrize("level", ["REPEATABLE READ", "SERIALIZABLE"])
    def test_a_snapshot_level_loses_its_race_at_once(self, shop: StoreFactory, level: str) -> None:
        """The view read the session in its snapshot; another writer moved it since: the
        move raises ConcurrentUpdate (not a driver error), and the same move in a new
        transaction goes through."""
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_snap")
        conn = connect(shop)
        conn.execute(f"SET TRANSACTION ISOLATION LEVEL {level}")
        view = sessions.within(conn)
        assert view.get(session_id).status is S.PENDING  # the snapshot is taken here
        winner = sessions.fire(session_id, "require_more", actor="webhook")
        with pytest.raises(ConcurrentUpdate):
            view.fire(session_id, "authorize")
        view.rollback()
        assert sessions.history(session_id)[-1] == winner
        again = sessions.within(conn)
        again.fire(session_id, "authorize")
        again.commit()
        conn.close()
        assert sessions.get(session_id).status is S.AUTHORIZED

    def test_the_callers_commit_stays_durable(self, shop: StoreFactory) -> None:
        """Nothing the view sends changes how the caller's transaction commits: its
        synchronous_commit stays on, whatever the store would announce to followers of
        its own commits (a notice sent with synchronous_commit off)."""
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_durable")
        conn = connect(shop)
        conn.execute("SET synchronous_commit = on")  # the tests' server runs without
        view = sessions.within(conn)
        for trigger in ("require_more", "retry", "authorize"):
            time.sleep(ANNOUNCE_EVERY)  # the store would announce this move
            view.fire(session_id, trigger)
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        view.commit()
        conn.close()
        assert sessions.get(session_id).status is S.AUTHORIZED
        # The store's own moves are still announced, outside any caller's transaction.
        with sessions.store.wakeups() as wakeup:
            time.sleep(ANNOUNCE_EVERY)
            sessions.fire(session_id, "cancel")
            assert wakeup.wait(5.0)

    def test_followers_are_woken_once_the_callers_commit_happened(self, shop: StoreFactory) -> None:
        """A view's moves are announced to the store's followers after the caller's
        commit, never before it and never after a rollback."""
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_announced")
        with sessions.store.wakeups() as wakeup:
            conn = connect(shop)
            view = sessions.within(conn)
            time.sleep(ANNOUNCE_EVERY)  # the store would announce a move now
            view.fire(session_id, "require_more")
            assert not wakeup.wait(0.5)  # still the caller's, uncommitted
            view.rollback()
            assert not wakeup.wait(0.5)  # rolled back: nothing to follow
            view = sessions.within(conn)
            view.fire(session_id, "authorize")
            assert not wakeup.wait(0.5)
            view.commit()
            assert wakeup.wait(5.0)
            conn.close()
        assert sessions.get(session_id).status is S.AUTHORIZED

    def test_read_committed_retries_inside_the_transaction(self, shop: StoreFactory) -> None:
        """At read committed each statement sees the latest commit: a retried move
        (fire_with_retry) reloads and goes through inside the same transaction."""
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_rc")
        conn = connect(shop)
        view = sessions.within(conn)
        assert view.get(session_id).status is S.PENDING
        sessions.fire(session_id, "require_more", actor="webhook")
        record = view.fire_with_retry(session_id, "authorize")
        assert record.source is S.REQUIRES_MORE
        view.commit()
        conn.close()
        assert sessions.get(session_id).status is S.AUTHORIZED
