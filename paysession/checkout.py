"""Cart completion: authorize a cart's selected session through its provider, once.

What Medusa's cart completion does for the payment, made safe to retry, to race and
to crash. A claim holds the cart while its provider is asked (a method switch, a second
completion or a cancellation meanwhile gets CartBusy; a crashed holder's claim is taken
over once it lapses, and its attempt finished under the same key); the database keeps
one authorized session per cart; and an authorization the cart cannot keep is recorded
as an anomaly and voided at the provider (the completion reports ``voided``). The
design, and why it holds: ``docs/one-charge.md``.

Idempotency keys depend only on what completion itself has committed, so a retry after
any failure sends the provider the same key, gets the same answer back and commits it
once:

- attempt 0 asks with the session's key itself, attempt *n* with ``<key>:<n>``; a new
  attempt starts only after completion has committed a decline (``fail``) or a request
  for the customer to act (``require_more``);
- the moves recording the answer are committed with the answer kept as a provider
  event under ``complete:<provider key>`` (see ``PaymentSessions.record_answer``), so
  webhooks observed before the answer are stale when they arrive;
- a session already authorized returns at once, without calling the provider.

A session without an ``idempotency_key`` (one read from a Medusa payload with a null
key) uses its id in its place.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TypeVar

import attrs

from paysession.durable import check_attempts, retrying
from paysession.errors import (
    CompletionTimeout,
    ConcurrentUpdate,
    IllegalTransition,
    NoSelectedSession,
    ProviderTimeout,
    ReconciliationAnomaly,
)
from paysession.lifecycle import ALLOWED
from paysession.providers import (
    PaymentProvider,
    ProviderReply,
    Providers,
    cancel_key,
    map_status,
    provider_for,
)
from paysession.record import TransitionRecord
from paysession.service import DEFAULT_LEASE, PaymentSessions
from paysession.session import PaymentSession
from paysession.status import PaymentSessionStatus
from paysession.store.base import Claim, ClaimAction, Claimed

S = PaymentSessionStatus
_R = TypeVar("_R")

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
    VOIDED = "voided"
    """The provider authorized, but the session cannot be its cart's authorized one
    (another one is, the cart switched away from it, or it was canceled): the hold was
    voided at the provider, the session canceled and the report kept as an anomaly."""

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
    completion) committed first and completion looked again; ``taken_over`` whether
    the cart's claim was taken over from a holder that never finished (it crashed).
    """

    outcome: CompletionOutcome
    session: PaymentSession
    records: tuple[TransitionRecord, ...] = ()
    provider_status: str | None = None
    idempotency_key: str | None = None
    lost_races: int = 0
    taken_over: bool = False


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
    provider: Providers,
    cart_id: str,
    *,
    actor: str = "checkout",
    attempts: int = 5,
    lease: timedelta = DEFAULT_LEASE,
) -> Completion:
    """Authorize the cart's selected session through its provider, exactly once.

    ``provider`` is the provider, or a mapping from provider id to provider (needed
    when the cart's sessions use several). Returns a :class:`Completion`: authorized (at
    once when it was already), requires_more (the customer must act; complete again
    afterwards), declined (the session is in ``error``; complete again for a new
    attempt, e.g. with a new card), canceled, or voided (see
    :class:`CompletionOutcome`). The cart is claimed for ``lease`` at most while the
    provider is asked. Raises CartBusy while another completion (or cancellation) of
    the cart is in flight, NoSelectedSession (CartNotFound for a cart without
    sessions), CompletionTimeout (complete again to resume), and IllegalTransition for
    a canceled session. ``attempts`` bounds the reloads after racing moves.
    """
    check_attempts(attempts)
    claimed = sessions.claim_cart(cart_id, lease=lease)
    return _completing(sessions, provider, claimed, actor, attempts)


def complete_session(
    sessions: PaymentSessions,
    provider: Providers,
    session_id: str,
    *,
    actor: str = "checkout",
    attempts: int = 5,
    lease: timedelta = DEFAULT_LEASE,
) -> Completion:
    """:func:`complete_cart` for one session, selected or not (its cart is claimed all the same)."""
    check_attempts(attempts)
    session = sessions.get(session_id)
    if session.cart_id is None:
        return _complete(sessions, provider, session_id, actor, attempts, None)[0]
    claimed = sessions.claim_cart(session.cart_id, lease=lease, session_id=session_id)
    return _completing(sessions, provider, claimed, actor, attempts)


def _holding(
    sessions: PaymentSessions,
    provider: Providers,
    claimed: Claimed,
    actor: str,
    attempts: int,
    work: Callable[[str, Claim], tuple[_R, bool]],
) -> tuple[_R, bool]:
    """Do ``work`` on the claimed session, then let the claim go if its commit did not.

    ``work`` returns its result and whether its commit released the claim. A claim taken
    over from a holder that never finished (``claimed.previous``) is first finished,
    unless it was doing the very same thing to the same session: then ``work`` is its
    continuation, under the same key. Returns the result and whether it took over.
    """
    claim = claimed.claim
    if claim is None:  # claim_cart raises instead of returning nothing
        raise NoSelectedSession("(unknown)")
    released = False
    try:
        previous = claimed.previous
        if previous is not None and not (
            previous.action is claim.action and previous.session_id == claim.session_id
        ):
            _finish_crashed(sessions, provider, previous, actor, attempts)
        result, released = work(claim.session_id, claim)
        return result, previous is not None
    finally:
        if not released:
            sessions.store.release(claim)


def _completing(
    sessions: PaymentSessions,
    provider: Providers,
    claimed: Claimed,
    actor: str,
    attempts: int,
) -> Completion:
    done, taken_over = _holding(
        sessions,
        provider,
        claimed,
        actor,
        attempts,
        lambda session_id, claim: _complete(sessions, provider, session_id, actor, attempts, claim),
    )
    return attrs.evolve(done, taken_over=True) if taken_over else done


def _finish_crashed(
    sessions: PaymentSessions, provider: Providers, previous: Claim, actor: str, attempts: int
) -> None:
    """Finish what a crashed claim holder started, under the same idempotency key.

    Its provider call may have happened: an authorization is asked for again (and the
    answer committed, or voided when the cart has moved on since), a cancellation is
    made again. Whatever the answer, it is now recorded; the caller then goes on with
    its own work.
    """
    try:
        if previous.action is ClaimAction.AUTHORIZE:
            _complete(sessions, provider, previous.session_id, actor, attempts, None)
        else:
            _cancel(sessions, provider, previous.session_id, actor, attempts, None, None)
    except IllegalTransition:
        pass  # canceled meanwhile: there is nothing left to finish


def _complete(
    sessions: PaymentSessions,
    provider: Providers,
    session_id: str,
    actor: str,
    attempts: int,
    claim: Claim | None,
) -> tuple[Completion, bool]:
    """The completion of one session; also whether the answer's commit released ``claim``."""
    # The provider's answer under its key, kept across attempts: a lost race looks
    # again without asking again. A webhook or another completion that moved the session
    # first (or authorized another session of the cart) is a lost race; the key only
    # changes if completion itself committed an answer meanwhile.
    answered: dict[str, ProviderReply] = {}

    def attempt(lost: int) -> tuple[Completion, bool]:
        session = sessions.get(session_id)
        if session.status is S.AUTHORIZED:
            return Completion(CompletionOutcome.AUTHORIZED, session, lost_races=lost), False
        payments = provider_for(provider, session)
        key = provider_key(session, attempts_made(session, sessions.history(session_id)))
        reply = answered.get(key)
        if session.status is S.CANCELED:
            if reply is not None and map_status(session.provider_id, reply.status) is S.AUTHORIZED:
                # Authorized at the provider, canceled here meanwhile: void the hold.
                return _void(sessions, payments, session_id, key, reply, lost), False
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
                answered.clear()
                answered[key] = reply
            mapped = map_status(session.provider_id, reply.status)
            if mapped is S.AUTHORIZED and sessions.authorization_conflict(session_id):
                return _void(sessions, payments, session_id, key, reply, lost), False
            trigger, outcome = _MOVE_FOR[mapped]
            moves: list[tuple[str, Mapping[str, object]]] = []
            if reply.data and dict(reply.data) != dict(session.data):
                moves.append(("update", {"data": reply.data}))
            moves.append((trigger, {}))
            records, fresh = sessions.record_answer(
                session_id,
                moves,
                provider_status=reply.status,
                observed_at=reply.observed_at,
                actor=actor,
                idempotency_key=f"{_ANSWER}{key}",
                release=claim,
            )
        except IllegalTransition as refused:
            # The session changed status under us (authorized by a webhook, canceled by
            # the storefront): a lost race, looked at again like any other, unless it is
            # where the move was planned from.
            if sessions.get(session_id).status is session.status or lost == attempts - 1:
                raise
            raise ConcurrentUpdate(session_id, None) from refused
        done = Completion(
            outcome, sessions.get(session_id), tuple(records), reply.status, key, lost
        )
        return done, fresh and claim is not None

    return retrying(attempts, attempt, wait=False)


def _void(
    sessions: PaymentSessions,
    payments: PaymentProvider,
    session_id: str,
    key: str,
    reply: ProviderReply,
    lost: int,
) -> Completion:
    """Hand an authorization the cart cannot keep to reconciliation, which voids it."""
    try:
        result = sessions.reconcile(
            session_id, reply.status, event_id=f"{_ANSWER}{key}", provider=payments
        )
    except ReconciliationAnomaly as anomaly:
        if not anomaly.voided:
            raise
        records: tuple[TransitionRecord, ...] = ()
    else:
        # Recorded before (a racing completion voided it first): nothing more to do.
        records = result.records
    session = sessions.get(session_id)
    if session.status is not S.CANCELED:
        raise ReconciliationAnomaly(
            session_id,
            session.status,
            session.provider_id,
            reply.status,
            S.AUTHORIZED,
            event_id=f"{_ANSWER}{key}",
        )
    return Completion(CompletionOutcome.VOIDED, session, records, reply.status, key, lost)


def cancel_payment(
    sessions: PaymentSessions,
    provider: Providers,
    session_id: str,
    *,
    actor: str = "checkout",
    attempts: int = 5,
    lease: timedelta = DEFAULT_LEASE,
) -> list[TransitionRecord]:
    """Cancel the payment at the provider, then the session; return the records committed.

    The cart is claimed while the provider is asked (CartBusy while a completion of it
    is in flight). The provider is asked with the key ``<session key>:cancel`` and its
    answer is kept as a provider event (``cancel:<session key>``) with the cancel move,
    so webhooks observed before the cancellation are stale when they arrive. ``[]`` when
    the session is canceled already (by a webhook, say). An answer other than canceled
    raises ReconciliationAnomaly through reconciliation (recorded).
    """
    check_attempts(attempts)
    session = sessions.get(session_id)
    if session.status is S.CANCELED:
        return []
    if session.cart_id is None:
        return _cancel(sessions, provider, session_id, actor, attempts, None, None)[0]
    claimed = sessions.claim_cart(
        session.cart_id, lease=lease, session_id=session_id, action=ClaimAction.CANCEL
    )
    return _holding(
        sessions,
        provider,
        claimed,
        actor,
        attempts,
        lambda session_id, claim: _cancel(
            sessions, provider, session_id, actor, attempts, claim, None
        ),
    )[0]


def _cancel(
    sessions: PaymentSessions,
    provider: Providers,
    session_id: str,
    actor: str,
    attempts: int,
    claim: Claim | None,
    reason: str | None,
) -> tuple[list[TransitionRecord], bool]:
    """Cancel one session (at its provider first when initiated); whether ``claim`` went."""
    return retrying(
        attempts,
        lambda _: _cancel_once(sessions, provider, session_id, actor, claim, reason),
        wait=False,
    )


def _cancel_once(
    sessions: PaymentSessions,
    provider: Providers,
    session_id: str,
    actor: str,
    claim: Claim | None,
    reason: str | None,
) -> tuple[list[TransitionRecord], bool]:
    session = sessions.get(session_id)
    if session.status is S.CANCELED:
        return [], False
    base = session.idempotency_key or session.id
    if not session.is_initiated:
        # The provider has never heard of it: there is nothing to cancel there.
        record = sessions.fire(
            session_id,
            "cancel",
            expected_version=sessions.version(session_id),
            actor=actor,
            reason=reason,
            idempotency_key=f"cancel:{base}",
        )
        return [record], False
    reply = provider_for(provider, session).cancel(session, idempotency_key=cancel_key(session))
    if map_status(session.provider_id, reply.status) is not S.CANCELED:
        sessions.reconcile(session_id, reply.status, observed_at=reply.observed_at)
        raise IllegalTransition("cancel", session.status.value, ALLOWED[session.status])
    try:
        records, fresh = sessions.record_answer(
            session_id,
            [("cancel", {})],
            provider_status=reply.status,
            observed_at=reply.observed_at,
            actor=actor,
            idempotency_key=f"cancel:{base}",
            reason=None if reason is None else f"{reason} ({reply.status})",
            release=claim,
        )
    except IllegalTransition:
        # The provider's cancel webhook was reconciled between our read and our commit:
        # the session is canceled, which is what was asked.
        if sessions.get(session_id).status is S.CANCELED:
            return [], False
        raise
    return records, fresh and claim is not None


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
