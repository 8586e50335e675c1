"""A store's trails checked against its rows: cuts and edits made in the database are found.

The tampering is done the way an insider would, with SQL on the database behind the
store's back; each test then asks ``PaymentSessions.verify`` (one session) and
``verify_all`` (the whole store) what they see.
"""

from __future__ import annotations

import sqlite3

import psycopg
import pytest

from paysession import PaymentSessions, SessionNotFound
from paysession.audit import AuditProblem
from paysession.audit.stored import check_stored, verify_store
from paysession.store import MemoryStore, SessionStore

from .conftest import StoreFactory
from .helpers import StepClock

CUT = "DELETE FROM paysession_records WHERE session_id = ? AND seq = "
EDIT = "UPDATE paysession_sessions SET {} = ? WHERE id = ?"


def tamper(factory: StoreFactory, *statements: tuple[str, tuple[object, ...]]) -> None:
    """Run SQL on the store's database directly (``?`` placeholders)."""
    if factory.kind == "sqlite":
        conn = sqlite3.connect(factory.place)
        with conn:
            for sql, params in statements:
                conn.execute(sql, params)
        conn.close()
    else:
        with psycopg.connect(factory.place) as pg:
            for sql, params in statements:
                pg.execute(sql.replace("?", "%s"), params)


def paid(sessions: PaymentSessions, cart: str) -> str:
    """A session moved five times: initiate, update, require_more, retry, authorize."""
    session = sessions.create(cart_id=cart, provider_id="stripe", amount=1000)
    sessions.fire(session.id, "initiate", data={"id": f"pi_{cart}", "cvc_checked": True})
    sessions.fire(session.id, "update", amount=1200)
    sessions.fire(session.id, "require_more")
    sessions.fire(session.id, "retry")
    sessions.fire(session.id, "authorize")
    return session.id


def problem(sessions: PaymentSessions, session_id: str) -> tuple[object, ...]:
    report = sessions.verify(session_id)
    assert not report.ok and len(report.problems) == 1
    found = report.problems[0]
    assert found.session_id == session_id
    return found.seq, found.reason


class TestStoredTrails:
    store_kinds = ("sqlite", "postgres")

    @pytest.fixture
    def shop(self, store_factory: StoreFactory) -> tuple[PaymentSessions, list[str]]:
        sessions = PaymentSessions(store_factory(), clock=StepClock())
        return sessions, [paid(sessions, f"cart_{n}") for n in range(3)]

    def test_clean_store_verifies(self, shop: tuple[PaymentSessions, list[str]]) -> None:
        sessions, ids = shop
        for session_id in ids:
            report = sessions.verify(session_id)
            assert (report.ok, report.sessions, report.records) == (True, 1, 6)
        whole = sessions.verify_all()
        assert (whole.ok, whole.sessions, whole.records) == (True, 3, 18)

    def test_removed_last_record(
        self, shop: tuple[PaymentSessions, list[str]], store_factory: StoreFactory
    ) -> None:
        sessions, ids = shop
        tamper(
            store_factory,
            (CUT + "5", (ids[1],)),
        )
        assert problem(sessions, ids[1]) == (5, "trail_cut")

    def test_removed_middle_record(
        self, shop: tuple[PaymentSessions, list[str]], store_factory: StoreFactory
    ) -> None:
        sessions, ids = shop
        tamper(
            store_factory,
            (CUT + "2", (ids[0],)),
        )
        assert problem(sessions, ids[0]) == (3, "sequence")

    def test_removed_session_records(
        self, shop: tuple[PaymentSessions, list[str]], store_factory: StoreFactory
    ) -> None:
        sessions, ids = shop
        tamper(store_factory, ("DELETE FROM paysession_records WHERE session_id = ?", (ids[2],)))
        assert problem(sessions, ids[2]) == (0, "trail_cut")

    @pytest.mark.parametrize(
        ("column", "value", "reason"),
        [
            ("amount", 1, "row_mismatch"),
            ("provider_id", "paypal", "row_mismatch"),
            ("is_selected", True, "row_mismatch"),
            ("data", '{"id":"pi_other","cvc_checked":true}', "data_mismatch"),
            ("head", "0" * 64, "head"),
        ],
    )
    def test_edited_row(
        self,
        shop: tuple[PaymentSessions, list[str]],
        store_factory: StoreFactory,
        column: str,
        value: object,
        reason: str,
    ) -> None:
        sessions, ids = shop
        tamper(
            store_factory,
            (EDIT.format(column), (value, ids[1])),
        )
        seq, found = problem(sessions, ids[1])
        assert (seq, found) == (5, reason)
        if reason == "row_mismatch":
            assert column in sessions.verify(ids[1]).problems[0].message

    def test_verify_all_reports_each_bad_session_and_progress(
        self, shop: tuple[PaymentSessions, list[str]], store_factory: StoreFactory
    ) -> None:
        sessions, ids = shop
        tamper(
            store_factory,
            ("UPDATE paysession_sessions SET amount = 7 WHERE id = ?", (ids[0],)),
            (CUT + "5", (ids[2],)),
        )
        seen: list[tuple[int, int]] = []
        report = verify_store(sessions.store, progress=lambda s, r: seen.append((s, r)), page=2)
        assert (report.ok, report.sessions, report.records) == (False, 3, 17)
        assert [(p.session_id, p.seq, p.reason) for p in report.problems] == sorted(
            [(ids[0], 5, "row_mismatch"), (ids[2], 5, "trail_cut")]
        )
        assert seen == [(2, 12), (3, 17)]


class TestEveryStore:
    def test_unknown_session(self, store: SessionStore) -> None:
        with pytest.raises(SessionNotFound):
            PaymentSessions(store).verify("ps_missing")

    def test_records_after_the_row_are_later_moves(self, store: SessionStore) -> None:
        """A move committing between the row's read and the records' is not a problem."""
        sessions = PaymentSessions(store, clock=StepClock())
        session_id = paid(sessions, "cart_x")
        ((snapshot, records),) = store.trails(only=session_id)
        sessions.fire(session_id, "cancel")
        ((_, later),) = store.trails(only=session_id)
        assert check_stored(snapshot, later) is None
        assert len(later) == len(records) + 1
        assert sessions.verify_all().ok

    def test_found_on_the_memory_store_too(self) -> None:
        store = MemoryStore()
        sessions = PaymentSessions(store, clock=StepClock())
        session_id = paid(sessions, "cart_m")
        store._trails[session_id].pop()  # what a cut does to a trail
        assert sessions.verify(session_id).problems == (
            AuditProblem(
                session_id,
                5,
                5,
                "trail_cut",
                "the trail ends at seq 4 but the session's row is at version 5",
            ),
        )
