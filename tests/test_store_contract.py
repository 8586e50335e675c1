"""The contract every SessionStore keeps, run on MemoryStore, SqliteStore and PostgresStore.

The first classes drive a store directly with writes planned by the machine; the later
ones drive PaymentSessions over each store, for the promises that need both (one
transaction per move, hooks only after the commit, persisted idempotency keys).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import attrs
import psycopg
import pytest

from paysession import (
    ConcurrentUpdate,
    GuardRejected,
    HookError,
    Hooks,
    IdempotencyConflict,
    IllegalTransition,
    InvalidSessionData,
    PaymentSession,
    PaymentSessions,
    PaymentSessionStatus,
    SessionNotFound,
    TransitionEvent,
)
from paysession.audit import replay
from paysession.errors import DuplicateSession, SelectionConflict, StoreError
from paysession.lifecycle import MOVES
from paysession.planning import check_params, create_record, plan
from paysession.store import Binding, LoggedRecord, SessionStore, Snapshot, Write

from .conftest import StoreFactory
from .helpers import StepClock

S = PaymentSessionStatus
CLOCK = StepClock()


def new_session(cart_id: str | None = "cart_1", provider_id: str = "stripe") -> PaymentSession:
    """A pending session, created one millisecond after the previous one."""
    return PaymentSession.new(cart_id=cart_id, provider_id=provider_id, amount=1000, clock=CLOCK)


def created(
    store: SessionStore, cart_id: str | None = "cart_1", provider: str = "stripe"
) -> Snapshot:
    """A new session stored with its record 0; its snapshot."""
    session = new_session(cart_id, provider)
    store.create(session, create_record(session))
    snapshot = store.load(session.id)
    assert snapshot is not None
    return snapshot


def move(snapshot: Snapshot, trigger: str, *, key: str | None = None, **params: object) -> Write:
    """The write of ``trigger`` planned from ``snapshot``."""
    planned = plan(
        snapshot.session,
        MOVES[trigger],
        check_params(MOVES[trigger], params),
        seq=snapshot.version + 1,
        prev_hash=snapshot.head,
        now=snapshot.session.updated_at,
        hooks=None,
        actor="test",
        reason=None,
        idempotency_key=key,
        key=None,
    )
    return Write(planned.session, snapshot.version, (planned.record,))


def committed(store: SessionStore, snapshot: Snapshot, trigger: str, **params: object) -> Snapshot:
    store.commit([move(snapshot, trigger, **params)])
    again = store.load(snapshot.session.id)
    assert again is not None
    return again


def log(store: SessionStore) -> list[LoggedRecord]:
    return store.records_since(0, 10_000)


class TestCreate:
    def test_create_then_load(self, store: SessionStore) -> None:
        """A created session loads back equal, at version 0, chained to its record 0."""
        session = new_session()
        record = create_record(session)
        store.create(session, record)
        assert store.load(session.id) == Snapshot(session, 0, record.hash, None)
        assert store.history(session.id) == [record]
        assert store.record(session.id, 0) == record

    def test_data_and_cart_round_trip(self, store: SessionStore) -> None:
        """data and cart come back equal, nested values and key order included."""
        session = PaymentSession.new(
            cart_id="cart_1",
            provider_id="stripe",
            amount=0,
            data={"z": 1, "a": [1.5, None, True, {"é": "ü"}], "n": -0.25},
            clock=StepClock(),
        )
        store.create(session, create_record(session))
        loaded = store.load(session.id)
        assert loaded is not None
        assert loaded.session == session
        assert list(loaded.session.data) == ["z", "a", "n"]

    def test_duplicate_id_refused(self, store: SessionStore) -> None:
        """A second session with the same id is refused and leaves nothing behind."""
        first = created(store)
        twin = PaymentSession.new(cart_id="cart_2", provider_id="paypal", amount=5)
        twin = attrs.evolve(twin, id=first.session.id)
        with pytest.raises(DuplicateSession) as refused:
            store.create(twin, create_record(twin))
        assert vars(refused.value) == {
            "session_id": first.session.id,
            "cart_id": "cart_2",
            "provider_id": "paypal",
            "fields": ("id",),
        }
        assert store.load(first.session.id) == first
        assert len(log(store)) == 1

    def test_duplicate_cart_and_provider_refused(self, store: SessionStore) -> None:
        """One session per (cart, provider): a second is refused with DuplicateSession."""
        first = created(store)
        second = new_session("cart_1", "stripe")
        with pytest.raises(DuplicateSession) as refused:
            store.create(second, create_record(second))
        assert vars(refused.value) == {
            "session_id": second.id,
            "cart_id": "cart_1",
            "provider_id": "stripe",
            "fields": ("cart_id", "provider_id"),
        }
        assert store.load(second.id) is None
        assert [entry.record.session_id for entry in log(store)] == [first.session.id]

    def test_sessions_outside_a_cart_never_collide(self, store: SessionStore) -> None:
        """Sessions without a cart may share a provider."""
        one, two = created(store, None), created(store, None)
        assert store.find(cart_id=None) == sorted(
            [one.session, two.session], key=lambda s: (s.created_at, s.id)
        )

    def test_unknown_session(self, store: SessionStore) -> None:
        """An unknown id loads as None, with an empty trail and no record."""
        assert store.load("ps_missing") is None
        assert store.history("ps_missing") == []
        assert store.record("ps_missing", 0) is None


class TestCommit:
    def test_commit_writes_row_record_and_key(self, store: SessionStore) -> None:
        """A commit moves the row to the new version and appends the record and the key."""
        start = created(store)
        write = move(start, "update", key="k1", amount=2000)
        binding = Binding(start.session.id, "k1", "print", 1)
        store.commit([write], binding)
        assert store.load(start.session.id, "k1") == Snapshot(
            write.session, 1, write.records[0].hash, binding
        )
        assert store.history(start.session.id)[1:] == list(write.records)

    def test_load_without_the_key_has_no_binding(self, store: SessionStore) -> None:
        """A binding is reported only to a load that asks about that key."""
        start = created(store)
        store.commit([move(start, "fail", key="k1")], Binding(start.session.id, "k1", "p", 1))
        for key in (None, "other"):
            loaded = store.load(start.session.id, key)
            assert loaded is not None and loaded.binding is None

    def test_stale_version_refused_and_nothing_written(self, store: SessionStore) -> None:
        """A write planned from an old version raises ConcurrentUpdate and writes nothing."""
        start = created(store)
        now = committed(store, start, "require_more")
        stale = move(start, "fail", key="k1")
        with pytest.raises(ConcurrentUpdate) as refused:
            store.commit([stale], Binding(start.session.id, "k1", "p", 1))
        assert type(refused.value) is ConcurrentUpdate
        assert vars(refused.value) == {
            "session_id": start.session.id,
            "expected": 0,
            "actual": 1,
        }
        assert store.load(start.session.id, "k1") == now
        assert len(store.history(start.session.id)) == 2
        assert len(log(store)) == 2

    def test_two_writers_from_one_version(self, store_factory: StoreFactory) -> None:
        """Of two writes planned from the same version, the second is refused whole."""
        first_store, second_store = store_factory(), store_factory()
        start = created(first_store)
        authorize = move(committed(first_store, start, "initiate", data={"id": "pi"}), "fail")
        loaded = second_store.load(start.session.id)
        assert loaded is not None
        cancel = move(loaded, "cancel")
        first_store.commit([authorize])
        with pytest.raises(ConcurrentUpdate):
            second_store.commit([cancel])
        assert [r.trigger for r in second_store.history(start.session.id)] == [
            "create",
            "initiate",
            "fail",
        ]

    def test_taken_key_refused(self, store: SessionStore) -> None:
        """A key already bound on the session cannot be bound again; nothing is written."""
        start = created(store)
        first = committed(store, start, "require_more")
        store.commit([move(first, "retry", key="k1")], Binding(start.session.id, "k1", "p", 2))
        now = store.load(start.session.id)
        assert now is not None
        with pytest.raises(ConcurrentUpdate):
            store.commit([move(now, "fail", key="k1")], Binding(start.session.id, "k1", "p", 3))
        assert store.load(start.session.id) == now
        assert len(log(store)) == 3

    def test_same_key_on_another_session_is_free(self, store: SessionStore) -> None:
        """Keys are per session: the same key may bind a move of another session."""
        one, two = created(store, "cart_1"), created(store, "cart_2")
        store.commit([move(one, "fail", key="k")], Binding(one.session.id, "k", "p", 1))
        store.commit([move(two, "fail", key="k")], Binding(two.session.id, "k", "p", 1))
        assert [r.trigger for r in store.history(two.session.id)] == ["create", "fail"]

    def test_unknown_session_refused(self, store: SessionStore) -> None:
        """A write for a session that is not stored raises SessionNotFound."""
        ghost = new_session()
        snapshot = Snapshot(ghost, 0, create_record(ghost).hash)
        with pytest.raises(SessionNotFound) as refused:
            store.commit([move(snapshot, "fail")])
        assert vars(refused.value) == {"session_id": ghost.id}
        assert log(store) == []

    def test_two_selected_sessions_per_cart_refused(self, store: SessionStore) -> None:
        """Selecting a second session of a cart without deselecting the first is refused."""
        one, two = created(store, "cart_1", "stripe"), created(store, "cart_1", "paypal")
        committed(store, one, "select")
        with pytest.raises(SelectionConflict) as refused:
            store.commit([move(two, "select")])
        assert vars(refused.value) == {
            "session_id": two.session.id,
            "cart_id": "cart_1",
            "expected": None,
            "actual": None,
        }
        assert store.load(two.session.id) == two
        assert store.load_selected("cart_1") == [store.load(one.session.id)]

    def test_switching_the_selection_in_one_commit(self, store: SessionStore) -> None:
        """Deselect one and select another in one commit: the cart has one selected."""
        one, two = created(store, "cart_1", "stripe"), created(store, "cart_1", "paypal")
        one = committed(store, one, "select")
        store.commit([move(one, "deselect"), move(two, "select")])
        selected = store.load_selected("cart_1")
        assert [snapshot.session.id for snapshot in selected] == [two.session.id]
        assert [entry.record.trigger for entry in log(store)][-2:] == ["deselect", "select"]

    def test_a_commit_is_all_or_nothing(self, store: SessionStore) -> None:
        """When one write of a commit is refused, the others are not applied either."""
        one, two = created(store, "cart_1", "stripe"), created(store, "cart_1", "paypal")
        one = committed(store, one, "select")
        stale_two = two
        committed(store, two, "require_more")
        with pytest.raises(ConcurrentUpdate):
            store.commit([move(one, "deselect"), move(stale_two, "select")])
        assert store.load(one.session.id) == one
        assert len(log(store)) == 4

    def test_malformed_commit_refused(self, store: SessionStore) -> None:
        """Records that do not continue the trail, or a key naming no record, are refused."""
        start = created(store)
        write = move(start, "fail")
        gap = Write(write.session, 1, write.records)
        with pytest.raises(InvalidSessionData) as refused:
            store.commit([gap])
        assert refused.value.fields == ("writes[0].records",)
        with pytest.raises(InvalidSessionData) as refused:
            store.commit([write], Binding(start.session.id, "k", "p", 7))
        assert refused.value.fields == ("binding",)
        assert store.load(start.session.id) == start


class TestRecordsSince:
    def test_positions_follow_commit_order(self, store: SessionStore) -> None:
        """Every record gets the next position at commit, across sessions, from 1."""
        one = created(store, "cart_1")
        two = created(store, "cart_2")
        committed(store, two, "fail")
        committed(store, one, "cancel")
        entries = log(store)
        assert [(e.position, e.record.session_id, e.record.trigger) for e in entries] == [
            (1, one.session.id, "create"),
            (2, two.session.id, "create"),
            (3, two.session.id, "fail"),
            (4, one.session.id, "cancel"),
        ]

    def test_a_cursor_reads_in_pages(self, store: SessionStore) -> None:
        """Reading from the last position seen, page by page, yields each record once."""
        for n in range(5):
            created(store, f"cart_{n}")
        pages, cursor = [], 0
        while page := store.records_since(cursor, 2):
            pages.append([entry.position for entry in page])
            cursor = page[-1].position
        assert pages == [[1, 2], [3, 4], [5]]
        assert store.records_since(5, 10) == []


class TestFind:
    def test_find_by_cart_and_status(self, store: SessionStore) -> None:
        """find filters by cart, by status or both, oldest first."""
        a = created(store, "cart_1", "stripe").session
        b = committed(store, created(store, "cart_1", "paypal"), "fail").session
        c = created(store, "cart_2", "stripe").session
        assert store.find(cart_id="cart_1") == [a, b]
        assert store.find(status=S.PENDING) == [a, c]
        assert store.find(cart_id="cart_1", status=S.ERROR) == [b]
        assert store.find() == [a, b, c]
        assert store.find(cart_id="cart_9") == []


class TestMigrate:
    def test_migrate_is_idempotent(self, store: SessionStore) -> None:
        """migrate() may run any number of times; it reports the same schema version."""
        version = store.migrate()
        assert version >= 1
        assert store.migrate() == version

    def test_sessions_outlive_the_store_object(self, store_factory: StoreFactory) -> None:
        """A store opened later on the same database sees what an earlier one committed."""
        first = store_factory()
        start = created(first)
        moved = committed(first, start, "require_more")
        first.close()
        assert store_factory().load(start.session.id) == moved

    def test_data_carried_and_replaced_by_moves(self, store_factory: StoreFactory) -> None:
        """Each move stores the data it leaves: carried unchanged, or replaced by update.

        Read back through another store object on the same database, whose snapshot
        cache knows none of the writer's sessions.
        """
        writer, reader = store_factory(), store_factory()
        snapshot = created(writer)
        steps: list[tuple[str, dict[str, Any]]] = [
            ("initiate", {"data": {"id": "pi_1"}}),
            ("require_more", {}),
            ("update", {"data": {"id": "pi_2", "next": [1, {"a": None}]}}),
            ("update", {"amount": 7}),
            ("retry", {}),
        ]
        for trigger, params in steps:
            snapshot = committed(writer, snapshot, trigger, **params)
            assert reader.load(snapshot.session.id) == snapshot, trigger
        assert snapshot.session.data == {"id": "pi_2", "next": [1, {"a": None}]}
        assert snapshot.session.amount == 7


class TestSchemaRules:
    """The rules live in the database itself: raw SQL that breaks them is refused."""

    store_kinds = ("sqlite", "postgres")

    @staticmethod
    def execute(factory: StoreFactory, sql: str) -> None:
        if factory.kind == "sqlite":
            with sqlite3.connect(factory.place) as conn:
                # SQLite checks foreign keys only on connections that ask for it, as
                # every connection of SqliteStore does.
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute(sql)
        else:
            with psycopg.connect(factory.place, autocommit=True) as pg:
                pg.execute(sql)  # type: ignore[arg-type]

    @staticmethod
    def refused(factory: StoreFactory) -> type[Exception]:
        return sqlite3.IntegrityError if factory.kind == "sqlite" else psycopg.IntegrityError

    def test_duplicate_seq(self, store_factory: StoreFactory) -> None:
        """(session_id, seq) is the trail's primary key."""
        created(store_factory())
        with pytest.raises(self.refused(store_factory)):
            self.execute(
                store_factory,
                "INSERT INTO paysession_records "
                "SELECT session_id, seq, position + 100, trigger, at, hash, wire "
                "FROM paysession_records",
            )

    def test_two_selected(self, store_factory: StoreFactory) -> None:
        """At most one selected session per cart (a partial unique index)."""
        store = store_factory()
        created(store, "cart_1", "stripe")
        created(store, "cart_1", "paypal")
        with pytest.raises(self.refused(store_factory)):
            self.execute(store_factory, "UPDATE paysession_sessions SET is_selected = true")

    def test_duplicate_cart_and_provider(self, store_factory: StoreFactory) -> None:
        """One session per (cart, provider)."""
        store = store_factory()
        created(store, "cart_1", "stripe")
        created(store, "cart_1", "paypal")
        with pytest.raises(self.refused(store_factory)):
            self.execute(store_factory, "UPDATE paysession_sessions SET provider_id = 'stripe'")

    def test_key_without_record(self, store_factory: StoreFactory) -> None:
        """An idempotency key must name an existing record of its session."""
        start = created(store_factory())
        with pytest.raises(self.refused(store_factory)):
            self.execute(
                store_factory,
                "INSERT INTO paysession_keys (session_id, key, fingerprint, seq) "
                f"VALUES ('{start.session.id}', 'k', 'p', 9)",
            )

    def test_newer_schema_refused(self, store_factory: StoreFactory) -> None:
        """A database migrated by a newer paysession is refused, not downgraded."""
        store_factory().migrate()
        self.execute(store_factory, "UPDATE paysession_schema SET version = 99")
        with pytest.raises(StoreError) as refused:
            store_factory().migrate()
        assert refused.value.operation == "migrate"


# ---------------------------------------------------------------------------------------
# PaymentSessions over every store


class Calls:
    """A hook registry that records which hooks ran, by kind and trigger."""

    def __init__(self) -> None:
        self.hooks = Hooks()
        self.seen: list[tuple[str, str]] = []

        @self.hooks.before()
        def before(event: TransitionEvent) -> None:
            self.seen.append(("before", event.trigger))

        @self.hooks.after()
        def after(event: TransitionEvent) -> None:
            self.seen.append(("after", event.trigger))


def service(store: SessionStore, hooks: Hooks | None = None) -> PaymentSessions:
    return PaymentSessions(store, hooks=hooks, clock=StepClock())


def initiated(sessions: PaymentSessions, cart_id: str = "cart_1", provider: str = "stripe") -> str:
    session = sessions.create(cart_id=cart_id, provider_id=provider, amount=1000)
    sessions.fire(session.id, "initiate", data={"id": "pi_1", "client_secret": "s"})
    return session.id


class TestServiceMoves:
    def test_row_equals_the_replay_of_its_trail(self, store: SessionStore) -> None:
        """After a run of moves the row is what replaying its trail rebuilds."""
        sessions = service(store)
        session_id = initiated(sessions)
        for trigger in ("require_more", "fail", "retry", "authorize"):
            sessions.fire(session_id, trigger)
        sessions.fire(session_id, "cancel", reason="customer left")
        row = sessions.get(session_id)
        assert row.status is S.CANCELED
        assert replay(sessions.history(session_id), data=row.data, cart=row.cart) == row
        assert sessions.verify(session_id).ok
        assert sessions.version(session_id) == 6

    def test_create_writes_session_and_record_zero(self, store: SessionStore) -> None:
        """create stores the session at version 0 with its create record."""
        sessions = service(store)
        session = sessions.create(cart_id="cart_1", provider_id="stripe", amount=10)
        assert sessions.get(session.id) == session
        assert [r.trigger for r in sessions.history(session.id)] == ["create"]
        assert sessions.version(session.id) == 0

    def test_duplicate_provider_on_a_cart(self, store: SessionStore) -> None:
        """A second session for the same cart and provider raises DuplicateSession."""
        sessions = service(store)
        sessions.create(cart_id="cart_1", provider_id="stripe", amount=10)
        with pytest.raises(DuplicateSession) as refused:
            sessions.create(cart_id="cart_1", provider_id="stripe", amount=20)
        assert (refused.value.cart_id, refused.value.fields) == (
            "cart_1",
            ("cart_id", "provider_id"),
        )
        assert len(sessions.find(cart_id="cart_1")) == 1

    def test_unknown_session(self, store: SessionStore) -> None:
        """Every read and move of an unknown id raises SessionNotFound, a LookupError."""
        sessions = service(store)
        for call in (
            lambda: sessions.get("ps_x"),
            lambda: sessions.version("ps_x"),
            lambda: sessions.history("ps_x"),
            lambda: sessions.fire("ps_x", "cancel"),
        ):
            with pytest.raises(LookupError) as missing:
                call()
            assert type(missing.value) is SessionNotFound
            assert vars(missing.value) == {"session_id": "ps_x"}

    def test_stale_expected_version(self, store: SessionStore) -> None:
        """A stale expected_version raises ConcurrentUpdate; no hook runs, nothing is written."""
        calls = Calls()
        sessions = service(store, calls.hooks)
        session_id = initiated(sessions)
        calls.seen.clear()
        with pytest.raises(ConcurrentUpdate) as refused:
            sessions.fire(session_id, "authorize", expected_version=0)
        assert vars(refused.value) == {"session_id": session_id, "expected": 0, "actual": 1}
        assert calls.seen == []
        assert sessions.version(session_id) == 1
        record = sessions.fire(session_id, "authorize", expected_version=1)
        assert (record.seq, record.dest) == (2, S.AUTHORIZED)

    def test_lost_race_fires_no_after_hook(self, store_factory: StoreFactory) -> None:
        """A move that loses the race at commit is rolled back and its after-hooks never run."""
        calls = Calls()
        sessions = service(store_factory(), calls.hooks)
        rival = service(store_factory())
        session_id = initiated(sessions)

        @calls.hooks.before("authorize")
        def meanwhile(event: TransitionEvent) -> None:
            rival.fire(event.session_id, "cancel", actor="webhook")

        calls.seen.clear()
        with pytest.raises(ConcurrentUpdate):
            sessions.fire(session_id, "authorize")
        assert calls.seen == [("before", "authorize")]
        trail = sessions.history(session_id)
        assert [(r.trigger, r.actor) for r in trail[2:]] == [("cancel", "webhook")]
        assert sessions.get(session_id).status is S.CANCELED

    def test_after_hooks_see_the_committed_move(self, store: SessionStore) -> None:
        """After-hooks run once the move is committed: a read from the hook sees it."""
        hooks = Hooks()
        sessions = service(store, hooks)
        seen: list[tuple[S, int]] = []

        @hooks.after("authorize")
        def look(event: TransitionEvent) -> None:
            seen.append((sessions.get(event.session_id).status, sessions.version(event.session_id)))

        session_id = initiated(sessions)
        sessions.fire(session_id, "authorize")
        assert seen == [(S.AUTHORIZED, 2)]

    def test_failing_after_hook_keeps_the_move(self, store: SessionStore) -> None:
        """An after-hook that raises gives HookError, and the committed move stands."""
        hooks = Hooks()
        sessions = service(store, hooks)
        boom = RuntimeError("mailer down")

        @hooks.after("fail")
        def mail(event: TransitionEvent) -> None:
            raise boom

        session_id = initiated(sessions)
        with pytest.raises(HookError) as failed:
            sessions.fire(session_id, "fail")
        assert failed.value.errors == (boom,)
        assert failed.value.record == sessions.history(session_id)[-1]
        assert failed.value.session == sessions.get(session_id)

    def test_before_hook_veto_writes_nothing(self, store: SessionStore) -> None:
        """A before-hook that raises vetoes the move: nothing is written."""
        hooks = Hooks()
        sessions = service(store, hooks)
        veto = PermissionError("fraud check")

        @hooks.before("authorize")
        def fraud(event: TransitionEvent) -> None:
            raise veto

        session_id = initiated(sessions)
        with pytest.raises(PermissionError) as stopped:
            sessions.fire(session_id, "authorize")
        assert stopped.value is veto
        assert sessions.version(session_id) == 1

    def test_illegal_and_guarded_moves_write_nothing(self, store: SessionStore) -> None:
        """The table and its guards hold through the service; refusals write nothing."""
        sessions = service(store)
        session = sessions.create(cart_id="cart_1", provider_id="stripe", amount=1000)
        with pytest.raises(GuardRejected) as guarded:
            sessions.fire(session.id, "authorize")
        assert (guarded.value.trigger, guarded.value.guard) == ("authorize", "is_initiated")
        sessions.fire(session.id, "cancel")
        with pytest.raises(IllegalTransition) as illegal:
            sessions.fire(session.id, "retry")
        assert (illegal.value.trigger, illegal.value.status, illegal.value.allowed) == (
            "retry",
            "canceled",
            frozenset(),
        )
        assert sessions.version(session.id) == 1

    def test_records_since_follows_every_move(self, store: SessionStore) -> None:
        """A consumer reading from a cursor sees every record of every session once."""
        sessions = service(store)
        one, two = initiated(sessions, "cart_1"), initiated(sessions, "cart_2")
        sessions.fire(two, "authorize")
        sessions.fire(one, "fail")
        seen = [(e.record.session_id, e.record.seq) for e in sessions.records_since(0, 100)]
        assert sorted(seen) == sorted(
            (r.session_id, r.seq) for sid in (one, two) for r in sessions.history(sid)
        )
        assert [e.position for e in sessions.records_since(0, 100)] == [1, 2, 3, 4, 5, 6]


class TestServiceSelect:
    def test_select_deselects_the_others_in_one_commit(self, store: SessionStore) -> None:
        """select deselects the cart's selected session, each an audited move of its own."""
        calls = Calls()
        sessions = service(store, calls.hooks)
        one = initiated(sessions, "cart_1", "stripe")
        two = initiated(sessions, "cart_1", "paypal")
        sessions.select(one)
        calls.seen.clear()
        record = sessions.select(two, actor="storefront")
        assert (record.trigger, record.session_id) == ("select", two)
        deselect = sessions.history(one)[-1]
        assert (deselect.trigger, deselect.actor, deselect.reason) == (
            "deselect",
            "storefront",
            f"replaced by {two}",
        )
        assert [s.id for s in sessions.find(cart_id="cart_1") if s.is_selected] == [two]
        tail = [(e.record.session_id, e.record.trigger) for e in sessions.records_since(5, 10)]
        assert tail == [(one, "deselect"), (two, "select")]
        assert calls.seen == [
            ("before", "select"),
            ("before", "deselect"),
            ("after", "deselect"),
            ("after", "select"),
        ]

    def test_fire_select_is_select(self, store: SessionStore) -> None:
        """fire(id, "select") deselects the others too."""
        sessions = service(store)
        one = initiated(sessions, "cart_1", "stripe")
        two = initiated(sessions, "cart_1", "paypal")
        sessions.fire(one, "select")
        sessions.fire(two, "select")
        assert [s.is_selected for s in (sessions.get(one), sessions.get(two))] == [False, True]

    def test_an_authorized_choice_cannot_be_replaced(self, store: SessionStore) -> None:
        """When the selected session is authorized, selecting another is illegal."""
        sessions = service(store)
        one = initiated(sessions, "cart_1", "stripe")
        two = initiated(sessions, "cart_1", "paypal")
        sessions.select(one)
        sessions.fire(one, "authorize")
        with pytest.raises(IllegalTransition) as illegal:
            sessions.select(two)
        assert (illegal.value.trigger, illegal.value.status) == ("deselect", "authorized")
        assert sessions.version(two) == 1

    def test_a_racing_selection_is_a_concurrent_update(self, store_factory: StoreFactory) -> None:
        """Another session selected between read and commit makes select lose the race."""
        hooks = Hooks()
        sessions = service(store_factory(), hooks)
        rival = service(store_factory())
        one = initiated(sessions, "cart_1", "stripe")
        two = initiated(sessions, "cart_1", "paypal")

        @hooks.before("select")
        def meanwhile(event: TransitionEvent) -> None:
            rival.select(one)

        with pytest.raises(ConcurrentUpdate) as lost:
            sessions.select(two)
        assert type(lost.value) is SelectionConflict
        assert vars(lost.value) == {
            "session_id": two,
            "cart_id": "cart_1",
            "expected": None,
            "actual": None,
        }
        assert [s.id for s in sessions.find(cart_id="cart_1") if s.is_selected] == [one]
        assert sessions.version(two) == 1


class TestServiceIdempotency:
    def test_repeat_returns_the_stored_record(self, store: SessionStore) -> None:
        """The same key, trigger and arguments return the stored record; no hook runs again."""
        calls = Calls()
        sessions = service(store, calls.hooks)
        session_id = initiated(sessions)
        first = sessions.fire(session_id, "update", idempotency_key="k1", amount=1500)
        calls.seen.clear()
        again = sessions.fire(session_id, "update", idempotency_key="k1", amount=1500)
        assert again == first
        assert calls.seen == []
        assert sessions.version(session_id) == 2

    def test_repeat_after_a_restart(self, store_factory: StoreFactory) -> None:
        """Keys are persisted: a request repeated through a new store gets the record back."""
        sessions = service(store_factory())
        session_id = initiated(sessions)
        first = sessions.fire(session_id, "authorize", idempotency_key="k1", expected_version=1)
        later = service(store_factory())
        assert (
            later.fire(session_id, "authorize", idempotency_key="k1", expected_version=1) == first
        )

    def test_other_trigger_or_arguments_conflict(self, store: SessionStore) -> None:
        """The same key with another trigger or other arguments raises IdempotencyConflict."""
        sessions = service(store)
        session_id = initiated(sessions)
        sessions.fire(session_id, "update", idempotency_key="k1", amount=1500)
        with pytest.raises(IdempotencyConflict) as other_trigger:
            sessions.fire(session_id, "fail", idempotency_key="k1")
        assert vars(other_trigger.value) == {"key": "k1", "trigger": "update", "attempted": "fail"}
        with pytest.raises(IdempotencyConflict) as other_args:
            sessions.fire(session_id, "update", idempotency_key="k1", amount=1600)
        assert vars(other_args.value) == {"key": "k1", "trigger": "update", "attempted": "update"}
        assert sessions.version(session_id) == 2

    def test_a_failed_move_binds_no_key(self, store: SessionStore) -> None:
        """Only a successful move binds its key: after a refusal the key is still free."""
        sessions = service(store)
        session_id = initiated(sessions)
        with pytest.raises(IllegalTransition):
            sessions.fire(session_id, "retry", idempotency_key="k1")
        record = sessions.fire(session_id, "fail", idempotency_key="k1")
        assert (record.trigger, record.idempotency_key) == ("fail", "k1")

    def test_key_bound_by_a_racing_process(self, store_factory: StoreFactory) -> None:
        """When another process binds the key first, the caller gets that stored record."""
        hooks = Hooks()
        sessions = service(store_factory(), hooks)
        rival = service(store_factory())
        session_id = initiated(sessions)
        rivals: list[Any] = []

        @hooks.before("update")
        def meanwhile(event: TransitionEvent) -> None:
            if not rivals:
                rivals.append(rival.fire(session_id, "update", idempotency_key="k", amount=7))

        assert sessions.fire(session_id, "update", idempotency_key="k", amount=7) == rivals[0]
        assert [r.trigger for r in sessions.history(session_id)] == ["create", "initiate", "update"]

    def test_key_bound_by_a_racing_process_to_another_move(
        self, store_factory: StoreFactory
    ) -> None:
        """A key a racing process bound to another move raises IdempotencyConflict."""
        hooks = Hooks()
        sessions = service(store_factory(), hooks)
        rival = service(store_factory())
        session_id = initiated(sessions)

        @hooks.before("authorize")
        def meanwhile(event: TransitionEvent) -> None:
            rival.fire(session_id, "fail", idempotency_key="k")

        with pytest.raises(IdempotencyConflict) as conflict:
            sessions.fire(session_id, "authorize", idempotency_key="k")
        assert vars(conflict.value) == {"key": "k", "trigger": "fail", "attempted": "authorize"}


class TestServiceRetry:
    def test_retry_reapplies_after_a_lost_race(self, store_factory: StoreFactory) -> None:
        """fire_with_retry reloads after a lost race and applies the move to the new state."""
        hooks = Hooks()
        sessions = service(store_factory(), hooks)
        rival = service(store_factory())
        session_id = initiated(sessions)
        raced: list[bool] = []

        @hooks.before("update")
        def meanwhile(event: TransitionEvent) -> None:
            if not raced:
                raced.append(True)
                rival.fire(session_id, "require_more")

        record = sessions.fire_with_retry(session_id, "update", amount=5)
        assert (record.seq, record.source, record.dest) == (3, S.REQUIRES_MORE, S.REQUIRES_MORE)

    def test_retry_stops_when_the_move_became_illegal(self, store_factory: StoreFactory) -> None:
        """When the winner made the move illegal, the retry raises instead of forcing it."""
        hooks = Hooks()
        sessions = service(store_factory(), hooks)
        rival = service(store_factory())
        session_id = initiated(sessions)

        @hooks.before("authorize")
        def meanwhile(event: TransitionEvent) -> None:
            if sessions.get(session_id).status is S.PENDING:
                rival.fire(session_id, "cancel")

        with pytest.raises(IllegalTransition):
            sessions.fire_with_retry(session_id, "authorize")
        assert sessions.get(session_id).status is S.CANCELED

    def test_retry_gives_up(self, store_factory: StoreFactory) -> None:
        """After ``attempts`` lost races the last ConcurrentUpdate reaches the caller."""
        hooks = Hooks()
        sessions = service(store_factory(), hooks)
        rival = service(store_factory())
        session_id = initiated(sessions)

        @hooks.before("update")
        def meanwhile(event: TransitionEvent) -> None:
            rival.fire(session_id, "require_more")

        with pytest.raises(ConcurrentUpdate):
            sessions.fire_with_retry(session_id, "update", attempts=3, amount=5)
        assert sessions.version(session_id) == 4
