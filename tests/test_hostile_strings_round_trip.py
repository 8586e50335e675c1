"""Hostile strings in every field and argument, on every store: kept exactly, never obeyed.

SQL fragments, quotes, backslashes, control characters, emoji, right-to-left text,
combining marks and strings as long as each field's limit allows go into ids, cart and
provider ids, idempotency keys, actors, reasons, data and cart keys and values. Each
comes back byte for byte, the tables hold exactly the rows they should (no statement
was changed by what it carried), and every trail verifies.

NUL is the one exception, decided once for every store: PostgreSQL's text cannot hold
it, so an id or key holding NUL is refused alike everywhere (InvalidSessionData naming
the field) and finds nothing; in data, cart, actor and reason it is kept (JSON escapes
it, and PostgreSQL keeps JSON as ``json``, not ``jsonb``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import attrs
import psycopg
import pytest

from paysession import (
    Hooks,
    InvalidSessionData,
    PaymentSession,
    PaymentSessions,
    PaymentSessionStatus,
    SessionNotFound,
    TransitionEvent,
)
from paysession.audit import replay, verify
from paysession.limits import current
from paysession.planning import create_record
from paysession.store import SessionStore, Snapshot
from paysession.store.base import NUL_IN_KEY

from .conftest import StoreFactory
from .helpers import T0, StepClock

HOSTILE: tuple[str, ...] = (
    "'; DROP TABLE sessions; --",
    "'; DROP TABLE paysession_sessions; --",
    "Robert'); DELETE FROM paysession_records; --",
    "' OR '1'='1",
    '" OR ""="',
    "1; UPDATE paysession_sessions SET amount = 0",
    "%s %(name)s $1 ? :name {} {0}",
    "quote ' double \" back ` all",
    "\\",
    "\\'",
    "back\\slash\\\\ and \\n, not a newline",
    "\\u0000 spelled out, not NUL",
    "line\nbreak\r\ntab\tend",
    "\x01\x07\x1b[31m\x1f\x7f control characters",
    "😀👍🏽👨‍👩‍👧‍👦🏳️‍🌈",
    "مرحبا بالعالم",
    "\u202egnp.exe right-to-left override",
    "עִבְרִית with niqqud",
    "e\u0301\u0302\u0303 Z\u0351\u0352\u0353\u0354 combining marks",
    "\ufeffbyte order mark",
    "zero\u200bwidth\u200c\u200djoiners",
    "\U0010ffff the last code point",
    "\U0001d518\U0001d52b\U0001d526 fraktur, \uff46\uff55\uff4c\uff4c fullwidth",
    " leading and trailing spaces ",
    "null",
    "NULL",
    "[]",
    '{"json": true}',
)
"""Strings short enough to be an id (and distinct: each can be one session's id)."""


def at_most(text: str, length: int) -> str:
    """``text`` repeated to exactly ``length`` characters."""
    return (text * (length // len(text) + 1))[:length]


def longest_ids() -> tuple[str, ...]:
    limit = current().id_length
    return (
        at_most("'; DROP TABLE sessions; --", limit),
        at_most("😀", limit),
        at_most("\\", limit),
        at_most("e\u0301", limit),
    )


def every_id() -> tuple[str, ...]:
    return HOSTILE + longest_ids()


def hostile_mapping(size: int = 100_000) -> dict[str, object]:
    """Data whose keys and values are every hostile string, plus strings of ``size`` chars."""
    return {
        **{text: text for text in HOSTILE},
        "nested": {text: [text, {text: None}] for text in HOSTILE[:8]},
        "sql": at_most("'; DROP TABLE paysession_records; --", size),
        "emoji": at_most("👨‍👩‍👧‍👦", size),
        "backslashes": at_most('\\"', size),
    }


def session_with(
    n: int, *, id: str, cart_id: str | None, provider_id: str, idempotency_key: str | None
) -> PaymentSession:
    """A pending session built directly, so that every field is the caller's."""
    at = T0 + timedelta(milliseconds=n)
    return PaymentSession(
        id=id,
        cart_id=cart_id,
        provider_id=provider_id,
        is_selected=False,
        is_initiated=True,
        status=PaymentSessionStatus.PENDING,
        data={"id": id},
        idempotency_key=idempotency_key,
        amount=1000 + n,
        payment_authorized_at=None,
        created_at=at,
        updated_at=at,
    )


def loaded(store: SessionStore, session_id: str, key: str | None = None) -> Snapshot:
    snapshot = store.load(session_id, key)
    assert snapshot is not None, repr(session_id)
    return snapshot


# ---------------------------------------------------------------------------------------
# The database as it is, read around the store


def tables(factory: StoreFactory) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's name with its rows (sorted), read with the driver, not the store."""
    if factory.kind == "sqlite":
        with sqlite3.connect(factory.place) as conn:
            names = [
                name
                for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
                )
            ]
            return {
                name: sorted(conn.execute(f'SELECT * FROM "{name}"'), key=repr) for name in names
            }
    with psycopg.connect(factory.place) as pg:
        names = [
            name
            for (name,) in pg.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            )
        ]
        return {
            name: sorted(pg.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr)
            for name in names
        }


def column(rows: list[tuple[Any, ...]], index: int) -> list[Any]:
    return sorted(row[index] for row in rows)


def check_database(
    factory: StoreFactory,
    store: SessionStore,
    sessions: Mapping[str, PaymentSession],
    keys: set[tuple[str, str]],
    records: int,
    empty: Mapping[str, list[tuple[Any, ...]]] | None,
) -> None:
    """The store and its tables hold exactly ``sessions``, ``keys`` and ``records`` records.

    ``empty`` is the tables as they were before anything was stored (None for memory).
    """
    assert sorted(s.id for s in store.find()) == sorted(sessions)
    for session_id, session in sessions.items():
        assert loaded(store, session_id).session == session
        trail = store.history(session_id)
        assert verify(trail).ok, repr(session_id)
        assert replay(trail, data=session.data, cart=session.cart) == session
    logged = store.records_since(None, 100_000)
    assert len(logged) == len({entry.cursor for entry in logged}) == records
    for session_id, key in keys:
        assert loaded(store, session_id, key).binding is not None, repr(key)
    if empty is None:
        return
    now = tables(factory)
    assert sorted(now) == sorted(empty), "a table appeared or disappeared"
    rows = now["paysession_sessions"]
    assert column(rows, 0) == sorted(sessions)
    assert sorted((r[0], r[1], r[2], r[7]) for r in rows) == sorted(
        (s.id, s.cart_id, s.provider_id, s.idempotency_key) for s in sessions.values()
    )
    assert len(now["paysession_records"]) == records
    assert sorted((r[0], r[1]) for r in now["paysession_keys"]) == sorted(keys)
    for name, before in empty.items():
        # The sessions, records and keys are checked above.
        if name not in ("paysession_sessions", "paysession_records", "paysession_keys"):
            assert now[name] == before, name


# ---------------------------------------------------------------------------------------


class TestHostileIds:
    def test_every_id_field_round_trips(self, store_factory: StoreFactory) -> None:
        """Hostile ids, cart ids, provider ids and keys are stored and found exactly."""
        store = store_factory()
        store.migrate()
        empty = None if store_factory.kind == "memory" else tables(store_factory)
        stored: dict[str, PaymentSession] = {}
        for n, text in enumerate(every_id()):
            session = session_with(n, id=text, cart_id=text, provider_id=text, idempotency_key=text)
            store.create(session, create_record(session))
            stored[text] = session
        for text, session in stored.items():
            snapshot = loaded(store, text)
            assert snapshot.session == session
            for name in ("id", "cart_id", "provider_id", "idempotency_key"):
                value = getattr(snapshot.session, name)
                assert value.encode() == text.encode(), (name, text)
            assert store.find(cart_id=text) == [session]
            assert store.history(text) == [create_record(session)]
            assert store.record(text, 0) == create_record(session)
        check_database(store_factory, store, stored, set(), len(stored), empty)

    def test_through_the_service(self, store: SessionStore) -> None:
        """PaymentSessions creates, selects and finds sessions of hostile carts and providers."""
        sessions = PaymentSessions(store, clock=StepClock())
        made = {}
        for text in every_id():
            session = sessions.create(
                cart_id=text, provider_id=text, amount=1000, data={text: text}
            )
            sessions.select(session.id, actor=text, reason=text)
            made[text] = sessions.get(session.id)
        for text, session in made.items():
            assert (session.cart_id, session.provider_id, session.is_selected) == (text, text, True)
            assert sessions.selected(text) == session
            assert sessions.find(cart_id=text) == [session]
            assert sessions.verify(session.id).ok
        assert len(sessions.find()) == len(made)

    def test_lookups_of_strangers_find_nothing(self, store: SessionStore) -> None:
        """Looking up a hostile id that is not stored finds nothing and changes nothing."""
        session = session_with(
            0, id="ps_1", cart_id="cart_1", provider_id="p", idempotency_key=None
        )
        store.create(session, create_record(session))
        for text in every_id():
            assert store.load(text) is None
            assert store.load("ps_1", text) == loaded(store, "ps_1")
            assert store.find(cart_id=text) == []
            assert store.load_selected(text) == []
            assert store.history(text) == []
            assert store.record(text, 0) is None
        assert store.find() == [session]


class TestHostileMoves:
    def test_actor_reason_and_key_round_trip(self, store_factory: StoreFactory) -> None:
        """Hostile actors, reasons and keys of moves are kept exactly; keys still bind."""
        store = store_factory()
        store.migrate()
        empty = None if store_factory.kind == "memory" else tables(store_factory)
        sessions = PaymentSessions(store, clock=StepClock())
        session = sessions.create(cart_id="cart_1", provider_id="stripe", amount=1000)
        texts = [*every_id(), *longest_texts()]
        made = []
        for n, text in enumerate(texts):
            key = text[: current().id_length]
            made.append(
                sessions.fire(
                    session.id, "update", actor=text, reason=text, idempotency_key=key, amount=n + 1
                )
            )
        trail = sessions.history(session.id)
        assert list(trail[1:]) == made
        for text, record in zip(texts, trail[1:], strict=True):
            assert (record.actor, record.reason) == (text, text)
            assert record.idempotency_key == text[: current().id_length]
        for n, text in enumerate(texts):
            again = sessions.fire(
                session.id,
                "update",
                actor="someone else",
                idempotency_key=text[: current().id_length],
                amount=n + 1,
            )
            assert again == made[n]
        keys = {(session.id, text[: current().id_length]) for text in texts}
        assert len(keys) == len(texts)
        check_database(
            store_factory,
            store,
            {session.id: sessions.get(session.id)},
            keys,
            len(texts) + 1,
            empty,
        )


def longest_texts() -> tuple[str, ...]:
    """actor/reason-length strings (distinct in their first id_length characters)."""
    limit = current().text_length
    return (
        at_most("actor'; DROP TABLE paysession_keys; --", limit),
        at_most("reason👨‍👩‍👧‍👦", limit),
        at_most("\\\\\\\\''''", limit),
    )


class TestHostileData:
    def test_data_and_cart_round_trip(self, store_factory: StoreFactory) -> None:
        """Hostile keys and values, and 100,000-character strings, in data and cart."""
        store = store_factory()
        store.migrate()
        empty = None if store_factory.kind == "memory" else tables(store_factory)
        data, cart = hostile_mapping(), hostile_mapping(50_000)
        base = session_with(0, id="ps_1", cart_id="c", provider_id="p", idempotency_key="k")
        session = attrs.evolve(base, data=data, cart=cart)
        store.create(session, create_record(session))
        got = loaded(store, "ps_1").session
        assert got == session
        assert json.dumps(got.data) == json.dumps(data)  # key order and every byte
        assert json.dumps(got.cart) == json.dumps(cart)
        sessions = PaymentSessions(store, clock=StepClock(T0 + timedelta(seconds=1)))
        moved = hostile_mapping(99_999)
        sessions.fire("ps_1", "update", data=moved, reason="hostile data")
        assert json.dumps(sessions.get("ps_1").data) == json.dumps(moved)
        check_database(store_factory, store, {"ps_1": sessions.get("ps_1")}, set(), 2, empty)


class TestNul:
    @pytest.mark.parametrize("field", ["id", "cart_id", "provider_id", "idempotency_key"])
    def test_refused_in_ids_alike(self, store_factory: StoreFactory, field: str) -> None:
        """A NUL in an id or key is InvalidSessionData naming the field; nothing is stored."""
        store = store_factory()
        store.migrate()
        empty = None if store_factory.kind == "memory" else tables(store_factory)
        fields: dict[str, Any] = {
            "id": "ps_1",
            "cart_id": "cart_1",
            "provider_id": "stripe",
            "idempotency_key": "key",
        }
        fields[field] = "a\x00b"
        session = session_with(0, **fields)
        with pytest.raises(InvalidSessionData) as caught:
            store.create(session, create_record(session))
        assert caught.value.problems == {field: NUL_IN_KEY}
        assert store.find() == []
        if empty is not None:
            assert tables(store_factory) == empty

    def test_refused_as_a_moves_key_before_any_hook(self, store_factory: StoreFactory) -> None:
        """A move's key holding NUL is refused before any hook runs; nothing is written."""
        hooks = Hooks()
        seen: list[str] = []

        @hooks.before("update")
        def before(event: TransitionEvent) -> None:
            seen.append(event.trigger)

        store = store_factory()
        sessions = PaymentSessions(store, hooks=hooks)
        session = sessions.create(cart_id="cart_1", provider_id="stripe", amount=1000)
        with pytest.raises(InvalidSessionData) as caught:
            sessions.fire(session.id, "update", idempotency_key="k\x00", amount=5)
        assert caught.value.problems == {"idempotency_key": NUL_IN_KEY}
        assert seen == []
        assert len(sessions.history(session.id)) == 1

    def test_lookups_find_nothing(self, store: SessionStore) -> None:
        """Every lookup under an id holding NUL finds nothing, on every store."""
        session = session_with(0, id="ps_1", cart_id="c", provider_id="p", idempotency_key=None)
        store.create(session, create_record(session))
        assert store.load("ps_1\x00") is None
        assert store.load("ps_1", "k\x00") == loaded(store, "ps_1")
        assert store.find(cart_id="c\x00") == []
        assert store.load_selected("c\x00") == []
        assert store.history("ps_1\x00") == []
        assert store.record("ps_1\x00", 0) is None
        assert store.provider_event("ps_1\x00", "evt_1") is None
        assert store.provider_event("ps_1", "evt\x00") is None
        assert store.provider_events(session_id="ps_1\x00") == []
        with pytest.raises(SessionNotFound) as caught:
            PaymentSessions(store).get("ps_1\x00")
        assert caught.value.session_id == "ps_1\x00"

    def test_kept_in_data_cart_actor_and_reason(self, store_factory: StoreFactory) -> None:
        """NUL in data and cart keys and values, actor and reason is stored exactly."""
        store = store_factory()
        nul = {"k\x00": "v\x00", "\x00": ["\x00" * 1000, {"\x00\x00": "\\u0000"}]}
        base = session_with(0, id="ps_1", cart_id="c", provider_id="p", idempotency_key=None)
        session = attrs.evolve(base, data=nul, cart=nul)
        store.create(session, create_record(session))
        assert loaded(store, "ps_1").session == session
        sessions = PaymentSessions(store, clock=StepClock(T0 + timedelta(seconds=1)))
        record = sessions.fire(
            "ps_1", "update", actor="a\x00", reason="\x00r\x00", data={"\x00": "\x00"}
        )
        assert store.history("ps_1")[-1] == record
        assert (record.actor, record.reason) == ("a\x00", "\x00r\x00")
        assert sessions.get("ps_1").data == {"\x00": "\x00"}
        assert sessions.verify("ps_1").ok
