"""Provider status maps, the shortest legal path, and the simulated provider."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from paysession import InvalidSessionData, PaymentSession, PaymentSessionStatus
from paysession.lifecycle import shortest_path
from paysession.providers import (
    ADYEN,
    KLARNA,
    PAYPAL,
    SCENARIOS,
    STRIPE,
    ProviderRules,
    ProviderTimeout,
    SimulatedProvider,
    UnknownProviderStatus,
    map_status,
    read_status,
    register_provider,
    register_status_map,
    rules_for,
    status_map,
)

from .test_reconcile import MEANS

S = PaymentSessionStatus


class TestStatusMaps:
    @pytest.mark.parametrize("provider", ["stripe", "paypal", "adyen", "klarna"])
    def test_each_map_is_the_documented_one(self, provider: str) -> None:
        """Every provider's status map reads each of its names as the docs' table says."""
        assert dict(status_map(provider)) == MEANS[provider]
        assert (
            dict({"stripe": STRIPE, "paypal": PAYPAL, "adyen": ADYEN, "klarna": KLARNA}[provider])
            == MEANS[provider]
        )

    @pytest.mark.parametrize(
        ("provider", "provider_status", "event_type", "declined", "expected"),
        [
            # Stripe: a decline puts the intent back to requires_payment_method with
            # last_payment_error; payment_intent.payment_failed says so too.
            ("stripe", "requires_payment_method", None, True, S.ERROR),
            ("stripe", "requires_payment_method", None, False, S.PENDING),
            ("stripe", "requires_payment_method", "payment_intent.payment_failed", False, S.ERROR),
            ("stripe", "requires_payment_method", "payment_intent.created", False, S.PENDING),
            # In flight is never a decline, whatever the report carries.
            ("stripe", "processing", None, True, S.PENDING),
            ("stripe", "requires_confirmation", None, True, S.PENDING),
            ("stripe", "succeeded", "payment_intent.succeeded", False, S.AUTHORIZED),
            # A decline of a status that is not waiting changes nothing.
            ("stripe", "requires_action", None, True, S.REQUIRES_MORE),
            # PayPal: the resources' events decide where the statuses collide.
            ("paypal", "CREATED", "PAYMENT.AUTHORIZATION.CREATED", False, S.AUTHORIZED),
            ("paypal", "CREATED", None, False, S.PENDING),
            ("paypal", "VOIDED", "PAYMENT.AUTHORIZATION.VOIDED", False, S.CANCELED),
            ("paypal", "COMPLETED", "PAYMENT.CAPTURE.COMPLETED", False, S.AUTHORIZED),
            ("paypal", "DECLINED", "PAYMENT.CAPTURE.DECLINED", False, S.ERROR),
            ("paypal", "PENDING", "PAYMENT.CAPTURE.PENDING", False, S.PENDING),
            ("paypal", "APPROVED", "CHECKOUT.ORDER.APPROVED", False, S.REQUIRES_MORE),
            ("klarna", "AUTHORIZED/PENDING", "FRAUD_RISK_ACCEPTED", False, S.AUTHORIZED),
            ("klarna", "AUTHORIZED/PENDING", "FRAUD_RISK_REJECTED", False, S.ERROR),
            ("adyen", "AUTHORISATION:false", None, False, S.ERROR),
        ],
    )
    def test_event_rules_and_declines(
        self,
        provider: str,
        provider_status: str,
        event_type: str | None,
        declined: bool,
        expected: S,
    ) -> None:
        """What an event type or a decline adds to a status, provider by provider."""
        assert (
            read_status(provider, provider_status, event_type=event_type, declined=declined)
            is expected
        )

    def test_an_unknown_status_is_refused_even_with_a_known_event(self) -> None:
        """An event type never makes an unknown status readable."""
        with pytest.raises(UnknownProviderStatus) as caught:
            read_status("stripe", "refunded", event_type="payment_intent.payment_failed")
        assert caught.value.provider_status == "refunded"
        with pytest.raises(UnknownProviderStatus):
            read_status("adyen", "CANCELLATION:false")

    def test_precision_and_progress(self) -> None:
        """Stripe's reports are ordered in whole seconds, then by how far along they are."""
        stripe = rules_for("stripe")
        instant = datetime(2024, 4, 20, 12, 0, 0, 600_000, tzinfo=timezone.utc)
        assert stripe.truncate(instant) == instant.replace(microsecond=0)
        assert rules_for("manual").truncate(instant) == instant
        assert stripe.rank("succeeded", S.AUTHORIZED) > stripe.rank(
            "requires_action", S.REQUIRES_MORE
        )
        assert stripe.rank("requires_payment_method", S.ERROR) > stripe.rank(
            "requires_action", S.REQUIRES_MORE
        )
        assert stripe.rank("succeeded", S.AUTHORIZED) > stripe.rank(
            "requires_capture", S.AUTHORIZED
        )

    def test_a_second_account_shares_the_rules(self) -> None:
        """``like`` gives a new provider id another's precision, progress and events."""
        register_status_map("stripe_test_account", STRIPE, like="stripe")
        assert rules_for("stripe_test_account") == rules_for("stripe")
        with pytest.raises(InvalidSessionData) as caught:
            register_status_map("x", STRIPE, like="nobody")
        assert caught.value.fields == ("like",)
        with pytest.raises(InvalidSessionData) as refused:
            register_provider("", ProviderRules(STRIPE))
        assert refused.value.fields == ("provider_id",)

    def test_unknown_status(self) -> None:
        """A status outside the provider's map is a typed error naming both."""
        with pytest.raises(UnknownProviderStatus) as caught:
            map_status("stripe", "refunded")
        assert (caught.value.provider_id, caught.value.provider_status) == ("stripe", "refunded")

    def test_register(self) -> None:
        """Another provider's map can be registered and is then used."""
        register_status_map("acme_pay", {"Authorised": "authorized", "Refused": S.ERROR})
        assert map_status("acme_pay", "Refused") is S.ERROR
        assert status_map("acme_pay")["Authorised"] is S.AUTHORIZED
        with pytest.raises(InvalidSessionData) as caught:
            register_status_map("acme_pay", {"Weird": "captured"})
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
        assert scenarios == set(SCENARIOS)
        assert "processing" in SCENARIOS

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
