"""Adyen: its standard notifications read into reports, and a provider on the Adyen library.

Needs the ``adyen`` extra (``pip install 'paysession[adyen]'``). Adyen posts a batch of
``NotificationRequestItem``; each carries ``additionalData.hmacSignature``, checked with
the Adyen library's own check. :class:`AdyenProvider` is a
:class:`~paysession.providers.PaymentProvider` on Adyen's Checkout API (its Advanced
flow), through the library's ``AdyenCheckoutApi``. See ``docs/providers.md``.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from paysession.errors import (
    InvalidSessionData,
    MissingExtra,
    ProviderTimeout,
    UnknownProviderStatus,
    WebhookRejected,
)
from paysession.provider_api import ADYEN, ProviderReply, ProviderReport
from paysession.session import PaymentSession

try:
    import Adyen
    from Adyen import util as adyen_util
except ImportError as missing:  # the extra is not installed
    raise MissingExtra("paysession.providers.adyen", "adyen") from missing

PROVIDER_ID = "adyen"
PRECISION = timedelta(seconds=1)
"""Adyen's ``eventDate`` is in whole seconds."""


def _rejected(why: str) -> WebhookRejected:
    return WebhookRejected(PROVIDER_ID, why)


def parse_notification(payload: bytes, hmac_key: str) -> list[ProviderReport]:
    """The reports an Adyen notification makes, once every item's HMAC is checked.

    ``payload`` is the request's raw body (a ``NotificationRequest``: ``notificationItems``
    of ``NotificationRequestItem``) and ``hmac_key`` the webhook's HMAC key, in hex.
    Each item is checked with the Adyen library's ``is_valid_hmac_notification``; one
    item that fails rejects the whole batch (WebhookRejected), as does a body that is
    not Adyen's notification. An item becomes a report when its ``eventCode`` and
    ``success`` say where the payment is (see ``docs/providers.md``); the others (a
    refund, a report being available, a failed capture) are left out.
    ``merchantReference`` is the session id; the provider reference is the payment's
    pspReference (``originalReference`` for a modification, such as a capture).
    """
    if not isinstance(payload, (bytes, bytearray)):
        raise _rejected("the body must be the raw bytes received")
    try:
        bytes.fromhex(hmac_key)
    except (TypeError, ValueError):
        raise InvalidSessionData({"hmac_key": "must be the webhook's HMAC key, in hex"}) from None
    if not hmac_key:
        raise InvalidSessionData({"hmac_key": "must be the webhook's HMAC key, in hex"})
    try:
        notification = json.loads(payload)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to read
        raise _rejected("the body is not JSON") from None
    items = _items(notification)
    for index, item in enumerate(items):
        if not _signed(item, hmac_key):
            raise _rejected(f"item {index}'s HMAC signature does not match")
    reports = [_report(item) for item in items]
    return [report for report in reports if report.status in ADYEN]


def _items(notification: object) -> list[Mapping[str, object]]:
    wrapped = notification.get("notificationItems") if isinstance(notification, dict) else None
    if not isinstance(wrapped, list) or not wrapped:
        raise _rejected("the body is not an Adyen notification (no notificationItems)")
    items: list[Mapping[str, object]] = []
    for entry in wrapped:
        item = entry.get("NotificationRequestItem") if isinstance(entry, dict) else None
        if not isinstance(item, dict):
            raise _rejected("a notification item is not a NotificationRequestItem")
        items.append(item)
    return items


def _signed(item: Mapping[str, object], hmac_key: str) -> bool:
    extra = item.get("additionalData")
    signature = extra.get("hmacSignature") if isinstance(extra, dict) else None
    amount = item.get("amount")
    if not isinstance(signature, str) or not signature or not isinstance(amount, dict):
        return False
    try:
        return bool(adyen_util.is_valid_hmac_notification(dict(item), hmac_key))
    except (KeyError, TypeError, ValueError, RecursionError):
        return False


def _text(item: Mapping[str, object], name: str, *, required: bool = True) -> str | None:
    value = item.get(name)
    if isinstance(value, str) and value:
        return value
    if required:
        raise _rejected(f"the item's {name} is missing")
    return None


def _report(item: Mapping[str, object]) -> ProviderReport:
    event_code = _text(item, "eventCode")
    psp_reference = _text(item, "pspReference")
    success = item.get("success")
    if success not in ("true", "false"):
        raise _rejected("the item's success is not 'true' or 'false'")
    amount = item.get("amount")
    value = amount.get("value") if isinstance(amount, dict) else None
    currency = amount.get("currency") if isinstance(amount, dict) else None
    if value is not None and (type(value) is not int or value < 0):
        raise _rejected("the item's amount.value is not minor units")
    if currency is not None and (not isinstance(currency, str) or not currency):
        raise _rejected("the item's amount.currency is not a currency code")
    return ProviderReport(
        provider_id=PROVIDER_ID,
        event_id=f"{psp_reference}:{event_code}:{success}",
        event_type=event_code,
        provider_ref=_text(item, "originalReference", required=False) or psp_reference,
        session_id=_text(item, "merchantReference", required=False),
        status=f"{event_code}:{success}",
        amount=value,
        currency=currency,
        decline=(_text(item, "reason", required=False) or "refused")
        if success == "false"
        else None,
        observed_at=_instant(item.get("eventDate")),
        precision=PRECISION,
    )


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _rejected("the item's eventDate is not a time") from None
    if instant.utcoffset() is None:
        instant = instant.replace(tzinfo=timezone.utc)  # Adyen's times are UTC when unsaid
    return instant


NOT_PAID = "active"
"""What :class:`AdyenProvider` says of a session no payment was made for yet: Adyen's own
word for a checkout the shopper has yet to pay (its payment sessions' status)."""

CANCEL_RECEIVED = "CANCELLATION:received"
"""What :class:`AdyenProvider` says once Adyen has taken a cancellation: its answer is
``"status": "received"``, and a ``CANCELLATION`` notification confirms it."""

_SHOPPER = ("paymentMethod", "browserInfo", "riskData", "billingAddress", "origin")
"""What the storefront's Drop-in hands over for ``/payments`` (its ``state.data``), kept in
the session's data until the payment is asked for."""

_DETAILS = "details"
"""What the Drop-in hands over once the shopper acted (``state.data.details``), for
``/payments/details``."""

_ACTING = frozenset({"RedirectShopper", "IdentifyShopper", "ChallengeShopper", "PresentToShopper"})
"""Result codes that hand the payment to the shopper: the answer's ``action`` says how."""


def read_answer(answer: Mapping[str, Any]) -> dict[str, Any]:
    """What an answer of Adyen's Checkout API says of the payment.

    An answer to ``/payments`` or ``/payments/details``: its ``resultCode`` as the status,
    its ``pspReference`` (the payment's), the ``amount`` (minor units) and ``currency``
    it states, the decline (``refusalReason``, else the result code, for a refused or
    failed payment) and the ``action`` the shopper is to take (None unless the result
    code hands the payment to the shopper). An answer to a cancel (``"status": "received"``) says
    :data:`CANCEL_RECEIVED`, and its ``paymentPspReference`` when it names the payment.
    UnknownProviderStatus for an answer that says neither.
    """
    code, psp = answer.get("resultCode"), answer.get("pspReference")
    if code is None and answer.get("status") == "received":
        # A cancel's own pspReference is the cancellation's: the payment's is beside it.
        code, psp = CANCEL_RECEIVED, answer.get("paymentPspReference")
    if not isinstance(code, str) or not code:
        raise UnknownProviderStatus(PROVIDER_ID, "(an answer without resultCode)")
    amount, action = answer.get("amount"), answer.get("action")
    value = amount.get("value") if isinstance(amount, Mapping) else None
    currency = amount.get("currency") if isinstance(amount, Mapping) else None
    reason = answer.get("refusalReason")
    return {
        "status": code,
        "psp_reference": psp if isinstance(psp, str) and psp else None,
        "amount": value if type(value) is int and value >= 0 else None,
        "currency": currency if isinstance(currency, str) and currency else None,
        "decline": (reason if isinstance(reason, str) and reason else code)
        if code in ("Refused", "Error")
        else None,
        "action": dict(action) if code in _ACTING and isinstance(action, Mapping) else None,
    }


class AdyenProvider:
    """A :class:`~paysession.providers.PaymentProvider` on Adyen's Checkout API.

    ``checkout`` is the Adyen library's ``AdyenCheckoutApi`` (``Adyen.Adyen(xapikey=...,
    platform=...).checkout``), ``merchant_account`` the account payments are made for
    and ``return_url`` where a shopper sent away (3-D Secure, a redirect) comes back.
    Adyen's Advanced flow makes no payment before ``/payments``: the storefront's
    Drop-in hands its ``state.data`` over (``paymentMethod``, ``browserInfo``, ...), to be
    kept in the session's data, and :meth:`authorize` makes the payment with it, the
    session's id as its reference (``merchantReference`` in Adyen's notifications).
    ``manual_capture`` (the default) asks Adyen to hold the money until it is captured.
    The API key stays in the library's client: nothing here reads it.
    """

    id = PROVIDER_ID

    def __init__(
        self,
        checkout: Adyen.AdyenCheckoutApi,
        *,
        merchant_account: str,
        return_url: str,
        currency: str | None = None,
        manual_capture: bool = True,
    ) -> None:
        problems: dict[str, str] = {}
        if not isinstance(checkout, Adyen.AdyenCheckoutApi):
            problems["checkout"] = "must be the Adyen library's AdyenCheckoutApi"
        if not isinstance(merchant_account, str) or not merchant_account:
            problems["merchant_account"] = "must be the Adyen merchant account"
        if not isinstance(return_url, str) or not return_url:
            problems["return_url"] = "must be the URL a shopper sent away comes back to"
        if problems:
            raise InvalidSessionData(problems)
        self.checkout = checkout
        self.merchant_account = merchant_account
        self.return_url = return_url
        self.currency = currency
        self.manual_capture = manual_capture

    def __repr__(self) -> str:
        return f"<AdyenProvider {self.merchant_account}>"

    def initiate(self, session: PaymentSession) -> ProviderReply:
        """Fix the payment's currency in the session's data. Adyen is not asked: its
        Advanced flow has no payment before ``/payments``."""
        currency = self._currency(session)
        return ProviderReply(NOT_PAID, {**session.data, "currency": currency}, currency=currency)

    def update(self, session: PaymentSession) -> ProviderReply:
        """Nothing to tell Adyen: the payment asked for carries the session's amount."""
        return self.status(session)

    def authorize(self, session: PaymentSession, *, idempotency_key: str) -> ProviderReply:
        """Make the payment under ``idempotency_key`` (Adyen's ``Idempotency-Key``).

        With the details the shopper's action gave (``details`` in the session's data),
        ``/payments/details``; with the Drop-in's payment method (``paymentMethod``),
        ``/payments``; with neither, nothing is asked and the last answer is said again
        (:meth:`status`). What was handed over for the request leaves the session's data
        with the answer: the answer's ``resultCode`` and ``pspReference`` stay, and its
        ``action`` while the shopper has to act.
        """
        data = session.data
        details = data.get(_DETAILS)
        if isinstance(details, Mapping):
            request: dict[str, Any] = {"details": dict(details)}
            api = self.checkout.payments_api
            return self._answer(
                session,
                lambda: api.payments_details(request, idempotency_key=idempotency_key),
            )
        if isinstance(data.get("paymentMethod"), Mapping):
            currency = self._currency(session)
            request = {
                "merchantAccount": self.merchant_account,
                "amount": {"value": session.amount, "currency": currency.upper()},
                "reference": session.id,
                "returnUrl": self.return_url,
                **{key: data[key] for key in _SHOPPER if key in data},
            }
            if self.manual_capture:
                request["additionalData"] = {"manualCapture": "true"}
            api = self.checkout.payments_api
            return self._answer(
                session, lambda: api.payments(request, idempotency_key=idempotency_key)
            )
        return self.status(session)

    def cancel(self, session: PaymentSession, *, idempotency_key: str) -> ProviderReply:
        """Cancel the payment under ``idempotency_key``: by its pspReference when an
        answer named it, else by the session's id as its reference (a payment whose
        answer was lost is canceled too). Adyen takes it (``received``) and confirms it
        with a ``CANCELLATION`` notification."""
        psp = session.data.get("pspReference")
        api = self.checkout.modifications_api
        request = {"merchantAccount": self.merchant_account}
        if isinstance(psp, str) and psp:
            answer = self._call(
                lambda: api.cancel_authorised_payment_by_psp_reference(
                    request, psp, idempotency_key=idempotency_key
                )
            )
        else:
            by_reference = {**request, "paymentReference": session.id}
            answer = self._call(
                lambda: api.cancel_authorised_payment(by_reference, idempotency_key=idempotency_key)
            )
        return ProviderReply(read_answer(answer)["status"], dict(session.data), None)

    def status(self, session: PaymentSession) -> ProviderReply:
        """Where the payment is, as Adyen's last answer said (kept in the session's data):
        Adyen's Checkout API has no call that reads a payment back; its notifications
        tell what happens next."""
        code = session.data.get("resultCode")
        currency = session.data.get("currency")
        return ProviderReply(
            code if isinstance(code, str) and code else NOT_PAID,
            dict(session.data),
            None,
            currency=currency if isinstance(currency, str) and currency else None,
        )

    def _currency(self, session: PaymentSession) -> str:
        for found in (
            session.data.get("currency"),
            (session.cart or {}).get("currency_code"),
            self.currency,
        ):
            if isinstance(found, str) and found:
                return found.upper()
        raise InvalidSessionData(
            {"currency": "neither the session's data, its cart nor the provider names one"}
        )

    def _answer(self, session: PaymentSession, call: Callable[[], Any]) -> ProviderReply:
        facts = read_answer(self._call(call))
        data = {
            key: value
            for key, value in session.data.items()
            if key not in _SHOPPER and key not in (_DETAILS, "action")
        }
        data["resultCode"] = facts["status"]
        if facts["psp_reference"] is not None:
            data["pspReference"] = facts["psp_reference"]
        if facts["action"] is not None:
            data["action"] = facts["action"]
        return ProviderReply(
            facts["status"],
            data,
            None,
            amount=facts["amount"],
            currency=facts["currency"],
            decline=facts["decline"],
        )

    @staticmethod
    def _call(call: Callable[[], Any]) -> dict[str, Any]:
        try:
            result = call()
        except (OSError, http.client.HTTPException) as error:
            # No answer (the requests library's errors are OSErrors too): whether Adyen
            # acted is unknown, and asking again under the same key is safe.
            raise ProviderTimeout(f"Adyen did not answer: {type(error).__name__}") from None
        except Adyen.AdyenError as error:
            if isinstance(error.status_code, int) and error.status_code >= 500:
                raise ProviderTimeout(f"Adyen answered HTTP {error.status_code}") from None
            raise
        message = getattr(result, "message", None)
        if not isinstance(message, dict):
            raise UnknownProviderStatus(PROVIDER_ID, "(an answer that is not JSON)")
        return message


__all__ = [
    "CANCEL_RECEIVED",
    "NOT_PAID",
    "PRECISION",
    "PROVIDER_ID",
    "AdyenProvider",
    "parse_notification",
    "read_answer",
]
