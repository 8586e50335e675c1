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
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import TypeVar

import attrs

from paysession.errors import (
    CartConflict,
    CompletionTimeout,
    ConcurrentUpdate,
    IllegalTransition,
    NoSelectedSession,
    ProviderTimeout,
    ReconciliationAnomaly,
)
from paysession.holds import provider_call
from paysession.lifecycle import ALLOWED
from paysession.providers import (
    PaymentProvider,
    ProviderReply,
    Providers,
    cancel_key,
    provider_for,
    read_status,
    rules_for,
)
from paysession.reconcile import amount_differs
from paysession.record import TransitionRecord
from paysession.service import DEFAULT_LEASE, PaymentSessions, Reconciliation
from paysession.session import PaymentSession, clock_reading
from paysession.status import PaymentSessionStatus as Status
from paysession.store.base import CallAction, Claim, ClaimAction, Claimed, ProviderCall
from paysession.writer import check_attempts, retrying

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
    PROCESSING = "processing"
    """The provider is still processing the payment (an asynchronous method: Stripe's
    ``processing``): the session stays pending, nothing is declined. Its webhook tells
    the outcome; completing again asks the provider where the payment is."""
    VOIDED = "voided"
    """The provider authorized, but the session cannot keep it (another session of the
    cart is authorized, the cart switched away from it, it was canceled, or the provider
    holds another amount than the session's): the hold was voided at the provider, the
    session canceled and the report kept as an anomaly (``Completion.anomaly`` says
    which kind)."""

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
    the cart's claim was taken over from a holder that never finished (it crashed);
    ``anomaly`` the kind of anomaly a voided authorization was recorded as.
    """

    outcome: CompletionOutcome
    session: PaymentSession
    records: tuple[TransitionRecord, ...] = ()
    provider_status: str | None = None
    idempotency_key: str | None = None
    lost_races: int = 0
    taken_over: bool = False
    anomaly: str | None = None


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
    Status.AUTHORIZED: "authorize",
    Status.REQUIRES_MORE: "require_more",
    Status.ERROR: "fail",
    Status.CANCELED: "cancel",
}
"""The move that records an answer, by what the answer reads as. An answer that reads as
pending is not here: it is a payment still in flight (or a request the provider has yet
to act on), recorded without a move (``processing``); a decline reads as error."""

_OUTCOME_OF = {
    Status.AUTHORIZED: CompletionOutcome.AUTHORIZED,
    Status.REQUIRES_MORE: CompletionOutcome.REQUIRES_MORE,
    Status.ERROR: CompletionOutcome.DECLINED,
    Status.CANCELED: CompletionOutcome.CANCELED,
    Status.PENDING: CompletionOutcome.PROCESSING,
}


class Checkout:
    """The flows that call a provider about a cart's payment, under a claim on the cart.

    Holds what every flow needs: the service, the provider (or a mapping from provider
    id to provider, needed when the cart's sessions use several), the ``actor`` its
    moves are recorded under, how many ``attempts`` a flow makes after racing moves
    before it gives up, and the ``lease`` its claims ask for. :func:`complete_cart`,
    :func:`complete_session`, :func:`cancel_payment` and
    :func:`~paysession.expiry.expire_sessions` are each one call on one of these.
    """

    def __init__(
        self,
        sessions: PaymentSessions,
        provider: Providers,
        *,
        actor: str = "checkout",
        attempts: int = 5,
        lease: timedelta = DEFAULT_LEASE,
    ) -> None:
        check_attempts(attempts)
        self.sessions = sessions
        self.provider = provider
        self.actor = actor
        self.attempts = attempts
        self.lease = lease

    def complete_cart(self, cart_id: str) -> Completion:
        """See :func:`complete_cart`."""
        claimed = self.sessions.claim_cart(cart_id, lease=self.lease)
        done, taken_over = self.under_claim(
            claimed, lambda session_id, claim: self._complete(session_id, claim)
        )
        return attrs.evolve(done, taken_over=True) if taken_over else done

    def complete_session(self, session_id: str) -> Completion:
        """See :func:`complete_session`."""
        session = self.sessions.get(session_id)
        if session.cart_id is None:
            return self._complete(session_id, None)[0]
        claimed = self.sessions.claim_cart(session.cart_id, lease=self.lease, session_id=session_id)
        done, taken_over = self.under_claim(
            claimed, lambda session_id, claim: self._complete(session_id, claim, ask_cart=True)
        )
        return attrs.evolve(done, taken_over=True) if taken_over else done

    def cancel_payment(self, session_id: str) -> list[TransitionRecord]:
        """See :func:`cancel_payment`."""
        session = self.sessions.get(session_id)
        if session.status is Status.CANCELED:
            return []
        if session.cart_id is None:
            return self.cancel(session_id, None)[0]
        claimed = self.sessions.claim_cart(
            session.cart_id, lease=self.lease, session_id=session_id, action=ClaimAction.CANCEL
        )
        return self.under_claim(claimed, lambda session_id, claim: self.cancel(session_id, claim))[
            0
        ]

    def under_claim(
        self, claimed: Claimed, work: Callable[[str, Claim], tuple[_R, bool]]
    ) -> tuple[_R, bool]:
        """Do ``work`` on the claimed session, then let the claim go if its commit did not.

        ``work`` returns its result and whether its commit released the claim. A claim
        taken over from a holder that never finished (``claimed.previous``) is first
        finished, unless it was doing the very same thing to the same session: then
        ``work`` is its continuation, under the same key. Returns the result and whether
        it took over.
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
                self._finish_crashed(previous)
            result, released = work(claim.session_id, claim)
            return result, previous is not None
        finally:
            if not released:
                self.sessions.store.release(claim)

    def ask_first(self, session: PaymentSession) -> Status | None:
        """See :func:`ask_first`."""
        if not session.is_initiated:
            return session.status
        payments = provider_for(self.provider, session)
        reply = payments.status(session)
        declined = reply.decline is not None
        found = read_status(session.provider_id, reply.status, declined=declined)
        if found is not session.status and found in (Status.AUTHORIZED, Status.CANCELED):
            applied = self.apply_reply(session.id, reply)
            if isinstance(applied, ReconciliationAnomaly):
                return Status.CANCELED
        if reply.status in rules_for(session.provider_id).in_flight:
            return None
        if found is Status.PENDING:
            return session.status  # nothing under way there: the session's own word stands
        return found

    def cancel(
        self,
        session_id: str,
        claim: Claim | None,
        reason: str | None = None,
        *,
        asked: bool = False,
    ) -> tuple[list[TransitionRecord], bool]:
        """Cancel one session (at its provider first when initiated); whether ``claim`` went.

        ``asked``: the caller has asked the provider where the payment is already
        (:meth:`ask_first`), and decided to cancel it all the same. ``reason`` is the
        cancel's, with the provider's answer after it.
        """
        return retrying(
            self.attempts,
            lambda number: self._cancel_once(session_id, claim, reason, asked or number > 0),
            wait=False,
        )

    def _finish_crashed(self, previous: Claim) -> None:
        """Finish what a crashed claim holder started, under the same idempotency key.

        Its provider call may have happened: an authorization is asked for again (and
        the answer committed, or voided when the cart has moved on since), a
        cancellation is made again. Whatever the answer, it is now recorded; the caller
        then goes on with its own work.
        """
        try:
            if previous.action is ClaimAction.AUTHORIZE:
                self._complete(previous.session_id, None)
            else:
                self.cancel(previous.session_id, None)
        except IllegalTransition:
            pass  # canceled meanwhile: there is nothing left to finish

    def _complete(
        self, session_id: str, claim: Claim | None, *, ask_cart: bool = False
    ) -> tuple[Completion, bool]:
        """The completion of one session; also whether the answer's commit released ``claim``.

        ``ask_cart``: before its provider is first asked, the cart must be able to keep
        an authorization of the session (CartConflict otherwise). A session completed by
        name may be any of its cart's; the cart's selected one (``complete_cart``) is the
        cart's choice, and a completion finishing what a crashed claim holder started
        must ask again under the same key whatever the cart did since, so that a hold is
        found.
        """
        completing = _Completing(self, session_id, claim, ask_cart)
        return retrying(self.attempts, completing.attempt, wait=False)

    def apply_reply(
        self, session_id: str, reply: ProviderReply
    ) -> Reconciliation | ReconciliationAnomaly:
        """Reconcile what a provider answered about a session's payment, with all it said.

        Returns the reconciliation, or the anomaly when its hold was voided (the session
        is canceled then); an anomaly not voided is raised.
        """
        try:
            return self.sessions.reconcile(
                session_id,
                reply.status,
                observed_at=reply.observed_at,
                provider=self.provider,
                amount=reply.amount,
                currency=reply.currency,
                decline=reply.decline,
            )
        except ReconciliationAnomaly as anomaly:
            if not anomaly.voided:
                raise
            return anomaly

    def _cancel_once(
        self, session_id: str, claim: Claim | None, reason: str | None, asked: bool
    ) -> tuple[list[TransitionRecord], bool]:
        sessions = self.sessions
        session = sessions.get(session_id)
        if session.status is Status.CANCELED:
            return [], False
        base = session.idempotency_key or session.id
        if not session.is_initiated:
            # The provider has never heard of it: there is nothing to cancel there.
            record = sessions.fire(
                session_id,
                "cancel",
                expected_version=sessions.version(session_id),
                actor=self.actor,
                reason=reason,
                idempotency_key=f"cancel:{base}",
            )
            return [record], False
        if not asked and self.ask_first(session) is Status.CANCELED:
            return [], False  # canceled at the provider: reconciled, or voided, already
        session = sessions.get(session_id)
        if session.status is Status.CANCELED:
            return [], False
        payments = provider_for(self.provider, session)
        key = cancel_key(session)
        asked_at = clock_reading(sessions.clock)
        reply = payments.cancel(session, idempotency_key=key)
        call = provider_call(sessions.clock, session, CallAction.CANCEL, key, reply, asked_at)
        if not call.releases:
            sessions.store.record_calls([call])
            sessions.reconcile(session_id, reply.status, observed_at=reply.observed_at)
            raise IllegalTransition("cancel", session.status.value, ALLOWED[session.status])
        try:
            records, fresh = sessions.record_answer(
                session_id,
                [("cancel", {})],
                provider_status=reply.status,
                observed_at=reply.observed_at,
                actor=self.actor,
                idempotency_key=f"cancel:{base}",
                reason=None if reason is None else f"{reason} ({reply.status})",
                release=claim,
                calls=(call,),
            )
        except IllegalTransition:
            # The provider's cancel webhook was reconciled between our read and our
            # commit: the session is canceled, which is what was asked.
            sessions.store.record_calls([call])
            if sessions.get(session_id).status is Status.CANCELED:
                return [], False
            raise
        return records, fresh and claim is not None


class _Completing:
    """One completion of one session, over its attempts.

    The provider's answer under its key is kept across attempts: a lost race looks
    again without asking again. A webhook or another completion that moved the session
    first (or authorized another session of the cart) is a lost race; the key only
    changes if completion itself committed an answer meanwhile.
    """

    def __init__(
        self, checkout: Checkout, session_id: str, claim: Claim | None, ask_cart: bool
    ) -> None:
        self.checkout = checkout
        self.sessions = checkout.sessions
        self.session_id = session_id
        self.claim = claim
        self.ask_cart = ask_cart
        self.answered: dict[str, tuple[ProviderReply, ProviderCall]] = {}

    def attempt(self, lost: int) -> tuple[Completion, bool]:
        """One look at the session: its answer recorded, or a lost race raised."""
        session = self.sessions.get(self.session_id)
        if session.status is Status.AUTHORIZED:
            return Completion(CompletionOutcome.AUTHORIZED, session, lost_races=lost), False
        payments = provider_for(self.checkout.provider, session)
        trail = self.sessions.history(self.session_id)
        key = provider_key(session, attempts_made(session, trail))
        known = self.answered.get(key)
        if session.status is Status.CANCELED:
            if known is not None and known[1].holds:
                # Authorized at the provider, canceled here meanwhile: void the hold.
                return self._void(payments, key, known, lost), False
            raise IllegalTransition("authorize", session.status.value, ALLOWED[session.status])
        try:
            return self._ask_and_record(session, payments, key, lost)
        except IllegalTransition as refused:
            # The session changed status under us (authorized by a webhook, canceled by
            # the storefront): a lost race, looked at again like any other, unless it is
            # where the move was planned from.
            now = self.sessions.get(self.session_id).status
            if now is session.status or lost == self.checkout.attempts - 1:
                raise
            raise ConcurrentUpdate(self.session_id, None) from refused

    def _ask_and_record(
        self, session: PaymentSession, payments: PaymentProvider, key: str, lost: int
    ) -> tuple[Completion, bool]:
        """Ask the provider (once per key) and record its answer, or hand a hold the
        cart cannot keep to reconciliation."""
        session = self._ready(session, payments, key)
        known = self.answered.get(key)
        if known is None:
            if self.ask_cart:
                reason = self.sessions.authorization_conflict(session.id)
                if reason is not None:
                    raise CartConflict(session.id, session.cart_id or "", reason)
            known = _authorize(self.sessions, payments, session, key)
            self.answered.clear()
            self.answered[key] = known
        reply, call = known
        if call.status is Status.PENDING and self._in_flight(key):
            # Answered before under this key, still under way then; the provider replays
            # that answer for the key: ask where the payment is now.
            return self._look_again(payments, session, key, lost), False
        if call.holds and (
            self.sessions.authorization_conflict(session.id)
            or amount_differs(session, reply.amount, reply.currency)
        ):
            return self._void(payments, key, known, lost), False
        records, fresh = self.sessions.record_answer(
            session.id,
            _answer_moves(session, reply, call.status),
            provider_status=reply.status,
            observed_at=reply.observed_at,
            actor=self.checkout.actor,
            idempotency_key=f"{_ANSWER}{key}",
            release=self.claim,
            calls=(call,),
            amount=reply.amount,
            currency=reply.currency,
            decline=reply.decline,
        )
        done = Completion(
            _OUTCOME_OF[call.status],
            self.sessions.get(session.id),
            tuple(records),
            reply.status,
            key,
            lost,
        )
        return done, fresh and self.claim is not None

    def _ready(
        self, session: PaymentSession, payments: PaymentProvider, key: str
    ) -> PaymentSession:
        """The session made ready to be authorized: a new attempt after a decline, and
        the provider called once (initiate) before its first authorization."""
        sessions, actor = self.sessions, self.checkout.actor
        if session.status is Status.ERROR:
            sessions.fire(
                session.id,
                "retry",
                actor=actor,
                reason="new payment attempt",
                idempotency_key=f"{_NEW_ATTEMPT}{key}",
            )
            session = sessions.get(session.id)
        if not session.is_initiated:
            started = payments.initiate(session)
            sessions.fire(
                session.id,
                "initiate",
                actor=actor,
                reason=started.status,
                idempotency_key=f"{_INITIATE}{provider_key(session, 0)}",
                data=started.data,
            )
            session = sessions.get(session.id)
        return session

    def _in_flight(self, key: str) -> bool:
        """Whether the answer recorded under ``key`` said the payment was still in flight."""
        event = self.sessions.store.provider_event(self.session_id, f"{_ANSWER}{key}")
        return event is not None and event.status is Status.PENDING

    def _look_again(
        self, payments: PaymentProvider, session: PaymentSession, key: str, lost: int
    ) -> Completion:
        """Ask the provider where an in-flight payment is now, and reconcile what it says."""
        reply = payments.status(session)
        done = self.checkout.apply_reply(session.id, reply)
        now = self.sessions.get(session.id)
        if isinstance(done, ReconciliationAnomaly):
            return Completion(
                CompletionOutcome.VOIDED, now, (), reply.status, key, lost, anomaly=done.kind
            )
        return Completion(_OUTCOME_OF[now.status], now, done.records, reply.status, key, lost)

    def _void(
        self,
        payments: PaymentProvider,
        key: str,
        known: tuple[ProviderReply, ProviderCall],
        lost: int,
    ) -> Completion:
        """Hand an authorization the cart cannot keep to reconciliation, which voids it."""
        reply, call = known
        sessions, session_id = self.sessions, self.session_id
        sessions.store.record_calls([call])  # the hold asked for, kept before it is voided
        kind: str | None = None
        records: Sequence[TransitionRecord] = ()
        try:
            result = sessions.reconcile(
                session_id,
                reply.status,
                event_id=f"{_ANSWER}{key}",
                provider=payments,
                amount=reply.amount,
                currency=reply.currency,
            )
        except ReconciliationAnomaly as anomaly:
            if not anomaly.voided:
                raise
            kind = anomaly.kind
        else:
            # Recorded before (a racing completion voided it first): nothing more to do.
            records = result.records
        session = sessions.get(session_id)
        if session.status is not Status.CANCELED:
            raise ReconciliationAnomaly(
                session_id,
                session.status,
                session.provider_id,
                reply.status,
                Status.AUTHORIZED,
                event_id=f"{_ANSWER}{key}",
            )
        return Completion(
            CompletionOutcome.VOIDED, session, tuple(records), reply.status, key, lost, anomaly=kind
        )


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
    afterwards), processing (the payment is in flight at the provider), declined (the
    session is in ``error``; complete again for a new attempt, e.g. with a new card),
    canceled, or voided (see :class:`CompletionOutcome`). Every authorization request
    is kept in the store with its answer (``PaymentSessions.holds``). The cart is
    claimed for ``lease`` at most while the provider is asked. Raises CartBusy while
    another completion (or cancellation) of the cart is in flight, NoSelectedSession
    (CartNotFound for a cart without sessions), CompletionTimeout (complete again to
    resume), and IllegalTransition for
    a canceled session. ``attempts`` bounds the reloads after racing moves.
    """
    checkout = Checkout(sessions, provider, actor=actor, attempts=attempts, lease=lease)
    return checkout.complete_cart(cart_id)


def complete_session(
    sessions: PaymentSessions,
    provider: Providers,
    session_id: str,
    *,
    actor: str = "checkout",
    attempts: int = 5,
    lease: timedelta = DEFAULT_LEASE,
) -> Completion:
    """:func:`complete_cart` for one session, selected or not (its cart is claimed all the same).

    CartConflict, before its provider is asked, when the session cannot be its cart's
    authorized one: another session of the cart is authorized, or the cart chose another.
    """
    checkout = Checkout(sessions, provider, actor=actor, attempts=attempts, lease=lease)
    return checkout.complete_session(session_id)


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
    is in flight). The provider is first asked where the payment is: an authorization
    it holds that the session does not know of is recorded first (reconciled, so the
    trail says what was canceled), never canceled blindly. It is then asked to cancel
    with the key ``<session key>:cancel``, and its answer is kept as a provider event
    (``cancel:<session key>``) with the cancel move and the call, so webhooks observed
    before the cancellation are stale when they arrive. ``[]`` when the session is
    canceled already (by a webhook, say). An answer other than canceled raises
    ReconciliationAnomaly through reconciliation (recorded).
    """
    checkout = Checkout(sessions, provider, actor=actor, attempts=attempts, lease=lease)
    return checkout.cancel_payment(session_id)


def ask_first(
    sessions: PaymentSessions, provider: Providers, session: PaymentSession
) -> Status | None:
    """Where the provider says the session's payment is, applied before anything else.

    What it says is reconciled (an authorization the session does not know of is
    recorded, or voided as a double authorization when the cart cannot keep it) and the
    status it reads as returned: canceled once voided; None for a payment still in
    flight at the provider; the session's own status when the provider says nothing
    more. A session never initiated is not asked: the provider has never heard of it.
    What expiry and cancellation ask before they cancel anything at the provider.
    """
    return Checkout(sessions, provider).ask_first(session)


def _authorize(
    sessions: PaymentSessions, payments: PaymentProvider, session: PaymentSession, key: str
) -> tuple[ProviderReply, ProviderCall]:
    """Ask the provider to authorize under ``key``; its answer and the call as kept."""
    asked = clock_reading(sessions.clock)
    try:
        reply = payments.authorize(session, idempotency_key=key)
    except ProviderTimeout as error:
        raise CompletionTimeout(session.id, key) from error
    return reply, provider_call(sessions.clock, session, CallAction.AUTHORIZE, key, reply, asked)


def _answer_moves(
    session: PaymentSession, reply: ProviderReply, status: Status
) -> list[tuple[str, Mapping[str, object]]]:
    """The moves that record an answer: its data, then what it reads as (none in flight)."""
    moves: list[tuple[str, Mapping[str, object]]] = []
    if reply.data and dict(reply.data) != dict(session.data):
        moves.append(("update", {"data": reply.data}))
    if status in _MOVE_FOR:
        moves.append((_MOVE_FOR[status], {}))
    return moves


__all__ = [
    "CartConflict",
    "Checkout",
    "Completion",
    "CompletionOutcome",
    "CompletionTimeout",
    "NoSelectedSession",
    "ask_first",
    "attempts_made",
    "cancel_payment",
    "complete_cart",
    "complete_session",
    "provider_key",
]
