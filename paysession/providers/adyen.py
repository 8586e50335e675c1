"""Adyen: its standard notifications read into reports, each item's HMAC checked.

Needs the ``adyen`` extra (``pip install 'paysession[adyen]'``). Adyen posts a batch of
``NotificationRequestItem``; each carries ``additionalData.hmacSignature``, checked with
the Adyen library's own check. See ``docs/providers.md``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

from paysession.errors import InvalidSessionData, MissingExtra, WebhookRejected
from paysession.provider_api import ADYEN, ProviderReport

try:
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


__all__ = ["PRECISION", "PROVIDER_ID", "parse_notification"]
