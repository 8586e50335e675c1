"""PayPal webhooks, from the raw bytes to the move: signed in the test with PayPal's
scheme (RSA-SHA256 over transmission id, time, webhook id and the body's CRC32) by a
certificate made here and served from a local server the test allows by name."""

from __future__ import annotations

import base64
import copy
import json
import zlib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paysession import (
    InvalidSessionData,
    PaymentSessions,
    PaymentSessionStatus,
    ReconciliationAnomaly,
    WebhookRejected,
)
from paysession.providers.paypal import Certificates, parse_webhook
from paysession.store import SessionStore
from paysession.store.base import EventOutcome

from .helpers import StepClock
from .local_http import Served, local_client, serving

S = PaymentSessionStatus
DATA = Path(__file__).parent / "data" / "providers"
CORPUS = "paypal/event_payment_authorization_created_v1.paypal-openapi.json"
WEBHOOK_ID = "1JE4291016473214C"


def make_key_and_certificate() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts.test")])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, certificate.public_bytes(serialization.Encoding.PEM)


KEY, PEM = make_key_and_certificate()
OTHER_KEY, _ = make_key_and_certificate()


@pytest.fixture
def cert_server() -> Iterator[Served]:
    with serving(lambda path: (200, {}, PEM) if path == "/cert.pem" else (404, {}, b"")) as s:
        yield s


def certificates(served: Served) -> Certificates:
    return Certificates(allowed_hosts={"127.0.0.1"}, client=local_client())


def headers(
    body: bytes,
    served: Served,
    *,
    key: rsa.RSAPrivateKey = KEY,
    at: datetime | None = None,
    webhook_id: str = WEBHOOK_ID,
) -> dict[str, str]:
    """The headers PayPal sends with ``body``, signed with PayPal's scheme."""
    sent = (at or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    transmission_id = "69cd13f0-d67a-11e5-baa3-778b53f4ae55"
    message = f"{transmission_id}|{sent}|{webhook_id}|{zlib.crc32(body)}".encode()
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return {
        "PAYPAL-TRANSMISSION-ID": transmission_id,
        "PAYPAL-TRANSMISSION-TIME": sent,
        "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
        "PAYPAL-CERT-URL": f"{served.base}/cert.pem",
        "PAYPAL-AUTH-ALGO": "SHA256withRSA",
    }


def corpus() -> dict[str, Any]:
    event: dict[str, Any] = json.loads((DATA / CORPUS).read_text())
    return event


def initiated(store: SessionStore, reference: str, amount: int) -> tuple[PaymentSessions, str]:
    sessions = PaymentSessions(store, clock=StepClock())
    session = sessions.create(cart_id=None, provider_id="paypal", amount=amount)
    sessions.fire(session.id, "initiate", data={"id": reference, "currency": "USD"})
    return sessions, session.id


def test_the_corpus_event_becomes_its_documented_move(
    store: SessionStore, cert_server: Served
) -> None:
    body = (DATA / CORPUS).read_bytes()
    report = parse_webhook(
        body, headers(body, cert_server), WEBHOOK_ID, certificates=certificates(cert_server)
    )
    assert report is not None
    assert (report.status, report.amount, report.currency) == ("authorized", 747, "USD")
    assert report.provider_ref == "PAY-36246664YD343335CKHFA4AY"  # the v1 payment
    sessions, session_id = initiated(store, report.provider_ref, 747)
    done = sessions.reconcile_report(report)
    assert done.outcome is EventOutcome.APPLIED
    assert sessions.get(session_id).status is S.AUTHORIZED
    again = sessions.reconcile_report(report)  # PayPal retries until answered 2xx
    assert (again.outcome, again.records) == (EventOutcome.DUPLICATE, ())


def test_a_v2_capture_names_its_session_and_order(store: SessionStore, cert_server: Served) -> None:
    sessions = PaymentSessions(store, clock=StepClock())
    session = sessions.create(cart_id=None, provider_id="paypal", amount=1000)
    sessions.fire(session.id, "initiate", data={"id": "5O190127TN364715T"})
    event = {
        "id": "WH-58D329510W468432D-8HN650336L201105X",
        "create_time": "2024-04-20T12:00:00Z",
        "event_type": "PAYMENT.CAPTURE.COMPLETED",
        "resource": {
            "id": "42311647XV020574X",
            "status": "COMPLETED",
            "amount": {"currency_code": "EUR", "value": "10.00"},
            "custom_id": session.id,
            "supplementary_data": {"related_ids": {"order_id": "5O190127TN364715T"}},
        },
    }
    body = json.dumps(event).encode()
    report = parse_webhook(
        body, headers(body, cert_server), WEBHOOK_ID, certificates=certificates(cert_server)
    )
    assert report is not None
    assert (report.session_id, report.provider_ref) == (session.id, "5O190127TN364715T")
    assert report.observed_at == datetime(2024, 4, 20, 12, tzinfo=timezone.utc)
    sessions.reconcile_report(report)
    assert sessions.get(session.id).status is S.AUTHORIZED
    other = {**event, "event_type": "CUSTOMER.DISPUTE.CREATED"}
    body = json.dumps(other).encode()
    assert (
        parse_webhook(
            body, headers(body, cert_server), WEBHOOK_ID, certificates=certificates(cert_server)
        )
        is None
    )


def test_an_event_for_another_amount_does_not_authorize(
    store: SessionStore, cert_server: Served
) -> None:
    body = (DATA / CORPUS).read_bytes()
    report = parse_webhook(
        body, headers(body, cert_server), WEBHOOK_ID, certificates=certificates(cert_server)
    )
    assert report is not None
    sessions, session_id = initiated(store, "PAY-36246664YD343335CKHFA4AY", 9999)
    with pytest.raises(ReconciliationAnomaly) as caught:
        sessions.reconcile_report(report)
    assert caught.value.kind == "amount_mismatch"
    assert sessions.get(session_id).status is S.PENDING


def _changed(body: bytes, served: Served) -> tuple[bytes, dict[str, str]]:
    return body.replace(b'"7.47"', b'"0.01"'), headers(body, served)


def _forged(body: bytes, served: Served) -> tuple[bytes, dict[str, str]]:
    said = headers(body, served)
    said["PAYPAL-TRANSMISSION-SIG"] = base64.b64encode(b"\0" * 256).decode()
    return body, said


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        (_forged, "does not match"),
        (lambda body, s: (body, headers(body, s, key=OTHER_KEY)), "does not match"),
        (lambda body, s: (body, headers(body, s, webhook_id="ANOTHER")), "does not match"),
        (_changed, "does not match"),
        (
            lambda body, s: (
                body,
                headers(body, s, at=datetime.now(timezone.utc) - timedelta(hours=1)),
            ),
            "300 seconds",
        ),
        (lambda body, s: (b"not json", headers(b"not json", s)), "not JSON"),
        (lambda body, s: (b"[1]", headers(b"[1]", s)), "not a PayPal event"),
        (lambda body, s: (body, {}), "header is missing"),
        (
            lambda body, s: (body, {**headers(body, s), "PAYPAL-AUTH-ALGO": "SHA1withRSA"}),
            "SHA1withRSA",
        ),
    ],
)
def test_untrusted_bodies_are_rejected_and_record_nothing(
    store: SessionStore, cert_server: Served, tamper: Any, why: str
) -> None:
    sessions, session_id = initiated(store, "PAY-36246664YD343335CKHFA4AY", 747)
    before = (sessions.history(session_id), sessions.provider_events(session_id=session_id))
    body, said = tamper((DATA / CORPUS).read_bytes(), cert_server)
    with pytest.raises(WebhookRejected) as caught:
        report = parse_webhook(body, said, WEBHOOK_ID, certificates=certificates(cert_server))
        if report is not None:
            sessions.reconcile_report(report)
    assert caught.value.provider_id == "paypal" and why in str(caught.value)
    after = (sessions.history(session_id), sessions.provider_events(session_id=session_id))
    assert after == before


def test_certificates_come_only_from_paypal_and_are_cached(cert_server: Served) -> None:
    body = (DATA / CORPUS).read_bytes()
    kept = certificates(cert_server)
    for _ in range(3):
        assert parse_webhook(body, headers(body, cert_server), WEBHOOK_ID, certificates=kept)
    assert cert_server.paths() == ["/cert.pem"]  # fetched once
    foreign = {**headers(body, cert_server), "PAYPAL-CERT-URL": "https://paypal.com.example/c.pem"}
    with pytest.raises(WebhookRejected, match="not on PayPal's domain"):
        parse_webhook(body, foreign, WEBHOOK_ID, certificates=kept)
    # Without the test's host allowed, the local server is not PayPal.
    with pytest.raises(WebhookRejected, match="not on PayPal's domain"):
        parse_webhook(body, headers(body, cert_server), WEBHOOK_ID, certificates=Certificates())
    assert cert_server.paths() == ["/cert.pem"]
    plain = Certificates()
    assert plain.allowed("https://api.paypal.com/v1/notifications/certs/CERT-360caa42")
    assert plain.allowed("https://api.sandbox.paypal.com/v1/notifications/certs/CERT")
    assert not plain.allowed("http://api.paypal.com/v1/notifications/certs/CERT")
    assert not plain.allowed("https://evilpaypal.com/cert")


def test_a_missing_certificate_is_rejected(cert_server: Served) -> None:
    body = (DATA / CORPUS).read_bytes()
    said = {**headers(body, cert_server), "PAYPAL-CERT-URL": f"{cert_server.base}/missing.pem"}
    with pytest.raises(WebhookRejected, match="HTTP 404"):
        parse_webhook(body, said, WEBHOOK_ID, certificates=certificates(cert_server))


@pytest.mark.parametrize(
    "amount",
    [
        {"value": "1e999999", "currency_code": "USD"},
        {"value": "1.005", "currency_code": "USD"},
        {"value": "-1", "currency_code": "USD"},
        {"value": 7, "currency_code": "USD"},
    ],
)
def test_an_amount_paypal_never_writes_is_rejected(cert_server: Served, amount: Any) -> None:
    event = copy.deepcopy(corpus())
    event["resource"]["amount"] = amount
    body = json.dumps(event).encode()
    with pytest.raises(WebhookRejected, match="amount"):
        parse_webhook(
            body, headers(body, cert_server), WEBHOOK_ID, certificates=certificates(cert_server)
        )


def test_the_webhook_id_and_tolerance_are_checked(cert_server: Served) -> None:
    body = (DATA / CORPUS).read_bytes()
    with pytest.raises(InvalidSessionData) as caught:
        parse_webhook(body, headers(body, cert_server), "", certificates=certificates(cert_server))
    assert caught.value.fields == ("webhook_id",)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(at=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_every_changed_byte_is_rejected(cert_server: Served, at: int, flip: int) -> None:
    body = (DATA / CORPUS).read_bytes()
    said = headers(body, cert_server)
    position = at % len(body)
    changed = body[:position] + bytes([body[position] ^ flip]) + body[position + 1 :]
    with pytest.raises(WebhookRejected):
        parse_webhook(changed, said, WEBHOOK_ID, certificates=certificates(cert_server))
