"""Payment providers as checkout code sees them: the protocol, replies, status maps.

A provider speaks its own status names (Stripe's PaymentIntent, PayPal's orders); a
status map turns each into one of ours so that reconciliation can move the session.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
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
        "requires_action": S.REQUIRES_MORE,
        "processing": S.PENDING,
        "requires_capture": S.AUTHORIZED,
        "succeeded": S.AUTHORIZED,
        "canceled": S.CANCELED,
    }
)
"""Stripe's seven PaymentIntent statuses. Stripe has no error status: a decline puts the
intent back to ``requires_payment_method`` with ``last_payment_error`` set, which a report
says with ``declined=True`` (or the event ``payment_intent.payment_failed``) and which
then reads as ``error``. ``processing`` and ``requires_confirmation`` are payments in
flight: they never move a session back (see :class:`ProviderRules`)."""

PAYPAL: Mapping[str, PaymentSessionStatus] = MappingProxyType(
    {
        # Orders (v2 Checkout), as Medusa's PayPal plugin reads them.
        "CREATED": S.PENDING,
        "SAVED": S.REQUIRES_MORE,
        "APPROVED": S.REQUIRES_MORE,
        "PAYER_ACTION_REQUIRED": S.REQUIRES_MORE,
        "COMPLETED": S.AUTHORIZED,
        "VOIDED": S.CANCELED,
        # The authorization and capture resources its webhooks carry (``CREATED`` and
        # ``COMPLETED`` are read as the order's; their events decide for the resources).
        "PENDING": S.PENDING,
        "CAPTURED": S.AUTHORIZED,
        "PARTIALLY_CAPTURED": S.AUTHORIZED,
        "DENIED": S.ERROR,
        "DECLINED": S.ERROR,
        "FAILED": S.ERROR,
        "EXPIRED": S.CANCELED,
        # The same resources in the v1 Payments API, whose webhooks carry ``state``.
        "pending": S.PENDING,
        "authorized": S.AUTHORIZED,
        "partially_captured": S.AUTHORIZED,
        "captured": S.AUTHORIZED,
        "completed": S.AUTHORIZED,
        "denied": S.ERROR,
        "voided": S.CANCELED,
        "expired": S.CANCELED,
    }
)
"""PayPal's order statuses, those of the authorization and capture resources, and the
``state`` of the v1 Payments resources."""

ADYEN: Mapping[str, PaymentSessionStatus] = MappingProxyType(
    {
        "AUTHORISATION:true": S.AUTHORIZED,
        "AUTHORISATION:false": S.ERROR,
        "PENDING:true": S.PENDING,
        "CAPTURE:true": S.AUTHORIZED,
        "CANCELLATION:true": S.CANCELED,
        "CANCEL_OR_REFUND:true": S.CANCELED,
        "TECHNICAL_CANCEL:true": S.CANCELED,
        "OFFER_CLOSED:true": S.CANCELED,
        # The Checkout API's answers to /payments and /payments/details: their resultCode.
        "Authorised": S.AUTHORIZED,
        "PartiallyAuthorised": S.AUTHORIZED,
        "Refused": S.ERROR,
        "Error": S.ERROR,
        "Cancelled": S.CANCELED,
        "Pending": S.PENDING,
        "Received": S.PENDING,
        "RedirectShopper": S.REQUIRES_MORE,
        "IdentifyShopper": S.REQUIRES_MORE,
        "ChallengeShopper": S.REQUIRES_MORE,
        "PresentToShopper": S.REQUIRES_MORE,
        # What AdyenProvider says before the first payment, and of a cancellation taken.
        "active": S.PENDING,
        "CANCELLATION:received": S.CANCELED,
    }
)
"""Adyen's notifications, as ``<eventCode>:<success>``; the result codes of its Checkout
API's answers; ``active`` (no payment made yet: Adyen's word for a checkout the shopper
has yet to pay) and ``CANCELLATION:received`` (Adyen took a cancellation, which its
notification confirms). A failed cancellation or capture says nothing of where the
payment is, so it is not mapped (an unknown status). A partial authorization reads as
authorized: the amount it states is not the session's, so it is voided."""

KLARNA: Mapping[str, PaymentSessionStatus] = MappingProxyType(
    {
        "AUTHORIZED/ACCEPTED": S.AUTHORIZED,
        "AUTHORIZED/PENDING": S.PENDING,
        "AUTHORIZED/REJECTED": S.ERROR,
        "PART_CAPTURED": S.AUTHORIZED,
        "CAPTURED": S.AUTHORIZED,
        "CANCELLED": S.CANCELED,
        "EXPIRED": S.CANCELED,
    }
)
"""Klarna's order statuses; an authorized order as ``AUTHORIZED/<fraud_status>``."""

NATIVE: Mapping[str, PaymentSessionStatus] = MappingProxyType({s.value: s for s in S})
"""Our own status names, for providers that report them directly (manual, system)."""

_STAGE: Mapping[PaymentSessionStatus, int] = MappingProxyType(
    {S.PENDING: 0, S.REQUIRES_MORE: 1, S.ERROR: 2, S.AUTHORIZED: 3, S.CANCELED: 4}
)
"""How far along a payment each status is: a report of a later stage is newer news."""

_ONE_MICROSECOND = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _frozen_map(
    mapping: Mapping[str, PaymentSessionStatus],
) -> Mapping[str, PaymentSessionStatus]:
    return MappingProxyType(dict(mapping))


@attrs.frozen
class ProviderRules:
    """What paysession knows of one provider's reports, besides its status names.

    - ``statuses``: the provider's own status names, each read as one of ours;
    - ``precision``: the finest time its reports carry (Stripe's ``created`` is in whole
      seconds). Reports are ordered at that precision: one is stale only when it is
      older there, and instants are recorded truncated to it;
    - ``progress``: its status names in the order its own lifecycle goes. Two reports of
      one instant (at the precision) are ordered by how far along the payment each says
      it is (pending, requires_more, error, authorized, canceled), then by ``progress``;
      the earlier one is kept as a stale event, never applied;
    - ``in_flight``: statuses of a payment still under way at the provider (Stripe's
      ``processing``): never a decline, and never a move back from requires_more;
    - ``events``: event types that say what happened whatever the object's status
      (Stripe's ``payment_intent.payment_failed`` is a decline).
    """

    statuses: Mapping[str, PaymentSessionStatus] = attrs.field(converter=_frozen_map)
    precision: timedelta = _ONE_MICROSECOND
    progress: tuple[str, ...] = ()
    in_flight: frozenset[str] = frozenset()
    events: Mapping[str, PaymentSessionStatus] = attrs.field(factory=dict, converter=_frozen_map)

    def truncate(self, instant: datetime) -> datetime:
        """``instant`` at this provider's precision (earlier digits kept, later dropped)."""
        if self.precision <= _ONE_MICROSECOND:
            return instant
        return instant - (instant - _EPOCH) % self.precision

    def rank(self, provider_status: str, status: PaymentSessionStatus) -> tuple[int, int]:
        """How far along a report is: its status's stage, then the provider's progress."""
        try:
            step = self.progress.index(provider_status)
        except ValueError:
            step = -1
        return _STAGE[status], step


_SECOND = timedelta(seconds=1)

_RULES: dict[str, ProviderRules] = {
    "stripe": ProviderRules(
        STRIPE,
        precision=_SECOND,
        progress=(
            "requires_payment_method",
            "requires_confirmation",
            "requires_action",
            "processing",
            "requires_capture",
            "succeeded",
            "canceled",
        ),
        in_flight=frozenset({"processing", "requires_confirmation"}),
        events={"payment_intent.payment_failed": S.ERROR},
    ),
    "paypal": ProviderRules(
        PAYPAL,
        precision=_SECOND,
        progress=("CREATED", "SAVED", "APPROVED", "PAYER_ACTION_REQUIRED", "COMPLETED"),
        in_flight=frozenset({"PENDING", "pending"}),
        events={
            "CHECKOUT.ORDER.APPROVED": S.REQUIRES_MORE,
            "CHECKOUT.ORDER.COMPLETED": S.AUTHORIZED,
            "PAYMENT.AUTHORIZATION.CREATED": S.AUTHORIZED,
            "PAYMENT.AUTHORIZATION.VOIDED": S.CANCELED,
            "PAYMENT.CAPTURE.COMPLETED": S.AUTHORIZED,
            "PAYMENT.CAPTURE.DENIED": S.ERROR,
            "PAYMENT.CAPTURE.DECLINED": S.ERROR,
        },
    ),
    "adyen": ProviderRules(
        ADYEN, precision=_SECOND, in_flight=frozenset({"PENDING:true", "Pending", "Received"})
    ),
    "klarna": ProviderRules(
        KLARNA,
        precision=_SECOND,
        in_flight=frozenset({"AUTHORIZED/PENDING"}),
        events={
            "FRAUD_RISK_ACCEPTED": S.AUTHORIZED,
            "FRAUD_RISK_REJECTED": S.ERROR,
            "FRAUD_RISK_STOPPED": S.ERROR,
        },
    ),
    "manual": ProviderRules(NATIVE),
    "system": ProviderRules(NATIVE),
}


def register_provider(provider_id: str, rules: ProviderRules) -> None:
    """Teach paysession another provider (replaces what was known of ``provider_id``)."""
    if not isinstance(provider_id, str) or not provider_id:
        raise InvalidSessionData({"provider_id": "must be a non-empty string"})
    if not isinstance(rules, ProviderRules):
        raise InvalidSessionData({"rules": "must be a ProviderRules"})
    _RULES[provider_id] = rules


def register_status_map(
    provider_id: str,
    mapping: Mapping[str, PaymentSessionStatus | str],
    *,
    like: str | None = None,
) -> None:
    """Teach paysession another provider's status names (replaces an earlier map).

    ``like`` names a known provider whose other rules (precision, progress, statuses in
    flight, event types) this one shares: a second Stripe account, say.
    """
    problems: dict[str, str] = {}
    checked: dict[str, PaymentSessionStatus] = {}
    for name, status in mapping.items():
        try:
            checked[name] = PaymentSessionStatus(status)
        except ValueError:
            problems[f"mapping.{name}"] = "must map to a payment session status"
    if not provider_id:
        problems["provider_id"] = "must not be empty"
    if like is not None and like not in _RULES:
        problems["like"] = f"no provider {like!r} is known"
    if problems:
        raise InvalidSessionData(problems)
    base = _RULES.get(provider_id if like is None else like) or ProviderRules(checked)
    _RULES[provider_id] = attrs.evolve(base, statuses=checked)


def rules_for(provider_id: str) -> ProviderRules:
    """What is known of ``provider_id``; UnknownProviderStatus when nothing is."""
    try:
        return _RULES[provider_id]
    except KeyError:
        raise UnknownProviderStatus(provider_id, None) from None


def status_map(provider_id: str) -> Mapping[str, PaymentSessionStatus]:
    """The status map registered for ``provider_id``."""
    return rules_for(provider_id).statuses


def map_status(provider_id: str, provider_status: str) -> PaymentSessionStatus:
    """Our status for what ``provider_id`` calls ``provider_status``."""
    try:
        return rules_for(provider_id).statuses[provider_status]
    except KeyError:
        raise UnknownProviderStatus(provider_id, provider_status) from None


def read_status(
    provider_id: str,
    provider_status: str,
    *,
    event_type: str | None = None,
    declined: bool = False,
) -> PaymentSessionStatus:
    """Our status for a report: the status map, then what the event type or a decline adds.

    An unknown status is UnknownProviderStatus even when the event type decides, so
    that a report never carries a status nobody can read. An event type the provider's
    rules name decides; otherwise a declined report of a status that is not in flight
    and would leave the session waiting (pending) is a decline: ``error``.
    """
    rules = rules_for(provider_id)
    try:
        mapped = rules.statuses[provider_status]
    except KeyError:
        raise UnknownProviderStatus(provider_id, provider_status) from None
    if event_type is not None:
        decided = rules.events.get(event_type)
        if decided is not None:
            return decided
    if declined and mapped is S.PENDING and provider_status not in rules.in_flight:
        return S.ERROR
    return mapped


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
    the answer are recognised as stale. ``amount`` (minor units) and ``currency`` are
    what the provider holds or asks for, when it says: an authorization for another
    amount than the session's is never taken as the session's. ``decline`` is the
    provider's reason when it declined the attempt (Stripe's ``last_payment_error``
    code), None otherwise.
    """

    status: str
    data: Mapping[str, object] = attrs.field(factory=dict, repr=False)
    observed_at: datetime | None = None
    amount: int | None = None
    currency: str | None = None
    decline: str | None = None


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
class ProviderReport:
    """What a provider's notification says of one payment, once verified and read.

    ``provider_ref`` is the provider's own id of the payment (Stripe's PaymentIntent id,
    Adyen's pspReference) and ``session_id`` the session, when the notification names it
    (Stripe's ``metadata.session_id``, Adyen's merchantReference). ``status`` is the
    provider's own status name, read through its status map; ``amount`` (minor units),
    ``currency`` and ``decline`` (the provider's reason for a decline) when stated.
    ``observed_at`` is when the provider says the payment took that status, to its
    ``precision`` (Stripe: whole seconds). A report never holds a secret: no client
    secret, no signature, no raw body.
    """

    provider_id: str
    event_id: str | None
    event_type: str | None
    provider_ref: str | None
    session_id: str | None
    status: str
    amount: int | None = None
    currency: str | None = None
    decline: str | None = None
    observed_at: datetime | None = None
    precision: timedelta = _ONE_MICROSECOND


@attrs.frozen
class Webhook:
    """A provider's notice about a session, as a webhook endpoint receives it: with the
    amount it is for and the provider's reason for a decline, when it says."""

    event_id: str
    session_id: str
    provider_status: str
    observed_at: datetime
    amount: int | None = None
    decline: str | None = None


__all__ = [
    "ADYEN",
    "KLARNA",
    "NATIVE",
    "PAYPAL",
    "STRIPE",
    "DoubleAuthorization",
    "PaymentProvider",
    "ProviderReply",
    "ProviderReport",
    "ProviderRules",
    "ProviderTimeout",
    "Providers",
    "ReconciliationAnomaly",
    "UnknownProviderStatus",
    "Webhook",
    "cancel_key",
    "map_status",
    "provider_for",
    "read_status",
    "register_provider",
    "register_status_map",
    "rules_for",
    "status_map",
    "void_key",
]
