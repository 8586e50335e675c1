"""Medusa's wire JSON: round trips, camelCase and old payloads in, every bad input named."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import given

from paysession import (
    InvalidSessionData,
    PaymentSession,
    PaymentSessionStatus,
    from_dict,
    from_json,
    to_dict,
    to_json,
)
from paysession._wire import RANGE
from paysession.codec import make_converter

from .strategies import sessions

# A session as Medusa's API sends it.
MEDUSA = {
    "id": "ps_01HQ2Z6Y7XK3D9N8P4R5T6V7W8",
    "cart_id": "cart_01HQ2Z5M3B4C5D6E7F8G9H0J1K",
    "provider_id": "stripe",
    "is_selected": True,
    "is_initiated": True,
    "status": "authorized",
    "data": {"id": "pi_3Mt", "client_secret": "pi_3Mt_secret", "amount": 4999},
    "idempotency_key": "3f5c7a9e-7f51-4d0e-9b1c-6f2b8d3e4a11",
    "amount": 4999,
    "payment_authorized_at": "2024-04-21T14:50:24.079Z",
    "created_at": "2024-04-21T14:49:01.512Z",
    "updated_at": "2024-04-21T14:50:24.077Z",
}


class TestRoundTrip:
    @given(sessions())
    def test_dict_round_trip(self, session: PaymentSession) -> None:
        """from_dict(to_dict(s)) == s, microseconds included."""
        assert from_dict(to_dict(session)) == session

    @given(sessions())
    def test_json_round_trip(self, session: PaymentSession) -> None:
        """from_json(to_json(s)) == s."""
        assert from_json(to_json(session)) == session

    def test_medusa_payload(self) -> None:
        """A real Medusa payload decodes and encodes back to the same JSON."""
        session = from_dict(MEDUSA)
        assert session.status is PaymentSessionStatus.AUTHORIZED
        assert session.amount == 4999
        assert to_dict(session) == {**MEDUSA, "cart": None}

    def test_authorized_a_little_after_updated(self) -> None:
        """payment_authorized_at a few ms after updated_at (two clocks in Medusa) decodes."""
        session = from_dict(MEDUSA)
        assert session.payment_authorized_at > session.updated_at  # type: ignore[operator]


class TestOutput:
    def test_timestamps(self) -> None:
        """Timestamps are UTC with Z: milliseconds when whole, else microseconds."""
        session = from_dict(MEDUSA)
        wire = to_dict(session)
        assert wire["created_at"] == "2024-04-21T14:49:01.512Z"
        micro = from_dict({**MEDUSA, "created_at": "2024-04-21T14:49:01.512345Z"})
        assert to_dict(micro)["created_at"] == "2024-04-21T14:49:01.512345Z"

    def test_snake_case_keys(self) -> None:
        """Output keys are Medusa's snake_case names, all 13 of them."""
        assert set(to_dict(from_dict(MEDUSA))) == set(MEDUSA) | {"cart"}

    def test_to_dict_is_mutable_copy(self) -> None:
        """Changing to_dict's output does not touch the session."""
        session = from_dict(MEDUSA)
        wire = to_dict(session)
        wire["data"]["id"] = "changed"
        assert session.data["id"] == "pi_3Mt"

    def test_own_converter(self) -> None:
        """The converter is our own; cattrs' global converter is left alone."""
        import cattrs

        assert make_converter() is not cattrs.global_converter
        with pytest.raises(cattrs.errors.StructureHandlerNotFoundError):
            cattrs.structure("2024-04-21T14:49:01.512Z", datetime)


class TestInput:
    def test_camel_case(self) -> None:
        """The Java client's camelCase names are accepted."""
        camel = {
            "id": MEDUSA["id"],
            "cartId": MEDUSA["cart_id"],
            "providerId": "stripe",
            "isSelected": True,
            "isInitiated": True,
            "status": "authorized",
            "data": MEDUSA["data"],
            "idempotencyKey": MEDUSA["idempotency_key"],
            "amount": 4999,
            "paymentAuthorizedAt": MEDUSA["payment_authorized_at"],
            "createdAt": MEDUSA["created_at"],
            "updatedAt": MEDUSA["updated_at"],
        }
        assert from_dict(camel) == from_dict(MEDUSA)

    def test_nulls(self) -> None:
        """Medusa's nulls: is_selected null reads False; nullable fields read None."""
        session = from_dict(
            {
                **MEDUSA,
                "status": "pending",
                "is_selected": None,
                "amount": None,
                "cart_id": None,
                "idempotency_key": None,
                "payment_authorized_at": None,
            }
        )
        assert (session.is_selected, session.amount, session.cart_id) == (False, None, None)
        assert (session.idempotency_key, session.payment_authorized_at) == (None, None)

    def test_old_payload_omits_fields(self) -> None:
        """Fields older Medusa versions omit read as their null or default."""
        old = {k: MEDUSA[k] for k in ("id", "provider_id", "data", "created_at", "updated_at")}
        session = from_dict({**old, "status": "pending"})
        assert (session.is_initiated, session.is_selected, session.amount, session.cart) == (
            False,
            False,
            None,
            None,
        )

    def test_offsets_normalized(self) -> None:
        """Any UTC offset is read and normalized to UTC."""
        session = from_dict({**MEDUSA, "created_at": "2024-04-21T16:49:01.512+02:00"})
        assert session.created_at == datetime(2024, 4, 21, 14, 49, 1, 512000, tzinfo=timezone.utc)
        assert session.created_at.tzinfo is timezone.utc

    def test_nanoseconds_truncated(self) -> None:
        """Fractions finer than microseconds (Java) are truncated."""
        session = from_dict({**MEDUSA, "created_at": "2024-04-21T14:49:01.512345678Z"})
        assert session.created_at.microsecond == 512345

    def test_bytes_json(self) -> None:
        """from_json accepts bytes as well as text."""
        assert from_json(json.dumps(MEDUSA).encode()) == from_dict(MEDUSA)


def bad(**changes: object) -> dict[str, object]:
    payload = dict(MEDUSA)
    for key, value in changes.items():
        if value is DROP:
            del payload[key]
        else:
            payload[key] = value
    return payload


DROP = object()


class TestBadInput:
    @pytest.mark.parametrize(
        ("payload", "field"),
        [
            (bad(captured_at="2024-01-01T00:00:00Z"), "captured_at"),
            (bad(id=DROP), "id"),
            (bad(provider_id=DROP), "provider_id"),
            (bad(status=DROP), "status"),
            (bad(data=DROP), "data"),
            (bad(created_at=DROP), "created_at"),
            (bad(updated_at=DROP), "updated_at"),
            (bad(amount="4999"), "amount"),
            (bad(amount=True), "amount"),
            (bad(amount=49.99), "amount"),
            (bad(data=[1, 2]), "data"),
            (bad(data="{}"), "data"),
            (bad(status="captured"), "status"),
            (bad(status="succeeded"), "status"),
            (bad(status="cancelled"), "status"),
            (bad(status=3), "status"),
            (bad(created_at="2024-04-21T14:49:01.512"), "created_at"),
            (bad(created_at="yesterday"), "created_at"),
            (bad(created_at=1713710941), "created_at"),
            (bad(updated_at="2024-02-30T00:00:00Z"), "updated_at"),
            (bad(is_initiated="yes"), "is_initiated"),
            (bad(cart_id=42), "cart_id"),
            (bad(provider_id=None), "provider_id"),
            ({**bad(cart_id=DROP), "cartId": "a", "cart_id": "b"}, "cart_id"),
        ],
    )
    def test_named(self, payload: dict[str, object], field: str) -> None:
        """Each kind of bad input raises InvalidSessionData naming the field."""
        with pytest.raises(InvalidSessionData) as caught:
            from_dict(payload)
        assert field in caught.value.fields
        with pytest.raises(InvalidSessionData) as again:
            from_json(json.dumps(payload))
        assert again.value.problems == caught.value.problems

    @pytest.mark.parametrize("at", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+01:00"])
    def test_instant_beyond_the_calendar_in_utc(self, at: str) -> None:
        """An offset that carries a timestamp off the calendar is named, never an overflow."""
        with pytest.raises(InvalidSessionData) as caught:
            from_json(json.dumps(bad(created_at=at)))
        assert caught.value.problems == {"created_at": f"must be an instant {RANGE}"}

    def test_alias_twice_and_a_bad_value_named_together(self) -> None:
        """A key given under both names and a field the session refuses: both in one error."""
        with pytest.raises(InvalidSessionData) as caught:
            from_dict({**bad(amount=-1), "cartId": "cart_2"})
        assert set(caught.value.problems) == {"cartId", "amount"}
        assert caught.value.problems["cartId"] == "gives cart_id a second time"

    def test_all_bad_fields_named(self) -> None:
        """Every bad field is named in one error."""
        with pytest.raises(InvalidSessionData) as caught:
            from_dict(bad(amount="x", status="captured", extra=1, id=DROP))
        assert set(caught.value.fields) == {"amount", "status", "extra", "id"}

    @pytest.mark.parametrize(
        "text", ["not json", "[1, 2]", '"a string"', "null", "{", "", '{"a": NaN}']
    )
    def test_not_a_json_object(self, text: str) -> None:
        """Text that is not a JSON object is InvalidSessionData at the root."""
        with pytest.raises(InvalidSessionData) as caught:
            from_json(text)
        assert caught.value.fields == ("$",)

    def test_not_a_mapping(self) -> None:
        """from_dict of something that is not a mapping is InvalidSessionData."""
        with pytest.raises(InvalidSessionData) as caught:
            from_dict([("id", "x")])  # type: ignore[arg-type]
        assert caught.value.fields == ("$",)

    def test_deep_nesting(self) -> None:
        """Deeply nested JSON is refused without a RecursionError."""
        text = '{"data":' + "[" * 100_000 + "]" * 100_000 + "}"
        with pytest.raises(InvalidSessionData):
            from_json(text)
