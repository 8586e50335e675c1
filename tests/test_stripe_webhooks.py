"""Stripe webhooks, from the raw bytes to the move: signed with Stripe's own scheme,
read by ``paysession.providers.stripe.parse_webhook`` and applied by
``reconcile_report`` on every store; everything that cannot be trusted is refused with
WebhookRejected and records nothing."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st

from paysession import (
    AsyncPaymentSessions,
    InvalidSessionData,
    PaymentSessions,
    PaymentSessionStatus,
    ReconciliationAnomaly,
    SessionNotFound,
    WebhookRejected,
)
from paysession.providers import ProviderReport
from paysession.providers.stripe import parse_webhook
from paysession.store import MemoryStore, SessionStore
from paysession.store.base import EventOutcome

from .helpers import StepClock
from .test_provider_truth import BECOMES

S = PaymentSessionStatus
DATA = Path(__file__).parent / "data" / "providers"
SECRET = "whsec_test_paysession_endpoint"
EVENTS = sorted(
    entry["file"]
    for entry in json.loads((DATA / "MANIFEST.json").read_text())
    if entry["file"].startswith("stripe/event_")
)


def sign(body: bytes, secret: str = SECRET, at: int | None = None) -> str:
    """The Stripe-Signature header Stripe sends with ``body`` (its SDK's own signer)."""
    return stripe.WebhookSignature.generate_signature_header(
        body.decode(), secret, int(time.time()) if at is None else at
    )


def event_body(name: str, **changes: Any) -> bytes:
    """A corpus event as Stripe posts it; ``changes`` set fields of its PaymentIntent."""
    event = json.loads((DATA / name).read_text())
    event["data"]["object"].update(changes)
    return json.dumps(event).encode()


def the_intent(name: str) -> dict[str, Any]:
    intent: dict[str, Any] = json.loads((DATA / name).read_text())["data"]["object"]
    return intent


def initiated(store: SessionStore, intent: dict[str, Any], amount: int | None = None) -> Any:
    """A service on ``store`` and a session whose data names ``intent``, as Medusa keeps it."""
    sessions = PaymentSessions(store, clock=StepClock())
    session = sessions.create(
        cart_id="cart_1",
        provider_id="stripe",
        amount=intent["amount"] if amount is None else amount,
    )
    sessions.fire(session.id, "initiate", data={"id": intent["id"], "currency": intent["currency"]})
    return sessions, session.id


def endpoint(sessions: PaymentSessions, body: bytes, header: str) -> object:
    """What a webhook endpoint does: verify and read, then reconcile."""
    report = parse_webhook(body, header, SECRET)
    return None if report is None else sessions.reconcile_report(report)


def unchanged(sessions: PaymentSessions, session_id: str) -> tuple[object, ...]:
    return (
        sessions.get(session_id),
        sessions.history(session_id),
        sessions.provider_events(session_id=session_id),
        sessions.anomalies(session_id),
    )


@pytest.mark.parametrize("name", EVENTS)
def test_each_corpus_event_becomes_its_documented_move(name: str, store: SessionStore) -> None:
    body = (DATA / name).read_bytes()
    report = parse_webhook(body, sign(body), SECRET)
    expected = BECOMES[name]
    if expected is None:
        assert report is None  # a charge event: no PaymentIntent
        return
    assert report is not None
    sessions, session_id = initiated(store, the_intent(name))
    done = sessions.reconcile_report(report)
    assert sessions.get(session_id).status is expected
    assert done.outcome is (EventOutcome.NOOP if expected is S.PENDING else EventOutcome.APPLIED)
    (event,) = sessions.provider_events(session_id=session_id)
    assert event.event_id == json.loads(body)["id"]


def test_the_report_is_what_the_event_says() -> None:
    name = "stripe/event_payment_intent_payment_failed.stripe-ruby-mock.json"
    body = (DATA / name).read_bytes()
    event = json.loads(body)
    intent = event["data"]["object"]
    report = parse_webhook(body, sign(body), SECRET)
    assert report == ProviderReport(
        provider_id="stripe",
        event_id=event["id"],
        event_type="payment_intent.payment_failed",
        provider_ref=intent["id"],
        session_id=None,
        status="requires_payment_method",
        amount=intent["amount"],
        currency=intent["currency"],
        # The most precise reason Stripe gives: the decline code, before code and type.
        decline=intent["last_payment_error"]["decline_code"],
        observed_at=datetime.fromtimestamp(event["created"], tz=timezone.utc),
        precision=timedelta(seconds=1),
    )


def test_a_report_never_holds_the_client_secret(store: SessionStore) -> None:
    name = "stripe/event_payment_intent_succeeded.stripe-ruby-mock.json"
    secret = "pi_000_secret_must_not_be_kept"
    body = event_body(name, client_secret=secret)
    report = parse_webhook(body, sign(body), SECRET)
    assert report is not None and secret not in repr(report)
    sessions, session_id = initiated(store, the_intent(name))
    sessions.reconcile_report(report)
    kept = repr((sessions.history(session_id), sessions.provider_events(session_id=session_id)))
    assert secret not in kept and secret not in repr(sessions.get(session_id))


def test_the_session_named_in_metadata_is_found_first(store: SessionStore) -> None:
    """metadata.session_id names the session (as StripeProvider sets it)."""
    name = "stripe/event_payment_intent_succeeded.stripe-ruby-mock.json"
    sessions = PaymentSessions(store, clock=StepClock())
    session = sessions.create(cart_id=None, provider_id="stripe", amount=2000)
    sessions.fire(session.id, "initiate", data={})  # no intent id kept
    body = event_body(name, metadata={"session_id": session.id})
    report = parse_webhook(body, sign(body), SECRET)
    assert report is not None and report.session_id == session.id
    sessions.reconcile_report(report)
    assert sessions.get(session.id).status is S.AUTHORIZED


def test_an_unknown_reference_is_session_not_found(store: SessionStore) -> None:
    name = "stripe/event_payment_intent_succeeded.stripe-ruby-mock.json"
    sessions, session_id = initiated(store, {**the_intent(name), "id": "pi_other"})
    body = (DATA / name).read_bytes()
    report = parse_webhook(body, sign(body), SECRET)
    assert report is not None
    before = unchanged(sessions, session_id)
    with pytest.raises(SessionNotFound) as caught:
        sessions.reconcile_report(report)
    assert caught.value.session_id == report.provider_ref
    assert unchanged(sessions, session_id) == before


def test_a_report_for_a_session_of_another_provider_is_refused() -> None:
    sessions = PaymentSessions(MemoryStore(), clock=StepClock())
    session = sessions.create(cart_id=None, provider_id="paypal", amount=2000)
    report = ProviderReport("stripe", "evt_1", None, "pi_1", session.id, "succeeded")
    with pytest.raises(InvalidSessionData) as caught:
        sessions.reconcile_report(report)
    assert caught.value.fields == ("report.provider_id",)
    assert sessions.history(session.id)[-1].seq == 0


def test_a_redelivered_event_moves_nothing(store: SessionStore) -> None:
    name = "stripe/event_payment_intent_succeeded.stripe-ruby-mock.json"
    sessions, session_id = initiated(store, the_intent(name))
    body = (DATA / name).read_bytes()
    first = sessions.reconcile_report(parse_webhook(body, sign(body), SECRET))  # type: ignore[arg-type]
    assert first.outcome is EventOutcome.APPLIED
    trail = sessions.history(session_id)
    again = sessions.reconcile_report(parse_webhook(body, sign(body), SECRET))  # type: ignore[arg-type]
    assert (again.outcome, again.records) == (EventOutcome.DUPLICATE, ())
    assert sessions.history(session_id) == trail
    (event,) = sessions.provider_events(session_id=session_id)
    assert event.duplicates == 1


def test_an_event_for_another_amount_does_not_authorize(store: SessionStore) -> None:
    name = "stripe/event_payment_intent_succeeded.stripe-ruby-mock.json"
    sessions, session_id = initiated(store, the_intent(name), amount=4999)
    body = (DATA / name).read_bytes()  # the intent is for 2000
    report = parse_webhook(body, sign(body), SECRET)
    assert report is not None
    with pytest.raises(ReconciliationAnomaly) as caught:
        sessions.reconcile_report(report)
    assert caught.value.kind == "amount_mismatch"
    assert sessions.get(session_id).status is S.PENDING
    assert [r.trigger for r in sessions.history(session_id)] == ["create", "initiate"]


SUCCEEDED = "stripe/event_payment_intent_succeeded.stripe-ruby-mock.json"


def _forged(body: bytes) -> tuple[bytes, str]:
    return body, f"t={int(time.time())},v1={'0' * 64}"


def _other_secret(body: bytes) -> tuple[bytes, str]:
    return body, sign(body, "whsec_someone_else")


def _changed_body(body: bytes) -> tuple[bytes, str]:
    return body.replace(b'"amount": 2000', b'"amount": 1'), sign(body)


def _an_hour_old(body: bytes) -> tuple[bytes, str]:
    return body, sign(body, at=int(time.time()) - 3600)


def _not_json(body: bytes) -> tuple[bytes, str]:
    text = b"status=succeeded"
    return text, sign(text)


def _not_an_event(body: bytes) -> tuple[bytes, str]:
    text = b'{"status": "succeeded"}'
    return text, sign(text)


def _no_signature(body: bytes) -> tuple[bytes, str]:
    return body, ""


def _too_deep(body: bytes) -> tuple[bytes, str]:
    text = b"[" * 100_000 + b"]" * 100_000
    return text, sign(text)


def _no_timestamp(body: bytes) -> tuple[bytes, str]:
    return body, sign(body).split(",", 1)[1]


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        (_forged, "does not match"),
        (_other_secret, "does not match"),
        (_changed_body, "does not match"),
        (_an_hour_old, "older than 300 seconds"),
        (_not_json, "not JSON"),
        (_not_an_event, "not a Stripe event"),
        (_too_deep, "not JSON"),
        (_no_signature, "no Stripe-Signature"),
        (_no_timestamp, "does not match"),
    ],
)
def test_untrusted_bodies_are_rejected_and_record_nothing(
    store: SessionStore, tamper: Any, why: str
) -> None:
    sessions, session_id = initiated(store, the_intent(SUCCEEDED))
    before = unchanged(sessions, session_id)
    body, header = tamper(json.dumps(json.loads((DATA / SUCCEEDED).read_text())).encode())
    with pytest.raises(WebhookRejected) as caught:
        endpoint(sessions, body, header)
    assert caught.value.provider_id == "stripe" and why in str(caught.value)
    assert SECRET not in str(caught.value)
    assert unchanged(sessions, session_id) == before


@settings(max_examples=60, deadline=None)
@given(at=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_every_changed_byte_is_rejected(at: int, flip: int) -> None:
    body = (DATA / SUCCEEDED).read_bytes()
    header = sign(body)
    position = at % len(body)
    changed = body[:position] + bytes([body[position] ^ flip]) + body[position + 1 :]
    with pytest.raises(WebhookRejected):
        parse_webhook(changed, header, SECRET)


def test_the_body_must_be_bytes_and_the_tolerance_seconds() -> None:
    body = (DATA / SUCCEEDED).read_bytes()
    with pytest.raises(WebhookRejected, match="raw bytes"):
        parse_webhook(body.decode(), sign(body), SECRET)  # type: ignore[arg-type]
    with pytest.raises(InvalidSessionData) as caught:
        parse_webhook(body, sign(body), SECRET, tolerance=0)
    assert caught.value.fields == ("tolerance",)
    with pytest.raises(InvalidSessionData) as no_secret:
        parse_webhook(body, sign(body), " ")
    assert no_secret.value.fields == ("secret",)


@pytest.mark.parametrize(
    "change",
    [
        {"amount": -1},
        {"amount": "2000"},
        {"status": None},
        {"id": 7},
        {"currency": ""},
        {"object": "charge"},
    ],
)
def test_a_payment_intent_stripe_never_writes_is_rejected(change: dict[str, Any]) -> None:
    body = event_body(SUCCEEDED, **change)
    with pytest.raises(WebhookRejected):
        parse_webhook(body, sign(body), SECRET)


@pytest.mark.parametrize("created", [-1, 10**20, 1.5, "1648320033"])
def test_an_event_time_stripe_never_writes_is_rejected(created: object) -> None:
    event = json.loads((DATA / SUCCEEDED).read_text())
    event["created"] = created
    body = json.dumps(event).encode()
    with pytest.raises(WebhookRejected, match="created"):
        parse_webhook(body, sign(body), SECRET)


def test_the_asyncio_twin_reconciles_a_report(store: SessionStore) -> None:
    sessions, session_id = initiated(store, the_intent(SUCCEEDED))
    body = (DATA / SUCCEEDED).read_bytes()
    report = parse_webhook(body, sign(body), SECRET)
    assert report is not None

    async def webhook() -> EventOutcome:
        done = await AsyncPaymentSessions(sessions).reconcile_report(report)
        return done.outcome

    assert asyncio.run(webhook()) is EventOutcome.APPLIED
    assert sessions.get(session_id).status is S.AUTHORIZED
