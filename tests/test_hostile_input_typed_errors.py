"""Hostile input gets a typed error naming the field, on every path: never a raw Python error.

Each test here is one way an attacker (or a broken client) got a raw ``OverflowError``,
``ValueError`` or a silently wrong answer out of paysession before; each now gets
InvalidSessionData (or the path's own typed error) and changes nothing.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import attrs
import psycopg
import pytest

from paysession import (
    GuardRejected,
    InvalidSessionData,
    PaymentSession,
    PaymentSessions,
    PaymentSessionStatus,
    SessionMachine,
    from_json,
    to_json,
)
from paysession._wire import LATEST, RANGE, parse_datetime
from paysession.audit import BadLine, encode_line, read_jsonl, verify
from paysession.cli import demo
from paysession.cli.demo import DemoError
from paysession.limits import configure, current
from paysession.providers import ReconciliationAnomaly
from paysession.reconcile import FUTURE_TOLERANCE
from paysession.store import PostgresStore, SessionStore
from paysession.store.base import AnomalyKind, EventOutcome

from .helpers import StepClock

MEDUSA = {
    "id": "ps_1",
    "cart_id": "cart_1",
    "provider_id": "stripe",
    "is_selected": False,
    "is_initiated": True,
    "status": "pending",
    "data": {},
    "idempotency_key": None,
    "amount": 100,
    "payment_authorized_at": None,
    "created_at": "2024-04-21T14:49:01.512Z",
    "updated_at": "2024-04-21T14:49:01.512Z",
}


def wire(**changes: object) -> str:
    return json.dumps({**MEDUSA, **changes})


class TestTimestamps:
    @pytest.mark.parametrize(
        "text",
        [
            "9999-12-31T23:00:00-05:00",  # off the calendar once in UTC
            "0001-01-01T00:00:00+01:00",
            "9999-06-01T00:00:00Z",  # on the calendar, past the range
            "1969-12-31T23:59:59.999Z",
            "0001-01-01T00:00:00.000Z",
        ],
    )
    def test_outside_the_range_is_named(self, text: str) -> None:
        with pytest.raises(InvalidSessionData) as caught:
            from_json(wire(created_at=text, updated_at=text))
        assert caught.value.problems == {
            "created_at": f"must be an instant {RANGE}",
            "updated_at": f"must be an instant {RANGE}",
        }

    def test_the_range_edges(self) -> None:
        """The first instant of 1970 is in; the first of 9999 is out."""
        assert parse_datetime("1970-01-01T00:00:00Z") == datetime(1970, 1, 1, tzinfo=timezone.utc)
        last = LATEST - timedelta(microseconds=1)
        assert parse_datetime("9998-12-31T23:59:59.999999Z") == last
        with pytest.raises(ValueError, match="must be an instant"):
            parse_datetime("9999-01-01T00:00:00.000Z")

    @pytest.mark.parametrize(
        "text",
        [
            "\uff12\uff10\uff12\uff14-04-21T14:49:01Z",  # full-width digits
            "2024-04-21T14:49:0\u0661Z",  # an Arabic-Indic digit
            "2024-04-21T14:49:01+0\uff15:00",
        ],
    )
    def test_only_ascii_digits(self, text: str) -> None:
        with pytest.raises(InvalidSessionData) as caught:
            from_json(wire(created_at=text))
        assert list(caught.value.problems) == ["created_at"]

    def test_a_session_built_in_code_is_held_to_the_range(self) -> None:
        early = datetime(1, 1, 1, tzinfo=timezone.utc)
        with pytest.raises(InvalidSessionData) as caught:
            PaymentSession.new(cart_id="c", provider_id="p", amount=1, clock=lambda: early)
        assert set(caught.value.problems) == {"created_at", "updated_at"}

    def test_a_clock_past_the_range_moves_nothing(self) -> None:
        """A clock gone wild is refused before any move is stamped with it."""
        clock = StepClock()
        machine = SessionMachine(
            PaymentSession.new(cart_id="c", provider_id="p", amount=1, clock=clock),
            clock=lambda: datetime(9999, 6, 1, tzinfo=timezone.utc),
        )
        before = machine.session
        with pytest.raises(InvalidSessionData) as caught:
            machine.cancel()
        assert list(caught.value.problems) == ["clock"]
        assert machine.session is before


class TestPostgresInAnyTimeZone:
    @pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Etc/GMT+12"])
    def test_the_range_edges_read_back_in_a_far_time_zone(
        self, postgres_dsn: str, zone: str
    ) -> None:
        """A server whose time zone is 14 hours ahead, or 12 behind, still reads every row."""
        dsn = psycopg.conninfo.make_conninfo(postgres_dsn, options=f"-c TimeZone={zone}")
        with PostgresStore(dsn) as store:
            sessions = PaymentSessions(store)
            edges = [
                datetime(1970, 1, 1, tzinfo=timezone.utc),
                LATEST - timedelta(microseconds=1),
            ]
            sessions.create(cart_id="cart_now", provider_id="p", amount=1)
            for n, at in enumerate(edges):
                early = PaymentSessions(store, clock=lambda at=at: at)
                early.create(cart_id=f"edge_{n}", provider_id="p", amount=1)
            found = sorted(s.created_at for s in sessions.find())
            assert (found[0], found[-1], len(found)) == (edges[0], edges[1], 3)


class TestIntegers:
    def test_an_integer_past_the_limit_is_refused_where_it_enters(self) -> None:
        """Python reads ints of any size; data holding one is refused, not stored."""
        digits = current().int_digits
        with pytest.raises(InvalidSessionData) as caught:
            PaymentSession.new(cart_id="c", provider_id="p", amount=1, data={"n": [10**digits]})
        assert caught.value.problems == {
            "data.<key 1>[0]": f"is an integer of more than {digits} digits"
        }
        just = 10**digits - 1
        kept = PaymentSession.new(cart_id="c", provider_id="p", amount=1, data={"n": -just})
        assert from_json(to_json(kept)).data == {"n": -just}

    def test_more_digits_than_python_converts(self) -> None:
        with pytest.raises(InvalidSessionData) as caught:
            from_json(wire(data={}).replace('"data": {}', '"data": {"n": ' + "9" * 5000 + "}"))
        assert caught.value.problems == {"$": "holds a number with too many digits"}

    def test_the_limit_is_configurable(self) -> None:
        before = current()
        try:
            configure(int_digits=3)
            with pytest.raises(InvalidSessionData):
                PaymentSession.new(cart_id="c", provider_id="p", amount=1, data={"n": 1000})
            PaymentSession.new(cart_id="c", provider_id="p", amount=1, data={"n": 999})
        finally:
            configure(int_digits=before.int_digits)


class TestDuplicateKeys:
    def test_a_field_given_twice_is_named(self) -> None:
        text = wire().replace('"status": "pending"', '"status": "canceled", "status": "pending"')
        with pytest.raises(InvalidSessionData) as caught:
            from_json(text)
        assert caught.value.problems == {"status": "is given twice"}

    def test_a_key_twice_inside_data_is_refused_unnamed(self) -> None:
        """A key of data may be a secret: the error says what, not which."""
        text = wire().replace('"data": {}', '"data": {"cvc": "1", "cvc": "2"}')
        with pytest.raises(InvalidSessionData) as caught:
            from_json(text)
        assert caught.value.problems == {"$": "an object in it gives one key twice"}
        assert "cvc" not in str(caught.value)

    def test_a_trail_line_with_a_key_twice_is_a_bad_line(self, tmp_path: Path) -> None:
        machine = SessionMachine(
            PaymentSession.new(cart_id="c", provider_id="p", amount=1, clock=StepClock())
        )
        machine.cancel(reason="r")
        lines = [encode_line(record) for record in machine.history]
        lines[1] = lines[1].replace(b'"reason":"r"', b'"reason":"x","reason":"r"')
        path = tmp_path / "trail.jsonl"
        path.write_bytes(b"".join(lines))
        items = list(read_jsonl(path))
        assert items[0] == machine.history[0]
        assert isinstance(items[1], BadLine)
        assert (items[1].line, items[1].reason, items[1].message) == (
            2,
            "malformed",
            "the line gives the key 'reason' twice",
        )
        assert not verify(items).ok


class TestCounters:
    def test_positions_past_64_bits_are_refused_on_every_store(self, store: SessionStore) -> None:
        sessions = PaymentSessions(store)
        for position, limit, field in (
            (2**63, 10, "cursor"),
            (-1, 10, "cursor"),
            (1.5, 10, "cursor"),
            (0, 2**63, "limit"),
            (0, 0, "limit"),
        ):
            with pytest.raises(InvalidSessionData) as caught:
                sessions.records_since(position, limit)
            assert list(caught.value.problems) == [field]
        if not isinstance(store, PostgresStore):  # where an int position is a cursor
            assert sessions.records_since(2**63 - 1, 10) == []

    def test_expected_version_past_64_bits(self, store: SessionStore) -> None:
        sessions = PaymentSessions(store)
        session = sessions.create(cart_id="c", provider_id="p", amount=1)
        with pytest.raises(InvalidSessionData) as caught:
            sessions.fire(session.id, "cancel", expected_version=2**63)
        assert list(caught.value.problems) == ["expected_version"]
        assert sessions.version(session.id) == 0

    def test_a_trail_line_with_a_seq_past_64_bits_is_a_bad_line(self, tmp_path: Path) -> None:
        machine = SessionMachine(
            PaymentSession.new(cart_id="c", provider_id="p", amount=1, clock=StepClock())
        )
        line = encode_line(machine.history[0]).replace(b'"seq":0', b'"seq":' + str(2**63).encode())
        path = tmp_path / "trail.jsonl"
        path.write_bytes(line)
        (item,) = read_jsonl(path)
        assert isinstance(item, BadLine) and item.reason == "malformed"
        assert "seq" in item.message


class TestStatusInvariants:
    @pytest.mark.parametrize(
        "changes",
        [
            {"amount": 0},
            {"amount": None},
            {"is_initiated": False},
            {"amount": 0, "is_initiated": False, "payment_authorized_at": None},
        ],
    )
    def test_authorized_history_decodes_but_moves_are_judged(
        self, changes: dict[str, object]
    ) -> None:
        """Medusa stored authorized sessions without these fields: they read and round-trip;
        the machine's guards still refuse to authorize a session like them."""
        authorized = {
            "status": "authorized",
            "payment_authorized_at": MEDUSA["updated_at"],
            **changes,
        }
        session = from_json(wire(**authorized))
        assert session.status is PaymentSessionStatus.AUTHORIZED
        assert from_json(to_json(session)) == session
        pending = attrs.evolve(session, status=PaymentSessionStatus.PENDING)
        with pytest.raises(GuardRejected):
            SessionMachine(pending).authorize()


class TestDemoDatabaseNames:
    @pytest.mark.parametrize(
        ("given", "misread"), [("x.db?keep", "x.db"), ("%41.db", "A.db"), ("run#1.db", "run")]
    )
    def test_a_user_file_named_like_uri_syntax_is_never_removed(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str, misread: str
    ) -> None:
        """The file a plain "file:" URI would misread is a demo database; ours is not."""
        monkeypatch.chdir(tmp_path)
        conn = sqlite3.connect(misread)
        conn.execute(f"CREATE TABLE {demo._MARKER} (seed INTEGER)")
        conn.commit()
        conn.close()
        Path(given).write_bytes(b"the user's own file")
        with pytest.raises(DemoError, match="is not a paysession demo database"):
            demo.fresh_database(Path(given))
        assert Path(given).read_bytes() == b"the user's own file"

    @pytest.mark.parametrize("given", ["x.db?keep", "%41.db", "run#1.db"])
    def test_a_demo_database_with_such_a_name_is_recognized(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
    ) -> None:
        monkeypatch.chdir(tmp_path)
        conn = sqlite3.connect(given)
        conn.execute(f"CREATE TABLE {demo._MARKER} (seed INTEGER)")
        conn.commit()
        conn.close()
        demo.fresh_database(Path(given))
        assert not Path(given).exists()


class TestReportsFromTheFuture:
    def test_a_report_far_ahead_is_an_anomaly_not_the_high_water_mark(
        self, store: SessionStore
    ) -> None:
        clock = StepClock()
        sessions = PaymentSessions(store, clock=clock)
        session = sessions.create(cart_id="c", provider_id="stripe", amount=5)
        sessions.fire(session.id, "initiate", data={"id": "pi"})
        far = clock.now + timedelta(days=365 * 50)
        with pytest.raises(ReconciliationAnomaly) as caught:
            sessions.reconcile(session.id, "requires_action", event_id="e1", observed_at=far)
        assert caught.value.kind == AnomalyKind.FUTURE_REPORT.value
        assert sessions.get(session.id).status is PaymentSessionStatus.PENDING
        (anomaly,) = sessions.anomalies(session.id, kind="future_report")
        # Kept at the provider's precision (Stripe: whole seconds).
        assert anomaly.observed_at == far.replace(microsecond=0) and not anomaly.advances
        # A true report that follows is applied: the far one set no high-water mark.
        now = clock.now
        result = sessions.reconcile(session.id, "succeeded", event_id="e2", observed_at=now)
        assert result.outcome is EventOutcome.APPLIED

    def test_within_the_tolerance_is_applied(self, store: SessionStore) -> None:
        clock = StepClock()
        sessions = PaymentSessions(store, clock=clock)
        session = sessions.create(cart_id="c", provider_id="stripe", amount=5)
        sessions.fire(session.id, "initiate", data={"id": "pi"})
        ahead = clock.now + FUTURE_TOLERANCE - timedelta(seconds=1)
        result = sessions.reconcile(session.id, "succeeded", event_id="e", observed_at=ahead)
        assert result.outcome is EventOutcome.APPLIED

    def test_the_anomaly_says_why(self, store: SessionStore) -> None:
        clock = StepClock()
        sessions = PaymentSessions(store, clock=clock)
        session = sessions.create(cart_id="c", provider_id="stripe", amount=5)
        far = clock.now + timedelta(hours=1)
        with pytest.raises(ReconciliationAnomaly, match="further ahead of now"):
            sessions.reconcile(session.id, "processing", observed_at=far)
