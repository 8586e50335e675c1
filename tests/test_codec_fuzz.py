"""Fuzzing the codec: arbitrary JSON and mutated payloads give a session or a typed error.

The default run is short. The long profile runs on demand:
``PAYSESSION_FUZZ_EXAMPLES=100000 pytest tests/test_codec_fuzz.py``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paysession import InvalidSessionData, PaymentSession, from_dict, from_json, to_dict

from .strategies import sessions

EXAMPLES = int(os.environ.get("PAYSESSION_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

hostile_text = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1),
    st.sampled_from(
        [
            "",
            "\x00",
            "'; DROP TABLE payment_session; --",
            '"',
            "\\",
            "x" * 100_000,
            "2024-04-21T14:50:24.077",
            "authorized ",
            "AUTHORIZED",
            "NaN",
        ]
    ),
)
any_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | hostile_text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(hostile_text, inner, max_size=5),
    max_leaves=25,
)


def check(outcome: Any) -> None:
    """The only outcomes allowed: a valid session, or InvalidSessionData."""
    assert isinstance(outcome, PaymentSession | InvalidSessionData), repr(outcome)[:200]
    if isinstance(outcome, PaymentSession):
        assert from_dict(to_dict(outcome)) == outcome


def decode_dict(payload: object) -> object:
    try:
        return from_dict(payload)  # type: ignore[arg-type]
    except InvalidSessionData as error:
        return error


def decode_json(text: str | bytes) -> object:
    try:
        return from_json(text)
    except InvalidSessionData as error:
        return error


class TestArbitraryJson:
    @FUZZ
    @given(any_json)
    def test_any_value(self, payload: object) -> None:
        """Any JSON value (deep, huge, NaN, lone surrogates) decodes or is refused cleanly."""
        check(decode_dict(payload))
        try:
            text = json.dumps(payload)
        except (ValueError, OverflowError):
            return
        check(decode_json(text))

    @FUZZ
    @given(st.binary(max_size=300))
    def test_any_bytes(self, raw: bytes) -> None:
        """Any bytes as JSON text are refused with InvalidSessionData (or decode)."""
        check(decode_json(raw))

    def test_deep_nesting(self) -> None:
        """Nesting far past the recursion limit is refused, not a crash."""
        for text in ("[" * 200_000, '{"data":' * 50_000, '{"a":' * 1000 + "1" + "}" * 1000):
            check(decode_json(text))

    def test_huge_integer(self) -> None:
        """An amount with thousands of digits is refused without a slow path."""
        check(decode_json('{"amount": ' + "9" * 5000 + "}"))
        check(decode_dict({"amount": 10**5000}))


paths = st.sampled_from(
    [
        "id",
        "cart_id",
        "provider_id",
        "is_selected",
        "is_initiated",
        "status",
        "data",
        "idempotency_key",
        "amount",
        "payment_authorized_at",
        "created_at",
        "updated_at",
        "cart",
    ]
)


class TestMutations:
    @FUZZ
    @given(sessions(), paths, any_json)
    def test_wrong_value_anywhere(self, session: PaymentSession, path: str, value: object) -> None:
        """Replacing any field of a valid payload with any JSON gives a session or an error."""
        payload = to_dict(session)
        payload[path] = value
        outcome = decode_dict(payload)
        check(outcome)
        if isinstance(outcome, InvalidSessionData):
            assert path in {p.split(".")[0].split("[")[0] for p in outcome.fields} | {"updated_at"}

    @FUZZ
    @given(sessions(), paths)
    def test_missing_field(self, session: PaymentSession, path: str) -> None:
        """Dropping any field gives a session (optional fields) or names the field."""
        payload = to_dict(session)
        del payload[path]
        check(decode_dict(payload))

    @FUZZ
    @given(sessions(), st.data())
    def test_byte_flips(self, session: PaymentSession, data: st.DataObject) -> None:
        """Flipping, dropping or doubling bytes of a valid document never escapes the error."""
        raw = bytearray(json.dumps(to_dict(session)).encode())
        for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
            at = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
            action = data.draw(st.sampled_from(["flip", "drop", "double"]))
            if action == "flip":
                raw[at] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
            elif action == "drop":
                del raw[at]
            else:
                raw.insert(at, raw[at])
            if not raw:
                break
        check(decode_json(bytes(raw)))
