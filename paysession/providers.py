"""Payment providers as checkout code sees them: a protocol, status maps, a simulator.

A provider speaks its own status names (Stripe's PaymentIntent, PayPal's orders); a
status map turns each into one of ours so that reconciliation can move the session.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Protocol

import attrs

from paysession.errors import InvalidSessionData, PaySessionError
from paysession.session import Clock, PaymentSession, utc_now
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


@attrs.frozen
class Webhook:
    """A provider's notice about a session, as a webhook endpoint receives it."""

    event_id: str
    session_id: str
    provider_status: str
    observed_at: datetime


SCENARIOS = ("authorized", "requires_more", "declined_then_retry", "timeout")
"""The scripted outcomes of SimulatedProvider, chosen per session by the seed."""


class _Intent:
    """The simulator's state of one session's payment (Stripe's PaymentIntent)."""

    __slots__ = ("acted", "action_key", "asked", "changed_at", "notices", "status", "timed_out")

    def __init__(self) -> None:
        self.status = "requires_payment_method"
        self.asked = 0  # distinct idempotency keys that asked for an authorization
        self.acted = False  # the customer completed the action (3-D Secure)
        self.action_key: str | None = None  # the request that asked the customer to act
        self.timed_out = False
        self.notices = 0
        self.changed_at: datetime | None = None


class SimulatedProvider:
    """A deterministic stand-in for a Stripe-like processor, for demos and tests.

    It speaks Stripe's PaymentIntent statuses. Each session gets one scenario from the
    seed (see ``SCENARIOS``):

    - ``authorized``: the first authorization request succeeds (``requires_capture``);
    - ``requires_more``: it answers ``requires_action`` until the customer acts
      (:meth:`customer_acts`, the 3-D Secure step), which authorizes the payment;
    - ``declined_then_retry``: the first attempt is declined (back to
      ``requires_payment_method``); a later attempt, under a new key, succeeds;
    - ``timeout``: the first request is carried out but its answer is lost
      (ProviderTimeout); asking again with the same key gets the answer.

    Like Stripe it is idempotent per key: a key that was answered gets the same answer
    again, and a payment is authorized at most once, whatever the keys. ``authorizations``
    counts authorizations by the key of the request that made them, ``requests`` every
    authorize call by key, and ``outbox`` holds the webhooks it sends (one per status
    change, ``observed_at`` from ``clock``), in the order it sends them; ``send``, when
    given, is also called with each one as it is sent (before the caller has the answer).
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        provider_id: str = "stripe",
        clock: Clock | None = None,
        send: Callable[[Webhook], object] | None = None,
    ) -> None:
        self.id = provider_id
        self.seed = seed
        self.authorizations: dict[str, int] = {}
        self.requests: dict[str, int] = {}
        self.calls: list[tuple[str, str]] = []
        self.outbox: list[Webhook] = []
        self._clock: Clock = clock or utc_now
        self._send = send
        self._answers: dict[str, ProviderReply] = {}
        self._intents: dict[str, _Intent] = {}

    def scenario(self, session_id: str) -> str:
        """The scenario this provider plays for ``session_id`` (stable for a seed)."""
        return random.Random(f"{self.seed}:{session_id}").choice(SCENARIOS)

    def _intent(self, session_id: str) -> _Intent:
        intent = self._intents.get(session_id)
        if intent is None:
            intent = self._intents[session_id] = _Intent()
        return intent

    def _move(self, session_id: str, intent: _Intent, status: str) -> None:
        intent.status = status
        intent.notices += 1
        intent.changed_at = self._clock()
        notice = Webhook(
            f"evt_{session_id}_{intent.notices}", session_id, status, intent.changed_at
        )
        self.outbox.append(notice)
        if self._send is not None:
            self._send(notice)

    def _reply(self, session: PaymentSession, **extra: object) -> ProviderReply:
        intent = self._intent(session.id)
        name = f"pi_{session.id.removeprefix('ps_')}"
        data = {"id": name, "client_secret": f"{name}_secret_sim", **extra}
        return ProviderReply(intent.status, data, intent.changed_at)

    def initiate(self, session: PaymentSession) -> ProviderReply:
        self.calls.append(("initiate", session.id))
        return self._reply(session)

    def update(self, session: PaymentSession) -> ProviderReply:
        self.calls.append(("update", session.id))
        return self._reply(session)

    def authorize(self, session: PaymentSession, *, idempotency_key: str) -> ProviderReply:
        self.calls.append(("authorize", session.id))
        self.requests[idempotency_key] = self.requests.get(idempotency_key, 0) + 1
        answered = self._answers.get(idempotency_key)
        if answered is not None:
            return answered
        intent = self._intent(session.id)
        scenario = self.scenario(session.id)
        if intent.status in ("requires_capture", "canceled"):
            reply = self._reply(session)
        elif intent.status == "requires_action" and not intent.acted:
            reply = self._reply(session, next_action="3ds")
        else:
            intent.asked += 1
            if scenario == "requires_more" and not intent.acted:
                intent.action_key = idempotency_key
                self._move(session.id, intent, "requires_action")
                reply = self._reply(session, next_action="3ds")
            elif scenario == "declined_then_retry" and intent.asked == 1:
                self._move(session.id, intent, "requires_payment_method")
                reply = self._reply(session, last_error="card_declined")
            else:
                self._authorize(session.id, intent, idempotency_key)
                reply = self._reply(session)
        self._answers[idempotency_key] = reply
        if scenario == "timeout" and not intent.timed_out:
            intent.timed_out = True
            raise ProviderTimeout(f"simulated timeout authorizing {session.id}")
        return reply

    def _authorize(self, session_id: str, intent: _Intent, key: str) -> None:
        self.authorizations[key] = self.authorizations.get(key, 0) + 1
        self._move(session_id, intent, "requires_capture")

    def customer_acts(self, session_id: str) -> None:
        """The customer completes the action asked for (3-D Secure): the payment is authorized."""
        intent = self._intent(session_id)
        if intent.status == "requires_action" and not intent.acted:
            intent.acted = True
            self._authorize(session_id, intent, intent.action_key or "customer")

    def cancel(self, session: PaymentSession, *, idempotency_key: str) -> ProviderReply:
        self.calls.append(("cancel", session.id))
        answered = self._answers.get(idempotency_key)
        if answered is not None:
            return answered
        intent = self._intent(session.id)
        if intent.status != "canceled":
            self._move(session.id, intent, "canceled")
        reply = self._reply(session)
        self._answers[idempotency_key] = reply
        return reply

    def status(self, session: PaymentSession) -> ProviderReply:
        self.calls.append(("status", session.id))
        return self._reply(session)


class WebhookChannel:
    """Delivers webhooks the way real ones arrive: some late, some twice, out of order.

    ``push`` takes the notices in the order the provider sent them and returns the ones
    to deliver now; ``flush`` returns the rest. Each notice is held back with probability
    ``late`` (released after a few later ones, so it arrives out of order and stale),
    and delivered a second time with probability ``duplicate``. Deterministic for a seed.
    """

    def __init__(self, seed: int = 0, *, late: float = 0.25, duplicate: float = 0.2) -> None:
        self._rng = random.Random(f"{seed}:webhooks")
        self._late = late
        self._duplicate = duplicate
        self._held: list[tuple[int, Webhook]] = []

    def push(self, notice: Webhook) -> list[Webhook]:
        due: list[Webhook] = []
        still: list[tuple[int, Webhook]] = []
        for wait, held in self._held:
            if wait <= 1:
                due.append(held)
            else:
                still.append((wait - 1, held))
        self._held = still
        copies = [notice, notice] if self._rng.random() < self._duplicate else [notice]
        for copy in copies:
            if self._rng.random() < self._late:
                self._held.append((self._rng.randint(1, 4), copy))
            else:
                # Sometimes ahead of what was held back: out of order even when not late.
                due.insert(self._rng.randint(0, len(due)), copy)
        return due

    def flush(self) -> list[Webhook]:
        rest = [notice for _, notice in self._held]
        self._held = []
        return rest
