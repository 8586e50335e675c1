"""A store's trails checked against its rows: cuts and edits made in the database are found.

The tampering is done the way an insider would, with SQL on the database behind the
store's back; each test then asks ``PaymentSessions.verify`` (one session) and
``verify_all`` (the whole store) what they see.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping

import attrs
import psycopg
import pytest
from psycopg.types.json import Jsonb

from paysession import PaymentSessions, PaymentSessionStatus, SessionNotFound
from paysession.audit import AuditProblem
from paysession.audit.stored import check_stored, verify_store
from paysession.store import MemoryStore, SessionStore
from paysession.store._rows import record_wire

from .conftest import StoreFactory
from .helpers import StepClock

CUT = "DELETE FROM paysession_records WHERE session_id = ? AND seq = "
EDIT = "UPDATE paysession_sessions SET {} = ? WHERE id = ?"


def row_of(factory: StoreFactory, session_id: str) -> dict[str, object]:
    """The session's row as the database holds it, column by column."""
    query = "SELECT * FROM paysession_sessions WHERE id = ?"
    if factory.kind == "sqlite":
        conn = sqlite3.connect(factory.place)
        cursor = conn.execute(query, (session_id,))
    else:
        conn = psycopg.connect(factory.place)  # type: ignore[assignment]
        cursor = conn.execute(query.replace("?", "%s"), (session_id,))  # type: ignore[assignment]
    names = [column[0] for column in cursor.description]
    row = dict(zip(names, cursor.fetchone(), strict=True))
    conn.close()
    return row


def roll_back(factory: StoreFactory, session_id: str, row: Mapping[str, object]) -> None:
    """Put an earlier genuine row of the session back, leaving its later records."""
    columns = [name for name in row if name not in ("id", "xact", "provider_ref")]
    assignments = ", ".join(f"{name} = ?" for name in columns)
    values = [Jsonb(row[name]) if isinstance(row[name], dict) else row[name] for name in columns]
    tamper(
        factory,
        (f"UPDATE paysession_sessions SET {assignments} WHERE id = ?", (*values, session_id)),
    )


def forge_past(factory: StoreFactory, sessions: PaymentSessions, session_id: str) -> int:
    """Insert a record one past the row's version, as mallory would; its seq."""
    last = sessions.history(session_id)[-1]
    forged = attrs.evolve(
        last,
        seq=last.seq + 1,
        trigger="cancel",
        source=last.dest,
        dest=PaymentSessionStatus.CANCELED,
        actor="mallory",
        prev_hash=last.hash,
        hash="f" * 64,
        changes={},
    )
    # PostgreSQL numbers positions itself and stamps the writing transaction; SQLite
    # takes a position given.
    position = (
        (", xact", ", pg_current_xact_id()")
        if factory.kind == "postgres"
        else (", position", ", position + 100000")
    )
    tamper(
        factory,
        (
            f"INSERT INTO paysession_records (session_id, seq{position[0]}, trigger, at, hash, "
            f"wire) SELECT session_id, ?{position[1]}, 'cancel', at, ?, ? "
            "FROM paysession_records WHERE session_id = ? AND seq = ?",
            (forged.seq, forged.hash, record_wire(forged), session_id, last.seq),
        ),
    )
    return forged.seq


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

    def test_a_forged_record_past_the_version_is_named(
        self, shop: tuple[PaymentSessions, list[str]], store_factory: StoreFactory
    ) -> None:
        """mallory's cancel at version + 1 was never checked, and verified."""
        sessions, ids = shop
        seq = forge_past(store_factory, sessions, ids[1])
        assert problem(sessions, ids[1]) == (seq, "past_version")
        whole = sessions.verify_all()
        assert [(p.session_id, p.seq, p.reason) for p in whole.problems] == [
            (ids[1], 6, "past_version")
        ]
        assert "record at seq 6 is past the row's version 5" in whole.problems[0].message
        assert whole.records == 19

    def test_a_row_rolled_back_is_found_by_its_later_records(
        self, store_factory: StoreFactory
    ) -> None:
        """authorized at version 3 put back to pending at version 2, record 3 left."""
        sessions = PaymentSessions(store_factory(), clock=StepClock())
        made = sessions.create(cart_id="cart_r", provider_id="stripe", amount=1000)
        sessions.fire(made.id, "initiate", data={"id": "pi_r"})
        sessions.fire(made.id, "update", amount=1200)
        pending = row_of(store_factory, made.id)
        sessions.fire(made.id, "authorize")
        roll_back(store_factory, made.id, pending)
        assert sessions.get(made.id).status is PaymentSessionStatus.PENDING
        assert problem(sessions, made.id) == (3, "past_version")
        assert not sessions.verify_all().ok

    def test_a_row_that_is_not_ours_is_named_and_the_audit_goes_on(
        self, shop: tuple[PaymentSessions, list[str]], store_factory: StoreFactory
    ) -> None:
        sessions, ids = shop
        tamper(store_factory, (EDIT.format("data"), ("[1]", ids[0])))
        tamper(
            store_factory,
            (
                "UPDATE paysession_records SET wire = ? WHERE session_id = ? AND seq = 2",
                ("{}", ids[2]),
            ),
        )
        whole = sessions.verify_all()
        assert [(p.session_id, p.seq, p.reason) for p in whole.problems] == [
            (ids[0], None, "unreadable"),
            (ids[2], 2, "unreadable"),
        ]
        assert (whole.sessions, whole.records) == (3, 6)
        assert "not written by paysession" in whole.problems[1].message
        assert problem(sessions, ids[2]) == (2, "unreadable")

    def test_moves_committing_during_the_audit_are_never_damage(
        self, store_factory: StoreFactory
    ) -> None:
        """Row and records are read in one snapshot: a move committing between the two
        reads cannot look like a record past the version."""
        sessions = PaymentSessions(store_factory(), clock=StepClock())
        ids = [
            sessions.create(cart_id=f"cart_c{n}", provider_id="stripe", amount=100).id
            for n in range(4)
        ]

        def move() -> None:
            mover = PaymentSessions(store_factory(), clock=StepClock())
            for n in range(1, 201):
                mover.fire(ids[n % 4], "update", amount=100 + n)

        # A fixed number of moves, audited all along: as many overlaps on a slow disk as
        # on a fast one, and trails that do not grow with the speed of the disk.
        worker = threading.Thread(target=move)
        worker.start()
        reports = []
        while worker.is_alive() or len(reports) < 60:
            reports.append(sessions.verify_all())
        worker.join()
        assert [p for r in reports for p in r.problems] == []
        assert reports[-1].records > reports[0].records

    def test_outside_heads_find_a_row_rolled_back_with_its_records(
        self, store_factory: StoreFactory
    ) -> None:
        """Rolled back and the later records removed: consistent with itself, so only
        heads taken before show the head went back."""
        sessions = PaymentSessions(store_factory(), clock=StepClock())
        made = sessions.create(cart_id="cart_h", provider_id="stripe", amount=1000)
        other = paid(sessions, "cart_o")
        sessions.fire(made.id, "initiate", data={"id": "pi_h"})
        pending = row_of(store_factory, made.id)
        sessions.fire(made.id, "authorize")
        heads = sessions.heads()
        assert heads[made.id][0] == 2 and heads[other][0] == 5
        sessions.fire(other, "cancel")  # moving on since is no problem
        assert sessions.verify_all(heads=heads).ok
        roll_back(store_factory, made.id, pending)
        tamper(store_factory, (CUT + "2", (made.id,)))
        assert sessions.verify_all().ok  # the store alone cannot tell
        report = sessions.verify_all(heads=heads)
        ((session_id, seq, reason, message),) = [
            (p.session_id, p.seq, p.reason, p.message) for p in report.problems
        ]
        assert (session_id, seq, reason) == (made.id, 2, "anchor")
        assert message.endswith("ends at seq 1 (records removed) (the row went back)")

    def test_outside_heads_find_a_vanished_session_and_a_replaced_record(
        self, shop: tuple[PaymentSessions, list[str]], store_factory: StoreFactory
    ) -> None:
        sessions, ids = shop
        heads = sessions.heads()
        tamper(
            store_factory,
            ("DELETE FROM paysession_records WHERE session_id = ?", (ids[0],)),
            ("DELETE FROM paysession_sessions WHERE id = ?", (ids[0],)),
        )
        # ids[2]'s head names another record than the one its trail holds at seq 5.
        heads[ids[2]] = (5, "e" * 64)
        report = sessions.verify_all(heads=heads)
        assert [(p.session_id, p.seq, p.reason) for p in report.problems] == [
            (ids[2], 5, "anchor"),
            (ids[0], 5, "vanished"),
        ]
        assert (report.sessions, report.records) == (2, 12)
        heads[ids[2]] = (3, "e" * 64)  # below the version: the record at seq 3 is checked
        assert [p.reason for p in sessions.verify_all(heads=heads).problems] == [
            "anchor",
            "vanished",
        ]

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
        # Pages go in id order; sessions made within one millisecond order by chance.
        records = {ids[0]: 6, ids[1]: 6, ids[2]: 5}
        assert seen == [(2, sum(records[i] for i in sorted(ids)[:2])), (3, 17)]


class TestEveryStore:
    def test_unknown_session(self, store: SessionStore) -> None:
        with pytest.raises(SessionNotFound):
            PaymentSessions(store).verify("ps_missing")

    def test_a_record_past_the_row_is_named(self, store: SessionStore) -> None:
        sessions = PaymentSessions(store, clock=StepClock())
        session_id = paid(sessions, "cart_x")
        ((snapshot, records),) = store.trails(only=session_id)  # type: ignore[misc]
        sessions.fire(session_id, "cancel")
        ((_, later),) = store.trails(only=session_id)  # type: ignore[misc]
        found = check_stored(snapshot, later)
        assert found is not None and (found.seq, found.reason) == (6, "past_version")
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
