"""PayPalProvider on httpx, against a local server that answers as PayPal's REST API
(its orders built from recorded PayPal sandbox answers), through cart completion."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from paysession import (
    CompletionTimeout,
    IllegalTransition,
    InvalidSessionData,
    PaymentSessions,
    PaymentSessionStatus,
)
from paysession.checkout import CompletionOutcome, cancel_payment, complete_cart
from paysession.providers.paypal import PayPalError, PayPalProvider
from paysession.store import MemoryStore, SessionStore
from paysession.store.base import CallAction

from .local_http import local_client
from .paypal_api import CLIENT_ID, CLIENT_SECRET, PayPalApi, paypal_api

S = PaymentSessionStatus
O = CompletionOutcome  # noqa: E741


@pytest.fixture
def api() -> Iterator[tuple[PayPalApi, str]]:
    with paypal_api() as running:
        yield running


def provider(base: str, *, retries: int = 0, secret: str = CLIENT_SECRET) -> PayPalProvider:
    return PayPalProvider(CLIENT_ID, secret, base_url=base, retries=retries, client=local_client())


def ready(
    store: SessionStore, paypal_provider: PayPalProvider, api: PayPalApi
) -> tuple[PaymentSessions, str]:
    """A selected session of cart_1 whose order the buyer approved (on the real clock:
    the server's answers carry the real time)."""
    sessions = PaymentSessions(store)
    session = sessions.create(
        cart_id="cart_1", provider_id="paypal", amount=4999, data={"currency": "eur"}
    )
    started = paypal_provider.initiate(session)
    sessions.fire(session.id, "initiate", data=started.data)
    sessions.select(session.id)
    api.approve(started.data["id"])  # type: ignore[arg-type]
    return sessions, session.id


def kept(sessions: PaymentSessions, session_id: str) -> str:
    return repr(
        (
            sessions.history(session_id),
            sessions.provider_events(session_id=session_id),
            sessions.store.provider_calls(session_id),
            sessions.get(session_id),
        )
    )


def test_complete_cart_authorizes_through_paypal(
    store: SessionStore, api: tuple[PayPalApi, str], caplog: pytest.LogCaptureFixture
) -> None:
    server, base = api
    paypal_provider = provider(base)
    caplog.set_level(logging.DEBUG)
    sessions, session_id = ready(store, paypal_provider, server)
    (order,) = server.orders.values()
    assert order["intent"] == "AUTHORIZE"
    (unit,) = order["purchase_units"]
    assert unit["amount"] == {"currency_code": "EUR", "value": "49.99"}
    assert unit["custom_id"] == session_id
    assert server.keys("/v2/checkout/orders") == [f"{session_id}:initiate"]
    done = complete_cart(sessions, paypal_provider, "cart_1")
    assert (done.outcome, done.session.status) == (O.AUTHORIZED, S.AUTHORIZED)
    (call,) = sessions.store.provider_calls(session_id)
    assert (call.action, call.provider_status, call.amount, call.currency) == (
        CallAction.AUTHORIZE,
        "COMPLETED",
        4999,
        "EUR",
    )
    assert server.keys("/authorize") == [call.idempotency_key]
    assert sessions.get(session_id).data == {"id": order["id"], "currency": "EUR"}
    assert [s.id for s in sessions.find(provider_id="paypal", provider_ref=order["id"])] == [
        session_id
    ]
    assert server.wrong_credentials == 0 and len(server.tokens) == 1  # one token, kept
    everything = kept(sessions, session_id) + caplog.text + repr(paypal_provider)
    assert CLIENT_SECRET not in everything and "A21AA_local" not in everything


def test_a_retried_authorization_reuses_its_request_id(
    store: SessionStore, api: tuple[PayPalApi, str]
) -> None:
    """The authorization's answer is lost; the provider asks again under the same
    PayPal-Request-Id and PayPal answers its first answer: one authorization."""
    server, base = api
    paypal_provider = provider(base, retries=1)
    sessions, session_id = ready(store, paypal_provider, server)
    server.drop_next_answer = True
    done = complete_cart(sessions, paypal_provider, "cart_1")
    assert done.outcome is O.AUTHORIZED
    (key,) = {call.idempotency_key for call in sessions.store.provider_calls(session_id)}
    assert server.keys("/authorize") == [key, key]
    assert server.authorizations == 1


def test_a_completion_that_lost_its_answer_completes_again(
    store: SessionStore, api: tuple[PayPalApi, str]
) -> None:
    """Without retries the completion times out; completing again finds the order
    authorized, never authorized twice, every authorization under one key."""
    server, base = api
    paypal_provider = provider(base)
    sessions, session_id = ready(store, paypal_provider, server)
    server.drop_next_answer = True
    with pytest.raises(CompletionTimeout) as caught:
        complete_cart(sessions, paypal_provider, "cart_1")
    assert sessions.get(session_id).status is S.PENDING
    again = complete_cart(sessions, paypal_provider, "cart_1")
    assert again.outcome is O.AUTHORIZED
    assert set(server.keys("/authorize")) == {caught.value.idempotency_key}
    assert server.authorizations == 1


def test_paypal_failing_is_a_timeout_and_completing_again_authorizes_once(
    store: SessionStore, api: tuple[PayPalApi, str]
) -> None:
    """PayPal answers HTTP 503 to the authorization: completion times out; completing
    again authorizes under the same PayPal-Request-Id."""
    server, base = api
    paypal_provider = provider(base)
    sessions, _ = ready(store, paypal_provider, server)
    server.fail_next = True
    with pytest.raises(CompletionTimeout) as caught:
        complete_cart(sessions, paypal_provider, "cart_1")
    assert complete_cart(sessions, paypal_provider, "cart_1").outcome is O.AUTHORIZED
    key = caught.value.idempotency_key
    assert server.keys("/authorize") == [key, key]
    assert server.authorizations == 1


def test_a_declined_funding_source_asks_the_buyer_for_another(
    store: SessionStore, api: tuple[PayPalApi, str]
) -> None:
    """PayPal declines the funding source (INSTRUMENT_DECLINED): the order stays
    approved, the buyer must choose another (requires_more), then it authorizes."""
    server, base = api
    paypal_provider = provider(base)
    sessions, session_id = ready(store, paypal_provider, server)
    server.decline_next = True
    done = complete_cart(sessions, paypal_provider, "cart_1")
    assert (done.outcome, done.session.status) == (O.REQUIRES_MORE, S.REQUIRES_MORE)
    (call,) = sessions.store.provider_calls(session_id)
    assert call.provider_status == "APPROVED"
    again = complete_cart(sessions, paypal_provider, "cart_1")
    assert again.outcome is O.AUTHORIZED
    first, second = server.keys("/authorize")
    assert second == f"{first}:1"


def test_an_order_the_buyer_has_not_approved_is_not_authorized(
    store: SessionStore, api: tuple[PayPalApi, str]
) -> None:
    server, base = api
    paypal_provider = provider(base)
    sessions = PaymentSessions(store)
    session = sessions.create(
        cart_id="cart_2", provider_id="paypal", amount=1000, data={"currency": "usd"}
    )
    sessions.fire(session.id, "initiate", data=paypal_provider.initiate(session).data)
    sessions.select(session.id)
    done = complete_cart(sessions, paypal_provider, "cart_2")
    assert (done.outcome, done.session.status) == (O.PROCESSING, S.PENDING)
    assert done.provider_status == "CREATED"
    assert server.keys("/authorize") == []


def test_cancel_payment_voids_the_authorization(
    store: SessionStore, api: tuple[PayPalApi, str]
) -> None:
    server, base = api
    paypal_provider = provider(base)
    sessions, session_id = ready(store, paypal_provider, server)
    complete_cart(sessions, paypal_provider, "cart_1")
    cancel_payment(sessions, paypal_provider, session_id)
    assert sessions.get(session_id).status is S.CANCELED
    (order,) = server.orders.values()
    (authorization,) = order["purchase_units"][0]["payments"]["authorizations"]
    assert authorization["status"] == "VOIDED"
    key = sessions.get(session_id).idempotency_key
    assert server.keys("/void") == [f"{key}:cancel"]
    calls = sessions.store.provider_calls(session_id)
    assert {call.action: call.provider_status for call in calls} == {
        CallAction.AUTHORIZE: "COMPLETED",
        CallAction.CANCEL: "VOIDED",
    }
    # Voided already: said as it is, nothing asked again.
    again = paypal_provider.cancel(sessions.get(session_id), idempotency_key="another")
    assert again.status == "VOIDED" and server.keys("/void") == [f"{key}:cancel"]


def test_an_order_never_authorized_is_canceled_without_a_call(
    store: SessionStore, api: tuple[PayPalApi, str]
) -> None:
    """Nothing is held: PayPal has no call that cancels an order; the session is canceled."""
    server, base = api
    paypal_provider = provider(base)
    sessions, session_id = ready(store, paypal_provider, server)
    cancel_payment(sessions, paypal_provider, session_id)
    assert sessions.get(session_id).status is S.CANCELED
    assert server.keys("/void") == []


def test_update_status_and_a_lapsed_token(store: SessionStore, api: tuple[PayPalApi, str]) -> None:
    server, base = api
    paypal_provider = provider(base)
    sessions, session_id = ready(store, paypal_provider, server)
    sessions.fire(session_id, "update", amount=5100)
    server.lapse_tokens()  # PayPal refuses the token: a new one, the same request
    reply = paypal_provider.update(sessions.get(session_id))
    assert (reply.status, reply.amount, reply.currency) == ("APPROVED", 5100, "EUR")
    assert reply.observed_at is not None and reply.observed_at.microsecond == 0
    (change,) = [body for method, _, _, body in server.requests if method == "PATCH"]
    assert change[0]["value"] == {"currency_code": "EUR", "value": "51.00"}
    assert len(server.tokens) == 1  # the lapsed one is gone, one new one given


def test_paypals_refusals_are_typed(store: SessionStore, api: tuple[PayPalApi, str]) -> None:
    _, base = api
    with pytest.raises(PayPalError) as wrong:
        provider(base, secret="EL_another_secret").initiate(
            PaymentSessions(MemoryStore()).create(
                cart_id=None, provider_id="paypal", amount=100, data={"currency": "usd"}
            )
        )
    assert wrong.value.status == 401 and wrong.value.issue == "invalid_client"
    assert "EL_another_secret" not in str(wrong.value)
    paypal_provider = provider(base)
    sessions = PaymentSessions(store)
    session = sessions.create(
        cart_id=None, provider_id="paypal", amount=100, data={"currency": "usd", "id": "NOPE"}
    )
    with pytest.raises(PayPalError) as unknown:
        paypal_provider.status(session)
    assert (unknown.value.status, unknown.value.issue) == (404, "INVALID_RESOURCE_ID")
    assert unknown.value.debug_id == "f1e2d3c4b5a69"


def test_a_captured_authorization_is_not_canceled(
    store: SessionStore, api: tuple[PayPalApi, str]
) -> None:
    """An authorization captured at PayPal (by the merchant's own tooling) is said as it
    is: the cancellation is refused and nothing is voided."""
    server, base = api
    paypal_provider = provider(base)
    sessions, session_id = ready(store, paypal_provider, server)
    complete_cart(sessions, paypal_provider, "cart_1")
    (order,) = server.orders.values()
    order["purchase_units"][0]["payments"]["authorizations"][0]["status"] = "CAPTURED"
    with pytest.raises(IllegalTransition):
        cancel_payment(sessions, paypal_provider, session_id)
    assert sessions.get(session_id).status is S.AUTHORIZED
    assert server.keys("/void") == []


def test_it_needs_credentials_an_order_and_a_currency() -> None:
    with pytest.raises(InvalidSessionData) as caught:
        PayPalProvider("", "", retries=-1)
    assert set(caught.value.fields) == {"client_id", "client_secret", "retries"}
    sessions = PaymentSessions(MemoryStore())
    session = sessions.create(cart_id=None, provider_id="paypal", amount=1)
    paypal_provider = PayPalProvider(CLIENT_ID, CLIENT_SECRET, client=httpx.Client())
    with pytest.raises(InvalidSessionData) as no_currency:
        paypal_provider.initiate(session)
    assert no_currency.value.fields == ("currency",)
    with pytest.raises(InvalidSessionData) as no_order:
        paypal_provider.status(session)
    assert no_order.value.fields == ("data.id",)
