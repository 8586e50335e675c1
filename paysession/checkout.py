"""Cart completion: authorize a cart's selected session through its provider, once.

What Medusa's cart completion does for the payment, made safe to retry. The provider is
called with an idempotency key derived from the session's own ``idempotency_key``, and
the move that records its answer carries a key derived from that one. The keys depend
only on what completion itself has committed, so a retry after any failure (a crash
between the provider's answer and the commit, a timeout, a lost connection, a
double-clicked button) sends the provider the same key, gets the same answer back and
commits it once:

- attempt 0 asks with the session's key itself, attempt *n* with ``<key>:<n>``; a new
  attempt starts only after completion has committed a decline (``fail``) or a request
  for the customer to act (``require_more``);
- the moves recording the answer are committed with the answer kept as a provider
  event under ``complete:<provider key>`` (see ``PaymentSessions.record_answer``): two
  completions racing on the same cart commit once and both return it, and webhooks
  observed before the answer are stale when they arrive;
- a session already authorized returns at once, without calling the provider.

A session without an ``idempotency_key`` (one read from a Medusa payload with a null
key) uses its id in its place.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import attrs

from paysession.errors import ConcurrentUpdate, IllegalTransition, InvalidSessionData
from paysession.lifecycle import ALLOWED
from paysession.providers import PaymentProvider, ProviderReply, ProviderTimeout, map_status
from paysession.record import TransitionRecord
from paysession.service import PaymentSessions
from paysession.session import PaymentSession
from paysession.status import PaymentSessionStatus

S = PaymentSessionStatus

_ANSWER = "complete:"
_NEW_ATTEMPT = "retry:"
_INITIATE = "initiate:"
_ENDS_ATTEMPT = frozenset({"fail", "require_more"})


class CompletionOutcome(str, enum.Enum):
    """How a completion ended."""

    AUTHORIZED = "authorized"
    """The payment is authorized: the order can be placed."""
    REQUIRES_MORE = "requires_more"
    """The customer must act (3-D Secure, a redirect): see the session's ``data``."""
    DECLINED = "declined"
    """The provider declined; the session is in ``error`` and a new attempt may follow."""
    CANCELED = "canceled"
    """The provider canceled the payment."""

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class Completion:
    """What :func:`complete_cart` did.

    ``session`` is the session as completion left it; ``records`` the moves that recorded
    the provider's answer (none when the session was authorized already; the stored
    record of the answer when a racing completion committed it first); ``provider_status`` and
    ``idempotency_key`` the provider's answer and the key it was asked with (None when
    it was not asked); ``lost_races`` how many times another move (a webhook, another
    completion) committed first and completion looked again.
    """

    outcome: CompletionOutcome
    session: PaymentSession
    records: tuple[TransitionRecord, ...] = ()
    provider_status: str | None = None
    idempotency_key: str | None = None
    lost_races: int = 0


class NoSelectedSession(InvalidSessionData, LookupError):
    """The cart has no selected payment session to complete with."""

    def __init__(self, cart_id: str) -> None:
        self.cart_id = cart_id
        super().__init__({"cart_id": f"cart {cart_id} has no selected payment session"})


class CompletionTimeout(ProviderTimeout):
    """The provider did not answer in time; completing the cart again resumes safely.

    ``idempotency_key`` is the key the provider was asked with; the retry asks with the
    same one, so a request that did reach the provider is not made twice.
    """

    def __init__(self, session_id: str, idempotency_key: str) -> None:
        self.session_id = session_id
        self.idempotency_key = idempotency_key
        super().__init__(session_id, idempotency_key)

    def __str__(self) -> str:
        return (
            f"the provider did not answer in time for session {self.session_id}; "
            "complete the cart again to resume (the same idempotency key is used)"
        )


def provider_key(session: PaymentSession, attempt: int) -> str:
    """The idempotency key of the ``attempt``-th authorization request for ``session``."""
    base = session.idempotency_key or session.id
    return base if attempt == 0 else f"{base}:{attempt}"


def attempts_made(session: PaymentSession, trail: tuple[TransitionRecord, ...]) -> int:
    """How many authorization attempts completion has ended (declined or handed to the customer)."""
    return sum(
        1
        for record in trail
        if record.trigger in _ENDS_ATTEMPT
        and record.idempotency_key is not None
        and record.idempotency_key.startswith(_ANSWER)
    )


_MOVE_FOR = {
    S.AUTHORIZED: ("authorize", CompletionOutcome.AUTHORIZED),
    S.REQUIRES_MORE: ("require_more", CompletionOutcome.REQUIRES_MORE),
    S.PENDING: ("fail", CompletionOutcome.DECLINED),
    S.ERROR: ("fail", CompletionOutcome.DECLINED),
    S.CANCELED: ("cancel", CompletionOutcome.CANCELED),
}


def complete_cart(
    sessions: PaymentSessions,
    provider: PaymentProvider | Mapping[str, PaymentProvider],
    cart_id: str,
    *,
    actor: str = "checkout",
    attempts: int = 5,
) -> Completion:
    """Authorize the cart's selected session through its provider, exactly once.

    ``provider`` is the provider, or a mapping from provider id to provider. Returns a
    :class:`Completion`: authorized (at once when it was already), requires_more (the
    customer must act; complete again afterwards), declined (the session is in
    ``error``; complete again for a new attempt, e.g. with a new card) or canceled.
    Raises NoSelectedSession, CompletionTimeout (complete again to resume),
    IllegalTransition for a canceled session, and ReconciliationAnomaly when the
    provider authorized a session that was canceled meanwhile (recorded; void it at the
    provider). ``attempts`` bounds the reloads after racing moves.
    """
    chosen = sessions.selected(cart_id)
    if chosen is None:
        raise NoSelectedSession(cart_id)
    return complete_session(sessions, provider, chosen.id, actor=actor, attempts=attempts)


def complete_session(
    sessions: PaymentSessions,
    provider: PaymentProvider | Mapping[str, PaymentProvider],
    session_id: str,
    *,
    actor: str = "checkout",
    attempts: int = 5,
) -> Completion:
    """:func:`complete_cart` for one session, selected or not."""
    if type(attempts) is not int or attempts < 1:
        raise InvalidSessionData({"attempts": "must be an int >= 1"})
    answered: tuple[str, ProviderReply] | None = None
    lost = 0
    # Each pass either returns or raises; the count bounds the retries.
    attempt = -1
    while True:
        attempt += 1
        session = sessions.get(session_id)
        if session.status is S.AUTHORIZED:
            return Completion(CompletionOutcome.AUTHORIZED, session, lost_races=lost)
        payments = _provider_for(provider, session)
        key = provider_key(session, attempts_made(session, sessions.history(session_id)))
        reply = answered[1] if answered is not None and answered[0] == key else None
        if session.status is S.CANCELED:
            if reply is not None and map_status(session.provider_id, reply.status) is S.AUTHORIZED:
                # Authorized at the provider, canceled here meanwhile: an anomaly to record.
                sessions.reconcile(session_id, reply.status, event_id=f"{_ANSWER}{key}")
            raise IllegalTransition("authorize", session.status.value, ALLOWED[session.status])
        try:
            if session.status is S.ERROR:
                sessions.fire(
                    session_id,
                    "retry",
                    actor=actor,
                    reason="new payment attempt",
                    idempotency_key=f"{_NEW_ATTEMPT}{key}",
                )
                session = sessions.get(session_id)
            if not session.is_initiated:
                started = payments.initiate(session)
                sessions.fire(
                    session_id,
                    "initiate",
                    actor=actor,
                    reason=started.status,
                    idempotency_key=f"{_INITIATE}{provider_key(session, 0)}",
                    data=started.data,
                )
                session = sessions.get(session_id)
            if reply is None:
                try:
                    reply = payments.authorize(session, idempotency_key=key)
                except ProviderTimeout as error:
                    raise CompletionTimeout(session_id, key) from error
                answered = (key, reply)
            trigger, outcome = _MOVE_FOR[map_status(session.provider_id, reply.status)]
            moves: list[tuple[str, Mapping[str, object]]] = []
            if reply.data and dict(reply.data) != dict(session.data):
                moves.append(("update", {"data": reply.data}))
            moves.append((trigger, {}))
            records, _ = sessions.record_answer(
                session_id,
                moves,
                provider_status=reply.status,
                observed_at=reply.observed_at,
                actor=actor,
                idempotency_key=f"{_ANSWER}{key}",
            )
        except ConcurrentUpdate:
            # A webhook or another completion moved the session first: look again. The
            # key only changes if completion itself committed an answer meanwhile.
            if attempt == attempts - 1:
                raise
            lost += 1
            continue
        except IllegalTransition:
            # The session changed status under us (authorized by a webhook, canceled by
            # the storefront): look again, unless it is where the move was planned from.
            if sessions.get(session_id).status is session.status or attempt == attempts - 1:
                raise
            lost += 1
            continue
        return Completion(
            outcome, sessions.get(session_id), tuple(records), reply.status, key, lost
        )


def cancel_payment(
    sessions: PaymentSessions,
    provider: PaymentProvider | Mapping[str, PaymentProvider],
    session_id: str,
    *,
    actor: str = "checkout",
    attempts: int = 5,
) -> list[TransitionRecord]:
    """Cancel the payment at the provider, then the session; return the records committed.

    The provider is asked with the key ``<session key>:cancel`` and its answer is kept
    as a provider event (``cancel:<session key>``) with the cancel move, so webhooks
    observed before the cancellation are stale when they arrive. ``[]`` when the
    session is canceled already (by a webhook, say). An answer other than canceled
    raises ReconciliationAnomaly through reconciliation (recorded).
    """
    if type(attempts) is not int or attempts < 1:
        raise InvalidSessionData({"attempts": "must be an int >= 1"})
    # Each pass either returns or raises; the count bounds the retries.
    attempt = -1
    while True:
        attempt += 1
        session = sessions.get(session_id)
        if session.status is S.CANCELED:
            return []
        base = session.idempotency_key or session.id
        reply = _provider_for(provider, session).cancel(session, idempotency_key=f"{base}:cancel")
        if map_status(session.provider_id, reply.status) is not S.CANCELED:
            sessions.reconcile(session_id, reply.status, observed_at=reply.observed_at)
            raise IllegalTransition("cancel", session.status.value, ALLOWED[session.status])
        try:
            records, _ = sessions.record_answer(
                session_id,
                [("cancel", {})],
                provider_status=reply.status,
                observed_at=reply.observed_at,
                actor=actor,
                idempotency_key=f"cancel:{base}",
            )
        except ConcurrentUpdate:
            if attempt == attempts - 1:
                raise
            continue
        except IllegalTransition:
            # The provider's cancel webhook was reconciled between our read and our
            # commit: the session is canceled, which is what was asked.
            if sessions.get(session_id).status is S.CANCELED:
                return []
            raise
        return records


def _provider_for(
    provider: PaymentProvider | Mapping[str, PaymentProvider], session: PaymentSession
) -> PaymentProvider:
    if isinstance(provider, Mapping):
        found = provider.get(session.provider_id)
    else:
        found = provider if provider.id == session.provider_id else None
    if found is None:
        raise InvalidSessionData(
            {"provider": f"no provider given for provider_id {session.provider_id!r}"}
        )
    return found


__all__ = [
    "Completion",
    "CompletionOutcome",
    "CompletionTimeout",
    "NoSelectedSession",
    "attempts_made",
    "cancel_payment",
    "complete_cart",
    "complete_session",
    "provider_key",
]
