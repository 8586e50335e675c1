"""Payment providers as checkout code sees them: a protocol, status maps, a simulator.

A provider speaks its own status names (Stripe's PaymentIntent, PayPal's orders); a
status map turns each into one of ours so that reconciliation can move the session.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Protocol

import attrs

from paysession.errors import InvalidSessionData, PaySessionError
from paysession.session import PaymentSession
from paysession.status import PaymentSessionStatus

S = PaymentSessionStatus

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


class UnknownProviderStatus(PaySessionError, LookupError):
    """A provider, or a provider's status name, that no status map knows."""

    def __init__(self, provider_id: str, provider_status: str | None) -> None:
        self.provider_id = provider_id
        self.provider_status = provider_status
        super().__init__(provider_id, provider_status)

    def __str__(self) -> str:
        if self.provider_status is None:
            return f"no status map is registered for provider {self.provider_id!r}"
        shown = repr(self.provider_status[:60])
        return f"provider {self.provider_id!r} status {shown} is not in its status map"


class ReconciliationAnomaly(PaySessionError):
    """A provider reported a status the session cannot legally reach; nothing was applied.

    ``status`` is the session's status, ``provider_status`` what the provider reported
    and ``mapped`` what its status map made of it. ``guard`` names the guard that refused
    the path when the table has one (an authorization reported for a session that was
    never initiated, or has no amount); None when no legal path exists at all (anything
    after canceled, authorized back to pending). The report is recorded in the store with
    the outcome ``anomaly`` (see ``PaymentSessions.anomalies``).
    """

    def __init__(
        self,
        session_id: str,
        status: PaymentSessionStatus,
        provider_id: str,
        provider_status: str,
        mapped: PaymentSessionStatus,
        *,
        event_id: str | None = None,
        guard: str | None = None,
    ) -> None:
        self.session_id = session_id
        self.status = status
        self.provider_id = provider_id
        self.provider_status = provider_status
        self.mapped = mapped
        self.event_id = event_id
        self.guard = guard
        super().__init__(session_id, status, provider_id, provider_status, mapped)

    def __str__(self) -> str:
        why = (
            f"guard {self.guard!r} refuses the path"
            if self.guard is not None
            else "no legal path leads there"
        )
        event = "" if self.event_id is None else f" (event {self.event_id[:80]!r})"
        return (
            f"provider {self.provider_id!r} reported {self.provider_status[:60]!r}{event}, "
            f"that is {self.mapped.value!r}, for session {self.session_id} which is "
            f"{self.status.value!r}: {why}; recorded as an anomaly, not applied"
        )


class ProviderTimeout(PaySessionError, TimeoutError):
    """The provider did not answer in time; the request may or may not have happened."""


@attrs.frozen
class ProviderReply:
    """What a provider answered: its own status name and its data for the session."""

    status: str
    data: Mapping[str, object] = attrs.field(factory=dict, repr=False)


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


@attrs.frozen
class Webhook:
    """A provider's notice about a session, as a webhook endpoint receives it."""

    event_id: str
    session_id: str
    provider_status: str
    observed_at: datetime


SCENARIOS = ("authorized", "requires_more", "declined_then_retry", "timeout")
"""The scripted outcomes of SimulatedProvider, chosen per session by the seed."""


class SimulatedProvider:
    """A deterministic stand-in for a Stripe-like processor, for demos and tests.

    Each session gets one scenario from the seed (see ``SCENARIOS``): authorized at once;
    asks for more (3-D Secure) and is authorized on the next try; declined, then
    authorized on the retry; or times out once before answering. Like a real processor it
    honours idempotency keys: the same key gets the same answer, and ``authorizations``
    counts each key once, however often it was sent. ``webhooks`` gives the notices it
    would send, some late, some twice, some out of order.
    """

    def __init__(self, seed: int = 0, *, provider_id: str = "stripe") -> None:
        self.id = provider_id
        self.seed = seed
        self.authorizations: dict[str, int] = {}
        self.calls: list[tuple[str, str]] = []
        self._answers: dict[str, ProviderReply] = {}
        self._attempts: dict[str, int] = {}
        self._timed_out: set[str] = set()

    def scenario(self, session_id: str) -> str:
        """The scenario this provider plays for ``session_id`` (stable for a seed)."""
        return random.Random(f"{self.seed}:{session_id}").choice(SCENARIOS)

    def initiate(self, session: PaymentSession) -> ProviderReply:
        self.calls.append(("initiate", session.id))
        return ProviderReply("requires_payment_method", {"id": f"pi_{session.id[3:]}"})

    def update(self, session: PaymentSession) -> ProviderReply:
        self.calls.append(("update", session.id))
        return ProviderReply("requires_payment_method", dict(session.data))

    def authorize(self, session: PaymentSession, *, idempotency_key: str) -> ProviderReply:
        self.calls.append(("authorize", session.id))
        scenario = self.scenario(session.id)
        if scenario == "timeout" and session.id not in self._timed_out:
            self._timed_out.add(session.id)
            raise ProviderTimeout(f"simulated timeout authorizing {session.id}")
        answered = self._answers.get(idempotency_key)
        if answered is not None:
            return answered
        attempt = self._attempts.get(session.id, 0)
        self._attempts[session.id] = attempt + 1
        if scenario == "requires_more" and attempt == 0:
            reply = ProviderReply("requires_action", {"next_action": "3ds"})
        elif scenario == "declined_then_retry" and attempt == 0:
            reply = ProviderReply("requires_payment_method", {"last_error": "card_declined"})
        else:
            reply = ProviderReply("requires_capture", {"id": f"pi_{session.id[3:]}"})
            self.authorizations[idempotency_key] = self.authorizations.get(idempotency_key, 0) + 1
        self._answers[idempotency_key] = reply
        return reply

    def cancel(self, session: PaymentSession, *, idempotency_key: str) -> ProviderReply:
        self.calls.append(("cancel", session.id))
        return ProviderReply("canceled")

    def status(self, session: PaymentSession) -> ProviderReply:
        attempts = self._attempts.get(session.id, 0)
        return ProviderReply("requires_capture" if attempts else "requires_payment_method")

    def webhooks(self, session_id: str, start: datetime | None = None) -> Iterator[Webhook]:
        """The notices for one authorized session: sometimes late, twice, out of order."""
        rng = random.Random(f"{self.seed}:hooks:{session_id}")
        at = start or datetime(2024, 1, 1, tzinfo=timezone.utc)
        notices = [Webhook(f"evt_{session_id}_1", session_id, "requires_capture", at)]
        if self.scenario(session_id) == "requires_more":
            early = Webhook(
                f"evt_{session_id}_0", session_id, "requires_action", at - timedelta(seconds=5)
            )
            # Out of order: the older notice arrives after the newer one.
            notices.append(early)
        if rng.random() < 0.3:
            notices.append(notices[0])  # delivered twice
        yield from notices
