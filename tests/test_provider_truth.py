"""Providers read truly: real behaviour and real payloads at the money boundary.

One class per way the boundary used to give a wrong answer (each on every store):
whole-second webhooks and expiry, payments in flight, declines, amounts, holds left on
canceled sessions, holds released without a trace, and Medusa's own stored sessions.
Then the corpus of public payloads in ``tests/data/providers`` replayed, each to the
move ``docs/providers.md`` documents.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from Adyen import util as adyen_util
from hypothesis import given, settings
from hypothesis import strategies as st

from paysession import (
    CartBusy,
    CartConflict,
    PaymentSession,
    PaymentSessions,
    PaymentSessionStatus,
    ProviderReply,
    ReconciliationAnomaly,
    from_dict,
    to_dict,
)
from paysession.checkout import CompletionOutcome, cancel_payment, complete_cart, complete_session
from paysession.expiry import expire_sessions
from paysession.providers import adyen as adyen_adapter
from paysession.providers import paypal as paypal_adapter
from paysession.providers import read_status, status_map
from paysession.providers import stripe as stripe_adapter
from paysession.store import MemoryStore, SessionStore, SqliteStore
from paysession.store.base import AnomalyKind, CallAction, EventOutcome, ProviderCall

from .helpers import StepClock, provider_table

S = PaymentSessionStatus
O = CompletionOutcome  # noqa: E741
NOON = datetime(2024, 4, 20, 12, 0, 0, tzinfo=timezone.utc)
DATA = Path(__file__).parent / "data" / "providers"
ADYEN_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"


class Stripe:
    """A provider that answers as Stripe does, scripted by the test: what it says to each
    kind of call is set on it (the last answer set stands), and every call is listed."""

    id = "stripe"

    def __init__(self, amount: int = 4999) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.authorize_reply = intent("requires_capture", amount)
        self.status_reply = intent("requires_payment_method", amount)
        self.cancel_reply = intent("canceled", amount)
        self.during_authorize: list[Any] = []

    def initiate(self, session: PaymentSession) -> ProviderReply:
        self.calls.append(("initiate", None))
        return intent("requires_payment_method", session.amount)

    def update(self, session: PaymentSession) -> ProviderReply:
        self.calls.append(("update", None))
        return intent("requires_payment_method", session.amount)

    def authorize(self, session: PaymentSession, *, idempotency_key: str) -> ProviderReply:
        self.calls.append(("authorize", idempotency_key))
        while self.during_authorize:
            self.during_authorize.pop(0)()
        return self.authorize_reply

    def cancel(self, session: PaymentSession, *, idempotency_key: str) -> ProviderReply:
        self.calls.append(("cancel", idempotency_key))
        return self.cancel_reply

    def status(self, session: PaymentSession) -> ProviderReply:
        self.calls.append(("status", None))
        return self.status_reply

    def asked(self, kind: str) -> list[str | None]:
        return [key for name, key in self.calls if name == kind]


def intent(
    status: str,
    amount: int | None,
    *,
    at: datetime | None = None,
    decline: str | None = None,
) -> ProviderReply:
    """A PaymentIntent as Stripe answers it (the client secret among its data)."""
    data = {"id": "pi_3Mt", "client_secret": "pi_3Mt_secret_do_not_keep", "status": status}
    return ProviderReply(status, data, at, amount=amount, currency="usd", decline=decline)


def checkout(store: SessionStore, amount: int = 4999) -> tuple[PaymentSessions, str]:
    """A service on ``store`` and the initiated, selected session of cart_1."""
    sessions = PaymentSessions(store, clock=StepClock(start=NOON - timedelta(seconds=30)))
    session = sessions.create(cart_id="cart_1", provider_id="stripe", amount=amount)
    sessions.fire(session.id, "initiate", data={"id": "pi_3Mt", "currency": "usd"})
    sessions.select(session.id)
    return sessions, session.id


class TestWholeSecondWebhooks:
    def test_a_webhook_of_the_same_second_as_the_answer_applies(self, store: SessionStore) -> None:
        """3-D Secure answered at 12:00:00.600; succeeded's webhook carries 12:00:00: applied."""
        sessions, session_id = checkout(store)
        stripe = Stripe()
        stripe.authorize_reply = intent("requires_action", 4999, at=NOON + timedelta(seconds=0.6))
        assert complete_cart(sessions, stripe, "cart_1").outcome is O.REQUIRES_MORE
        done = sessions.reconcile(
            session_id,
            "succeeded",
            event_id="evt_1",
            observed_at=NOON,
            event_type="payment_intent.succeeded",
            amount=4999,
        )
        assert done.outcome is EventOutcome.APPLIED
        assert sessions.get(session_id).status is S.AUTHORIZED
        # The answer was kept at Stripe's precision: whole seconds.
        (answer, _) = sessions.provider_events(session_id=session_id)
        assert answer.observed_at == NOON

    def test_of_one_second_the_report_further_along_wins(self, store: SessionStore) -> None:
        """Same second, out of order: requires_action after succeeded is stale, kept."""
        sessions, session_id = checkout(store)
        sessions.reconcile(session_id, "succeeded", event_id="evt_2", observed_at=NOON)
        late = sessions.reconcile(session_id, "requires_action", event_id="evt_1", observed_at=NOON)
        assert late.outcome is EventOutcome.STALE
        assert sessions.get(session_id).status is S.AUTHORIZED
        # A whole second older is stale whatever it says.
        older = sessions.reconcile(
            session_id, "canceled", event_id="evt_0", observed_at=NOON - timedelta(seconds=1)
        )
        assert older.outcome is EventOutcome.STALE

    def test_expiry_asks_first_and_never_cancels_a_paid_intent(self, store: SessionStore) -> None:
        """The webhook never came: expiry finds the intent succeeded and records it."""
        sessions, session_id = checkout(store)
        stripe = Stripe()
        stripe.authorize_reply = intent("requires_action", 4999, at=NOON)
        complete_cart(sessions, stripe, "cart_1")
        stripe.status_reply = intent("succeeded", 4999, at=NOON + timedelta(seconds=2))
        clock = sessions.clock
        assert isinstance(clock, StepClock)
        clock.now += timedelta(days=1)
        expired = expire_sessions(sessions, stripe, older_than=timedelta(hours=1))
        assert (expired.authorized, expired.canceled) == ((session_id,), ())
        assert stripe.asked("cancel") == []
        assert sessions.get(session_id).status is S.AUTHORIZED

    def test_expiry_leaves_a_payment_in_flight(self, store: SessionStore) -> None:
        """Still processing at the provider: left for the next run, nothing canceled."""
        sessions, session_id = checkout(store)
        stripe = Stripe()
        stripe.status_reply = intent("processing", 4999)
        clock = sessions.clock
        assert isinstance(clock, StepClock)
        clock.now += timedelta(days=1)
        expired = expire_sessions(sessions, stripe, older_than=timedelta(hours=1))
        assert (expired.in_flight, expired.canceled) == ((session_id,), ())
        assert stripe.asked("cancel") == [] and sessions.get(session_id).status is S.PENDING

    def test_cancel_payment_records_an_unknown_authorization_first(
        self, store: SessionStore
    ) -> None:
        """Asked to cancel, the provider says it holds the money: recorded, then canceled."""
        sessions, session_id = checkout(store)
        stripe = Stripe()
        stripe.status_reply = intent("requires_capture", 4999, at=NOON)
        cancel_payment(sessions, stripe, session_id)
        trail = [record.trigger for record in sessions.history(session_id)]
        assert trail[-2:] == ["authorize", "cancel"]
        assert stripe.asked("cancel") == [f"{sessions.get(session_id).idempotency_key}:cancel"]


class TestInFlight:
    def test_processing_is_not_a_decline(self, store: SessionStore) -> None:
        """An answer of processing: the session stays pending; completing again asks."""
        sessions, session_id = checkout(store)
        stripe = Stripe()
        stripe.authorize_reply = intent("processing", 4999, at=NOON)
        done = complete_cart(sessions, stripe, "cart_1")
        assert (done.outcome, done.session.status) == (O.PROCESSING, S.PENDING)
        assert [r.trigger for r in sessions.history(session_id)][-1] != "fail"
        stripe.status_reply = intent("succeeded", 4999, at=NOON + timedelta(seconds=3))
        again = complete_cart(sessions, stripe, "cart_1")
        assert (again.outcome, again.session.status) == (O.AUTHORIZED, S.AUTHORIZED)
        assert stripe.asked("status") == [None]

    def test_processing_after_the_customer_acted_is_no_retry(self, store: SessionStore) -> None:
        """requires_action, then processing: the session waits, it is not sent back."""
        sessions, session_id = checkout(store)
        sessions.reconcile(session_id, "requires_action", event_id="evt_1", observed_at=NOON)
        after = sessions.reconcile(
            session_id, "processing", event_id="evt_2", observed_at=NOON + timedelta(seconds=1)
        )
        assert after.outcome is EventOutcome.NOOP and after.records == ()
        assert sessions.get(session_id).status is S.REQUIRES_MORE


class TestDeclines:
    def test_payment_failed_after_requires_action_is_recorded(self, store: SessionStore) -> None:
        """payment_intent.payment_failed is a decline: fail to error, never a quiet retry."""
        sessions, session_id = checkout(store)
        sessions.reconcile(session_id, "requires_action", event_id="evt_1", observed_at=NOON)
        failed = sessions.reconcile(
            session_id,
            "requires_payment_method",
            event_id="evt_2",
            observed_at=NOON,
            event_type="payment_intent.payment_failed",
        )
        assert [r.trigger for r in failed] == ["fail"]
        assert failed.event is not None and failed.event.status is S.ERROR
        assert sessions.get(session_id).status is S.ERROR

    def test_last_payment_error_is_a_decline(self, store: SessionStore) -> None:
        """requires_payment_method with last_payment_error (Stripe's own fixture): error."""
        sessions, session_id = checkout(store)
        fixture = json.loads(
            (
                DATA / "stripe/payment_intent_requires_payment_method_last_payment_error"
                ".stripe-openapi.json"
            ).read_text()
        )
        declined = sessions.reconcile(
            session_id,
            fixture["status"],
            event_id="evt_1",
            decline=fixture["last_payment_error"]["type"],
        )
        assert [r.trigger for r in declined] == ["fail"]
        # Without the error it is what it says: waiting for a payment method.
        sessions.fire(session_id, "retry")
        plain = sessions.reconcile(session_id, fixture["status"], event_id="evt_2")
        assert plain.outcome is EventOutcome.NOOP

    def test_a_declined_answer_is_declined(self, store: SessionStore) -> None:
        """Completion: an answer carrying a decline is declined; the next attempt is new."""
        sessions, _ = checkout(store)
        stripe = Stripe()
        stripe.authorize_reply = intent("requires_payment_method", 4999, decline="card_declined")
        done = complete_cart(sessions, stripe, "cart_1")
        assert (done.outcome, done.session.status) == (O.DECLINED, S.ERROR)


class TestAmounts:
    def test_a_report_for_another_amount_does_not_authorize(self, store: SessionStore) -> None:
        """4242 reported for a session of 4999: an anomaly, the session untouched."""
        sessions, session_id = checkout(store)
        before = sessions.history(session_id)
        with pytest.raises(ReconciliationAnomaly) as caught:
            sessions.reconcile(session_id, "succeeded", event_id="evt_1", amount=4242)
        assert (caught.value.kind, caught.value.voided) == ("amount_mismatch", False)
        assert "another amount" in str(caught.value)
        assert sessions.history(session_id) == before
        assert sessions.get(session_id).status is S.PENDING
        (anomaly,) = sessions.anomalies(session_id)
        assert anomaly.kind is AnomalyKind.AMOUNT_MISMATCH

    def test_with_the_provider_at_hand_the_hold_is_voided(self, store: SessionStore) -> None:
        """The same report with the provider: voided there, the session canceled, kept."""
        sessions, session_id = checkout(store)
        stripe = Stripe()
        with pytest.raises(ReconciliationAnomaly) as caught:
            sessions.reconcile(
                session_id, "succeeded", event_id="evt_1", amount=4242, provider=stripe
            )
        assert caught.value.voided
        assert sessions.get(session_id).status is S.CANCELED
        key = sessions.get(session_id).idempotency_key
        assert stripe.asked("cancel") == [f"{key}:void"]
        assert sessions.holds(session_id).voided and not sessions.holds(session_id).unreleased

    def test_another_currency_does_not_authorize(self, store: SessionStore) -> None:
        """The right amount in another currency than the session's data: an anomaly."""
        sessions, session_id = checkout(store)
        with pytest.raises(ReconciliationAnomaly) as caught:
            sessions.reconcile(session_id, "succeeded", amount=4999, currency="EUR")
        assert caught.value.kind == "amount_mismatch"
        done = sessions.reconcile(session_id, "succeeded", amount=4999, currency="USD")
        assert done.outcome is EventOutcome.APPLIED

    def test_no_new_amount_while_the_provider_is_asked(self, store: SessionStore) -> None:
        """Another tab's update of the amount during a completion is CartBusy."""
        sessions, session_id = checkout(store, amount=5000)
        stripe = Stripe(amount=5000)
        refused: list[BaseException] = []

        def other_tab() -> None:
            try:
                sessions.fire(session_id, "update", amount=1)
            except CartBusy as busy:
                refused.append(busy)

        stripe.during_authorize.append(other_tab)
        done = complete_cart(sessions, stripe, "cart_1")
        assert len(refused) == 1
        assert (done.outcome, done.session.amount) == (O.AUTHORIZED, 5000)

    def test_an_answer_for_another_amount_is_voided(self, store: SessionStore) -> None:
        """The provider holds 5000, the session says 1: voided, never authorized at 1."""
        sessions, session_id = checkout(store, amount=1)
        stripe = Stripe(amount=5000)
        done = complete_cart(sessions, stripe, "cart_1")
        assert (done.outcome, done.anomaly) == (O.VOIDED, "amount_mismatch")
        assert sessions.get(session_id).status is S.CANCELED
        assert stripe.asked("cancel") == [f"{sessions.get(session_id).idempotency_key}:void"]
        calls = sessions.store.provider_calls(session_id)
        assert [(c.action, c.status) for c in calls] == [
            (CallAction.AUTHORIZE, S.AUTHORIZED),
            (CallAction.VOID, S.CANCELED),
        ]


class TestHoldsOfCanceledSessions:
    def late_authorization(self, store: SessionStore) -> tuple[PaymentSessions, str]:
        """Canceled by a plain fire("cancel") during 3-D Secure; the authorization arrives
        late, with no provider at hand: an anomaly, the money still held."""
        sessions, session_id = checkout(store)
        sessions.reconcile(session_id, "requires_action", event_id="evt_1", observed_at=NOON)
        sessions.fire(session_id, "cancel", actor="storefront")
        with pytest.raises(ReconciliationAnomaly) as caught:
            sessions.reconcile(
                session_id, "succeeded", event_id="evt_2", observed_at=NOON + timedelta(seconds=5)
            )
        assert not caught.value.voided
        assert [s.id for s in sessions.unreleased_holds()] == [session_id]
        return sessions, session_id

    def test_a_redelivery_with_the_provider_voids_it(self, store: SessionStore) -> None:
        sessions, session_id = self.late_authorization(store)
        stripe = Stripe()
        again = sessions.reconcile(
            session_id,
            "succeeded",
            event_id="evt_2",
            observed_at=NOON + timedelta(seconds=5),
            provider=stripe,
        )
        assert (again.outcome, again.voided) == (EventOutcome.DUPLICATE, True)
        assert sessions.unreleased_holds() == []
        # A third delivery finds it released: the provider is not asked again.
        third = sessions.reconcile(session_id, "succeeded", event_id="evt_2", provider=stripe)
        assert not third.voided and len(stripe.asked("cancel")) == 1

    def test_expiry_sweeps_it(self, store: SessionStore) -> None:
        sessions, session_id = self.late_authorization(store)
        stripe = Stripe()
        expired = expire_sessions(sessions, stripe, older_than=timedelta(hours=1))
        assert expired.released == (session_id,)
        assert sessions.unreleased_holds() == []
        assert expire_sessions(sessions, stripe, older_than=timedelta(hours=1)).released == ()

    def test_completing_a_session_of_a_paid_cart_asks_nothing(self, store: SessionStore) -> None:
        """complete_session on another session of an authorized cart: CartConflict first."""
        sessions, session_id = checkout(store)
        stripe = Stripe()
        complete_cart(sessions, stripe, "cart_1")
        other = sessions.create(cart_id="cart_1", provider_id="paypal", amount=4999)
        sessions.fire(other.id, "initiate", data={"id": "PAYID"})
        with pytest.raises(CartConflict) as caught:
            complete_session(sessions, {"stripe": stripe, "paypal": stripe}, other.id)
        assert caught.value.cart_id == "cart_1" and session_id in caught.value.reason
        assert len(stripe.asked("authorize")) == 1


class TestEveryCallIsAFact:
    def test_calls_are_kept_with_their_answers_and_no_secret(self, store: SessionStore) -> None:
        """Authorize, then cancel: both kept with keys, answers and times; no client secret."""
        sessions, session_id = checkout(store)
        stripe = Stripe()
        complete_cart(sessions, stripe, "cart_1")
        cancel_payment(sessions, stripe, session_id)
        key = sessions.get(session_id).idempotency_key
        calls = sessions.store.provider_calls(session_id)
        assert [(c.action, c.idempotency_key, c.provider_status, c.amount) for c in calls] == [
            (CallAction.AUTHORIZE, key, "requires_capture", 4999),
            (CallAction.CANCEL, f"{key}:cancel", "canceled", 4999),
        ]
        assert all(c.asked_at <= c.answered_at for c in calls)
        assert "secret" not in repr(calls)
        holds = sessions.holds(session_id)
        assert (len(holds.asked) > 0, len(holds.released), holds.unreleased) == (True, 2, False)

    def test_a_rejected_report_keeps_nothing(self, store: SessionStore) -> None:
        """Bad facts are typed refusals naming the field; nothing is recorded."""
        sessions, session_id = checkout(store)
        for bad in ({"amount": -1}, {"amount": True}, {"currency": ""}, {"event_type": 5}):
            with pytest.raises(ValueError) as caught:
                sessions.reconcile(session_id, "succeeded", **bad)  # type: ignore[arg-type]
            assert set(caught.value.problems) == set(bad)  # type: ignore[attr-defined]
        assert sessions.provider_events(session_id=session_id) == []
        assert sessions.store.provider_calls(session_id) == []


class TestMedusaHistory:
    def test_medusas_own_fixture_decodes_and_round_trips(self) -> None:
        """medusa-react's authorized session (no is_initiated, is_selected null) reads."""
        payload = json.loads(
            (DATA / "medusa/payment_session_authorized.medusa-react.json").read_text()
        )
        assert "is_initiated" not in payload and payload["is_selected"] is None
        session = from_dict(payload)
        assert (session.status, session.amount, session.is_initiated) == (S.AUTHORIZED, 900, False)
        assert from_dict(to_dict(session)) == session


# -- the corpus


def manifest() -> Iterator[Any]:
    for entry in json.loads((DATA / "MANIFEST.json").read_text()):
        if entry["provider"] != "medusa":
            yield pytest.param(entry, id=entry["file"])


# What each payload becomes for a pending session of its own amount: docs/providers.md.
BECOMES: dict[str, S | None] = {
    "stripe/payment_intent_requires_payment_method_last_payment_error.stripe-openapi.json": S.ERROR,
    "stripe/payment_intent_succeeded.dj-stripe.json": S.AUTHORIZED,
    "stripe/payment_intent_canceled.dj-stripe.json": S.CANCELED,
    "stripe/payment_intent_requires_action.saleor.json": S.REQUIRES_MORE,
    "stripe/payment_intent_requires_capture.saleor.json": S.AUTHORIZED,
    "stripe/payment_intent_succeeded_after_capture.saleor.json": S.AUTHORIZED,
    "stripe/event_payment_intent_created.stripe-ruby-mock.json": S.PENDING,
    "stripe/event_payment_intent_requires_action.stripe-ruby-mock.json": S.REQUIRES_MORE,
    "stripe/event_payment_intent_processing.stripe-ruby-mock.json": S.PENDING,
    "stripe/event_payment_intent_amount_capturable_updated.stripe-ruby-mock.json": S.AUTHORIZED,
    "stripe/event_payment_intent_payment_failed.stripe-ruby-mock.json": S.ERROR,
    "stripe/event_payment_intent_canceled.stripe-ruby-mock.json": S.CANCELED,
    "stripe/event_payment_intent_succeeded.stripe-ruby-mock.json": S.AUTHORIZED,
    "stripe/event_charge_succeeded.stripe-ruby-mock.json": None,  # carries no PaymentIntent
    "paypal/event_payment_authorization_created_v1.paypal-openapi.json": S.AUTHORIZED,
    "adyen/notification_authorisation_true.adyen-java.json": S.AUTHORIZED,
    "adyen/notification_cancellation_true.adyen-java.json": S.CANCELED,
    "adyen/notification_capture_true.adyen-java.json": S.AUTHORIZED,
    "adyen/notification_capture_false.adyen-java.json": None,  # says nothing of the payment
    "adyen/notification_refund_true.adyen-java.json": None,  # after capture: not a session's
    "adyen/notification_refund_false.adyen-java.json": None,
    "klarna/payments_order_fraud_accepted.kco_rest_php.json": S.AUTHORIZED,
    "klarna/instant_shopping_order_fraud_rejected.kco_rest_php.json": S.ERROR,
}
for _name in ("backslash", "colon", "forwardslash", "mixed"):
    BECOMES[f"adyen/notification_item_authorisation_true_{_name}.adyen-python.json"] = S.AUTHORIZED
# The Checkout API's answers, as AdyenProvider reads them (the cancels: taken, canceled).
BECOMES["adyen/checkout_payments_authorised.adyen-openapi.json"] = S.AUTHORIZED
BECOMES["adyen/checkout_payments_redirect_shopper.adyen-openapi.json"] = S.REQUIRES_MORE
BECOMES["adyen/checkout_payments_details_authorised.adyen-openapi.json"] = S.AUTHORIZED
BECOMES["adyen/checkout_payment_cancels_received.adyen-openapi.json"] = S.CANCELED
BECOMES["adyen/checkout_cancels_received.adyen-openapi.json"] = S.CANCELED
# PayPal's orders, as PayPalProvider reads them.
BECOMES["paypal/order_created.django-oscar-paypal.json"] = S.PENDING
BECOMES["paypal/order_approved.django-oscar-paypal.json"] = S.REQUIRES_MORE
BECOMES["paypal/order_authorized.django-oscar-paypal.json"] = S.AUTHORIZED


def facts(entry: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any] | None:
    """What a provider's payload says, for ``reconcile``, as the provider's adapter reads
    it (Stripe's, Adyen's and PayPal's from ``paysession.providers``; Klarna's corpus
    holds create answers, not orders read back); None for a payload about no payment."""
    provider = entry["provider"]
    if provider == "stripe":
        if payload.get("object") == "event":
            report = stripe_adapter.read_event(payload)
            if report is None:
                return None  # a Charge, a Customer: no PaymentIntent, nothing to reconcile
            return {
                "provider_status": report.status,
                "event_type": report.event_type,
                "amount": report.amount,
                "currency": report.currency,
                "decline": report.decline,
            }
        intent = stripe_adapter.read_intent(payload)
        return {
            "provider_status": intent["status"],
            "amount": intent["amount"],
            "currency": intent["currency"],
            "decline": intent["decline"],
        }
    if provider == "adyen" and entry["kind"] in ("payment_response", "cancel_response"):
        answer = adyen_adapter.read_answer(payload)
        assert answer["psp_reference"] in (entry["object_id"], None)
        return {
            "provider_status": answer["status"],
            "amount": answer["amount"],
            "currency": answer["currency"],
            "decline": answer["decline"],
        }
    if provider == "adyen":
        item = payload.get("notificationItems", [{}])[0].get("NotificationRequestItem", payload)
        item = {**item, "additionalData": {}}
        bare = {name: value for name, value in item.items() if name != "additionalData"}
        item["additionalData"]["hmacSignature"] = adyen_util.generate_notification_sig(
            bare, ADYEN_KEY
        ).decode()
        notification = {"notificationItems": [{"NotificationRequestItem": item}]}
        reports = adyen_adapter.parse_notification(json.dumps(notification).encode(), ADYEN_KEY)
        # An item that says nothing of the payment is left out: read as the map reads it.
        return {
            "provider_status": reports[0].status
            if reports
            else f"{item['eventCode']}:{item['success']}",
            "amount": reports[0].amount if reports else item["amount"]["value"],
            "currency": reports[0].currency if reports else item["amount"]["currency"],
        }
    if provider == "paypal" and entry["kind"] == "order":
        order = paypal_adapter.read_order(payload)
        assert order["id"] == entry["object_id"]
        return {
            "provider_status": order["status"],
            "amount": order["amount"],
            "currency": order["currency"],
            "decline": order["decline"],
        }
    if provider == "paypal":
        report = paypal_adapter.read_event(payload)
        assert report is not None
        return {
            "provider_status": report.status,
            "event_type": report.event_type,
            "amount": report.amount,
            "currency": report.currency,
        }
    # Klarna: an order answered at creation is authorized, pending its fraud check.
    return {"provider_status": f"AUTHORIZED/{payload['fraud_status']}"}


@pytest.mark.parametrize("entry", list(manifest()))
def test_every_public_payload_becomes_its_documented_move(entry: dict[str, Any]) -> None:
    payload = json.loads((DATA / entry["file"]).read_text())
    said = facts(entry, payload)
    expected = BECOMES[entry["file"]]
    if said is None:
        assert expected is None
        return
    assert said.get("amount") == entry["amount"]  # the manifest and the file agree
    if expected is None:
        with pytest.raises(LookupError):  # UnknownProviderStatus: a typed refusal
            read_status(entry["provider"], said["provider_status"])
        return
    sessions = PaymentSessions(MemoryStore(), clock=StepClock())
    amount = said.get("amount") or 1000
    session = sessions.create(cart_id=None, provider_id=entry["provider"], amount=amount)
    sessions.fire(session.id, "initiate", data={"id": entry["object_id"] or "ref"})
    done = sessions.reconcile(session.id, event_id=f"evt_{entry['file']}", **said)
    assert sessions.get(session.id).status is expected
    assert done.outcome is (EventOutcome.NOOP if expected is S.PENDING else EventOutcome.APPLIED)


def test_the_corpus_is_whole() -> None:
    """Every file kept is in the manifest and in SOURCES.md with a full commit, and back."""
    kept = {str(path.relative_to(DATA)) for path in DATA.rglob("*.json")} - {"MANIFEST.json"}
    listed = {entry["file"] for entry in json.loads((DATA / "MANIFEST.json").read_text())}
    assert kept == listed
    sources = (DATA / "SOURCES.md").read_text()
    for name in kept:
        (row,) = [line for line in sources.splitlines() if line.startswith(f"| `{name}` |")]
        assert len([cell for cell in row.split("`") if len(cell) == 40]) == 1
    assert set(BECOMES) | {"medusa/payment_session_authorized.medusa-react.json"} == kept


def documented_rows() -> Iterator[Any]:
    for provider, status, event, becomes in provider_table():
        yield pytest.param(provider, status, event, becomes, id=f"{provider}-{status}-{event}")


@pytest.mark.parametrize(("provider", "status", "event", "becomes"), list(documented_rows()))
def test_each_documented_row_is_the_code(
    provider: str, status: str, event: str | None, becomes: S
) -> None:
    assert read_status(provider, status, event_type=event) is becomes


def test_every_status_of_every_map_is_documented() -> None:
    rows = {(p.values[0], p.values[1]) for p in documented_rows()}
    for provider in ("stripe", "paypal", "adyen", "klarna"):
        assert {(provider, name) for name in status_map(provider)} <= rows


class TestHoldsProperty:
    """For every sequence of reports, calls and moves, each store lists as unreleased
    exactly the sessions whose holds say so."""

    STEPS = st.lists(
        st.tuples(
            st.integers(0, 1),
            st.sampled_from(["authorized", "canceled", "void", "authorize", "cancel", "pending"]),
        ),
        max_size=8,
    )

    @settings(max_examples=40, deadline=None)
    @given(steps=STEPS)
    def test_unreleased_holds_agree_with_holds(self, steps: list[tuple[int, str]]) -> None:
        with tempfile.TemporaryDirectory() as folder:
            for store in (MemoryStore(), SqliteStore(Path(folder) / "holds.db")):
                sessions = PaymentSessions(store, clock=StepClock())
                ids = []
                for n in range(2):
                    made = sessions.create(cart_id=f"cart_{n}", provider_id="stripe", amount=900)
                    sessions.fire(made.id, "initiate", data={"id": f"pi_{n}"})
                    ids.append(made.id)
                for number, (which, step) in enumerate(steps):
                    session = sessions.get(ids[which])
                    self.play(sessions, session, step, number)
                expected = {i for i in ids if sessions.holds(i).unreleased}
                assert {s.id for s in sessions.unreleased_holds()} == expected
                store.close()

    @staticmethod
    def play(sessions: PaymentSessions, session: PaymentSession, step: str, number: int) -> None:
        now = sessions.clock()
        if step in ("authorized", "canceled"):
            status = "requires_capture" if step == "authorized" else "canceled"
            with contextlib.suppress(ReconciliationAnomaly):  # recorded all the same
                sessions.reconcile(session.id, status, event_id=f"evt_{number}")
        elif step in ("void", "authorize"):
            answer = "canceled" if step == "void" else "requires_capture"
            action = CallAction.VOID if step == "void" else CallAction.AUTHORIZE
            call = ProviderCall(
                session.id, action, f"k{number}", answer, read_status("stripe", answer), now, now
            )
            sessions.store.record_calls([call])
        elif step == "cancel" and session.status is not S.CANCELED:
            sessions.fire(session.id, "cancel")
        elif step == "pending" and session.status in (S.REQUIRES_MORE, S.ERROR):
            sessions.fire(session.id, "retry")
