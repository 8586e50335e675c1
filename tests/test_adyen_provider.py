"""AdyenProvider on the Adyen library, against a local server that answers as Adyen's
Checkout API (its answers built from Adyen's OpenAPI examples), through cart completion."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import Adyen
import pytest
from Adyen import util

from paysession import (
    CompletionTimeout,
    InvalidSessionData,
    PaymentSessions,
    PaymentSessionStatus,
)
from paysession.checkout import CompletionOutcome, cancel_payment, complete_cart
from paysession.providers.adyen import AdyenProvider, parse_notification
from paysession.store import MemoryStore, SessionStore
from paysession.store.base import CallAction

from .adyen_api import API_KEY, AdyenApi, adyen_api

S = PaymentSessionStatus
O = CompletionOutcome  # noqa: E741

CARD = {
    # The card of Adyen's own /payments example: its test values of encrypted fields.
    "type": "scheme",
    "encryptedCardNumber": "test_4111111111111111",
    "encryptedExpiryMonth": "test_03",
    "encryptedExpiryYear": "test_2030",
    "encryptedSecurityCode": "test_737",
}
BROWSER = {"userAgent": "Mozilla/5.0", "acceptHeader": "text/html", "language": "nl-NL"}
HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"


@pytest.fixture
def api() -> Iterator[tuple[AdyenApi, str]]:
    with adyen_api() as running:
        yield running


def provider(base: str, *, key: str = API_KEY) -> AdyenProvider:
    adyen = Adyen.Adyen(xapikey=key, platform="test")
    # The library's documented way to another base URL: each service's baseUrl.
    adyen.checkout.payments_api.baseUrl = base
    adyen.checkout.modifications_api.baseUrl = base
    return AdyenProvider(
        adyen.checkout,
        merchant_account="PaysessionLocal",
        return_url="https://shop.example/checkout/return",
    )


def ready(store: SessionStore, adyen_provider: AdyenProvider) -> tuple[PaymentSessions, str]:
    """A selected, initiated session of cart_1 whose Drop-in handed its card over."""
    sessions = PaymentSessions(store)
    session = sessions.create(
        cart_id="cart_1", provider_id="adyen", amount=4999, data={"currency": "eur"}
    )
    started = adyen_provider.initiate(session)
    sessions.fire(session.id, "initiate", data=started.data)
    sessions.select(session.id)
    given = {**sessions.get(session.id).data, "paymentMethod": CARD, "browserInfo": BROWSER}
    sessions.fire(session.id, "update", data=given)
    return sessions, session.id


def kept(sessions: PaymentSessions, session_id: str) -> str:
    """Everything paysession keeps of a session: its trail, reports, calls and data."""
    return repr(
        (
            sessions.history(session_id),
            sessions.provider_events(session_id=session_id),
            sessions.store.provider_calls(session_id),
            sessions.get(session_id),
        )
    )


def test_complete_cart_authorizes_through_adyen(
    store: SessionStore, api: tuple[AdyenApi, str], caplog: pytest.LogCaptureFixture
) -> None:
    server, base = api
    adyen_provider = provider(base)
    caplog.set_level(logging.DEBUG)
    sessions, session_id = ready(store, adyen_provider)
    done = complete_cart(sessions, adyen_provider, "cart_1")
    assert (done.outcome, done.session.status) == (O.AUTHORIZED, S.AUTHORIZED)
    (call,) = sessions.store.provider_calls(session_id)
    assert (call.action, call.provider_status, call.amount) == (
        CallAction.AUTHORIZE,
        "Authorised",
        4999,
    )
    assert server.keys("/payments") == [call.idempotency_key]
    (asked,) = server.bodies("/payments")
    assert asked == {
        "merchantAccount": "PaysessionLocal",
        "amount": {"value": 4999, "currency": "EUR"},
        "reference": session_id,
        "returnUrl": "https://shop.example/checkout/return",
        "paymentMethod": CARD,
        "browserInfo": BROWSER,
        "additionalData": {"manualCapture": "true"},
    }
    (psp,) = server.payments
    # The card handed over is spent: the session keeps Adyen's answer, not the card.
    assert sessions.get(session_id).data == {
        "currency": "EUR",
        "resultCode": "Authorised",
        "pspReference": psp,
    }
    assert [s.id for s in sessions.find(provider_id="adyen", provider_ref=psp)] == [session_id]
    assert server.wrong_keys == 0
    assert API_KEY not in kept(sessions, session_id) + caplog.text + repr(adyen_provider)


def test_the_api_key_is_what_adyen_checks(store: SessionStore, api: tuple[AdyenApi, str]) -> None:
    """Another key is refused by the server (HTTP 401): the library's error, nothing held."""
    server, base = api
    sessions, session_id = ready(store, provider(base, key="AQE_another_key"))
    with pytest.raises(Adyen.AdyenAPIAuthenticationError) as refused:
        complete_cart(sessions, provider(base, key="AQE_another_key"), "cart_1")
    assert "AQE_another_key" not in str(refused.value)
    assert server.wrong_keys == 1 and server.payments == {}
    assert sessions.get(session_id).status is S.PENDING


def test_a_lost_answer_is_asked_again_under_the_same_key(
    store: SessionStore, api: tuple[AdyenApi, str]
) -> None:
    """The answer to /payments is lost: completion times out; completing again asks under
    the same Idempotency-Key, and Adyen answers its first answer: one payment."""
    server, base = api
    adyen_provider = provider(base)
    sessions, session_id = ready(store, adyen_provider)
    server.drop_next_answer = True
    with pytest.raises(CompletionTimeout) as caught:
        complete_cart(sessions, adyen_provider, "cart_1")
    assert sessions.get(session_id).status is S.PENDING
    assert sessions.get(session_id).data["paymentMethod"] == CARD  # not spent: unanswered
    again = complete_cart(sessions, adyen_provider, "cart_1")
    assert again.outcome is O.AUTHORIZED
    key = caught.value.idempotency_key
    assert server.keys("/payments") == [key, key]
    assert len(server.payments) == 1
    (call,) = sessions.store.provider_calls(session_id)
    assert call.idempotency_key == key


def test_adyen_failing_is_a_timeout_and_completing_again_pays_once(
    store: SessionStore, api: tuple[AdyenApi, str]
) -> None:
    """Adyen answers HTTP 500: whether it acted is unknown to the caller, so completion
    times out; completing again asks under the same key."""
    server, base = api
    adyen_provider = provider(base)
    sessions, _ = ready(store, adyen_provider)
    server.fail_next = True
    with pytest.raises(CompletionTimeout) as caught:
        complete_cart(sessions, adyen_provider, "cart_1")
    assert complete_cart(sessions, adyen_provider, "cart_1").outcome is O.AUTHORIZED
    key = caught.value.idempotency_key
    assert server.keys("/payments") == [key, key]
    assert len(server.payments) == 1


def test_a_refused_card_is_declined(store: SessionStore, api: tuple[AdyenApi, str]) -> None:
    server, base = api
    adyen_provider = provider(base)
    sessions, session_id = ready(store, adyen_provider)
    server.next_result = "Refused"
    done = complete_cart(sessions, adyen_provider, "cart_1")
    assert (done.outcome, done.session.status) == (O.DECLINED, S.ERROR)
    (call,) = sessions.store.provider_calls(session_id)
    assert call.provider_status == "Refused"
    assert "paymentMethod" not in sessions.get(session_id).data
    # Another card: a new attempt, under the attempt's own key.
    sessions.fire(session_id, "retry")
    given = {**sessions.get(session_id).data, "paymentMethod": CARD}
    sessions.fire(session_id, "update", data=given)
    again = complete_cart(sessions, adyen_provider, "cart_1")
    assert again.outcome is O.AUTHORIZED
    first, second = server.keys("/payments")
    assert second == f"{first}:1"


def test_3d_secure_sends_the_shopper_away_then_completes_with_the_details(
    store: SessionStore, api: tuple[AdyenApi, str]
) -> None:
    server, base = api
    adyen_provider = provider(base)
    sessions, session_id = ready(store, adyen_provider)
    server.next_result = "RedirectShopper"
    done = complete_cart(sessions, adyen_provider, "cart_1")
    assert (done.outcome, done.session.status) == (O.REQUIRES_MORE, S.REQUIRES_MORE)
    data = sessions.get(session_id).data
    action = data["action"]
    assert isinstance(action, dict) and action["type"] == "redirect"
    (psp,) = server.payments
    # The shopper comes back; the Drop-in hands over what Adyen's redirect returned.
    details = {"redirectResult": server.redirect_result(psp)}
    sessions.fire(session_id, "update", data={**data, "details": details})
    again = complete_cart(sessions, adyen_provider, "cart_1")
    assert (again.outcome, again.session.status) == (O.AUTHORIZED, S.AUTHORIZED)
    (first,) = server.keys("/payments")
    assert server.keys("/payments/details") == [f"{first}:1"]
    assert server.bodies("/payments/details") == [{"details": details}]
    assert sessions.get(session_id).data == {
        "currency": "EUR",
        "resultCode": "Authorised",
        "pspReference": psp,
    }


def test_a_partial_authorization_is_voided(store: SessionStore, api: tuple[AdyenApi, str]) -> None:
    """Adyen held only part of the amount: not the session's payment; the hold is voided."""
    server, base = api
    adyen_provider = provider(base)
    sessions, session_id = ready(store, adyen_provider)
    server.next_result = "PartiallyAuthorised"
    done = complete_cart(sessions, adyen_provider, "cart_1")
    assert (done.outcome, done.session.status) == (O.VOIDED, S.CANCELED)
    assert done.anomaly == "amount_mismatch"
    (payment,) = server.payments.values()
    assert payment["canceled"]
    key = sessions.get(session_id).idempotency_key
    assert server.keys("/cancels") == [f"{key}:void"]


def test_cancel_payment_cancels_it_by_its_psp_reference(
    store: SessionStore, api: tuple[AdyenApi, str]
) -> None:
    server, base = api
    adyen_provider = provider(base)
    sessions, session_id = ready(store, adyen_provider)
    complete_cart(sessions, adyen_provider, "cart_1")
    cancel_payment(sessions, adyen_provider, session_id)
    assert sessions.get(session_id).status is S.CANCELED
    ((psp, payment),) = server.payments.items()
    assert payment["canceled"]
    key = sessions.get(session_id).idempotency_key
    assert server.keys(f"/payments/{psp}/cancels") == [f"{key}:cancel"]
    assert server.bodies("/cancels") == [{"merchantAccount": "PaysessionLocal"}]
    calls = {
        call.action: call.provider_status for call in sessions.store.provider_calls(session_id)
    }
    assert calls == {CallAction.AUTHORIZE: "Authorised", CallAction.CANCEL: "CANCELLATION:received"}


def test_a_payment_whose_answer_was_lost_is_canceled_by_its_reference(
    store: SessionStore, api: tuple[AdyenApi, str]
) -> None:
    """No answer named the payment: the cancel names the session's id, Adyen's reference
    of the payment, and the payment Adyen made all the same is canceled."""
    server, base = api
    adyen_provider = provider(base)
    sessions, session_id = ready(store, adyen_provider)
    server.drop_next_answer = True
    with pytest.raises(CompletionTimeout):
        complete_cart(sessions, adyen_provider, "cart_1")
    cancel_payment(sessions, adyen_provider, session_id)
    assert sessions.get(session_id).status is S.CANCELED
    key = sessions.get(session_id).idempotency_key
    assert server.keys("/v72/cancels") == [f"{key}:cancel"]
    assert server.bodies("/v72/cancels") == [
        {"merchantAccount": "PaysessionLocal", "paymentReference": session_id}
    ]
    (payment,) = server.payments.values()
    assert payment["canceled"]


def test_a_notification_of_its_payment_finds_the_session(
    store: SessionStore, api: tuple[AdyenApi, str]
) -> None:
    """Adyen's AUTHORISATION notification names the session (merchantReference) or only the
    payment (pspReference, found by index): either way the completion recorded it first."""
    server, base = api
    adyen_provider = provider(base)
    sessions, session_id = ready(store, adyen_provider)
    complete_cart(sessions, adyen_provider, "cart_1")
    (psp,) = server.payments
    for number, reference in enumerate((session_id, None)):
        item: dict[str, Any] = {
            "pspReference": psp,
            "merchantAccountCode": "PaysessionLocal",
            "amount": {"value": 4999, "currency": "EUR"},
            "eventCode": "AUTHORISATION",
            "eventDate": "2026-12-06T12:00:00+01:00",
            "success": "true",
        }
        if reference is not None:
            item["merchantReference"] = reference
        signature = util.generate_notification_sig(item, HMAC_KEY).decode()
        item["additionalData"] = {"hmacSignature": signature}
        body = json.dumps(
            {"live": "false", "notificationItems": [{"NotificationRequestItem": item}]}
        )
        (report,) = parse_notification(body.encode(), HMAC_KEY)
        assert (report.session_id, report.provider_ref) == (reference, psp)
        done = sessions.reconcile_report(report, provider=adyen_provider)
        assert done.records == () and sessions.get(session_id).status is S.AUTHORIZED
        assert done.outcome.value == ("noop" if number == 0 else "duplicate")


def test_status_says_the_last_answer_without_asking(
    store: SessionStore, api: tuple[AdyenApi, str]
) -> None:
    """Adyen's Checkout API reads no payment back: status is what the last answer said."""
    server, base = api
    adyen_provider = provider(base)
    sessions, session_id = ready(store, adyen_provider)
    assert adyen_provider.status(sessions.get(session_id)).status == "active"
    complete_cart(sessions, adyen_provider, "cart_1")
    asked = len(server.requests)
    reply = adyen_provider.status(sessions.get(session_id))
    assert (reply.status, reply.currency) == ("Authorised", "EUR")
    assert adyen_provider.update(sessions.get(session_id)).status == "Authorised"
    assert len(server.requests) == asked
    # Nothing handed over: authorize asks Adyen nothing and says the last answer again.
    again = adyen_provider.authorize(sessions.get(session_id), idempotency_key="again")
    assert again.status == "Authorised" and len(server.requests) == asked


def test_it_needs_a_checkout_api_an_account_and_a_currency() -> None:
    with pytest.raises(InvalidSessionData) as caught:
        AdyenProvider(object(), merchant_account="", return_url="")  # type: ignore[arg-type]
    assert set(caught.value.fields) == {"checkout", "merchant_account", "return_url"}
    sessions = PaymentSessions(MemoryStore())
    session = sessions.create(cart_id=None, provider_id="adyen", amount=1)
    adyen_provider = AdyenProvider(
        Adyen.Adyen(xapikey=API_KEY).checkout,
        merchant_account="PaysessionLocal",
        return_url="https://shop.example/return",
    )
    with pytest.raises(InvalidSessionData) as no_currency:
        adyen_provider.initiate(session)
    assert no_currency.value.fields == ("currency",)
    in_dollars = AdyenProvider(
        Adyen.Adyen(xapikey=API_KEY).checkout,
        merchant_account="PaysessionLocal",
        return_url="https://shop.example/return",
        currency="usd",
    )
    assert in_dollars.initiate(session).data == {"currency": "USD"}
