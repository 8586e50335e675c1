"""Bounded input: over a limit is InvalidSessionData naming the field, found cheaply."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from paysession import InvalidSessionData, PaymentSession, PaymentSessionStatus, from_json, to_json
from paysession.limits import Limits, configure, current

from .helpers import machine_in


@pytest.fixture
def small_limits() -> Iterator[Limits]:
    before = current()
    yield configure(data_bytes=1000, text_length=50, id_length=40, depth=5)
    configure(
        **{
            name: getattr(before, name)
            for name in ("data_bytes", "text_length", "id_length", "depth")
        }
    )


class TestDefaults:
    def test_defaults(self) -> None:
        """1 MiB of data, 4096-character texts, 256-character ids, 64 levels."""
        assert Limits() == Limits(data_bytes=1024 * 1024, text_length=4096, id_length=256, depth=64)

    def test_data_over_a_mebibyte(self) -> None:
        """A 2 MB string in data is refused, naming data."""
        with pytest.raises(InvalidSessionData) as caught:
            PaymentSession.new(
                cart_id="c", provider_id="p", amount=1, data={"blob": "x" * 2_000_000}
            )
        assert caught.value.fields == ("data",)

    def test_document_too_long(self) -> None:
        """from_json refuses text longer than any valid document before parsing it."""
        with pytest.raises(InvalidSessionData) as caught:
            from_json('{"data": "' + "x" * (3 * 1024 * 1024) + '"}')
        assert caught.value.fields == ("$",)


class TestConfigured:
    def test_data_size(self, small_limits: Limits) -> None:
        """Data just under the limit is kept; just over is refused."""
        PaymentSession.new(cart_id="c", provider_id="p", amount=1, data={"k": "x" * 900})
        with pytest.raises(InvalidSessionData) as caught:
            PaymentSession.new(cart_id="c", provider_id="p", amount=1, data={"k": ["x" * 100] * 10})
        assert caught.value.fields == ("data",)

    def test_many_small_items(self, small_limits: Limits) -> None:
        """Size counts structure too: many tiny items add up."""
        with pytest.raises(InvalidSessionData) as caught:
            PaymentSession.new(cart_id="c", provider_id="p", amount=1, data={"k": [0] * 1000})
        assert caught.value.fields == ("data",)

    def test_depth(self, small_limits: Limits) -> None:
        """Data nested past the depth limit is refused at the deep path."""
        with pytest.raises(InvalidSessionData) as caught:
            PaymentSession.new(cart_id="c", provider_id="p", amount=1, data={"a": [[[[[1]]]]]})
        assert caught.value.fields == ("data.<key 1>[0][0][0][0]",)

    def test_ids(self, small_limits: Limits) -> None:
        """Ids over the limit are refused naming the field."""
        with pytest.raises(InvalidSessionData) as caught:
            PaymentSession.new(cart_id="c" * 41, provider_id="p", amount=1)
        assert caught.value.fields == ("cart_id",)

    @pytest.mark.parametrize("name", ["actor", "reason", "idempotency_key"])
    def test_move_texts(self, small_limits: Limits, name: str) -> None:
        """actor, reason and idempotency_key over their limits are refused; nothing moves."""
        machine = machine_in(PaymentSessionStatus.PENDING)
        before = machine.session
        with pytest.raises(InvalidSessionData) as caught:
            machine.fire("fail", **{name: "x" * 60})  # type: ignore[arg-type]
        assert caught.value.fields == (name,)
        assert machine.session is before

    def test_update_data_size(self, small_limits: Limits) -> None:
        """A move's data is held to the same limit."""
        machine = machine_in(PaymentSessionStatus.PENDING)
        with pytest.raises(InvalidSessionData) as caught:
            machine.update(data={"k": "x" * 5000})
        assert caught.value.fields == ("data",)

    def test_round_trip_at_the_limit(self, small_limits: Limits) -> None:
        """A session that fits the limits survives its own wire form."""
        session = PaymentSession.new(cart_id="c", provider_id="p", amount=1, data={"k": "é" * 400})
        assert from_json(to_json(session)) == session

    def test_bad_configuration(self) -> None:
        """Limits must be positive ints with known names."""
        with pytest.raises(InvalidSessionData) as caught:
            configure(data_bytes=0, colour=3)
        assert set(caught.value.fields) == {"data_bytes", "colour"}


class TestText:
    @pytest.mark.parametrize("field", ["id", "cart_id", "provider_id", "idempotency_key"])
    def test_lone_surrogate_in_ids(self, field: str) -> None:
        """A lone surrogate cannot be stored anywhere: refused, naming the field."""
        wire = {
            "id": "ps_1",
            "provider_id": "p",
            "status": "pending",
            "data": {},
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            field: "bad\ud800",
        }
        from paysession import from_dict

        with pytest.raises(InvalidSessionData) as caught:
            from_dict(wire)
        assert caught.value.fields == (field,)

    def test_lone_surrogate_in_data(self) -> None:
        """Lone surrogates in data values or keys are refused at their path."""
        with pytest.raises(InvalidSessionData) as caught:
            PaymentSession.new(
                cart_id="c", provider_id="p", amount=1, data={"a": ["\udfff"], "\ud800": 1}
            )
        assert set(caught.value.fields) == {"data.<key 1>[0]", "data.<key 2>"}
