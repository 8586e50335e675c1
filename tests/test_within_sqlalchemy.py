"""``PaymentSessions.within`` on a SQLAlchemy 2 ``Connection`` and ``Session``.

The shop's order and paysession's move, written in one SQLAlchemy transaction on the
pysqlite and psycopg dialects, commit together or not at all; the moves' after-hooks
run through SQLAlchemy's events once the commit has happened, never after a rollback,
nor for a savepoint rolled back; a move that loses its race raises when it is made; a
process killed before its commit leaves nothing.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from paysession import (
    ConcurrentUpdate,
    HookError,
    InvalidSessionData,
    PaymentSessions,
    PaymentSessionStatus,
    StoreError,
)
from paysession.contrib.sqlalchemy import joined

from .conftest import StoreFactory
from .helpers import kill_once_moved, run_without
from .test_within import AfterHooks, initiated, orders
from .test_within import shop as shop  # the fixture: the store's database and the shop's orders
from .test_within import store_fill as store_fill  # the fixture: their orders table made once

S = PaymentSessionStatus
INSERT_ORDER = sa.text("INSERT INTO shop_orders VALUES (:cart_id, :session_id)")


def engine_for(factory: StoreFactory, *, sqlite_begins: bool = False) -> sa.Engine:
    """An engine on the store's database: pysqlite on its file, psycopg on its DSN.

    ``sqlite_begins``: SQLAlchemy's recipe for pysqlite's savepoints, in which SQLAlchemy
    (not the driver, lazily) begins each transaction, here BEGIN IMMEDIATE. Without it a
    SAVEPOINT on a connection the driver has not begun a transaction on starts one, and
    its release commits it.
    """
    if factory.kind == "sqlite":
        made = sa.create_engine(f"sqlite+pysqlite:///{factory.place}")
        if sqlite_begins:

            @sa.event.listens_for(made, "connect")
            def leave_it_to_sqlalchemy(dbapi_connection: Any, record: Any) -> None:
                dbapi_connection.isolation_level = None

            @sa.event.listens_for(made, "begin")
            def begin(connection: sa.Connection) -> None:
                connection.exec_driver_sql("BEGIN IMMEDIATE")

        return made
    import psycopg

    place = factory.place
    return sa.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(place))


@pytest.fixture
def engine(shop: StoreFactory) -> Iterator[sa.Engine]:
    made = engine_for(shop)
    yield made
    made.dispose()


Holder = Any  # a sqlalchemy Connection or Session
"""What the tests hand to within(): both offer execute, commit and rollback."""


@contextmanager
def as_connection(engine: sa.Engine) -> Iterator[Holder]:
    with engine.connect() as connection:
        yield connection


@contextmanager
def as_session(engine: sa.Engine) -> Iterator[Holder]:
    with Session(engine) as session:
        yield session


HOLDERS: dict[str, Callable[[sa.Engine], AbstractContextManager[Holder]]] = {
    "connection": as_connection,
    "session": as_session,
}


@pytest.fixture(params=sorted(HOLDERS))
def holder(request: pytest.FixtureRequest) -> Callable[[sa.Engine], AbstractContextManager[Any]]:
    """A SQLAlchemy Connection, then a Session, each opened on an engine."""
    return HOLDERS[request.param]


class TestWithinSqlAlchemy:
    store_kinds = ("sqlite", "postgres")

    def test_commit_keeps_the_order_and_the_move(
        self, shop: StoreFactory, engine: sa.Engine, holder: Any
    ) -> None:
        after = AfterHooks()
        sessions = PaymentSessions(shop(), hooks=after.hooks)
        session_id = initiated(sessions, "cart_1")
        after.seen.clear()
        with holder(engine) as held:
            view = sessions.within(held)
            view.fire(session_id, "authorize", actor="checkout", idempotency_key="auth-1")
            held.execute(INSERT_ORDER, {"cart_id": "cart_1", "session_id": session_id})
            assert view.get(session_id).status is S.AUTHORIZED
            assert sessions.get(session_id).status is S.PENDING
            assert after.seen == [] and orders(shop) == []
            held.commit()  # SQLAlchemy's own commit runs the hooks
            assert after.seen == ["authorize"]
        assert sessions.get(session_id).status is S.AUTHORIZED
        assert orders(shop) == [("cart_1", session_id)]
        assert sessions.verify(session_id).ok

    def test_the_views_commit_is_sqlalchemys(
        self, shop: StoreFactory, engine: sa.Engine, holder: Any
    ) -> None:
        after = AfterHooks()
        sessions = PaymentSessions(shop(), hooks=after.hooks)
        session_id = initiated(sessions, "cart_1b")
        after.seen.clear()
        with holder(engine) as held:
            view = sessions.within(held)
            view.fire(session_id, "authorize")
            held.execute(INSERT_ORDER, {"cart_id": "cart_1b", "session_id": session_id})
            view.commit()
            assert after.seen == ["authorize"]
            assert not held.in_transaction()
        assert orders(shop) == [("cart_1b", session_id)]
        assert sessions.get(session_id).status is S.AUTHORIZED

    def test_rollback_leaves_nothing_and_no_hook_runs(
        self, shop: StoreFactory, engine: sa.Engine, holder: Any
    ) -> None:
        after = AfterHooks()
        sessions = PaymentSessions(shop(), hooks=after.hooks)
        session_id = initiated(sessions, "cart_2")
        after.seen.clear()
        before = sessions.history(session_id)
        with holder(engine) as held:
            view = sessions.within(held)
            view.fire(session_id, "authorize", idempotency_key="auth-2")
            view.reconcile(session_id, "requires_capture", event_id="evt_2")
            held.execute(INSERT_ORDER, {"cart_id": "cart_2", "session_id": session_id})
            held.rollback()
            # The next transaction commits, with no move of its own: nothing runs.
            held.execute(sa.text("SELECT 1"))
            held.commit()
        assert after.seen == []
        assert sessions.history(session_id) == before
        assert sessions.provider_events(session_id=session_id) == []
        assert orders(shop) == []
        record = sessions.fire(session_id, "authorize", idempotency_key="auth-2")
        assert record.seq == before[-1].seq + 1 and after.seen == ["authorize"]

    def test_closed_without_a_commit_leaves_nothing(
        self, shop: StoreFactory, engine: sa.Engine, holder: Any
    ) -> None:
        after = AfterHooks()
        sessions = PaymentSessions(shop(), hooks=after.hooks)
        session_id = initiated(sessions, "cart_2b")
        after.seen.clear()
        with holder(engine) as held:
            sessions.within(held).fire(session_id, "authorize")
        assert after.seen == []
        assert sessions.get(session_id).status is S.PENDING

    def test_a_lost_race_raises_when_the_move_is_made(
        self, shop: StoreFactory, engine: sa.Engine, holder: Any
    ) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_4")
        seen = sessions.version(session_id)
        winner = sessions.fire(session_id, "require_more", actor="webhook")
        with holder(engine) as held:
            view = sessions.within(held)
            held.execute(INSERT_ORDER, {"cart_id": "cart_4", "session_id": session_id})
            with pytest.raises(ConcurrentUpdate):
                view.fire(session_id, "authorize", expected_version=seen)
            held.rollback()
        assert sessions.history(session_id)[-1] == winner
        assert orders(shop) == []

    def test_a_savepoint_rolled_back_takes_its_move_and_its_hook(
        self, shop: StoreFactory, engine: sa.Engine, holder: Any
    ) -> None:
        """A move kept in a released savepoint commits and gets its hook; one made in a
        savepoint rolled back is gone, and its hook never runs."""
        after = AfterHooks()
        sessions = PaymentSessions(shop(), hooks=after.hooks)
        session_id = initiated(sessions, "cart_sp")
        after.seen.clear()
        with holder(engine) as held:
            view = sessions.within(held)
            with held.begin_nested():
                view.fire(session_id, "require_more")
            nested = held.begin_nested()
            view.fire(session_id, "update", amount=1600)
            with held.begin_nested():  # released, then rolled back with its outer one
                view.fire(session_id, "authorize")
            nested.rollback()
            assert view.get(session_id).status is S.REQUIRES_MORE
            held.execute(INSERT_ORDER, {"cart_id": "cart_sp", "session_id": session_id})
            held.commit()
        assert after.seen == ["require_more"]
        assert [r.trigger for r in sessions.history(session_id)][-1] == "require_more"
        assert orders(shop) == [("cart_sp", session_id)]

    def test_a_released_savepoint_goes_with_its_transaction(
        self, shop: StoreFactory, engine: sa.Engine, holder: Any
    ) -> None:
        """A savepoint's release commits nothing: when the transaction is then rolled
        back, the move made in the savepoint is gone and its hook never runs."""
        after = AfterHooks()
        sessions = PaymentSessions(shop(), hooks=after.hooks)
        session_id = initiated(sessions, "cart_sp2")
        after.seen.clear()
        with holder(engine) as held:
            view = sessions.within(held)
            with held.begin_nested():
                view.fire(session_id, "authorize")
            assert after.seen == []
            held.rollback()
            held.execute(sa.text("SELECT 1"))
            held.commit()
        assert after.seen == []
        assert sessions.get(session_id).status is S.PENDING

    def test_a_failing_hook_is_raised_after_the_commit(
        self, shop: StoreFactory, engine: sa.Engine, holder: Any
    ) -> None:
        """The commit stands, the error names the hook's failure, and the connection or
        session goes on being used once rolled back (a no-op on the database)."""
        after = AfterHooks()
        sessions = PaymentSessions(shop(), hooks=after.hooks)
        session_id = initiated(sessions, "cart_hook")
        after.seen.clear()

        @after.hooks.after()
        def fails(event: object) -> None:
            raise RuntimeError("mail server down")

        with holder(engine) as held:
            sessions.within(held).fire(session_id, "authorize")
            held.execute(INSERT_ORDER, {"cart_id": "cart_hook", "session_id": session_id})
            with pytest.raises(HookError) as failed:
                held.commit()
            held.rollback()
            assert held.execute(sa.text("SELECT count(*) FROM shop_orders")).scalar() == 1
        assert isinstance(failed.value.error, RuntimeError)
        assert after.seen == ["authorize"]
        assert sessions.get(session_id).status is S.AUTHORIZED
        assert orders(shop) == [("cart_hook", session_id)]

    def test_a_connection_to_another_database_is_refused(
        self, shop: StoreFactory, holder: Any, tmp_path: Path, request: pytest.FixtureRequest
    ) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_6")
        if shop.kind == "sqlite":
            other = sa.create_engine(f"sqlite+pysqlite:///{tmp_path / 'another.db'}")
        else:
            import psycopg

            dsn = request.getfixturevalue("postgres_server").new_database()
            other = sa.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(dsn))
        with holder(other) as held, pytest.raises(StoreError) as refused:
            sessions.within(held)
        other.dispose()
        assert "another database" in str(refused.value)
        assert sessions.version(session_id) == 2

    def test_killed_before_the_commit_leaves_neither(
        self, shop: StoreFactory, holder: Any, request: pytest.FixtureRequest
    ) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_7")
        before = sessions.history(session_id)
        kind = "connection" if holder is as_connection else "session"
        script = textwrap.dedent(
            f"""
            import time
            import sqlalchemy as sa
            from sqlalchemy.orm import Session
            from paysession import PaymentSessions
            kind, place = {shop.kind!r}, {shop.place!r}
            if kind == "sqlite":
                from paysession.store import SqliteStore
                store = SqliteStore(place)
                engine = sa.create_engine(f"sqlite+pysqlite:///{{place}}")
            else:
                import psycopg
                from paysession.store.postgres import PostgresStore
                store = PostgresStore(place)
                engine = sa.create_engine(
                    "postgresql+psycopg://", creator=lambda: psycopg.connect(place)
                )
            held = engine.connect() if {kind!r} == "connection" else Session(engine)
            view = PaymentSessions(store).within(held)
            view.fire({session_id!r}, "authorize", actor="checkout")
            held.execute(
                sa.text("INSERT INTO shop_orders VALUES (:c, :s)"),
                {{"c": "cart_7", "s": {session_id!r}}},
            )
            print("moved", flush=True)
            time.sleep(120)
            """
        )
        kill_once_moved(["-c", script])
        assert sessions.history(session_id) == before
        assert orders(shop) == []
        assert sessions.fire(session_id, "authorize").seq == before[-1].seq + 1


class TestPostgresIsolation:
    """The engine's isolation level (``execution_options(isolation_level=...)``) is the
    transaction's: the levels and rules of a psycopg connection hold."""

    store_kinds = ("postgres",)

    @pytest.mark.parametrize("level", ["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"])
    def test_each_level_commits_the_order_and_the_move(
        self, shop: StoreFactory, engine: sa.Engine, holder: Any, level: str
    ) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_iso")
        with holder(engine.execution_options(isolation_level=level)) as held:
            view = sessions.within(held)
            shown = held.execute(sa.text("SHOW transaction_isolation")).scalar()
            view.fire(session_id, "authorize", idempotency_key="iso")
            held.execute(INSERT_ORDER, {"cart_id": "cart_iso", "session_id": session_id})
            held.commit()
        assert shown == level.lower()
        assert sessions.get(session_id).status is S.AUTHORIZED
        assert orders(shop) == [("cart_iso", session_id)]

    @pytest.mark.parametrize("level", ["REPEATABLE READ", "SERIALIZABLE"])
    def test_a_snapshot_level_loses_its_race_at_once(
        self, shop: StoreFactory, engine: sa.Engine, holder: Any, level: str
    ) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_snap")
        with holder(engine.execution_options(isolation_level=level)) as held:
            view = sessions.within(held)
            assert view.get(session_id).status is S.PENDING  # the snapshot is taken here
            winner = sessions.fire(session_id, "require_more", actor="webhook")
            with pytest.raises(ConcurrentUpdate):
                view.fire(session_id, "authorize")
            held.rollback()
        assert sessions.history(session_id)[-1] == winner


class TestSessionInAnOuterTransaction:
    """A Session joined to a transaction its Connection began (``join_transaction_mode``,
    as test suites do) commits nothing of its own: the hooks wait for the outer commit."""

    store_kinds = ("sqlite", "postgres")

    @pytest.mark.parametrize("outer", ["commit", "rollback"])
    def test_the_hooks_wait_for_the_outer_transaction(self, shop: StoreFactory, outer: str) -> None:
        engine = engine_for(shop, sqlite_begins=True)
        after = AfterHooks()
        sessions = PaymentSessions(shop(), hooks=after.hooks)
        session_id = initiated(sessions, "cart_outer")
        after.seen.clear()
        with engine.connect() as connection:
            transaction = connection.begin()
            session = Session(bind=connection, join_transaction_mode="create_savepoint")
            sessions.within(session).fire(session_id, "authorize")
            session.commit()  # releases the session's savepoint only
            assert after.seen == []
            assert sessions.get(session_id).status is S.PENDING
            getattr(transaction, outer)()
            session.close()
        engine.dispose()
        assert after.seen == (["authorize"] if outer == "commit" else [])
        expected = S.AUTHORIZED if outer == "commit" else S.PENDING
        assert sessions.get(session_id).status is expected


class TestAFailedCommit:
    """A commit the database refuses (a deferred constraint, checked at COMMIT) is
    SQLAlchemy's own IntegrityError, and no hook runs."""

    store_kinds = ("postgres",)

    def test_no_hook_runs_and_nothing_is_kept(
        self, shop: StoreFactory, engine: sa.Engine, holder: Any
    ) -> None:
        with engine.begin() as setup:
            setup.execute(
                sa.text(
                    "ALTER TABLE shop_orders ADD CONSTRAINT one_order_per_payment "
                    "UNIQUE (session_id) DEFERRABLE INITIALLY DEFERRED"
                )
            )
        after = AfterHooks()
        sessions = PaymentSessions(shop(), hooks=after.hooks)
        session_id = initiated(sessions, "cart_def")
        after.seen.clear()
        with holder(engine) as held:
            sessions.within(held).fire(session_id, "authorize")
            for cart in ("cart_def", "cart_def_again"):
                held.execute(INSERT_ORDER, {"cart_id": cart, "session_id": session_id})
            with pytest.raises(sa_exc.IntegrityError) as refused:
                held.commit()
            held.rollback()
        assert "one_order_per_payment" in str(refused.value)
        assert after.seen == []
        assert sessions.get(session_id).status is S.PENDING
        assert orders(shop) == []


class TestAFailedTransaction:
    """A statement that fails aborts a PostgreSQL transaction, whose COMMIT then rolls
    it back without an error: the moves are gone, and their hooks never run."""

    store_kinds = ("postgres",)

    def test_its_commit_runs_no_hook(
        self, shop: StoreFactory, engine: sa.Engine, holder: Any
    ) -> None:
        after = AfterHooks()
        sessions = PaymentSessions(shop(), hooks=after.hooks)
        session_id = initiated(sessions, "cart_ab")
        after.seen.clear()
        with holder(engine) as held:
            sessions.within(held).fire(session_id, "authorize")
            held.execute(INSERT_ORDER, {"cart_id": "cart_ab", "session_id": session_id})
            with pytest.raises(sa_exc.IntegrityError):
                held.execute(INSERT_ORDER, {"cart_id": "cart_ab", "session_id": session_id})
            held.commit()  # PostgreSQL answers COMMIT with a rollback
            held.execute(sa.text("SELECT 1"))
            held.commit()
        assert after.seen == []
        assert sessions.get(session_id).status is S.PENDING
        assert orders(shop) == []


class TestRefusals:
    def test_not_a_connection_of_sqlalchemy(self) -> None:
        with pytest.raises(InvalidSessionData) as refused:
            joined(object())
        assert "Connection or Session" in refused.value.problems["connection"]

    def test_a_session_with_no_bind(self, tmp_path: Path) -> None:
        from paysession.store import SqliteStore

        sessions = PaymentSessions(SqliteStore(tmp_path / "s.db"))
        with pytest.raises(InvalidSessionData) as refused:
            sessions.within(Session())
        assert "connection" in refused.value.problems

    def test_a_closed_connection(self, tmp_path: Path) -> None:
        from paysession.store import SqliteStore

        sessions = PaymentSessions(SqliteStore(tmp_path / "s.db"))
        engine = sa.create_engine(f"sqlite+pysqlite:///{tmp_path / 's.db'}")
        connection = engine.connect()
        connection.close()
        with pytest.raises(InvalidSessionData) as refused:
            sessions.within(connection)
        assert "closed" in refused.value.problems["connection"]

    def test_a_missing_extra_is_named(self) -> None:
        done = run_without(
            "sqlalchemy",
            "from paysession.errors import MissingExtra\n"
            "try:\n"
            "    import paysession.contrib.sqlalchemy\n"
            "except MissingExtra as missing:\n"
            "    print(missing)\n",
        )
        assert (done.returncode, done.stderr) == (0, "")
        assert done.stdout.strip() == (
            "paysession.contrib.sqlalchemy needs the sqlalchemy extra: "
            "pip install 'paysession[sqlalchemy]'"
        )
