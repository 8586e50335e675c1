"""Provider status maps, the shortest legal path, and the simulated provider."""

from __future__ import annotations

import pytest

from paysession import InvalidSessionData, PaymentSession, PaymentSessionStatus
from paysession.lifecycle import shortest_path
from paysession.providers import (
    PAYPAL,
    STRIPE,
    ProviderTimeout,
    SimulatedProvider,
    UnknownProviderStatus,
    map_status,
    register_status_map,
    status_map,
)

S = PaymentSessionStatus


class TestStatusMaps:
    def test_stripe(self) -> None:
        """Stripe's PaymentIntent statuses map as the design says."""
        assert dict(STRIPE) == {
            "requires_payment_method": S.PENDING,
            "requires_confirmation": S.PENDING,
            "processing": S.PENDING,
            "requires_action": S.REQUIRES_MORE,
            "requires_capture": S.AUTHORIZED,
            "succeeded": S.AUTHORIZED,
            "canceled": S.CANCELED,
        }

    def test_paypal(self) -> None:
        """PayPal's order statuses map as Medusa's plugin reads them."""
        assert dict(PAYPAL) == {
            "CREATED": S.PENDING,
            "SAVED": S.REQUIRES_MORE,
            "APPROVED": S.REQUIRES_MORE,
            "PAYER_ACTION_REQUIRED": S.REQUIRES_MORE,
            "VOIDED": S.CANCELED,
            "COMPLETED": S.AUTHORIZED,
        }

    def test_unknown_status(self) -> None:
        """A status outside the provider's map is a typed error naming both."""
        with pytest.raises(UnknownProviderStatus) as caught:
            map_status("stripe", "refunded")
        assert (caught.value.provider_id, caught.value.provider_status) == ("stripe", "refunded")

    def test_register(self) -> None:
        """Another provider's map can be registered and is then used."""
        register_status_map("adyen", {"Authorised": "authorized", "Refused": S.ERROR})
        assert map_status("adyen", "Refused") is S.ERROR
        assert status_map("adyen")["Authorised"] is S.AUTHORIZED
        with pytest.raises(InvalidSessionData) as caught:
            register_status_map("adyen", {"Weird": "captured"})
        assert caught.value.fields == ("mapping.Weird",)
        with pytest.raises(UnknownProviderStatus):
            status_map("nobody")


class TestShortestPath:
    @pytest.mark.parametrize(
        ("source", "dest", "path"),
        [
            (S.PENDING, S.PENDING, ()),
            (S.PENDING, S.AUTHORIZED, ("authorize",)),
            (S.REQUIRES_MORE, S.PENDING, ("retry",)),
            (S.ERROR, S.AUTHORIZED, ("retry", "authorize")),
            (S.ERROR, S.REQUIRES_MORE, ("retry", "require_more")),
            (S.AUTHORIZED, S.CANCELED, ("cancel",)),
            (S.AUTHORIZED, S.PENDING, None),
            (S.CANCELED, S.AUTHORIZED, None),
            (S.CANCELED, S.PENDING, None),
        ],
    )
    def test_paths(self, source: S, dest: S, path: tuple[str, ...] | None) -> None:
        """The fewest status moves, or None when no legal path exists."""
        assert shortest_path(source, dest) == path


class TestSimulatedProvider:
    def test_deterministic(self) -> None:
        """The same seed plays the same scenario for the same session."""
        assert SimulatedProvider(7).scenario("ps_1") == SimulatedProvider(7).scenario("ps_1")
        scenarios = {SimulatedProvider(7).scenario(f"ps_{i}") for i in range(200)}
        assert scenarios == {"authorized", "requires_more", "declined_then_retry", "timeout"}

    def test_idempotent_authorization(self) -> None:
        """The same key gets the same answer and counts as one authorization."""
        provider = SimulatedProvider(1)
        session = next(
            s
            for s in (
                PaymentSession.new(cart_id="c", provider_id="stripe", amount=5) for _ in range(100)
            )
            if provider.scenario(s.id) == "authorized"
        )
        first = provider.authorize(session, idempotency_key="k")
        assert provider.authorize(session, idempotency_key="k") == first
        assert provider.authorizations == {"k": 1}

    def test_timeout_once(self) -> None:
        """The timeout scenario fails the first call only."""
        provider = SimulatedProvider(1)
        session = next(
            s
            for s in (
                PaymentSession.new(cart_id="c", provider_id="stripe", amount=5) for _ in range(100)
            )
            if provider.scenario(s.id) == "timeout"
        )
        with pytest.raises(ProviderTimeout):
            provider.authorize(session, idempotency_key="k")
        assert provider.authorize(session, idempotency_key="k").status == "requires_capture"
