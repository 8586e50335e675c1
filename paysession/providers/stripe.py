"""Stripe: its webhooks read into reports, and a provider on the Stripe SDK.

Needs the ``stripe`` extra (``pip install 'paysession[stripe]'``). :func:`parse_webhook`
checks the ``Stripe-Signature`` header with the SDK's own check and reads a
``payment_intent.*`` event into a :class:`~paysession.providers.ProviderReport`;
:class:`StripeProvider` is a :class:`~paysession.providers.PaymentProvider` on a
``stripe.StripeClient``. See ``docs/providers.md``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from paysession.errors import InvalidSessionData, MissingExtra, ProviderTimeout, WebhookRejected
from paysession.provider_api import ProviderReply, ProviderReport
from paysession.session import PaymentSession

try:
    import stripe
    from stripe import SignatureVerificationError, WebhookSignature
except ImportError as missing:  # the extra is not installed
    raise MissingExtra("paysession.providers.stripe", "stripe") from missing

PROVIDER_ID = "stripe"
PRECISION = timedelta(seconds=1)
"""Stripe's ``created`` is in whole seconds."""

_LAST_SECOND = 253402300799
"""9999-12-31T23:59:59Z, the last instant a datetime holds."""

_KEPT = ("id", "currency")
"""What of a PaymentIntent a session's data keeps: never its client secret."""


def _rejected(why: str) -> WebhookRejected:
    return WebhookRejected(PROVIDER_ID, why)


def parse_webhook(
    payload: bytes, signature_header: str, secret: str, *, tolerance: int = 300
) -> ProviderReport | None:
    """The report a Stripe webhook makes, once its signature is checked.

    ``payload`` is the request's raw body, ``signature_header`` its ``Stripe-Signature``
    header and ``secret`` the endpoint's signing secret (``whsec_...``). The signature
    is checked by the Stripe SDK (``stripe.WebhookSignature``), which also refuses a
    signature older than ``tolerance`` seconds. Returns a report for every
    ``payment_intent.*`` event and None for the other events (they carry no
    PaymentIntent). WebhookRejected for a missing or wrong signature, a timestamp
    outside the tolerance, or a body that is not a Stripe event.
    """
    if not isinstance(payload, (bytes, bytearray)):
        raise _rejected("the body must be the raw bytes received")
    if not isinstance(secret, str) or not secret.strip():
        raise InvalidSessionData({"secret": "must be the endpoint's signing secret"})
    if not isinstance(signature_header, str) or not signature_header:
        raise _rejected("no Stripe-Signature header")
    if type(tolerance) is not int or tolerance < 1:
        raise InvalidSessionData({"tolerance": "must be an int of seconds >= 1"})
    try:
        text = bytes(payload).decode("utf-8")  # once, for the check and the JSON alike
    except UnicodeDecodeError:
        raise _rejected("the body is not UTF-8 text") from None
    try:
        # Named at import: the SDK resolves its module attributes lazily, a lookup each
        # time that every webhook would pay.
        WebhookSignature.verify_header(text, signature_header, secret, tolerance=tolerance)
    except SignatureVerificationError as error:
        if "tolerance" in str(error):
            raise _rejected(f"the signature is older than {tolerance} seconds") from None
        raise _rejected("the signature does not match the body") from None
    try:
        event = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to read
        raise _rejected("the body is not JSON") from None
    return read_event(event)


def read_event(event: object) -> ProviderReport | None:
    """The report of a Stripe Event already verified (a dict, as its JSON decodes);
    None for an event that carries no PaymentIntent. WebhookRejected when it is not a
    Stripe event."""
    # JSON decodes to dicts, and a dict check costs a fraction of a Mapping (ABC) check.
    if not isinstance(event, dict) or event.get("object") != "event":
        raise _rejected("the body is not a Stripe event")
    event_id, event_type, created = event.get("id"), event.get("type"), event.get("created")
    if not isinstance(event_id, str) or not event_id:
        raise _rejected("the event has no id")
    if not isinstance(event_type, str) or not event_type:
        raise _rejected("the event has no type")
    if type(created) is not int or not 0 <= created <= _LAST_SECOND:
        raise _rejected("the event's created is not a time in seconds")
    if not event_type.startswith("payment_intent."):
        return None
    data = event.get("data")
    intent = data.get("object") if isinstance(data, dict) else None
    if not isinstance(intent, dict) or intent.get("object") != "payment_intent":
        raise _rejected(f"the {event_type} event carries no PaymentIntent")
    facts = read_intent(intent)
    return ProviderReport(
        provider_id=PROVIDER_ID,
        event_id=event_id,
        event_type=event_type,
        provider_ref=facts["id"],
        session_id=facts["session_id"],
        status=facts["status"],
        amount=facts["amount"],
        currency=facts["currency"],
        decline=facts["decline"],
        observed_at=datetime.fromtimestamp(created, tz=timezone.utc),
        precision=PRECISION,
    )


def read_intent(intent: Mapping[str, Any]) -> dict[str, Any]:
    """What a PaymentIntent says: id, status, amount, currency, decline and the session id
    its ``metadata.session_id`` names (None when absent). WebhookRejected when a field is
    not what Stripe writes there."""
    intent_id, status = intent.get("id"), intent.get("status")
    if not isinstance(intent_id, str) or not intent_id:
        raise _rejected("the PaymentIntent has no id")
    if not isinstance(status, str) or not status:
        raise _rejected("the PaymentIntent has no status")
    amount, currency = intent.get("amount"), intent.get("currency")
    if amount is not None and (type(amount) is not int or amount < 0):
        raise _rejected("the PaymentIntent's amount is not minor units")
    if currency is not None and (not isinstance(currency, str) or not currency):
        raise _rejected("the PaymentIntent's currency is not a currency code")
    metadata = intent.get("metadata")
    session_id = metadata.get("session_id") if isinstance(metadata, dict) else None
    return {
        "id": intent_id,
        "status": status,
        "amount": amount,
        "currency": currency,
        "decline": _decline(intent.get("last_payment_error")),
        "session_id": session_id if isinstance(session_id, str) and session_id else None,
    }


def _decline(error: object) -> str | None:
    """Stripe's reason for a decline: the error's decline code, code, or else its type."""
    if not isinstance(error, dict):
        return None
    for key in ("decline_code", "code", "type"):
        reason = error.get(key)
        if isinstance(reason, str) and reason:
            return reason
    return "declined"


class StripeProvider:
    """A :class:`~paysession.providers.PaymentProvider` on Stripe's PaymentIntents.

    ``client`` is a ``stripe.StripeClient``. A session's data keeps the intent's ``id``
    (as Medusa's plugin does) and ``currency``, never its client secret: the storefront
    asks :meth:`client_secret` for it. ``currency`` is used when neither the session's
    data nor its cart (``currency_code``) says one; ``capture_method`` is Stripe's
    (``manual``: an authorization holds the money until it is captured).
    """

    id = PROVIDER_ID

    def __init__(
        self,
        client: stripe.StripeClient,
        *,
        currency: str | None = None,
        capture_method: str = "manual",
    ) -> None:
        if not isinstance(client, stripe.StripeClient):
            raise InvalidSessionData({"client": "must be a stripe.StripeClient"})
        self.client = client
        self.currency = currency
        self.capture_method = capture_method

    def initiate(self, session: PaymentSession) -> ProviderReply:
        """Create the session's PaymentIntent (``metadata.session_id`` names the session),
        or update the one its data names to the session's amount."""
        intent_id = session.data.get("id")
        if isinstance(intent_id, str) and intent_id:
            return self.update(session)
        params: Any = {
            "amount": session.amount,
            "currency": self._currency(session),
            "capture_method": self.capture_method,
            "metadata": {"session_id": session.id},
        }
        key = f"{session.id}:initiate"
        return self._call(
            session,
            lambda: self.client.v1.payment_intents.create(params, {"idempotency_key": key}),
        )

    def update(self, session: PaymentSession) -> ProviderReply:
        """Set the PaymentIntent's amount to the session's."""
        params: Any = {"amount": session.amount}
        intent_id = self._intent_id(session)
        return self._call(session, lambda: self.client.v1.payment_intents.update(intent_id, params))

    def authorize(self, session: PaymentSession, *, idempotency_key: str) -> ProviderReply:
        """Confirm the PaymentIntent under ``idempotency_key`` when it waits for
        confirmation; otherwise say where it is (the storefront confirmed it)."""
        intent_id = self._intent_id(session)
        found = self.status(session)
        if found.status != "requires_confirmation":
            return found
        return self._call(
            session,
            lambda: self.client.v1.payment_intents.confirm(
                intent_id, None, {"idempotency_key": idempotency_key}
            ),
        )

    def cancel(self, session: PaymentSession, *, idempotency_key: str) -> ProviderReply:
        """Cancel the PaymentIntent under ``idempotency_key`` (one already canceled is
        said as it is)."""
        intent_id = self._intent_id(session)
        try:
            return self._call(
                session,
                lambda: self.client.v1.payment_intents.cancel(
                    intent_id, None, {"idempotency_key": idempotency_key}
                ),
            )
        except stripe.InvalidRequestError:
            found = self.status(session)
            if found.status != "canceled":
                raise
            return found

    def status(self, session: PaymentSession) -> ProviderReply:
        """Where the PaymentIntent is now."""
        intent_id = self._intent_id(session)
        return self._call(session, lambda: self.client.v1.payment_intents.retrieve(intent_id))

    def client_secret(self, session: PaymentSession) -> str:
        """The PaymentIntent's client secret, for the storefront (never kept)."""
        intent = self.client.v1.payment_intents.retrieve(self._intent_id(session))
        secret = intent.client_secret
        if not isinstance(secret, str):
            raise InvalidSessionData({"client_secret": "the PaymentIntent has none"})
        return secret

    def _currency(self, session: PaymentSession) -> str:
        for found in (
            session.data.get("currency"),
            (session.cart or {}).get("currency_code"),
            self.currency,
        ):
            if isinstance(found, str) and found:
                return found.lower()
        raise InvalidSessionData(
            {"currency": "neither the session's data, its cart nor the provider names one"}
        )

    @staticmethod
    def _intent_id(session: PaymentSession) -> str:
        intent_id = session.data.get("id")
        if not isinstance(intent_id, str) or not intent_id:
            raise InvalidSessionData({"data.id": "names no PaymentIntent: initiate it first"})
        return intent_id

    def _call(self, session: PaymentSession, call: Any) -> ProviderReply:
        try:
            intent = call()
        except stripe.APIConnectionError as error:
            raise ProviderTimeout(f"Stripe did not answer: {type(error).__name__}") from None
        except stripe.CardError:
            # A declined confirmation: the intent is back at requires_payment_method,
            # its last_payment_error saying why.
            intent = self.client.v1.payment_intents.retrieve(self._intent_id(session))
        return _reply(session, intent)


def _reply(session: PaymentSession, intent: Any) -> ProviderReply:
    values = intent.to_dict() if hasattr(intent, "to_dict") else dict(intent)
    facts = read_intent(values)
    data = {**session.data, **{key: values[key] for key in _KEPT if key in values}}
    observed_at = None
    response = getattr(intent, "last_response", None)
    date = None if response is None else response.headers.get("Date")
    if isinstance(date, str):
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
        decline=facts["decline"],
    )


__all__ = [
    "PRECISION",
    "PROVIDER_ID",
    "StripeProvider",
    "parse_webhook",
    "read_event",
    "read_intent",
]
