"""Klarna notifications, confirmed by reading the order back from a local server that
answers as Klarna's Order Management API (its orders built from Klarna's SDK test
answers): the report is what the API says, never what the notification claims."""

from __future__ import annotations

import json
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

from paysession import (
    InvalidSessionData,
    PaymentSessions,
    PaymentSessionStatus,
    ProviderTimeout,
    ReconciliationAnomaly,
    WebhookRejected,
)
from paysession.providers.klarna import KlarnaApi, parse_notification
from paysession.store import SessionStore
from paysession.store.base import EventOutcome

from .helpers import StepClock
from .local_http import Answer, Served, local_client, serving

S = PaymentSessionStatus
DATA = Path(__file__).parent / "data" / "providers" / "klarna"
ORDERS: dict[str, dict[str, Any]] = {}


def order_of(name: str, **changes: Any) -> dict[str, Any]:
    """An order as Order Management holds it, from a Klarna SDK test answer."""
    answer = json.loads((DATA / name).read_text())
    order = {
        "order_id": answer["order_id"],
        "status": "AUTHORIZED",
        "fraud_status": answer["fraud_status"],
        "order_amount": 10000,
        "purchase_currency": "SEK",
        **changes,
    }
    ORDERS[order["order_id"]] = order
    return order


def answer(path: str) -> Answer:
    prefix = "/ordermanagement/v1/orders/"
    if path == f"{prefix}broken":
        return 503, {}, b""
    order = ORDERS.get(path.removeprefix(prefix)) if path.startswith(prefix) else None
    if order is None:
        return 404, {"Content-Type": "application/json"}, b'{"error_code": "NOT_FOUND"}'
    date = formatdate(usegmt=True)
    return 200, {"Content-Type": "application/json", "Date": date}, json.dumps(order).encode()


@pytest.fixture
def klarna() -> Iterator[tuple[KlarnaApi, Served]]:
    ORDERS.clear()
    with serving(answer) as served:
        api = KlarnaApi("PK_user", "secret_password", base_url=served.base, client=local_client())
        yield api, served


def initiated(
    store: SessionStore, order_id: str, amount: int = 10000
) -> tuple[PaymentSessions, str]:
    sessions = PaymentSessions(store)
    session = sessions.create(cart_id=None, provider_id="klarna", amount=amount)
    sessions.fire(session.id, "initiate", data={"order_id": order_id, "currency": "SEK"})
    return sessions, session.id


@pytest.mark.parametrize(
    ("name", "becomes"),
    [
        ("payments_order_fraud_accepted.kco_rest_php.json", S.AUTHORIZED),
        ("instant_shopping_order_fraud_rejected.kco_rest_php.json", S.ERROR),
    ],
)
def test_each_corpus_order_becomes_its_documented_move(
    store: SessionStore, klarna: tuple[KlarnaApi, Served], name: str, becomes: S
) -> None:
    api, served = klarna
    order = order_of(name)
    sessions, session_id = initiated(store, order["order_id"])
    notice = json.dumps({"order_id": order["order_id"]}).encode()
    report = parse_notification(notice, api)
    assert report is not None and report.provider_ref == order["order_id"]
    sessions.reconcile_report(report)
    assert sessions.get(session_id).status is becomes
    ((path, said),) = served.requests
    assert path == f"/ordermanagement/v1/orders/{order['order_id']}"
    assert said["Authorization"].startswith("Basic ")


def test_the_notifications_word_is_not_taken(
    store: SessionStore, klarna: tuple[KlarnaApi, Served]
) -> None:
    """A notice claiming the fraud check accepted an order still under review: pending."""
    api, _ = klarna
    order = order_of("payments_order_fraud_accepted.kco_rest_php.json", fraud_status="PENDING")
    sessions, session_id = initiated(store, order["order_id"])
    claim = {"order_id": order["order_id"], "event_type": "FRAUD_RISK_ACCEPTED"}
    report = parse_notification(json.dumps(claim).encode(), api)
    assert report is not None and (report.status, report.event_type) == ("AUTHORIZED/PENDING", None)
    sessions.reconcile_report(report)
    assert sessions.get(session_id).status is S.PENDING
    # Klarna accepts it: the order read back says so, and the session is authorized.
    order["fraud_status"] = "ACCEPTED"
    report = parse_notification(json.dumps(claim).encode(), api)
    assert report is not None
    done = sessions.reconcile_report(report)
    assert sessions.get(session_id).status is S.AUTHORIZED
    again = sessions.reconcile_report(report)
    assert (done.outcome, again.outcome) == (EventOutcome.APPLIED, EventOutcome.DUPLICATE)


def test_the_merchant_reference_names_the_session(
    store: SessionStore, klarna: tuple[KlarnaApi, Served]
) -> None:
    api, _ = klarna
    sessions = PaymentSessions(store, clock=StepClock())
    session = sessions.create(cart_id=None, provider_id="klarna", amount=10000)
    sessions.fire(session.id, "initiate", data={"session_id": "klarna-session"})
    order = order_of(
        "payments_order_fraud_accepted.kco_rest_php.json", merchant_reference1=session.id
    )
    report = parse_notification(json.dumps({"order_id": order["order_id"]}).encode(), api)
    assert report is not None and report.session_id == session.id


def test_an_order_for_another_amount_does_not_authorize(
    store: SessionStore, klarna: tuple[KlarnaApi, Served]
) -> None:
    api, _ = klarna
    order = order_of("payments_order_fraud_accepted.kco_rest_php.json", order_amount=1)
    sessions, session_id = initiated(store, order["order_id"])
    report = parse_notification(json.dumps({"order_id": order["order_id"]}).encode(), api)
    assert report is not None
    with pytest.raises(ReconciliationAnomaly) as caught:
        sessions.reconcile_report(report)
    assert caught.value.kind == "amount_mismatch"
    assert sessions.get(session_id).status is S.PENDING


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"order_id=asdf-1234", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b'{"order": "asdf-1234"}', "no order_id"),
        (b'{"order_id": "unknown-order"}', "HTTP 404"),
        (b'{"order_id": "asdf-1234", "event_type": 7}', "event_type"),
    ],
)
def test_notifications_that_cannot_be_confirmed_are_rejected(
    store: SessionStore, klarna: tuple[KlarnaApi, Served], body: bytes, why: str
) -> None:
    api, _ = klarna
    order_of("payments_order_fraud_accepted.kco_rest_php.json")
    sessions, session_id = initiated(store, "asdf-1234")
    before = (sessions.history(session_id), sessions.provider_events(session_id=session_id))
    with pytest.raises(WebhookRejected) as caught:
        parse_notification(body, api)
    assert caught.value.provider_id == "klarna" and why in str(caught.value)
    assert "secret_password" not in str(caught.value) and "secret_password" not in repr(api)
    after = (sessions.history(session_id), sessions.provider_events(session_id=session_id))
    assert after == before


def test_klarna_not_answering_is_a_timeout(klarna: tuple[KlarnaApi, Served]) -> None:
    api, _ = klarna
    with pytest.raises(ProviderTimeout):
        parse_notification(b'{"order_id": "broken"}', api)
    with pytest.raises(InvalidSessionData):
        KlarnaApi("", "")
