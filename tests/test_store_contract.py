"""The contract every SessionStore keeps, run on MemoryStore, SqliteStore and PostgresStore.

Each class drives a store directly, with writes planned by the engine; the service's
promises over every store are in ``tests/test_service.py``.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import attrs
import psycopg
import pytest

from paysession import (
    ConcurrentUpdate,
    InvalidSessionData,
    PaymentSession,
    PaymentSessionStatus,
    SessionNotFound,
)
from paysession.errors import DuplicateSession, SelectionConflict, StoreError
from paysession.planning import create_record
from paysession.store import Binding, SessionStore, Snapshot, Write
from paysession.store.postgres import PostgresStore

from .conftest import StoreFactory
from .helpers import StepClock, committed, created, log, move, new_session

S = PaymentSessionStatus


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
    def test_the_feed_follows_commit_order(self, store: SessionStore) -> None:
        """Records come in commit order, across sessions, each with its own cursor."""
        one = created(store, "cart_1")
        two = created(store, "cart_2")
        committed(store, two, "fail")
        committed(store, one, "cancel")
        entries = log(store)
        assert [(e.record.session_id, e.record.trigger) for e in entries] == [
            (one.session.id, "create"),
            (two.session.id, "create"),
            (two.session.id, "fail"),
            (one.session.id, "cancel"),
        ]
        assert len({e.cursor for e in entries}) == 4
        if not isinstance(store, PostgresStore):
            # On SQLite and in memory the position is the commit order, and the cursor.
            assert [(e.position, e.cursor) for e in entries] == [(n, str(n)) for n in range(1, 5)]

    def test_a_cursor_reads_in_pages(self, store: SessionStore) -> None:
        """Reading from the last cursor seen, page by page, yields each record once."""
        ids = [created(store, f"cart_{n}").session.id for n in range(5)]
        pages: list[list[str]] = []
        cursor = None
        while page := store.records_since(cursor, 2):
            pages.append([entry.record.session_id for entry in page])
            cursor = page[-1].cursor
        assert pages == [ids[0:2], ids[2:4], ids[4:5]]
        assert store.records_since(cursor, 10) == []

    def test_a_cursor_the_store_did_not_give_out_is_refused(self, store: SessionStore) -> None:
        """A malformed cursor, or another kind of store's, is an input error naming it."""
        created(store, "cart_1")
        foreign = "7" if isinstance(store, PostgresStore) else "7-7"
        for cursor in (foreign, "", "-1", "x", "1-", "1" * 40, "12\x00"):
            with pytest.raises(InvalidSessionData) as refused:
                store.records_since(cursor, 10)
            assert refused.value.fields == ("cursor",), cursor


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
        # PostgreSQL numbers records itself (and keys them for the feed); SQLite is told.
        numbered = (
            ("xact", "xact") if store_factory.kind == "postgres" else ("position", "position + 100")
        )
        with pytest.raises(self.refused(store_factory)):
            self.execute(
                store_factory,
                f"INSERT INTO paysession_records (session_id, seq, {numbered[0]}, trigger, at, "
                f"hash, wire) SELECT session_id, seq, {numbered[1]}, trigger, at, hash, wire "
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
