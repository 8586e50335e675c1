"""PayPal: its webhooks read into reports, the transmission signature checked, and a
provider on PayPal's Orders v2 API.

Needs the ``paypal`` extra (``pip install 'paysession[paypal]'``: ``cryptography`` and
``httpx``). PayPal signs ``<transmission id>|<transmission time>|<webhook id>|<CRC32 of
the body>`` with RSA-SHA256; the certificate is fetched from ``PAYPAL-CERT-URL``, only
from PayPal's own domains, and cached. :class:`PayPalProvider` is a
:class:`~paysession.providers.PaymentProvider` on Orders v2 (intent ``AUTHORIZE``) over
``httpx``. See ``docs/providers.md``.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
import zlib
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal, DecimalException
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

from paysession.errors import (
    InvalidSessionData,
    MissingExtra,
    PaySessionError,
    ProviderTimeout,
    WebhookRejected,
)
from paysession.provider_api import ProviderReply, ProviderReport
from paysession.session import PaymentSession

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


LIVE = "https://api-m.paypal.com"
"""PayPal's REST API."""

SANDBOX = "https://api-m.sandbox.paypal.com"
"""PayPal's sandbox, for sandbox credentials."""

_VOIDABLE = frozenset({"CREATED", "PENDING"})
"""The statuses of an authorization that a void releases."""


class PayPalError(PaySessionError):
    """PayPal refused a request, or answered what cannot be read.

    ``status`` is the HTTP status, ``issue`` PayPal's name for the problem (the first
    ``details[].issue``, else the error's ``name``; or what could not be read) and
    ``debug_id`` PayPal's id of the request, for its support. Never a credential.
    """

    def __init__(self, status: int, issue: str, debug_id: str | None = None) -> None:
        super().__init__(status, issue, debug_id)
        self.status = status
        self.issue = issue
        self.debug_id = debug_id

    def __str__(self) -> str:
        said = f" (debug_id {self.debug_id})" if self.debug_id else ""
        return f"PayPal answered HTTP {self.status}: {self.issue}{said}"


def read_order(order: Mapping[str, Any]) -> dict[str, Any]:
    """What an Orders v2 order says of its payment: its ``id``, its ``status``, the
    ``amount`` (minor units) and ``currency`` held or asked for, the ``decline`` and the
    session its purchase unit's ``custom_id`` names (None when absent).

    The status is the order's (``CREATED``, ``APPROVED``, ``COMPLETED``: authorized),
    or its authorization's once that says more than ``CREATED`` (``VOIDED``,
    ``CAPTURED``, ``DENIED``, ``EXPIRED``, ``PENDING``); the amount is the
    authorization's, else the purchase unit's. PayPalError when the order is not one.
    """
    order_id, status = order.get("id"), order.get("status")
    units = order.get("purchase_units")
    unit = units[0] if isinstance(units, list) and units else None
    if not isinstance(order_id, str) or not order_id or not isinstance(status, str) or not status:
        raise PayPalError(200, "the answer is not an order (no id or status)")
    if not isinstance(unit, Mapping):
        raise PayPalError(200, "the order has no purchase unit")
    payments = unit.get("payments")
    found = payments.get("authorizations") if isinstance(payments, Mapping) else None
    last = found[-1] if isinstance(found, list) and found else None
    authorization = last if isinstance(last, Mapping) else None
    said = authorization.get("status") if authorization is not None else None
    decline = None
    if isinstance(said, str) and said and said != "CREATED":
        status = said
        if said == "DENIED":
            details = authorization.get("status_details") if authorization else None
            reason = details.get("reason") if isinstance(details, Mapping) else None
            decline = reason if isinstance(reason, str) and reason else said
    try:
        amount, currency = _money(
            authorization.get("amount") if authorization is not None else unit.get("amount")
        )
    except WebhookRejected as unreadable:
        raise PayPalError(200, unreadable.why) from None
    custom = unit.get("custom_id")
    return {
        "id": order_id,
        "status": status,
        "amount": amount,
        "currency": currency,
        "decline": decline,
        "session_id": custom if isinstance(custom, str) and custom else None,
        "authorizations": [
            (entry.get("id"), entry.get("status"))
            for entry in (found if isinstance(found, list) else [])
            if isinstance(entry, Mapping) and isinstance(entry.get("id"), str)
        ],
    }


class PayPalProvider:
    """A :class:`~paysession.providers.PaymentProvider` on PayPal's Orders v2 API.

    ``client_id`` and ``client_secret`` are the REST app's credentials, exchanged for an
    access token (kept until it lapses, and renewed once when PayPal refuses it);
    ``base_url`` is :data:`LIVE` or :data:`SANDBOX`; ``client`` the ``httpx.Client`` to
    call with (one of its own, with a 10 second timeout, when None); ``currency`` the
    currency when neither the session's data nor its cart says one. Orders are made with
    intent ``AUTHORIZE`` (the money is held until captured), the session's id as the
    purchase unit's ``custom_id``. A session's data keeps the order's ``id`` (as Medusa's
    plugin does) and its ``currency``. A request that changes something carries a
    ``PayPal-Request-Id`` (the session's idempotency key for an authorization); one that
    gets no answer is sent again under the same id up to ``retries`` times (PayPal
    answers a repeated id with its first answer), then ProviderTimeout.
    """

    id = PROVIDER_ID

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        base_url: str = LIVE,
        client: httpx.Client | None = None,
        currency: str | None = None,
        retries: int = 1,
    ) -> None:
        problems: dict[str, str] = {}
        if not isinstance(client_id, str) or not client_id:
            problems["client_id"] = "must be the REST app's client id"
        if not isinstance(client_secret, str) or not client_secret:
            problems["client_secret"] = "must be the REST app's secret"
        if type(retries) is not int or retries < 0:
            problems["retries"] = "must be an int >= 0"
        if problems:
            raise InvalidSessionData(problems)
        self.base_url = base_url.rstrip("/")
        self.currency = currency
        self.retries = retries
        self._auth = httpx.BasicAuth(client_id, client_secret)
        self._client = client or httpx.Client(timeout=10.0)
        self._token: str | None = None
        self._token_lapses = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<PayPalProvider {self.base_url}>"  # never the credentials

    def initiate(self, session: PaymentSession) -> ProviderReply:
        """Create the session's order (intent ``AUTHORIZE``, ``custom_id`` the session's
        id), or update the one its data names to the session's amount."""
        order_id = session.data.get("id")
        if isinstance(order_id, str) and order_id:
            return self.update(session)
        unit = {
            "reference_id": "default",
            "custom_id": session.id,
            "amount": self._amount(session),
        }
        body = {"intent": "AUTHORIZE", "purchase_units": [unit]}
        order, date = self._call(
            "POST", "/v2/checkout/orders", body, request_id=f"{session.id}:initiate"
        )
        return _reply(session, order, date)

    def update(self, session: PaymentSession) -> ProviderReply:
        """Set the order's amount to the session's (while the buyer has not paid)."""
        order_id = self._order_id(session)
        change = [
            {
                "op": "replace",
                "path": "/purchase_units/@reference_id=='default'/amount",
                "value": self._amount(session),
            }
        ]
        self._call("PATCH", f"/v2/checkout/orders/{quote(order_id, safe='')}", change)
        return self.status(session)

    def authorize(self, session: PaymentSession, *, idempotency_key: str) -> ProviderReply:
        """Authorize the order the buyer approved, under ``idempotency_key`` as its
        ``PayPal-Request-Id``; otherwise say where the order is (not approved yet, or
        authorized already). A funding source PayPal declines (``INSTRUMENT_DECLINED``)
        leaves the order approved: the buyer is to choose another (requires_more), the
        decline said."""
        path = f"/v2/checkout/orders/{quote(self._order_id(session), safe='')}"
        order, date = self._call("GET", path)
        if order.get("status") != "APPROVED":
            return _reply(session, order, date)
        try:
            order, date = self._call("POST", f"{path}/authorize", {}, request_id=idempotency_key)
        except PayPalError as refused:
            if refused.issue != "INSTRUMENT_DECLINED":
                raise
            order, date = self._call("GET", path)
            return _reply(session, order, date, decline=refused.issue)
        return _reply(session, order, date)

    def cancel(self, session: PaymentSession, *, idempotency_key: str) -> ProviderReply:
        """Void the order's authorization under ``idempotency_key`` (read back after).

        An order never authorized holds nothing, and PayPal has no call that cancels
        an order (it lapses): ``VOIDED`` is said without a call. An authorization
        captured already is said as it is (not canceled)."""
        path = f"/v2/checkout/orders/{quote(self._order_id(session), safe='')}"
        order, date = self._call("GET", path)
        authorizations = read_order(order)["authorizations"]
        if not authorizations:
            return ProviderReply("VOIDED", dict(session.data), None)
        voided = False
        for number, (authorization_id, status) in enumerate(authorizations):
            if status in _VOIDABLE:
                key = idempotency_key if number == 0 else f"{idempotency_key}:{number}"
                void = f"/v2/payments/authorizations/{quote(authorization_id, safe='')}/void"
                self._call("POST", void, None, request_id=key)
                voided = True
        if voided:
            order, date = self._call("GET", path)
        return _reply(session, order, date)

    def status(self, session: PaymentSession) -> ProviderReply:
        """Where the order is now."""
        path = f"/v2/checkout/orders/{quote(self._order_id(session), safe='')}"
        order, date = self._call("GET", path)
        return _reply(session, order, date)

    def _amount(self, session: PaymentSession) -> dict[str, str]:
        """The session's amount as PayPal writes it (``{currency_code, value}``)."""
        if session.amount is None:
            raise InvalidSessionData({"amount": "the session has no amount to ask PayPal for"})
        for found in (
            session.data.get("currency"),
            (session.cart or {}).get("currency_code"),
            self.currency,
        ):
            if isinstance(found, str) and found:
                return _amount(session.amount, found.upper())
        raise InvalidSessionData(
            {"currency": "neither the session's data, its cart nor the provider names one"}
        )

    @staticmethod
    def _order_id(session: PaymentSession) -> str:
        order_id = session.data.get("id")
        if not isinstance(order_id, str) or not order_id:
            raise InvalidSessionData({"data.id": "names no PayPal order: initiate it first"})
        return order_id

    def _access_token(self, *, renew: bool) -> str:
        with self._lock:
            if not renew and self._token is not None and time.monotonic() < self._token_lapses:
                return self._token
            try:
                answer = self._client.post(
                    f"{self.base_url}/v1/oauth2/token",
                    auth=self._auth,
                    data={"grant_type": "client_credentials"},
                )
            except httpx.HTTPError as error:
                raise ProviderTimeout(f"PayPal did not answer: {type(error).__name__}") from None
            found = _answered(answer)
            token, lasts = found.get("access_token"), found.get("expires_in")
            if not isinstance(token, str) or not token:
                raise PayPalError(answer.status_code, "the token answer has no access_token")
            # Renewed a minute before PayPal lets it lapse.
            seconds = lasts if type(lasts) is int else 0
            self._token, self._token_lapses = token, time.monotonic() + seconds - 60
            return token

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        request_id: str | None = None,
    ) -> tuple[dict[str, Any], str | None]:
        """PayPal's answer (``{}`` for none) and its ``Date`` header."""
        renew = False
        lost = 0
        while True:
            headers = {
                "Authorization": f"Bearer {self._access_token(renew=renew)}",
                "Prefer": "return=representation",
            }
            if request_id is not None:
                headers["PayPal-Request-Id"] = request_id
            try:
                answer = self._client.request(
                    method, f"{self.base_url}{path}", json=body, headers=headers
                )
            except httpx.HTTPError as error:
                # No answer: whether PayPal acted is unknown. A GET, or a request under
                # its PayPal-Request-Id, is safe to send again.
                lost += 1
                if lost <= self.retries and (method == "GET" or request_id is not None):
                    continue
                raise ProviderTimeout(f"PayPal did not answer: {type(error).__name__}") from None
            if answer.status_code == 401 and not renew:
                renew = True  # the token lapsed early: a new one, the same request
                continue
            return _answered(answer), answer.headers.get("Date")


def _answered(answer: httpx.Response) -> dict[str, Any]:
    """The JSON of a successful answer; ProviderTimeout for PayPal's 5xx, PayPalError
    for a refusal (or an answer that is not JSON)."""
    if answer.status_code >= 500:
        raise ProviderTimeout(f"PayPal answered HTTP {answer.status_code}")
    try:
        found = answer.json() if answer.content else {}
    except ValueError:
        raise PayPalError(answer.status_code, "the answer is not JSON") from None
    if not isinstance(found, dict):
        raise PayPalError(answer.status_code, "the answer is not a JSON object")
    if answer.status_code >= 400:
        details = found.get("details")
        first = details[0] if isinstance(details, list) and details else None
        issue = first.get("issue") if isinstance(first, dict) else None
        if not isinstance(issue, str) or not issue:
            issue = found.get("name") or found.get("error") or "refused"
        debug_id = found.get("debug_id")
        raise PayPalError(
            answer.status_code,
            str(issue)[:120],
            debug_id if isinstance(debug_id, str) else None,
        )
    return found


def _amount(minor: int, currency: str) -> dict[str, str]:
    """PayPal's ``{currency_code, value}`` of ``minor`` units (``"10.99"``)."""
    exponent = 0 if currency in _NO_MINOR_UNITS else 2
    return {"currency_code": currency, "value": str(Decimal(minor).scaleb(-exponent))}


def _reply(
    session: PaymentSession,
    order: Mapping[str, Any],
    date: str | None,
    *,
    decline: str | None = None,
) -> ProviderReply:
    facts = read_order(order)
    data = {**session.data, "id": facts["id"]}
    if facts["currency"] is not None:
        data["currency"] = facts["currency"]
    observed_at = None
    if date is not None:
        try:
            observed_at = parsedate_to_datetime(date).astimezone(timezone.utc)
        except (TypeError, ValueError):
            observed_at = None
    return ProviderReply(
        facts["status"],
        data,
        observed_at,
        amount=facts["amount"],
        currency=facts["currency"],
        decline=decline or facts["decline"],
    )


__all__ = [
    "LIVE",
    "PAYPAL_DOMAIN",
    "PRECISION",
    "PROVIDER_ID",
    "SANDBOX",
    "Certificates",
    "PayPalError",
    "PayPalProvider",
    "parse_webhook",
    "read_event",
    "read_order",
]
