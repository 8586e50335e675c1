"""Provider reports: reconciliation, answers to our own requests, anomalies and voids.

A provider's report is a fact. Reconciliation moves the session to what the provider
says along the shortest legal path, records every report (applied, no-op, stale,
duplicate or anomaly) in the same transaction as the moves it caused, and voids a hold
the cart cannot keep (``docs/one-charge.md``).
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import NoReturn

import attrs

from paysession import _log
from paysession.durable import DurableBase, Reconciliation, member, retrying
from paysession.errors import (
    ConcurrentUpdate,
    DoubleAuthorization,
    GuardRejected,
    InvalidSessionData,
    ReconciliationAnomaly,
    SessionNotFound,
    StoreError,
)
from paysession.holds import Holds, holds_of, provider_call
from paysession.lifecycle import MOVES, shortest_path
from paysession.planning import (
    check_meta,
    plan,
    plan_chain,
)
from paysession.providers import (
    ProviderReport,
    ProviderRules,
    Providers,
    provider_for,
    read_status,
    rules_for,
    void_key,
)
from paysession.record import TransitionRecord
from paysession.session import PaymentSession, clock_reading, is_amount
from paysession.status import PaymentSessionStatus
from paysession.store.base import (
    AnomalyKind,
    CallAction,
    Claim,
    EventOutcome,
    ProviderCall,
    ProviderEvent,
    Snapshot,
    Write,
)

_CANCEL = MOVES["cancel"]

FUTURE_TOLERANCE = timedelta(minutes=5)
"""How far ahead of its recording a report's ``observed_at`` may be (clock skew between
the provider and us); a report further ahead is an anomaly of kind ``future_report``."""
_AUTHORIZED = PaymentSessionStatus.AUTHORIZED
_CANCELED = PaymentSessionStatus.CANCELED
_PENDING = PaymentSessionStatus.PENDING
_REQUIRES_MORE = PaymentSessionStatus.REQUIRES_MORE


@attrs.frozen
class _Report:
    """What a provider said, besides its status name: the facts reconciliation weighs."""

    provider_status: str
    event_type: str | None = None
    amount: int | None = None
    currency: str | None = None
    decline: str | None = None
    provider_id: str | None = None  # the session's provider must be this one, when given


def amount_differs(session: PaymentSession, amount: int | None, currency: str | None) -> bool:
    """Whether a provider's stated amount (or currency) is not the session's.

    Nothing stated is nothing to differ. The session's currency is what its ``data``
    says (``currency``, as a provider's payment object carries it) or its cart's
    ``currency_code`` (Medusa's cart), compared without regard to case.
    """
    if amount is not None and amount != session.amount:
        return True
    if currency is None:
        return False
    known = session.data.get("currency")
    if not isinstance(known, str) and session.cart is not None:
        known = session.cart.get("currency_code")
    return isinstance(known, str) and known.lower() != currency.lower()


class Reconciler(DurableBase):
    """The provider-facing half of :class:`~paysession.PaymentSessions`; not used alone."""

    def record_answer(
        self,
        session_id: str,
        moves: Sequence[tuple[str, Mapping[str, object]]],
        /,
        *,
        provider_status: str,
        observed_at: datetime | None = None,
        actor: str | None = None,
        idempotency_key: str,
        reason: str | None = None,
        release: Claim | None = None,
        calls: Sequence[ProviderCall] = (),
        amount: int | None = None,
        currency: str | None = None,
        decline: str | None = None,
    ) -> tuple[list[TransitionRecord], bool]:
        """Commit the moves that record a provider's answer to our own request, once.

        What cart completion uses. ``moves`` may be empty: an answer that moves nothing
        (a payment still in flight) is kept as a no-op event. The answer is also kept as a
        provider event (event id
        ``idempotency_key``, outcome applied, ``observed_at`` as the provider gave it) in
        the same transaction, so webhooks observed before the answer are stale when they
        arrive. The last move's record carries ``idempotency_key``; ``reason`` is the
        provider status. Returns the records and True, or, when an answer was recorded
        under this key already (by a racing request), the record of its last move and
        False. ConcurrentUpdate when the session moved meanwhile (reload and decide
        again) or when a newer provider report was applied first. ``reason``, when given,
        replaces the provider status as the records' reason; ``release`` is a claim on
        the session's cart to release in the same transaction; ``calls`` the provider
        calls that led to the answer, kept with it. ``amount`` and ``currency`` are what
        the provider said it holds: an authorize move is refused with ConcurrentUpdate
        when they are not the session's as committed (its amount changed while the
        provider was asked: decide again); ``decline`` the provider's reason for a
        decline. ``observed_at`` is kept at the provider's precision.
        """
        self._check_report(provider_status, idempotency_key, observed_at, 1)
        snapshot = self._load(session_id)
        stored = self._answered(session_id, idempotency_key)
        if stored is not None:
            return stored, False
        rules = rules_for(snapshot.session.provider_id)
        mapped = read_status(
            snapshot.session.provider_id, provider_status, declined=decline is not None
        )
        if observed_at is not None:
            observed_at = rules.truncate(observed_at)
        if not moves:
            return self._answer_without_moves(
                snapshot, provider_status, mapped, observed_at, idempotency_key, release, calls
            )
        if moves[-1][0] == "authorize" and amount_differs(snapshot.session, amount, currency):
            raise ConcurrentUpdate(session_id, snapshot.version)
        why = provider_status if reason is None else reason
        steps = self._resolve_moves(snapshot, moves, actor, why, idempotency_key)
        planned = plan_chain(
            snapshot.session,
            snapshot.version,
            snapshot.head,
            steps,
            self._context(actor, why),
            idempotency_key,
        )
        records = [step.record for step in planned]
        event = _answer_event(snapshot, idempotency_key, provider_status, mapped, observed_at)
        event = attrs.evolve(
            event, outcome=EventOutcome.APPLIED, recorded_at=records[-1].at, version=records[-1].seq
        )
        write = Write(planned[-1].session, snapshot.version, tuple(records))
        try:
            self.store.record_event(event, write, release=release, calls=calls)
        except ConcurrentUpdate:
            stored = self._answered(session_id, idempotency_key)
            if stored is None:
                raise
            return stored, False
        self._finish(planned[:-1], planned[-1])
        return records, True

    def _answer_without_moves(
        self,
        snapshot: Snapshot,
        provider_status: str,
        mapped: PaymentSessionStatus,
        observed_at: datetime | None,
        idempotency_key: str,
        release: Claim | None,
        calls: Sequence[ProviderCall],
    ) -> tuple[list[TransitionRecord], bool]:
        """Keep an answer that moves nothing (a payment still in flight) as a no-op event,
        with its calls: webhooks observed before it are stale, and completion knows it
        asked. A racing request that kept it first leaves nothing to do."""
        session_id = snapshot.session.id
        event = _answer_event(snapshot, idempotency_key, provider_status, mapped, observed_at)
        event = attrs.evolve(event, recorded_at=self._now())
        try:
            self.store.record_event(
                event, expected_version=snapshot.version, release=release, calls=calls
            )
        except ConcurrentUpdate:
            if self.store.provider_event(session_id, idempotency_key) is None:
                raise
            return [], False
        return [], True

    def _answered(self, session_id: str, event_id: str) -> list[TransitionRecord] | None:
        event = self.store.provider_event(session_id, event_id)
        if event is None or event.outcome is not EventOutcome.APPLIED:  # a voided hold is not
            return None
        record = self.store.record(session_id, event.version)
        if record is None:  # the event and its moves are committed together
            raise StoreError("provider_event", f"event {event_id!r} names a missing record")
        return [record]

    def authorization_conflict(self, session_id: str) -> str | None:
        """Why an authorization of this session would hold money its cart must not keep.

        A session cannot be its cart's authorized one when another session of the cart
        is authorized, or when the cart switched away from it (it is not selected while
        another one is, or it was deselected). Returns the reason, naming the cart and
        the other session, or None when an authorization is the cart's to keep.
        """
        return self._conflict(self.get(session_id))

    def _conflict(self, session: PaymentSession) -> str | None:
        cart_id = session.cart_id
        if cart_id is None:
            return None
        cart = [other for other in self.store.find(cart_id=cart_id) if other.id != session.id]
        for other in cart:
            if other.status is _AUTHORIZED:
                return f"cart {cart_id} is authorized with session {other.id}"
        if session.is_selected:
            return None
        for other in cart:
            if other.is_selected:
                return f"cart {cart_id} switched to session {other.id}"
        if any(record.trigger == "deselect" for record in self.store.history(session.id)):
            return f"session {session.id} was deselected from cart {cart_id}"
        return None

    def reconcile(
        self,
        session_id: str,
        provider_status: str,
        *,
        event_id: str | None = None,
        observed_at: datetime | None = None,
        attempts: int = 5,
        provider: Providers | None = None,
        event_type: str | None = None,
        amount: int | None = None,
        currency: str | None = None,
        decline: str | None = None,
    ) -> Reconciliation:
        """Move the session to what its provider reports; say what was done.

        ``provider_status`` is the provider's own name (``requires_capture``,
        ``COMPLETED``), read through the status map of the session's ``provider_id``;
        a name the map does not know raises UnknownProviderStatus and records nothing.
        The session moves along the shortest legal path to the mapped status in one
        transaction, each step audited with actor ``provider:<provider_id>`` and the
        provider status and event id in ``reason``; the event row is written in the same
        transaction. Returns a :class:`Reconciliation`: the outcome, the records
        committed and the races lost. It holds no records, having applied nothing, when
        the session is there already (noop), when ``event_id`` was handled before
        (duplicate, even by another process long ago), or when ``observed_at`` is older
        than the newest report applied or found a no-op, or is the very same report (same
        status, same instant) under another event id (stale). A status no legal path
        reaches, or a path a guard refuses, raises ReconciliationAnomaly (recorded, never
        applied). A concurrent move makes it reload and recompute, up to ``attempts``
        times.

        An authorization reported for a session that cannot be its cart's authorized
        one (see :meth:`authorization_conflict`) is a double authorization: money is held
        all the same. It is recorded as an anomaly of kind ``double_authorization``
        and, with ``provider`` (the provider, or a mapping from provider id to
        provider), the hold is voided through the provider's cancel (under the key
        ``<session key>:void``) and the session canceled with a reason naming the cart's
        choice, in one transaction with the anomaly; DoubleAuthorization is raised
        either way (``voided`` says which). An authorization reported for a canceled
        session is voided the same way when ``provider`` is given, and so is one whose
        event was recorded before without a provider at hand (a redelivery, then
        ``voided`` on the duplicate).

        What the provider says besides its status is weighed too (see
        ``docs/providers.md``): ``event_type`` (its event rules, such as Stripe's
        ``payment_intent.payment_failed``, a decline), ``decline`` (its reason for a
        decline: a report that would leave the session waiting is then ``error``), and
        ``amount`` (minor units) and ``currency``: an authorization for another amount
        than the session's is an anomaly of kind ``amount_mismatch``, never applied, its
        hold voided (and the session canceled) when ``provider`` is given. Reports are
        ordered at the provider's precision (Stripe: whole seconds): one is stale only
        when it is older there; two of one instant are ordered by how far along the
        payment each says it is. A status in flight (Stripe's ``processing``) never
        moves a session back from requires_more.
        """
        self._check_report(provider_status, event_id, observed_at, attempts)
        self._check_facts(event_type, amount, currency, decline)
        report = _Report(provider_status, event_type, amount, currency, decline)
        return self._reconcile_report(session_id, report, event_id, observed_at, attempts, provider)

    def _reconcile_report(
        self,
        session_id: str,
        report: _Report,
        event_id: str | None,
        observed_at: datetime | None,
        attempts: int,
        provider: Providers | None,
    ) -> Reconciliation:
        if provider is not None and not (
            isinstance(provider, Mapping) or callable(getattr(provider, "cancel", None))
        ):
            raise InvalidSessionData(
                {"provider": "must be a PaymentProvider, a mapping of them by id, or None"}
            )
        stored_id = event_id if event_id is not None else f"unidentified:{uuid.uuid4().hex}"
        try:
            return retrying(
                attempts,
                lambda lost: self._reconcile(
                    session_id, report, event_id, stored_id, observed_at, lost, provider
                ),
            )
        except ReconciliationAnomaly as anomaly:
            _log.ANOMALIES.warning("%r", str(anomaly))
            raise

    def reconcile_report(
        self,
        report: ProviderReport,
        *,
        provider: Providers | None = None,
        attempts: int = 5,
    ) -> Reconciliation:
        """Reconcile what a provider's verified notification says (see
        :mod:`paysession.providers.stripe` and its siblings), as :meth:`reconcile` does.

        The session is the one the report names (``session_id``), or else the one whose
        payment the provider knows as ``provider_ref`` (found by index: see
        ``docs/providers.md`` for where each provider's id is read from the session's
        data). SessionNotFound, recording nothing, when neither finds one;
        InvalidSessionData (field ``report.provider_id``) when the session belongs to
        another provider, or (field ``report.provider_ref``) when the reference names
        several sessions. The report's event id, instant, event type, amount, currency
        and decline are weighed as :meth:`reconcile` weighs them.
        """
        if not isinstance(report, ProviderReport):
            raise InvalidSessionData({"report": "must be a ProviderReport"})
        self._check_report(report.status, report.event_id, report.observed_at, attempts)
        self._check_facts(report.event_type, report.amount, report.currency, report.decline)
        if report.session_id is not None:
            session_id = report.session_id
        elif report.provider_ref is not None:
            found = self.store.find(
                provider_id=report.provider_id, provider_ref=report.provider_ref
            )
            if not found:
                raise SessionNotFound(report.provider_ref)
            if len(found) > 1:
                raise InvalidSessionData(
                    {"report.provider_ref": f"names {len(found)} sessions; give the session id"}
                )
            session_id = found[0].id
        else:
            raise InvalidSessionData(
                {"report": "names neither a session_id nor a provider_ref to find it by"}
            )
        facts = _Report(
            report.status,
            report.event_type,
            report.amount,
            report.currency,
            report.decline,
            report.provider_id,
        )
        return self._reconcile_report(
            session_id, facts, report.event_id, report.observed_at, attempts, provider
        )

    def reconcile_result(
        self,
        session_id: str,
        provider_status: str,
        *,
        event_id: str | None = None,
        observed_at: datetime | None = None,
        attempts: int = 5,
        provider: Providers | None = None,
    ) -> Reconciliation:
        """Deprecated: :meth:`reconcile` returns the same :class:`Reconciliation`."""
        warnings.warn(
            "reconcile_result() is deprecated: reconcile() returns the same Reconciliation",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.reconcile(
            session_id,
            provider_status,
            event_id=event_id,
            observed_at=observed_at,
            attempts=attempts,
            provider=provider,
        )

    def provider_events(
        self, *, session_id: str | None = None, outcome: EventOutcome | str | None = None
    ) -> list[ProviderEvent]:
        """The provider reports reconciliation recorded, in the order it recorded them."""
        wanted = None if outcome is None else member(EventOutcome, outcome, "outcome")
        return self.store.provider_events(session_id=session_id, outcome=wanted)

    def anomalies(
        self, session_id: str | None = None, *, kind: AnomalyKind | str | None = None
    ) -> list[ProviderEvent]:
        """The reports recorded as anomalies (of one session, or of all), oldest first.

        ``kind`` keeps those of one kind (``double_authorization``, say).
        """
        wanted = None if kind is None else member(AnomalyKind, kind, "kind")
        found = self.store.provider_events(session_id=session_id, outcome=EventOutcome.ANOMALY)
        return found if wanted is None else [event for event in found if event.kind is wanted]

    @staticmethod
    def _check_report(
        provider_status: object, event_id: object, observed_at: object, attempts: object
    ) -> None:
        problems: dict[str, str] = {}
        if not isinstance(provider_status, str) or not provider_status:
            problems["provider_status"] = "must be a non-empty string"
        if event_id is not None:
            try:
                check_meta(None, None, event_id)
            except InvalidSessionData as error:
                problems["event_id"] = error.problems["idempotency_key"]
        aware = isinstance(observed_at, datetime) and observed_at.utcoffset() is not None
        if observed_at is not None and not aware:
            problems["observed_at"] = "must be a timezone-aware datetime or None"
        if type(attempts) is not int or attempts < 1:
            problems["attempts"] = "must be an int >= 1"
        if problems:
            raise InvalidSessionData(problems)

    @staticmethod
    def _check_facts(event_type: object, amount: object, currency: object, decline: object) -> None:
        problems: dict[str, str] = {}
        for name, value in (("event_type", event_type), ("currency", currency)):
            if value is not None and (not isinstance(value, str) or not value):
                problems[name] = "must be a non-empty string or None"
        if decline is not None and not isinstance(decline, str):
            problems["decline"] = "must be a string or None"
        if amount is not None and not is_amount(amount):
            problems["amount"] = "must be an int of minor units >= 0, or None"
        if problems:
            raise InvalidSessionData(problems)

    def _reconcile(
        self,
        session_id: str,
        report: _Report,
        event_id: str | None,
        stored_id: str,
        observed_at: datetime | None,
        lost: int,
        provider: Providers | None,
    ) -> Reconciliation:
        snapshot = self._load(session_id)
        session = snapshot.session
        if report.provider_id is not None and report.provider_id != session.provider_id:
            raise InvalidSessionData(
                {
                    "report.provider_id": f"is {report.provider_id!r} but session {session.id} "
                    f"is {session.provider_id!r}'s"
                }
            )
        provider_status = report.provider_status
        rules = rules_for(session.provider_id)
        mapped = read_status(
            session.provider_id,
            provider_status,
            event_type=report.event_type,
            declined=report.decline is not None,
        )
        if observed_at is not None:
            observed_at = rules.truncate(observed_at)
        if event_id is not None:
            seen = self.store.provider_event(session_id, event_id)
            if seen is not None:
                self.store.count_duplicate(session_id, event_id)
                voided = provider is not None and self._void_late(session, seen, provider)
                return Reconciliation(EventOutcome.DUPLICATE, (), seen, lost, voided=voided)
        now = clock_reading(self._clock)

        def event(
            outcome: EventOutcome,
            version: int,
            guard: str | None = None,
            kind: AnomalyKind | None = None,
        ) -> ProviderEvent:
            return ProviderEvent(
                session_id=session_id,
                event_id=stored_id,
                provider_status=provider_status,
                status=mapped,
                session_status=session.status,
                outcome=outcome,
                observed_at=observed_at,
                recorded_at=now,
                version=version,
                guard=guard,
                kind=kind,
            )

        if observed_at is not None and observed_at > now + FUTURE_TOLERANCE:
            # Applied, it would become the session's newest report and make every later
            # one stale; no provider's clock is that far ahead of ours.
            future = event(EventOutcome.ANOMALY, snapshot.version, kind=AnomalyKind.FUTURE_REPORT)
            self._anomaly(future, session, None)
        if observed_at is not None and self._outdated(
            session_id, rules, provider_status, mapped, observed_at
        ):
            stale = event(EventOutcome.STALE, snapshot.version)
            self.store.record_event(stale)
            return Reconciliation(EventOutcome.STALE, (), stale, lost)
        path = shortest_path(session.status, mapped)
        if (
            mapped is _AUTHORIZED
            and session.status is not _CANCELED
            and amount_differs(session, report.amount, report.currency)
        ):
            anomaly = event(
                EventOutcome.ANOMALY, snapshot.version, kind=AnomalyKind.AMOUNT_MISMATCH
            )
            # An authorized session's hold is its order's: told of another amount, keep
            # the fact and leave the money to whoever reads the anomaly.
            at_hand = None if session.status is _AUTHORIZED else provider
            held = " ".join(str(f) for f in (report.amount, report.currency) if f is not None)
            why = f"amount mismatch voided: the provider holds {held}, not {session.amount}"
            voided = self._void_and_cancel(snapshot, anomaly, at_hand, now, why)
            raise ReconciliationAnomaly(
                session.id,
                session.status,
                session.provider_id,
                provider_status,
                mapped,
                event_id=event_id,
                kind=AnomalyKind.AMOUNT_MISMATCH,
                voided=voided,
            )
        if path is None:
            anomaly = event(EventOutcome.ANOMALY, snapshot.version, kind=AnomalyKind.NO_LEGAL_PATH)
            call = None
            if mapped is _AUTHORIZED and session.status is _CANCELED and provider is not None:
                # Authorized at the provider after we canceled: money is held for nothing.
                call = self._void(session, provider)
            self._anomaly(anomaly, session, None, call=call)
        if path and mapped is _AUTHORIZED:
            conflict = self._conflict(session)
            if conflict is not None:
                anomaly = event(
                    EventOutcome.ANOMALY, snapshot.version, kind=AnomalyKind.DOUBLE_AUTHORIZATION
                )
                self._double_authorization(snapshot, anomaly, conflict, provider, now)
        if path and provider_status in rules.in_flight and session.status is _REQUIRES_MORE:
            # Still under way at the provider (the customer acted; the money is coming):
            # not a new attempt, so no move back to pending.
            path = ()
        if not path:
            noop = event(EventOutcome.NOOP, snapshot.version)
            self.store.record_event(noop, expected_version=snapshot.version)
            return Reconciliation(EventOutcome.NOOP, (), noop, lost)
        actor = f"provider:{session.provider_id}"
        reason = provider_status if event_id is None else f"{provider_status} (event {event_id})"
        try:
            steps = plan_chain(
                session,
                snapshot.version,
                snapshot.head,
                [(MOVES[trigger], {}) for trigger in path],
                self._context(actor, reason, now),
            )
        except GuardRejected as refused:
            anomaly = event(
                EventOutcome.ANOMALY,
                snapshot.version,
                refused.guard,
                kind=AnomalyKind.GUARD_REFUSED,
            )
            self._anomaly(anomaly, session, refused.guard)
        current, seq = steps[-1].session, steps[-1].record.seq
        applied = event(EventOutcome.APPLIED, seq)
        self.store.record_event(
            applied, Write(current, snapshot.version, tuple(p.record for p in steps))
        )
        self._finish(steps[:-1], steps[-1])
        return Reconciliation(EventOutcome.APPLIED, tuple(p.record for p in steps), applied, lost)

    def _outdated(
        self,
        session_id: str,
        rules: ProviderRules,
        provider_status: str,
        mapped: PaymentSessionStatus,
        observed_at: datetime,
    ) -> bool:
        """Whether an applied or no-op report is newer, or the same report is known.

        Instants are compared at the provider's precision (``observed_at`` is already
        truncated to it). Of two reports of one instant, the one further along the
        payment's lifecycle is the newer; the same provider status at the same instant
        is what the provider sends twice under two names (a webhook for the state a
        completion's answer already recorded): nothing new, so stale rather than
        applied again after the session moved on.
        """
        mine = rules.rank(provider_status, mapped)
        for event in self.store.provider_events(session_id=session_id):
            if not event.advances or event.observed_at is None:
                continue
            seen = rules.truncate(event.observed_at)
            if seen > observed_at:
                return True
            if seen == observed_at:
                theirs = rules.rank(event.provider_status, event.status)
                if theirs > mine or (theirs == mine and event.provider_status == provider_status):
                    return True
        return False

    def _anomaly(
        self,
        event: ProviderEvent,
        session: PaymentSession,
        guard: str | None,
        *,
        call: ProviderCall | None = None,
    ) -> NoReturn:
        voided = call is not None and call.releases
        if call is not None:
            self._record_void(event, call)
        else:
            self.store.record_event(event)
        raise ReconciliationAnomaly(
            session.id,
            session.status,
            session.provider_id,
            event.provider_status,
            event.status,
            event_id=None if event.event_id.startswith("unidentified:") else event.event_id,
            guard=guard,
            kind=event.kind,
            voided=voided,
        )

    def _void(self, session: PaymentSession, provider: Providers) -> ProviderCall:
        """Void the session's hold at its provider; the call, as asked and answered."""
        payments = provider_for(provider, session)
        key = void_key(session)
        asked = clock_reading(self._clock)
        reply = payments.cancel(session, idempotency_key=key)
        return provider_call(self._clock, session, CallAction.VOID, key, reply, asked)

    def holds(self, session_id: str) -> Holds:
        """What the provider said of the session's money: holds asked and released.

        From the calls paysession made (authorize, cancel, void) and the reports it
        recorded. ``unreleased`` is true when the provider said it holds money and never
        that it let go while the session is not authorized: money its cart cannot keep.
        """
        return self._holds(self.get(session_id))

    def _holds(self, session: PaymentSession) -> Holds:
        return holds_of(
            session,
            self.store.provider_calls(session.id),
            self.store.provider_events(session_id=session.id),
        )

    def unreleased_holds(self, *, limit: int = 1000) -> list[PaymentSession]:
        """Sessions (not authorized) whose provider holds money and was never told to let
        go, least recently moved first: what an audit lists and expiry voids."""
        return self.store.unreleased_holds(limit)

    def _void_late(self, session: PaymentSession, seen: ProviderEvent, provider: Providers) -> bool:
        """Void, on a redelivery, the hold of an authorization recorded without a provider."""
        if seen.status is not _AUTHORIZED:
            return False
        return self._release(session, provider)

    def release_hold(self, session_id: str, provider: Providers) -> bool:
        """Void at its provider a hold the session cannot keep; whether it is released.

        Only when the provider said it holds money for the session, nothing released it
        since, and the session cannot keep it: it is canceled, or its cart is authorized
        with (or switched to) another session. The void is asked under the key
        ``<session key>:void`` and kept as a provider call. False, asking nothing, for
        any other session.
        """
        return self._release(self.get(session_id), provider)

    def _release(self, session: PaymentSession, provider: Providers) -> bool:
        if session.status is _AUTHORIZED:
            return False
        if session.status is not _CANCELED and self._conflict(session) is None:
            return False
        if not self._holds(session).unreleased:  # the session in hand, not loaded again
            return False
        call = self._void(session, provider)
        self.store.record_calls([call])
        return call.releases

    def _void_and_cancel(
        self,
        snapshot: Snapshot,
        anomaly: ProviderEvent,
        provider: Providers | None,
        now: datetime,
        why: str,
    ) -> bool:
        """Record ``anomaly``; with a provider, void the hold first and cancel the session
        with it (``why`` is the cancel's reason). Whether the hold was voided.

        Once the provider has voided the hold the session must end canceled, whatever
        moved it meanwhile (a completion replaying the provider's earlier answer could
        mark it authorized with no money held): a lost race reloads and cancels again.
        """
        call = None if provider is None else self._void(snapshot.session, provider)
        if call is None or not call.releases:
            self.store.record_event(
                anomaly,
                expected_version=snapshot.version,
                calls=() if call is None else (call,),
            )
            return False
        self._cancel_voided(snapshot, anomaly, why, now, call)
        return True

    def _double_authorization(
        self,
        snapshot: Snapshot,
        anomaly: ProviderEvent,
        conflict: str,
        provider: Providers | None,
        now: datetime,
    ) -> NoReturn:
        """Record the anomaly; with a provider, void the hold, then cancel the session."""
        session = snapshot.session
        why = f"double authorization voided: {conflict}"
        voided = self._void_and_cancel(snapshot, anomaly, provider, now, why)
        raise DoubleAuthorization(
            session.id,
            session.status,
            session.provider_id,
            anomaly.provider_status,
            anomaly.status,
            event_id=None if anomaly.event_id.startswith("unidentified:") else anomaly.event_id,
            conflict=conflict,
            voided=voided,
        )

    def _cancel_voided(
        self,
        snapshot: Snapshot,
        anomaly: ProviderEvent,
        reason: str,
        now: datetime,
        call: ProviderCall,
    ) -> None:
        """Cancel a session whose hold was voided, recording the anomaly and the void
        call with the move (``reason`` is the cancel's)."""
        pending: ProviderEvent | None = anomaly  # None once an anomaly for the void is kept
        for _ in range(_VOID_ATTEMPTS):
            session = snapshot.session
            if session.status is _CANCELED:
                break
            planned = plan(
                session,
                _CANCEL,
                {},
                seq=snapshot.version + 1,
                prev_hash=snapshot.head,
                context=self._context(f"provider:{session.provider_id}", reason, now),
            )
            write = Write(planned.session, snapshot.version, (planned.record,))
            try:
                if pending is None:
                    self.store.commit([write])
                    self.store.record_calls([call])
                else:
                    event = attrs.evolve(pending, version=planned.record.seq)
                    self.store.record_event(event, write, calls=(call,))
            except ConcurrentUpdate:
                # Moved meanwhile, or the event id was taken by a racing delivery of the
                # same report: reload, and look for where the anomaly goes now.
                if pending is not None:
                    pending = self._void_slot(anomaly)
                snapshot = self._load(session.id)
                continue
            self._finish([], planned)
            return
        if pending is not None:
            self._record_void(anomaly, call)
        else:
            self.store.record_calls([call])

    def _void_slot(self, anomaly: ProviderEvent) -> ProviderEvent | None:
        """The event that records a void's anomaly; None when one is recorded already.

        The report's own event id, unless a racing delivery recorded that id with
        another outcome (stale: the same report, recorded first by a completion's
        answer) while the hold was being voided: then ``<event id>:void``. The money
        moved either way, so the anomaly must be kept even when the id is taken.
        """
        for event_id in (anomaly.event_id, f"{anomaly.event_id}:void"):
            found = self.store.provider_event(anomaly.session_id, event_id)
            if found is None:
                return attrs.evolve(anomaly, event_id=event_id)
            if found.outcome is EventOutcome.ANOMALY:
                return None
        # Both taken by other outcomes (a webhook's event id chosen to collide): a fresh id.
        return attrs.evolve(anomaly, event_id=f"{anomaly.event_id}:void:{uuid.uuid4().hex}")

    def _record_void(self, anomaly: ProviderEvent, call: ProviderCall) -> None:
        """Record a void's anomaly on its own (the session is canceled already), once,
        and the void call with it (or alone, when the anomaly was recorded already)."""
        while (event := self._void_slot(anomaly)) is not None:
            try:
                self.store.record_event(event, calls=(call,))
            except ConcurrentUpdate:
                continue  # the id was taken meanwhile: the next look moves past it
            return
        self.store.record_calls([call])


def _answer_event(
    snapshot: Snapshot,
    event_id: str,
    provider_status: str,
    mapped: PaymentSessionStatus,
    observed_at: datetime | None,
) -> ProviderEvent:
    """The event that keeps an answer to our own request: a no-op at the session's
    version until the moves it records are planned (then applied, at their last seq)."""
    return ProviderEvent(
        session_id=snapshot.session.id,
        event_id=event_id,
        provider_status=provider_status,
        status=mapped,
        session_status=snapshot.session.status,
        outcome=EventOutcome.NOOP,
        observed_at=observed_at,
        recorded_at=snapshot.session.updated_at,
        version=snapshot.version,
    )


_VOID_ATTEMPTS = 10  # reloads of a voided session that keeps losing races to its cancel


__all__ = ["FUTURE_TOLERANCE", "Reconciler", "Reconciliation"]
