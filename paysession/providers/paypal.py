"""PayPal: its webhooks read into reports, the transmission signature checked.

Needs the ``paypal`` extra (``pip install 'paysession[paypal]'``: ``cryptography`` and
``httpx``). PayPal signs ``<transmission id>|<transmission time>|<webhook id>|<CRC32 of
the body>`` with RSA-SHA256; the certificate is fetched from ``PAYPAL-CERT-URL``, only
from PayPal's own domains, and cached. See ``docs/providers.md``.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import zlib
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal, DecimalException
from typing import Any
from urllib.parse import urlsplit

from paysession.errors import InvalidSessionData, MissingExtra, ProviderTimeout, WebhookRejected
from paysession.provider_api import ProviderReport

try:
    import httpx
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
except ImportError as missing:  # the extra is not installed
    raise MissingExtra("paysession.providers.paypal", "paypal") from missing

PROVIDER_ID = "paypal"
PRECISION = timedelta(seconds=1)
"""PayPal's ``create_time`` is in whole seconds."""

PAYPAL_DOMAIN = "paypal.com"
"""Certificates are fetched over https from this domain and its subdomains only."""

_EVENTS = ("CHECKOUT.ORDER.", "PAYMENT.AUTHORIZATION.", "PAYMENT.CAPTURE.")
"""The event types whose resource is an order, an authorization or a capture."""

_NO_MINOR_UNITS = frozenset({"HUF", "JPY", "TWD"})
"""The currencies PayPal states in whole units (no decimals)."""


def _rejected(why: str) -> WebhookRejected:
    return WebhookRejected(PROVIDER_ID, why)


class Certificates:
    """PayPal's signing certificates, fetched from ``PAYPAL-CERT-URL`` and cached by URL.

    Only an ``https`` URL on ``paypal.com`` or one of its subdomains is fetched;
    ``allowed_hosts`` adds hosts (any scheme) for a test's own server, never needed in
    production. ``client`` is the ``httpx.Client`` to fetch with (one of its own, with a
    10 second timeout, when None). Share one per process.
    """

    def __init__(
        self, *, allowed_hosts: Collection[str] = (), client: httpx.Client | None = None
    ) -> None:
        self.allowed_hosts = frozenset(allowed_hosts)
        self._client = client or httpx.Client(timeout=10.0)
        self._cache: dict[str, x509.Certificate] = {}
        self._lock = threading.Lock()

    def allowed(self, url: str) -> bool:
        """Whether ``url`` is a place PayPal's certificates may be fetched from."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if host in self.allowed_hosts:
            return True
        return parts.scheme == "https" and (
            host == PAYPAL_DOMAIN or host.endswith("." + PAYPAL_DOMAIN)
        )

    def get(self, url: str) -> x509.Certificate:
        """The certificate at ``url``, fetched once. WebhookRejected when the URL is not
        PayPal's or the answer is not a certificate; ProviderTimeout when the fetch fails."""
        if not self.allowed(url):
            raise _rejected("PAYPAL-CERT-URL is not on PayPal's domain")
        with self._lock:
            found = self._cache.get(url)
        if found is not None:
            return found
        try:
            answer = self._client.get(url)
        except httpx.HTTPError as error:
            raise ProviderTimeout(f"PayPal's certificate could not be fetched: {error}") from None
        if answer.status_code != 200:
            raise _rejected(f"PAYPAL-CERT-URL answered HTTP {answer.status_code}")
        try:
            certificate = x509.load_pem_x509_certificate(answer.content)
        except ValueError:
            raise _rejected("PAYPAL-CERT-URL holds no PEM certificate") from None
        with self._lock:
            self._cache[url] = certificate
        return certificate


_DEFAULT: Certificates | None = None
_DEFAULT_LOCK = threading.Lock()


def _default_certificates() -> Certificates:
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Certificates()
        return _DEFAULT


def parse_webhook(
    payload: bytes,
    headers: Mapping[str, str],
    webhook_id: str,
    *,
    tolerance: int = 300,
    certificates: Certificates | None = None,
) -> ProviderReport | None:
    """The report a PayPal webhook makes, once its transmission signature is checked.

    ``payload`` is the request's raw body, ``headers`` its headers (``PAYPAL-*``, in any
    case) and ``webhook_id`` the id PayPal gave the webhook. The signature
    (``PAYPAL-TRANSMISSION-SIG``, RSA-SHA256) is checked against
    ``<PAYPAL-TRANSMISSION-ID>|<PAYPAL-TRANSMISSION-TIME>|<webhook_id>|<CRC32 of the
    body>`` with the certificate at ``PAYPAL-CERT-URL`` (see :class:`Certificates`); a
    transmission time more than ``tolerance`` seconds from now is refused. Returns a
    report for an order, authorization or capture event (``CHECKOUT.ORDER.*``,
    ``PAYMENT.AUTHORIZATION.*``, ``PAYMENT.CAPTURE.*``) and None for the others.
    WebhookRejected for a missing or wrong signature, a time outside the tolerance, or a
    body that is not a PayPal event.
    """
    if not isinstance(payload, (bytes, bytearray)):
        raise _rejected("the body must be the raw bytes received")
    if not isinstance(webhook_id, str) or not webhook_id:
        raise InvalidSessionData({"webhook_id": "must be the webhook's id"})
    if type(tolerance) is not int or tolerance < 1:
        raise InvalidSessionData({"tolerance": "must be an int of seconds >= 1"})
    said = {name.lower(): value for name, value in headers.items()}
    names = ("transmission-id", "transmission-time", "transmission-sig", "cert-url")
    transmission_id, sent, signature, cert_url = (said.get(f"paypal-{n}", "") for n in names)
    if not all((transmission_id, sent, signature, cert_url)):
        raise _rejected("the PAYPAL-TRANSMISSION-* or PAYPAL-CERT-URL header is missing")
    algorithm = said.get("paypal-auth-algo", "SHA256withRSA")
    if algorithm != "SHA256withRSA":
        raise _rejected(f"PAYPAL-AUTH-ALGO {algorithm[:40]!r} is not SHA256withRSA")
    when = _time(sent, "PAYPAL-TRANSMISSION-TIME")
    if abs(datetime.now(timezone.utc) - when) > timedelta(seconds=tolerance):
        raise _rejected(f"the transmission time is more than {tolerance} seconds from now")
    certificate = (certificates or _default_certificates()).get(cert_url)
    message = f"{transmission_id}|{sent}|{webhook_id}|{zlib.crc32(payload)}".encode()
    if not _verified(certificate, signature, message):
        raise _rejected("the signature does not match the body")
    try:
        event = json.loads(payload)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to read
        raise _rejected("the body is not JSON") from None
    return read_event(event)


def _verified(certificate: x509.Certificate, signature: str, message: bytes) -> bool:
    now = datetime.now(timezone.utc)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise _rejected("PayPal's certificate is not valid now")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise _rejected("PayPal's certificate holds no RSA key")
    try:
        key.verify(
            base64.b64decode(signature, validate=True), message, padding.PKCS1v15(), hashes.SHA256()
        )
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def _time(value: object, name: str) -> datetime:
    if not isinstance(value, str):
        raise _rejected(f"{name} is not a time")
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _rejected(f"{name} is not a time") from None
    if instant.utcoffset() is None:
        instant = instant.replace(tzinfo=timezone.utc)
    return instant


def read_event(event: object) -> ProviderReport | None:
    """The report of a PayPal webhook event already verified (a dict, as its JSON
    decodes); None for an event about no order, authorization or capture."""
    if not isinstance(event, Mapping):
        raise _rejected("the body is not a PayPal event")
    event_id, event_type = event.get("id"), event.get("event_type")
    resource = event.get("resource")
    if not isinstance(event_id, str) or not event_id:
        raise _rejected("the event has no id")
    if not isinstance(event_type, str) or not event_type:
        raise _rejected("the event has no event_type")
    if not event_type.startswith(_EVENTS):
        return None
    if not isinstance(resource, Mapping):
        raise _rejected(f"the {event_type} event carries no resource")
    status = resource.get("status", resource.get("state"))
    resource_id = resource.get("id")
    if not isinstance(status, str) or not status:
        raise _rejected("the resource has no status")
    if not isinstance(resource_id, str) or not resource_id:
        raise _rejected("the resource has no id")
    order = event_type.startswith("CHECKOUT.ORDER.")
    units = resource.get("purchase_units")
    unit = units[0] if order and isinstance(units, list) and units else resource
    amount, currency = _money(unit.get("amount") if isinstance(unit, Mapping) else None)
    custom = unit.get("custom_id") if isinstance(unit, Mapping) else None
    return ProviderReport(
        provider_id=PROVIDER_ID,
        event_id=event_id,
        event_type=event_type,
        provider_ref=resource_id if order else _order_id(resource) or resource_id,
        session_id=custom if isinstance(custom, str) and custom else None,
        status=status,
        amount=amount,
        currency=currency,
        observed_at=_time(event.get("create_time"), "create_time"),
        precision=PRECISION,
    )


def _order_id(resource: Mapping[str, Any]) -> str | None:
    """The order an authorization or capture belongs to (v2), or its payment (v1)."""
    supplementary = resource.get("supplementary_data")
    related = supplementary.get("related_ids") if isinstance(supplementary, Mapping) else None
    found = related.get("order_id") if isinstance(related, Mapping) else None
    if found is None:
        found = resource.get("parent_payment")
    return found if isinstance(found, str) and found else None


def _money(amount: object) -> tuple[int | None, str | None]:
    """(minor units, currency) of a v2 ``{value, currency_code}`` or v1 ``{total, currency}``."""
    if not isinstance(amount, Mapping):
        return None, None
    value = amount.get("value", amount.get("total"))
    currency = amount.get("currency_code", amount.get("currency"))
    if not isinstance(value, str) or not isinstance(currency, str) or not currency:
        raise _rejected("the resource's amount is not a value and a currency")
    exponent = 0 if currency.upper() in _NO_MINOR_UNITS else 2
    try:
        if len(value) > 40:
            raise DecimalException
        minor = Decimal(value).scaleb(exponent)
    except DecimalException:
        raise _rejected("the resource's amount is not a number") from None
    if not minor.is_finite() or minor != minor.to_integral_value() or minor < 0:
        raise _rejected("the resource's amount is not a whole number of minor units")
    return int(minor), currency


__all__ = [
    "PAYPAL_DOMAIN",
    "PRECISION",
    "PROVIDER_ID",
    "Certificates",
    "parse_webhook",
    "read_event",
]
