"""PaymentSession: a validated, immutable snapshot whose data never leaks into text."""

from __future__ import annotations

import copy
import pickle
from datetime import datetime, timedelta, timezone

import attrs
import pytest

from paysession import (
    ImmutableSession,
    InvalidSessionData,
    PaymentSession,
    PaymentSessionStatus,
    SessionMachine,
)

from .helpers import T0, StepClock

SECRET = "pi_3Mt_secret_do_not_log_4242"


def fields(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "ps_01",
        "cart_id": "cart_01",
        "provider_id": "stripe",
        "is_selected": False,
        "is_initiated": True,
        "status": PaymentSessionStatus.PENDING,
        "data": {"client_secret": SECRET},
        "idempotency_key": "key",
        "amount": 100,
        "payment_authorized_at": None,
        "created_at": T0,
        "updated_at": T0,
    }
    base.update(overrides)
    return base


class TestStatus:
    def test_values(self) -> None:
        """The enum's members and wire values are Medusa's."""
        assert {s.name: s.value for s in PaymentSessionStatus} == {
            "AUTHORIZED": "authorized",
            "PENDING": "pending",
            "REQUIRES_MORE": "requires_more",
            "ERROR": "error",
            "CANCELED": "canceled",
        }
        assert PaymentSessionStatus.PENDING == "pending"
        assert str(PaymentSessionStatus.ERROR) == "error"


class TestNew:
    def test_new_session(self) -> None:
        """new() makes a pending, unselected, uninitiated session stamped once."""
        clock = StepClock()
        session = PaymentSession.new(cart_id="c", provider_id="stripe", amount=5, clock=clock)
        assert session.id.startswith("ps_") and len(session.id) == 29
        assert (session.status, session.is_selected, session.is_initiated) == (
            PaymentSessionStatus.PENDING,
            False,
            False,
        )
        assert session.created_at == session.updated_at == clock.now
        assert session.data == {} and session.payment_authorized_at is None
        assert session.idempotency_key

    def test_ids_and_keys_unique_and_sortable(self) -> None:
        """Fresh ids are unique and sort by creation time; keys are unique."""
        sessions = [
            PaymentSession.new(cart_id=None, provider_id="p", amount=None) for _ in range(500)
        ]
        ids = [s.id for s in sessions]
        assert len(set(ids)) == 500
        assert len({s.idempotency_key for s in sessions}) == 500
        early = PaymentSession.new(cart_id=None, provider_id="p", amount=None).id
        import time

        time.sleep(0.002)
        late = PaymentSession.new(cart_id=None, provider_id="p", amount=None).id
        assert early < late


class TestValidation:
    @pytest.mark.parametrize(
        ("override", "field"),
        [
            ({"id": ""}, "id"),
            ({"id": None}, "id"),
            ({"id": 5}, "id"),
            ({"cart_id": ""}, "cart_id"),
            ({"provider_id": ""}, "provider_id"),
            ({"provider_id": "x" * 300}, "provider_id"),
            ({"amount": -1}, "amount"),
            ({"amount": True}, "amount"),
            ({"amount": 1.0}, "amount"),
            ({"amount": "100"}, "amount"),
            ({"amount": 2**63}, "amount"),
            ({"is_selected": None}, "is_selected"),
            ({"is_initiated": 1}, "is_initiated"),
            ({"status": "captured"}, "status"),
            ({"data": [1]}, "data"),
            ({"data": {"n": float("nan")}}, "data.<key 1>"),
            ({"data": {"x": {1: 2}}}, "data.<key 1>.<key 1>"),
            ({"data": {"x": [object()]}}, "data.<key 1>[0]"),
            ({"created_at": T0.replace(tzinfo=None)}, "created_at"),
            ({"updated_at": "2024-01-01"}, "updated_at"),
            ({"updated_at": T0 - timedelta(seconds=1)}, "updated_at"),
            ({"cart": [1]}, "cart"),
        ],
    )
    def test_bad_field_named(self, override: dict[str, object], field: str) -> None:
        """Each bad field raises InvalidSessionData naming it (and only it)."""
        with pytest.raises(InvalidSessionData) as caught:
            PaymentSession(**fields(**override))  # type: ignore[arg-type]
        assert caught.value.fields == (field,)
        assert isinstance(caught.value, ValueError)

    def test_every_bad_field_named(self) -> None:
        """Several bad fields are all named in one error."""
        with pytest.raises(InvalidSessionData) as caught:
            PaymentSession(**fields(id="", amount=-5, status="nope"))  # type: ignore[arg-type]
        assert set(caught.value.fields) == {"id", "amount", "status"}

    def test_status_string_normalized(self) -> None:
        """A status given as its wire string becomes the enum member."""
        session = PaymentSession(**fields(status="requires_more"))  # type: ignore[arg-type]
        assert session.status is PaymentSessionStatus.REQUIRES_MORE

    def test_offsets_normalized_to_utc(self) -> None:
        """Aware datetimes in any zone are kept as the same instant in UTC."""
        plus2 = T0.astimezone(timezone(timedelta(hours=2)))
        session = PaymentSession(**fields(created_at=plus2, updated_at=plus2))  # type: ignore[arg-type]
        assert session.created_at == T0 and session.created_at.tzinfo is timezone.utc

    def test_too_deep_data(self) -> None:
        """Data nested beyond the limit is refused, not recursed into."""
        deep: dict[str, object] = {}
        node = deep
        for _ in range(100):
            node["n"] = {}
            node = node["n"]  # type: ignore[assignment]
        with pytest.raises(InvalidSessionData) as caught:
            PaymentSession(**fields(data=deep))  # type: ignore[arg-type]
        assert caught.value.fields[0].startswith("data.<key 1>.<key 1>")


class TestImmutability:
    def test_assignment_refused(self) -> None:
        """Assigning any field raises ImmutableSession naming it."""
        session = PaymentSession(**fields())  # type: ignore[arg-type]
        for name in (a.name for a in attrs.fields(PaymentSession)):
            with pytest.raises(ImmutableSession) as caught:
                setattr(session, name, None)
            assert caught.value.field == name
        with pytest.raises(ImmutableSession):
            del session.status

    def test_data_read_only(self) -> None:
        """data cannot be mutated in place, at any depth."""
        session = PaymentSession(**fields(data={"a": {"b": [1, 2]}}))  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            session.data["a"] = 1  # type: ignore[index]
        with pytest.raises(TypeError):
            session.data["a"]["b"].append(3)  # type: ignore[index]
        with pytest.raises(TypeError):
            session.data["a"].update({})  # type: ignore[index]
        assert session.data == {"a": {"b": [1, 2]}}

    def test_caller_dict_not_shared(self) -> None:
        """Mutating the dict given at construction does not change the session."""
        given = {"a": [1]}
        session = PaymentSession(**fields(data=given))  # type: ignore[arg-type]
        given["a"].append(2)
        given["b"] = [3]
        assert session.data == {"a": [1]}

    def test_pickle_and_copy(self) -> None:
        """Snapshots survive pickling (multiprocessing) and copying, still read-only."""
        session = PaymentSession(**fields(data={"a": [1, {"b": 2}]}))  # type: ignore[arg-type]
        for clone in (pickle.loads(pickle.dumps(session)), copy.deepcopy(session)):
            assert clone == session
            with pytest.raises(TypeError):
                clone.data["a"].append(1)  # type: ignore[index]

    def test_hashable(self) -> None:
        """Snapshots can be hashed (data and cart are left out of the hash)."""
        session = PaymentSession(**fields())  # type: ignore[arg-type]
        assert hash(session) == hash(PaymentSession(**fields()))  # type: ignore[arg-type]


class TestRedaction:
    def test_no_data_in_repr(self) -> None:
        """Neither data nor cart appear in repr or str of a session, record or event."""
        session = PaymentSession(**fields(cart={"email": "a@example.com"}))  # type: ignore[arg-type]
        machine = SessionMachine(session)
        machine.update(data={"client_secret": SECRET + "2"})
        texts = [repr(session), str(session), repr(machine.session), repr(machine.history)]
        for text in texts:
            assert SECRET not in text and "a@example.com" not in text
        assert "redacted" in repr(session)

    def test_no_data_in_errors(self) -> None:
        """Errors about data name the path, never the value."""
        with pytest.raises(InvalidSessionData) as caught:
            PaymentSession(**fields(data={"k": [SECRET, float("inf")]}))  # type: ignore[arg-type]
        assert caught.value.fields == ("data.<key 1>[1]",)
        assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)

    def test_no_data_key_in_errors(self) -> None:
        """A key of data can be a secret too: errors name its position, never its text."""
        card = "4242424242424242"
        with pytest.raises(InvalidSessionData) as caught:
            PaymentSession(**fields(data={"id": 1, card: float("nan")}))  # type: ignore[arg-type]
        assert caught.value.fields == ("data.<key 2>",)
        assert card not in str(caught.value) and card not in repr(caught.value)


def test_moves_keep_invariants() -> None:
    """A snapshot produced by a move passes full validation."""
    clock = StepClock()
    machine = SessionMachine(
        PaymentSession.new(cart_id="c", provider_id="p", amount=9, clock=clock), clock=clock
    )
    machine.initiate({"x": 1})
    machine.authorize()
    rebuilt = PaymentSession(
        **{a.name: getattr(machine.session, a.name) for a in attrs.fields(PaymentSession)}
    )
    assert rebuilt == machine.session
    assert isinstance(machine.session.updated_at, datetime)
