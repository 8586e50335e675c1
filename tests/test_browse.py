"""The inspector's reads on the stores: keyset pages and their tokens, for every store
and every page size, with times that collide."""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
from datetime import datetime, timedelta, timezone
from unittest import mock

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paysession import PaymentSession, PaymentSessions, SessionMachine
from paysession.errors import InvalidSessionData, ReconciliationAnomaly, StoreError
from paysession.store import SqliteStore
from paysession.store import _browse as browse
from paysession.store._browse import PageKey, SessionFilter
from paysession.store.sqlite_schema import MIGRATIONS

from .conftest import StoreFactory
from .test_migrations import without_browse_indexes

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
PROVIDERS = ("stripe", "paypal", "manual")


def _store_of(times: list[int]) -> tuple[SqliteStore, list[PaymentSession]]:
    """Sessions updated at T0 + each time (in seconds): many share one instant."""
    store = SqliteStore(":memory:")
    made = []
    for number, offset in enumerate(times):
        instant = T0 + timedelta(seconds=offset)

        def clock(at: datetime = instant) -> datetime:
            return at

        session = PaymentSession.new(
            cart_id=f"cart_{number % 4}_{number}",
            provider_id=PROVIDERS[number % 3],
            amount=100,
            clock=clock,
        )
        store.create(session, SessionMachine(session, clock=clock).history[0])
        made.append(session)
    return store, made


def _walk(store: SqliteStore, where: SessionFilter, limit: int) -> list[str]:
    walked: list[str] = []
    after = None
    for _ in range(1000):
        page, after = store.sessions_page(where, after, limit)
        assert len(page) <= limit
        walked += [session.id for session in page]
        if after is None:
            return walked
    raise AssertionError("the pages never ended")


@settings(max_examples=60, deadline=None)
@given(
    times=st.lists(st.integers(0, 3), min_size=0, max_size=30),
    limit=st.integers(1, 8),
    provider=st.sampled_from((None, *PROVIDERS)),
    window=st.one_of(st.none(), st.tuples(st.integers(0, 3), st.integers(1, 4))),
    few=st.sampled_from((1, 3, browse.INDEX_SORT_LIMIT)),
)
def test_pages_walk_every_match_once_newest_first(
    times: list[int],
    limit: int,
    provider: str | None,
    window: tuple[int, int] | None,
    few: int,
) -> None:
    """Whichever index serves the filter: its own (few sessions match) or the newest-first
    one walked (many do; ``few`` moves the line so that both run on small stores)."""
    store, made = _store_of(times)
    start = end = None
    if window is not None:
        start, end = T0 + timedelta(seconds=window[0]), T0 + timedelta(seconds=window[1])
    where = SessionFilter(provider_id=provider, updated_from=start, updated_to=end)
    expected = sorted(
        (
            s
            for s in made
            if (provider is None or s.provider_id == provider)
            and (start is None or s.updated_at >= start)
            and (end is None or s.updated_at < end)
        ),
        key=lambda s: (s.updated_at, s.id),
        reverse=True,
    )
    with mock.patch.object(browse, "INDEX_SORT_LIMIT", few):
        assert _walk(store, where, limit) == [s.id for s in expected]
    store.close()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_a_token_or_refused_naming_the_field(text: str) -> None:
    try:
        key = PageKey.from_token(text, 1)
    except InvalidSessionData as refused:
        assert refused.fields == ("after",)
    else:
        assert PageKey.from_token(key.token(), 1) == key


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(min_value=-(2**80), max_value=2**80),
            st.floats(allow_nan=True),
            st.text(max_size=20),
            st.none(),
            st.lists(st.integers(), max_size=3),
        ),
        max_size=4,
    )
)
def test_any_json_in_a_token_is_a_key_or_refused(parts: list[object]) -> None:
    """A token of the right encoding holding anything (huge or negative times, floats,
    nested lists) is a key only when it is a time and ids; else InvalidSessionData."""
    text = json.dumps(parts).encode()
    token = base64.urlsafe_b64encode(text).decode().rstrip("=")
    try:
        key = PageKey.from_token(token, 2, field="after")
    except InvalidSessionData as refused:
        assert refused.fields == ("after",)
    else:
        assert len(key.ids) == 2


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 1),
        max_value=datetime(9999, 12, 31),
        timezones=st.just(timezone.utc),
    ),
    st.lists(
        st.text(
            st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=30
        ),
        min_size=2,
        max_size=2,
    ),
)
def test_a_key_round_trips_through_its_token(at: datetime, ids: list[str]) -> None:
    key = PageKey(at, tuple(ids))
    token = key.token()
    assert token.isascii() and "=" not in token and "/" not in token and "+" not in token
    assert PageKey.from_token(token, 2) == key


def test_a_deeply_nested_token_is_refused_not_a_recursion_error() -> None:
    text = ("[" * 100_000 + "]" * 100_000).encode()
    token = base64.urlsafe_b64encode(text).decode()
    with pytest.raises(InvalidSessionData):
        PageKey.from_token(token, 1)


class TestReadOnlyStores:
    def test_a_read_only_sqlite_store_reads_and_refuses_writes(self, tmp_path: object) -> None:
        path = f"{tmp_path}/shop.db"
        writer, made = SqliteStore(path), []
        session = PaymentSession.new(cart_id="cart_1", provider_id="stripe", amount=1)
        writer.create(session, SessionMachine(session).history[0])
        made.append(session)
        writer.close()
        reader = SqliteStore(path, read_only=True)
        assert [s.id for s in reader.sessions_page(SessionFilter())[0]] == [session.id]
        other = PaymentSession.new(cart_id="cart_2", provider_id="stripe", amount=1)
        with pytest.raises(StoreError, match="readonly"):
            reader.create(other, SessionMachine(other).history[0])
        # A current schema needs no write; one behind cannot be upgraded through it.
        assert reader.migrate() == len(MIGRATIONS)
        reader.close()
        with sqlite3.connect(path) as conn:
            for statement in without_browse_indexes(4, "sqlite"):
                conn.execute(statement)
        conn.close()
        behind = SqliteStore(path, read_only=True)
        with pytest.raises(StoreError, match="schema version 4"):
            behind.sessions_page(SessionFilter())
        with pytest.raises(StoreError, match="readonly"):
            behind.migrate()
        behind.close()

    def test_a_read_only_store_never_creates_its_file(self, tmp_path: object) -> None:
        reader = SqliteStore(f"{tmp_path}/typo.db", read_only=True)
        with pytest.raises(StoreError, match="no database file"):
            reader.sessions_page(SessionFilter())
        reader.close()


class TestAnomalyCount:
    """Each store counts a session's anomalies on its row as it records them, in the same
    transaction: the inspector's "has anomalies" filter reads that count."""

    store_kinds = ("sqlite", "postgres")

    def test_anomalies_are_counted_once_each(self, store_factory: StoreFactory) -> None:
        store = store_factory()
        sessions = PaymentSessions(store)
        quiet = sessions.create(cart_id="cart_q", provider_id="stripe", amount=100)
        sessions.fire(quiet.id, "initiate", data={"id": "pi_q"})
        sessions.reconcile(quiet.id, "requires_capture", event_id="evt_applied")
        noisy = sessions.create(cart_id="cart_n", provider_id="stripe", amount=100)
        for event_id in ("evt_1", "evt_2", "evt_1"):  # the third is a duplicate delivery
            with contextlib.suppress(ReconciliationAnomaly):
                sessions.reconcile(noisy.id, "requires_capture", event_id=event_id)
        assert len(sessions.anomalies()) == 2
        page, _ = store.sessions_page(SessionFilter(has_anomalies=True))
        assert [s.id for s in page] == [noisy.id]
        assert _count_on_row(store_factory, noisy.id) == 2
        assert _count_on_row(store_factory, quiet.id) == 0

    def test_an_anomaly_written_by_older_code_is_counted_too(
        self, store_factory: StoreFactory
    ) -> None:
        """A process still running the code before the count (a rolling upgrade) inserts
        the event alone: the database counts it."""
        store = store_factory()
        session = PaymentSessions(store).create(cart_id="c", provider_id="stripe", amount=1)
        _sql(
            store_factory,
            "INSERT INTO paysession_provider_events (session_id, event_id, provider_status, "
            "status, session_status, outcome, recorded_at, version, kind) "
            "VALUES (?, 'evt_old', 'requires_capture', 'authorized', 'pending', 'anomaly', "
            f"{'1' if store_factory.kind == 'sqlite' else 'now()'}, 0, 'guard_refused')",
            session.id,
        )
        assert _count_on_row(store_factory, session.id) == 1
        page, _ = store.sessions_page(SessionFilter(has_anomalies=True))
        assert [s.id for s in page] == [session.id]


def _sql(factory: StoreFactory, query: str, session_id: str) -> object:
    """Run ``query`` (one ``?`` for the session id) on the factory's database, as another
    program would; the first value of its first row, if it returns one."""
    if factory.kind == "sqlite":
        with sqlite3.connect(factory.place) as conn:
            row = conn.execute(query, (session_id,)).fetchone()
        conn.close()
        return None if row is None else row[0]
    with psycopg.connect(factory.place) as pg:
        cursor = pg.execute(query.replace("?", "%s"), (session_id,))
        found = cursor.fetchone() if cursor.description else None
    return None if found is None else found[0]


def _count_on_row(factory: StoreFactory, session_id: str) -> int:
    count = _sql(factory, "SELECT anomalies FROM paysession_sessions WHERE id = ?", session_id)
    assert isinstance(count, int)
    return count
