"""StripeProvider on the Stripe SDK, against a local server that answers as Stripe's API
(its PaymentIntents built from Stripe's OpenAPI fixture), through cart completion."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import stripe

from paysession import (
    CompletionTimeout,
    InvalidSessionData,
    PaymentSessions,
    PaymentSessionStatus,
)
from paysession.checkout import CompletionOutcome, cancel_payment, complete_cart
from paysession.providers.stripe import StripeProvider, parse_webhook
from paysession.store import MemoryStore, SessionStore
from paysession.store.base import CallAction

from .stripe_api import StripeApi, stripe_api

S = PaymentSessionStatus
O = CompletionOutcome  # noqa: E741


@pytest.fixture
def api() -> Iterator[tuple[StripeApi, str]]:
    with stripe_api() as running:
        yield running


def provider(base: str, *, retries: int = 0) -> StripeProvider:
    client = stripe.StripeClient(
        "sk_test_local", base_addresses={"api": base}, max_network_retries=retries
    )
    return StripeProvider(client)


def ready(
    store: SessionStore, stripe_provider: StripeProvider, api: StripeApi
) -> tuple[PaymentSessions, str]:
    """A selected session of cart_1 whose intent the customer gave a card to (on the
    real clock: the server's answers carry the real time)."""
    sessions = PaymentSessions(store)
    session = sessions.create(
        cart_id="cart_1", provider_id="stripe", amount=4999, data={"currency": "EUR"}
    )
    started = stripe_provider.initiate(session)
    sessions.fire(session.id, "initiate", data=started.data)
    sessions.select(session.id)
    api.attach(started.data["id"])  # type: ignore[arg-type]
    return sessions, session.id


def test_complete_cart_authorizes_through_stripe(
    store: SessionStore, api: tuple[StripeApi, str]
) -> None:
    server, base = api
    stripe_provider = provider(base)
    sessions, session_id = ready(store, stripe_provider, server)
    (intent,) = server.intents.values()
    assert (intent["amount"], intent["currency"]) == (4999, "eur")
    assert intent["metadata"] == {"session_id": session_id}
    assert intent["capture_method"] == "manual"
    done = complete_cart(sessions, stripe_provider, "cart_1")
    assert (done.outcome, done.session.status) == (O.AUTHORIZED, S.AUTHORIZED)
    (call,) = sessions.store.provider_calls(session_id)
    assert call.action is CallAction.AUTHORIZE and call.amount == 4999
    assert server.keys("/confirm") == [call.idempotency_key]
    assert sessions.get(session_id).data == {"id": intent["id"], "currency": "eur"}
    kept = repr((sessions.history(session_id), sessions.provider_events(session_id=session_id)))
    assert "secret" not in kept


def test_a_retried_confirmation_reuses_its_idempotency_key(
    store: SessionStore, api: tuple[StripeApi, str]
) -> None:
    """The confirmation's answer is lost; the SDK asks again under the same key and
    Stripe answers the first answer: one confirmation, one hold."""
    server, base = api
    stripe_provider = provider(base, retries=1)
    sessions, session_id = ready(store, stripe_provider, server)
    server.drop_next_answer = True
    done = complete_cart(sessions, stripe_provider, "cart_1")
    assert done.outcome is O.AUTHORIZED
    (key,) = {call.idempotency_key for call in sessions.store.provider_calls(session_id)}
    assert server.keys("/confirm") == [key, key]
    assert server.confirmations == 1


def test_a_completion_that_lost_its_answer_completes_again(
    store: SessionStore, api: tuple[StripeApi, str]
) -> None:
    """Without the SDK's retries the completion times out; completing again finds the
    payment authorized, never confirmed twice, and every confirmation under one key."""
    server, base = api
    stripe_provider = provider(base)
    sessions, session_id = ready(store, stripe_provider, server)
    server.drop_next_answer = True
    with pytest.raises(CompletionTimeout) as caught:
        complete_cart(sessions, stripe_provider, "cart_1")
    assert sessions.get(session_id).status is S.PENDING
    again = complete_cart(sessions, stripe_provider, "cart_1")
    assert again.outcome is O.AUTHORIZED
    assert set(server.keys("/confirm")) == {caught.value.idempotency_key}
    assert server.confirmations == 1


def test_a_declined_card_is_declined(store: SessionStore, api: tuple[StripeApi, str]) -> None:
    server, base = api
    stripe_provider = provider(base)
    sessions, session_id = ready(store, stripe_provider, server)
    server.decline_next = True
    done = complete_cart(sessions, stripe_provider, "cart_1")
    assert (done.outcome, done.session.status) == (O.DECLINED, S.ERROR)
    (call,) = sessions.store.provider_calls(session_id)
    assert call.provider_status == "requires_payment_method"


def test_cancel_payment_cancels_the_intent(store: SessionStore, api: tuple[StripeApi, str]) -> None:
    server, base = api
    stripe_provider = provider(base)
    sessions, session_id = ready(store, stripe_provider, server)
    cancel_payment(sessions, stripe_provider, session_id)
    assert sessions.get(session_id).status is S.CANCELED
    (intent,) = server.intents.values()
    assert intent["status"] == "canceled"
    key = sessions.get(session_id).idempotency_key
    assert server.keys("/cancel") == [f"{key}:cancel"]
    # Canceled already: said as it is, not an error.
    again = stripe_provider.cancel(sessions.get(session_id), idempotency_key="another")
    assert again.status == "canceled"


def test_update_status_and_client_secret(store: SessionStore, api: tuple[StripeApi, str]) -> None:
    server, base = api
    stripe_provider = provider(base)
    sessions, session_id = ready(store, stripe_provider, server)
    sessions.fire(session_id, "update", amount=5100)
    reply = stripe_provider.update(sessions.get(session_id))
    assert (reply.status, reply.amount, reply.currency) == ("requires_confirmation", 5100, "eur")
    assert reply.observed_at is not None and reply.observed_at.microsecond == 0
    assert "client_secret" not in reply.data
    (intent,) = server.intents.values()
    assert stripe_provider.client_secret(sessions.get(session_id)) == intent["client_secret"]
    assert stripe_provider.status(sessions.get(session_id)).amount == 5100


def test_a_webhook_of_its_intent_finds_the_session(
    store: SessionStore, api: tuple[StripeApi, str]
) -> None:
    """The intent StripeProvider made names its session: Stripe's event applies to it."""
    server, base = api
    stripe_provider = provider(base)
    sessions, session_id = ready(store, stripe_provider, server)
    complete_cart(sessions, stripe_provider, "cart_1")
    (intent,) = server.intents.values()
    event = {
        "id": "evt_local_1",
        "object": "event",
        "type": "payment_intent.amount_capturable_updated",
        "created": int(time.time()),
        "data": {"object": intent},
    }
    body = json.dumps(event).encode()
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), "whsec_local")
    report = parse_webhook(body, header, "whsec_local")
    assert report is not None and report.session_id == session_id
    assert "secret" not in repr(report)
    done = sessions.reconcile_report(report, provider=stripe_provider)
    assert done.records == () and sessions.get(session_id).status is S.AUTHORIZED


def test_it_needs_a_stripe_client_and_an_initiated_session() -> None:
    with pytest.raises(InvalidSessionData) as caught:
        StripeProvider(object())  # type: ignore[arg-type]
    assert caught.value.fields == ("client",)
    sessions = PaymentSessions(MemoryStore())
    session = sessions.create(cart_id=None, provider_id="stripe", amount=1)
    stripe_provider = StripeProvider(stripe.StripeClient("sk_test_local"))
    with pytest.raises(InvalidSessionData) as no_currency:
        stripe_provider.initiate(session)
    assert no_currency.value.fields == ("currency",)
    with pytest.raises(InvalidSessionData) as no_intent:
        stripe_provider.status(session)
    assert no_intent.value.fields == ("data.id",)
