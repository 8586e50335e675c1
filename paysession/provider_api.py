"""Payment providers as checkout code sees them: the protocol, replies, status maps.

A provider speaks its own status names (Stripe's PaymentIntent, PayPal's orders); a
status map turns each into one of ours so that reconciliation can move the session.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Protocol, TypeVar

import attrs

from paysession import telemetry
from paysession.errors import (
    DoubleAuthorization,
    InvalidSessionData,
    ProviderTimeout,
    ReconciliationAnomaly,
    UnknownProviderStatus,
)
from paysession.session import PaymentSession
from paysession.status import PaymentSessionStatus
from paysession.telemetry import TracedProvider

S = PaymentSessionStatus
_T = TypeVar("_T")

STRIPE: Mapping[str, PaymentSessionStatus] = MappingProxyType(
    {
        "requires_payment_method": S.PENDING,
        "requires_confirmation": S.PENDING,
        "processing": S.PENDING,
        "requires_action": S.REQUIRES_MORE,
        "requires_capture": S.AUTHORIZED,
        "succeeded": S.AUTHORIZED,
        "canceled": S.CANCELED,
    }
)
"""Stripe PaymentIntent statuses. Stripe has no error state: a decline returns the intent
to ``requires_payment_method``, which reconciliation reaches as ``fail`` then ``retry``
only when the session had moved on; from pending it is a no-op."""

PAYPAL: Mapping[str, PaymentSessionStatus] = MappingProxyType(
    {
        "CREATED": S.PENDING,
        "SAVED": S.REQUIRES_MORE,
        "APPROVED": S.REQUIRES_MORE,
        "PAYER_ACTION_REQUIRED": S.REQUIRES_MORE,
        "VOIDED": S.CANCELED,
        "COMPLETED": S.AUTHORIZED,
    }
)
"""PayPal order statuses, as Medusa's PayPal plugin reads them."""

NATIVE: Mapping[str, PaymentSessionStatus] = MappingProxyType({s.value: s for s in S})
"""Our own status names, for providers that report them directly (manual, system)."""

_MAPS: dict[str, Mapping[str, PaymentSessionStatus]] = {
    "stripe": STRIPE,
    "paypal": PAYPAL,
    "manual": NATIVE,
    "system": NATIVE,
}


def register_status_map(
    provider_id: str, mapping: Mapping[str, PaymentSessionStatus | str]
) -> None:
    """Teach paysession another provider's status names (replaces an earlier map)."""
    problems: dict[str, str] = {}
    checked: dict[str, PaymentSessionStatus] = {}
    for name, status in mapping.items():
        try:
            checked[name] = PaymentSessionStatus(status)
        except ValueError:
            problems[f"mapping.{name}"] = "must map to a payment session status"
    if not provider_id:
        problems["provider_id"] = "must not be empty"
    if problems:
        raise InvalidSessionData(problems)
    _MAPS[provider_id] = MappingProxyType(checked)


def status_map(provider_id: str) -> Mapping[str, PaymentSessionStatus]:
    """The status map registered for ``provider_id``."""
    try:
        return _MAPS[provider_id]
    except KeyError:
        raise UnknownProviderStatus(provider_id, None) from None


def map_status(provider_id: str, provider_status: str) -> PaymentSessionStatus:
    """Our status for what ``provider_id`` calls ``provider_status``."""
    try:
        return status_map(provider_id)[provider_status]
    except KeyError:
        raise UnknownProviderStatus(provider_id, provider_status) from None


def void_key(session: PaymentSession) -> str:
    """The idempotency key under which a session's extra hold is voided (cancel)."""
    return f"{session.idempotency_key or session.id}:void"


def cancel_key(session: PaymentSession) -> str:
    """The idempotency key under which a session's payment is canceled at its provider."""
    return f"{session.idempotency_key or session.id}:cancel"


@attrs.frozen
class ProviderReply:
    """What a provider answered: its own status name and its data for the session.

    ``observed_at`` is when the provider's state took that status, when it says (the
    time its webhooks carry): cart completion keeps it so that webhooks observed before
    the answer are recognised as stale.
    """

    status: str
    data: Mapping[str, object] = attrs.field(factory=dict, repr=False)
    observed_at: datetime | None = None


class PaymentProvider(Protocol):
    """A protocol: what checkout code asks of a payment processor.

    Every call that changes something at the provider takes the session's
    ``idempotency_key``, so that a retried call is not a second payment.
    """

    id: str

    def initiate(self, session: PaymentSession) -> ProviderReply: ...

    def update(self, session: PaymentSession) -> ProviderReply: ...

    def authorize(self, session: PaymentSession, *, idempotency_key: str) -> ProviderReply: ...

    def cancel(self, session: PaymentSession, *, idempotency_key: str) -> ProviderReply: ...

    def status(self, session: PaymentSession) -> ProviderReply: ...


def provider_for(
    provider: PaymentProvider | Mapping[str, PaymentProvider], session: PaymentSession
) -> PaymentProvider:
    """The provider for ``session``: ``provider`` itself, or its entry in a mapping.

    InvalidSessionData (field ``provider``) when none is given for its provider id.
    """
    if isinstance(provider, Mapping):
        found = provider.get(session.provider_id)
    else:
        found = provider if provider.id == session.provider_id else None
    if found is None:
        raise InvalidSessionData(
            {"provider": f"no provider given for provider_id {session.provider_id!r}"}
        )
    return TracedProvider(found) if telemetry.enabled() else found


Providers = PaymentProvider | Mapping[str, PaymentProvider]
"""A provider, or a mapping from provider id to provider."""


@attrs.frozen
class Webhook:
    """A provider's notice about a session, as a webhook endpoint receives it."""

    event_id: str
    session_id: str
    provider_status: str
    observed_at: datetime


__all__ = [
    "NATIVE",
    "PAYPAL",
    "STRIPE",
    "DoubleAuthorization",
    "PaymentProvider",
    "ProviderReply",
    "ProviderTimeout",
    "Providers",
    "ReconciliationAnomaly",
    "UnknownProviderStatus",
    "Webhook",
    "cancel_key",
    "map_status",
    "provider_for",
    "register_status_map",
    "status_map",
    "void_key",
]
