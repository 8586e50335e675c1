"""Klarna: its order notifications, confirmed by reading the order back.

Needs the ``klarna`` extra (``pip install 'paysession[klarna]'``: ``httpx``; Klarna has
no maintained Python SDK). Klarna's notifications carry no signature: what one says is
never taken as it is; the order is read back from Klarna's Order Management API, and
the report is what the API says. See ``docs/providers.md``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from paysession.errors import InvalidSessionData, MissingExtra, ProviderTimeout, WebhookRejected
from paysession.provider_api import ProviderReport

try:
    import httpx
except ImportError as missing:  # the extra is not installed
    raise MissingExtra("paysession.providers.klarna", "klarna") from missing

PROVIDER_ID = "klarna"
PRECISION = timedelta(seconds=1)
"""Klarna's times are in whole seconds (the API's ``Date``)."""

EUROPE = "https://api.klarna.com"
"""Klarna's API in Europe (``https://api-na.klarna.com`` in North America,
``https://api.playground.klarna.com`` for tests)."""


def _rejected(why: str) -> WebhookRejected:
    return WebhookRejected(PROVIDER_ID, why)


class KlarnaApi:
    """Klarna's Order Management API, as far as reading an order back needs it.

    ``username`` and ``password`` are the API credentials (HTTP basic auth); ``base_url``
    the API's region (:data:`EUROPE` by default); ``client`` the ``httpx.Client`` to
    call with (one of its own, with a 10 second timeout, when None).
    """

    def __init__(
        self,
        username: str,
        password: str,
        *,
        base_url: str = EUROPE,
        client: httpx.Client | None = None,
    ) -> None:
        if not username or not password:
            raise InvalidSessionData({"username": "and password must be Klarna's API credentials"})
        self.base_url = base_url.rstrip("/")
        self._auth = httpx.BasicAuth(username, password)
        self._client = client or httpx.Client(timeout=10.0)

    def __repr__(self) -> str:
        return f"<KlarnaApi {self.base_url}>"  # never the credentials

    def order(self, order_id: str) -> tuple[Mapping[str, Any], str | None]:
        """The order as Klarna holds it now, and the answer's ``Date`` header.

        WebhookRejected when Klarna knows no such order (or refuses to say);
        ProviderTimeout when it cannot be asked or fails to answer.
        """
        url = f"{self.base_url}/ordermanagement/v1/orders/{quote(order_id, safe='')}"
        try:
            answer = self._client.get(url, auth=self._auth)
        except httpx.HTTPError as error:
            raise ProviderTimeout(f"Klarna did not answer: {type(error).__name__}") from None
        if answer.status_code >= 500:
            raise ProviderTimeout(f"Klarna answered HTTP {answer.status_code}")
        if answer.status_code != 200:
            raise _rejected(f"the order could not be read back (HTTP {answer.status_code})")
        try:
            order = answer.json()
        except ValueError:
            raise _rejected("Klarna's answer is not JSON") from None
        if not isinstance(order, dict):
            raise _rejected("Klarna's answer is not an order")
        return order, answer.headers.get("Date")


def parse_notification(payload: bytes, api: KlarnaApi) -> ProviderReport | None:
    """The report a Klarna notification makes, confirmed by reading the order back.

    ``payload`` is the notification's raw body: ``{"order_id": ..., "event_type": ...}``
    (Order Management's notifications, such as ``FRAUD_RISK_ACCEPTED``), or just
    ``{"order_id": ...}`` for a push. The order is read through ``api``: its
    ``status`` (``AUTHORIZED/<fraud_status>`` for an authorized order), ``order_amount``,
    ``purchase_currency`` and ``merchant_reference1`` (the session id, as the merchant
    set it) make the report, never the notification's word (its ``event_type`` names
    the event, it does not decide the status). WebhookRejected for a body
    that is not a Klarna notification or an order Klarna does not know; None when the
    order's status is not one Klarna's table reads (a closed order).
    """
    if not isinstance(payload, (bytes, bytearray)):
        raise _rejected("the body must be the raw bytes received")
    if not isinstance(api, KlarnaApi):
        raise InvalidSessionData({"api": "must be a KlarnaApi"})
    try:
        notice = json.loads(payload)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to read
        raise _rejected("the body is not JSON") from None
    order_id = notice.get("order_id") if isinstance(notice, dict) else None
    if not isinstance(order_id, str) or not order_id or len(order_id) > 200:
        raise _rejected("the body is not a Klarna notification (no order_id)")
    event_type = notice.get("event_type")
    if event_type is not None and (not isinstance(event_type, str) or not event_type):
        raise _rejected("the notification's event_type is not a name")
    order, date = api.order(order_id)
    if order.get("order_id") != order_id:
        raise _rejected("Klarna answered with another order")
    status, fraud = order.get("status"), order.get("fraud_status")
    if not isinstance(status, str) or not status:
        raise _rejected("the order has no status")
    if status == "CLOSED":
        return None
    if status == "AUTHORIZED":
        status = f"AUTHORIZED/{fraud}"
    amount, currency = order.get("order_amount"), order.get("purchase_currency")
    if amount is not None and (type(amount) is not int or amount < 0):
        raise _rejected("the order's amount is not minor units")
    if currency is not None and (not isinstance(currency, str) or not currency):
        raise _rejected("the order's currency is not a currency code")
    reference = order.get("merchant_reference1")
    observed_at = None
    if date is not None:
        try:
            observed_at = parsedate_to_datetime(date).astimezone(timezone.utc)
        except (TypeError, ValueError):
            observed_at = None
    return ProviderReport(
        provider_id=PROVIDER_ID,
        # What was read back is part of the event's identity: a notice answered while the
        # order was under review is another event than the same notice once decided.
        event_id=f"{order_id}:{event_type or 'push'}:{status}",
        # The notification's word is not taken: the order's status read back decides.
        event_type=None,
        provider_ref=order_id,
        session_id=reference if isinstance(reference, str) and reference else None,
        status=status,
        amount=amount,
        currency=currency,
        observed_at=observed_at,
        precision=PRECISION,
    )


__all__ = ["EUROPE", "PRECISION", "PROVIDER_ID", "KlarnaApi", "parse_notification"]
