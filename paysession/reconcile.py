"""Provider reports: reconciliation, answers to our own requests, anomalies and voids.

A provider's report is a fact. Reconciliation moves the session to what the provider
says along the shortest legal path, records every report (applied, no-op, stale,
duplicate or anomaly) in the same transaction as the moves it caused, and voids a hold
the cart cannot keep (``docs/one-charge.md``). Its moves go through the service's
:class:`~paysession.writer.MoveWriter`, like every other move.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import overload

import attrs

from paysession import _log
from paysession.errors import (
    ConcurrentUpdate,
    DoubleAuthorization,
    GuardRejected,
    InvalidSessionData,
    ReconciliationAnomaly,
    SessionNotFound,
)
from paysession.holds import Holds, holds_of, provider_call
from paysession.lifecycle import MOVES, shortest_path
from paysession.limits import member
from paysession.planning import check_meta
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
from paysession.session import PaymentSession, is_amount
from paysession.status import PaymentSessionStatus
from paysession.store.base import (
    AnomalyKind,
    CallAction,
    Claim,
    EventOutcome,
    ProviderCall,
    ProviderEvent,
    Snapshot,
)
from paysession.writer import MoveRequest, MoveWriter, attempts_problem, retrying

_CANCEL = MOVES["cancel"]

FUTURE_TOLERANCE = timedelta(minutes=5)
"""How far ahead of its recording a report's ``observed_at`` may be (clock skew between
the provider and us); a report further ahead is an anomaly of kind ``future_report``."""
_AUTHORIZED = PaymentSessionStatus.AUTHORIZED
_CANCELED = PaymentSessionStatus.CANCELED
_PENDING = PaymentSessionStatus.PENDING
_REQUIRES_MORE = PaymentSessionStatus.REQUIRES_MORE
_VOID_ATTEMPTS = 10  # reloads of a voided session that keeps losing races to its cancel


@attrs.frozen
class Reconciliation(Sequence[TransitionRecord]):
    """What :meth:`PaymentSessions.reconcile` did with one provider report.

    ``outcome`` is applied, noop, stale or duplicate (an anomaly raises instead);
    ``records`` the moves it committed (empty unless applied); ``event`` the stored
    event row (for a duplicate, the first delivery's); ``lost_races`` how many times a
    concurrent move committed first and the path was recomputed; ``voided`` whether a
    hold was voided at the provider (a redelivered authorization of a session that
    cannot keep it, recorded before without a provider at hand). It is also the
    sequence of its records, so ``for record in sessions.reconcile(...)`` reads the
    moves, and an empty one is false.
    """

    outcome: EventOutcome
    records: tuple[TransitionRecord, ...]
    event: ProviderEvent | None
    lost_races: int = 0
    voided: bool = False

    @overload
    def __getitem__(self, index: int) -> TransitionRecord: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[TransitionRecord, ...]: ...

    def __getitem__(self, index: int | slice) -> TransitionRecord | tuple[TransitionRecord, ...]:
        return self.records[index]

    def __len__(self) -> int:
        return len(self.records)


@attrs.frozen
class ReportFacts:
    """What a provider said, besides its status name: the facts reconciliation weighs.

    ``provider_id``, when given, must be the session's provider.
    """

    provider_status: str
    event_id: str | None = None
    observed_at: datetime | None = None
    event_type: str | None = None
    amount: int | None = None
    currency: str | None = None
    decline: str | None = None
    provider_id: str | None = None

    @classmethod
    def of(cls, report: ProviderReport) -> ReportFacts:
        """The facts of a provider's verified notification."""
        return cls(
            report.status,
            report.event_id,
            report.observed_at,
            report.event_type,
            report.amount,
            report.currency,
            report.decline,
            report.provider_id,
        )

    def check(self, attempts: object) -> None:
        """InvalidSessionData naming every field that is not what it must be, and
        ``attempts`` (the tries the report's reconciliation may make) when it is not."""
        problems = _report_problems(self.provider_status, self.event_id, self.observed_at)
        wrong = attempts_problem(attempts)
        if wrong is not None:
            problems["attempts"] = wrong
        for name, value in (("event_type", self.event_type), ("currency", self.currency)):
            if value is not None and (not isinstance(value, str) or not value):
                problems[name] = "must be a non-empty string or None"
        if self.decline is not None and not isinstance(self.decline, str):
            problems["decline"] = "must be a string or None"
        if self.amount is not None and not is_amount(self.amount):
            problems["amount"] = "must be an int of minor units >= 0, or None"
        if problems:
            raise InvalidSessionData(problems)


@attrs.frozen
class _Heard:
    """One report as read against its session: what it maps to, when, and the event
    rows that keep it (under ``stored_id``: the event id, or a fresh one without)."""

    facts: ReportFacts
    session: PaymentSession
    rules: ProviderRules
    mapped: PaymentSessionStatus
    observed_at: datetime | None
    now: datetime
    stored_id: str

    @property
    def authorizes(self) -> bool:
        return self.mapped is _AUTHORIZED

    def event(
        self,
        outcome: EventOutcome,
        version: int,
        guard: str | None = None,
        kind: AnomalyKind | None = None,
    ) -> ProviderEvent:
        return ProviderEvent(
            session_id=self.session.id,
            event_id=self.stored_id,
            provider_status=self.facts.provider_status,
            status=self.mapped,
            session_status=self.session.status,
            outcome=outcome,
            observed_at=self.observed_at,
            recorded_at=self.now,
            version=version,
            guard=guard,
            kind=kind,
        )


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


class Reconciler:
    """Provider reports applied through ``writer``: what :class:`~paysession.PaymentSessions`
    does with them (its methods of the same names say how)."""

    def __init__(self, writer: MoveWriter) -> None:
        self._writer = writer
        self._store = writer.store

    def record_answer(
        self,
        session_id: str,
        moves: Sequence[tuple[str, Mapping[str, object]]],
        facts: ReportFacts,
        request: MoveRequest,
        *,
        release: Claim | None = None,
        calls: Sequence[ProviderCall] = (),
    ) -> tuple[list[TransitionRecord], bool]:
        """See :meth:`PaymentSessions.record_answer`; ``request.key`` is the answer's key."""
        key = request.key
        problems = _report_problems(facts.provider_status, key, facts.observed_at)
        if problems or key is None:
            raise InvalidSessionData(problems or {"idempotency_key": "must be given"})
        writer = self._writer
        snapshot = writer.load(session_id)
        stored = writer.answered(session_id, key)
        if stored is not None:
            return [stored], False
        session = snapshot.session
        mapped = read_status(
            session.provider_id, facts.provider_status, declined=facts.decline is not None
        )
        observed_at = facts.observed_at
        if observed_at is not None:
            observed_at = rules_for(session.provider_id).truncate(observed_at)
        if (
            moves
            and moves[-1][0] == "authorize"
            and amount_differs(session, facts.amount, facts.currency)
        ):
            raise ConcurrentUpdate(session_id, snapshot.version)
        steps = writer.steps(snapshot, moves, request)
        event = ProviderEvent(
            session_id=session.id,
            event_id=key,
            provider_status=facts.provider_status,
            status=mapped,
            session_status=session.status,
            # An answer that moves nothing (a payment still in flight) is kept as a no-op.
            outcome=EventOutcome.APPLIED if steps else EventOutcome.NOOP,
            observed_at=observed_at,
            recorded_at=writer.now(),
            version=snapshot.version,
        )
        applied = writer.apply(snapshot, steps, request, event=event, release=release, calls=calls)
        return list(applied.records), applied.fresh

    def authorization_conflict(self, session: PaymentSession) -> str | None:
        """Why an authorization of ``session`` would hold money its cart must not keep."""
        cart_id = session.cart_id
        if cart_id is None:
            return None
        cart = [other for other in self._store.find(cart_id=cart_id) if other.id != session.id]
        for other in cart:
            if other.status is _AUTHORIZED:
                return f"cart {cart_id} is authorized with session {other.id}"
        if session.is_selected:
            return None
        for other in cart:
            if other.is_selected:
                return f"cart {cart_id} switched to session {other.id}"
        if any(record.trigger == "deselect" for record in self._store.history(session.id)):
            return f"session {session.id} was deselected from cart {cart_id}"
        return None

    def reconcile(
        self,
        session_id: str,
        facts: ReportFacts,
        *,
        attempts: int = 5,
        provider: Providers | None = None,
    ) -> Reconciliation:
        """See :meth:`PaymentSessions.reconcile`."""
        facts.check(attempts)
        return self._reconcile_checked(session_id, facts, attempts, provider)

    def _reconcile_checked(
        self, session_id: str, facts: ReportFacts, attempts: int, provider: Providers | None
    ) -> Reconciliation:
        if provider is not None and not (
            isinstance(provider, Mapping) or callable(getattr(provider, "cancel", None))
        ):
            raise InvalidSessionData(
                {"provider": "must be a PaymentProvider, a mapping of them by id, or None"}
            )
        stored_id = facts.event_id or f"unidentified:{uuid.uuid4().hex}"
        try:
            return retrying(
                attempts,
                lambda lost: self._reconcile(session_id, facts, stored_id, lost, provider),
            )
        except ReconciliationAnomaly as anomaly:
            _log.ANOMALIES.warning("%r", str(anomaly))
            raise

    def reconcile_report(
        self, report: ProviderReport, *, provider: Providers | None, attempts: int
    ) -> Reconciliation:
        """See :meth:`PaymentSessions.reconcile_report`."""
        if not isinstance(report, ProviderReport):
            raise InvalidSessionData({"report": "must be a ProviderReport"})
        facts = ReportFacts.of(report)
        facts.check(attempts)
        if report.session_id is not None:
            session_id = report.session_id
        elif report.provider_ref is not None:
            found = self._store.find(
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
        return self._reconcile_checked(session_id, facts, attempts, provider)

    def provider_events(
        self, *, session_id: str | None = None, outcome: EventOutcome | str | None = None
    ) -> list[ProviderEvent]:
        """See :meth:`PaymentSessions.provider_events`."""
        wanted = None if outcome is None else member(EventOutcome, outcome, "outcome")
        return self._store.provider_events(session_id=session_id, outcome=wanted)

    def anomalies(
        self, session_id: str | None = None, *, kind: AnomalyKind | str | None = None
    ) -> list[ProviderEvent]:
        """See :meth:`PaymentSessions.anomalies`."""
        wanted = None if kind is None else member(AnomalyKind, kind, "kind")
        found = self._store.provider_events(session_id=session_id, outcome=EventOutcome.ANOMALY)
        return found if wanted is None else [event for event in found if event.kind is wanted]

    def holds(self, session: PaymentSession) -> Holds:
        """What the provider said of ``session``'s money: holds asked and released."""
        return holds_of(
            session,
            self._store.provider_calls(session.id),
            self._store.provider_events(session_id=session.id),
        )

    def release_hold(self, session: PaymentSession, provider: Providers) -> bool:
        """See :meth:`PaymentSessions.release_hold`."""
        if session.status is _AUTHORIZED:
            return False
        if session.status is not _CANCELED and self.authorization_conflict(session) is None:
            return False
        if not self.holds(session).unreleased:  # the session in hand, not loaded again
            return False
        call = self._void(session, provider)
        self._store.record_calls([call])
        return call.releases

    # What one reconciliation decides, in the order it decides it.

    def _reconcile(
        self,
        session_id: str,
        facts: ReportFacts,
        stored_id: str,
        lost: int,
        provider: Providers | None,
    ) -> Reconciliation:
        snapshot = self._writer.load(session_id)
        heard = self._hear(snapshot.session, facts, stored_id)
        if facts.event_id is not None:
            seen = self._store.provider_event(session_id, facts.event_id)
            if seen is not None:
                self._store.count_duplicate(session_id, facts.event_id)
                voided = (
                    provider is not None
                    and seen.status is _AUTHORIZED
                    and self.release_hold(snapshot.session, provider)
                )
                return Reconciliation(EventOutcome.DUPLICATE, (), seen, lost, voided=voided)
        if heard.observed_at is not None and heard.observed_at > heard.now + FUTURE_TOLERANCE:
            # Applied, it would become the session's newest report and make every later
            # one stale; no provider's clock is that far ahead of ours.
            future = heard.event(
                EventOutcome.ANOMALY, snapshot.version, kind=AnomalyKind.FUTURE_REPORT
            )
            raise self._anomaly(future, snapshot.session)
        if heard.observed_at is not None and self._outdated(heard):
            stale = heard.event(EventOutcome.STALE, snapshot.version)
            self._store.record_event(stale)
            return Reconciliation(EventOutcome.STALE, (), stale, lost)
        path = shortest_path(snapshot.session.status, heard.mapped)
        refused = self._refusal(snapshot, heard, path, provider)
        if refused is not None:
            raise refused
        if (
            path
            and facts.provider_status in heard.rules.in_flight
            and snapshot.session.status is _REQUIRES_MORE
        ):
            # Still under way at the provider (the customer acted; the money is coming):
            # not a new attempt, so no move back to pending.
            path = ()
        if not path:
            noop = heard.event(EventOutcome.NOOP, snapshot.version)
            self._store.record_event(noop, expected_version=snapshot.version)
            return Reconciliation(EventOutcome.NOOP, (), noop, lost)
        return self._apply_path(snapshot, heard, path, lost)

    def _hear(self, session: PaymentSession, facts: ReportFacts, stored_id: str) -> _Heard:
        """The report read through the rules of the session's provider."""
        if facts.provider_id is not None and facts.provider_id != session.provider_id:
            raise InvalidSessionData(
                {
                    "report.provider_id": f"is {facts.provider_id!r} but session {session.id} "
                    f"is {session.provider_id!r}'s"
                }
            )
        rules = rules_for(session.provider_id)
        mapped = read_status(
            session.provider_id,
            facts.provider_status,
            event_type=facts.event_type,
            declined=facts.decline is not None,
        )
        observed_at = None if facts.observed_at is None else rules.truncate(facts.observed_at)
        return _Heard(facts, session, rules, mapped, observed_at, self._writer.now(), stored_id)

    def _outdated(self, heard: _Heard) -> bool:
        """Whether an applied or no-op report is newer, or the same report is known.

        Instants are compared at the provider's precision (``observed_at`` is already
        truncated to it). Of two reports of one instant, the one further along the
        payment's lifecycle is the newer; the same provider status at the same instant
        is what the provider sends twice under two names (a webhook for the state a
        completion's answer already recorded): nothing new, so stale rather than
        applied again after the session moved on.
        """
        rules, status, observed_at = heard.rules, heard.facts.provider_status, heard.observed_at
        mine = rules.rank(status, heard.mapped)
        for event in self._store.provider_events(session_id=heard.session.id):
            if not event.advances or event.observed_at is None or observed_at is None:
                continue
            seen = rules.truncate(event.observed_at)
            if seen > observed_at:
                return True
            if seen == observed_at:
                theirs = rules.rank(event.provider_status, event.status)
                if theirs > mine or (theirs == mine and event.provider_status == status):
                    return True
        return False

    def _refusal(
        self,
        snapshot: Snapshot,
        heard: _Heard,
        path: tuple[str, ...] | None,
        provider: Providers | None,
    ) -> ReconciliationAnomaly | None:
        """The anomaly a report is, recorded (its hold voided when it must be), or None.

        An authorization for another amount; a status no legal path reaches; an
        authorization the cart cannot keep (a double authorization).
        """
        session = snapshot.session
        facts = heard.facts
        if (
            heard.authorizes
            and session.status is not _CANCELED
            and amount_differs(session, facts.amount, facts.currency)
        ):
            return self._amount_mismatch(snapshot, heard, provider)
        if path is None:
            anomaly = heard.event(
                EventOutcome.ANOMALY, snapshot.version, kind=AnomalyKind.NO_LEGAL_PATH
            )
            call = None
            if heard.authorizes and session.status is _CANCELED and provider is not None:
                # Authorized at the provider after we canceled: money is held for nothing.
                call = self._void(session, provider)
            return self._anomaly(anomaly, session, call=call)
        if path and heard.authorizes:
            conflict = self.authorization_conflict(session)
            if conflict is not None:
                return self._double_authorization(snapshot, heard, conflict, provider)
        return None

    def _apply_path(
        self, snapshot: Snapshot, heard: _Heard, path: tuple[str, ...], lost: int
    ) -> Reconciliation:
        """Move the session along ``path``, with the report kept as applied."""
        session = snapshot.session
        event_id, status = heard.facts.event_id, heard.facts.provider_status
        reason = status if event_id is None else f"{status} (event {event_id})"
        request = MoveRequest(f"provider:{session.provider_id}", reason, at=heard.now)
        applied_event = heard.event(EventOutcome.APPLIED, snapshot.version)
        try:
            applied = self._writer.apply(
                snapshot, [(MOVES[trigger], {}) for trigger in path], request, event=applied_event
            )
        except GuardRejected as refused:
            anomaly = heard.event(
                EventOutcome.ANOMALY,
                snapshot.version,
                refused.guard,
                kind=AnomalyKind.GUARD_REFUSED,
            )
            raise self._anomaly(anomaly, session, refused.guard) from None
        kept = attrs.evolve(
            applied_event, version=applied.records[-1].seq, recorded_at=applied.records[-1].at
        )
        return Reconciliation(EventOutcome.APPLIED, applied.records, kept, lost)

    # Anomalies and voids.

    def _anomaly(
        self,
        event: ProviderEvent,
        session: PaymentSession,
        guard: str | None = None,
        *,
        call: ProviderCall | None = None,
    ) -> ReconciliationAnomaly:
        """Record ``event`` (with the void ``call`` that answered it); the error to raise."""
        voided = call is not None and call.releases
        if call is not None:
            self._record_void(event, call)
        else:
            self._store.record_event(event)
        return ReconciliationAnomaly(
            session.id,
            session.status,
            session.provider_id,
            event.provider_status,
            event.status,
            event_id=_named(event),
            guard=guard,
            kind=event.kind,
            voided=voided,
        )

    def _amount_mismatch(
        self, snapshot: Snapshot, heard: _Heard, provider: Providers | None
    ) -> ReconciliationAnomaly:
        session, facts = snapshot.session, heard.facts
        anomaly = heard.event(
            EventOutcome.ANOMALY, snapshot.version, kind=AnomalyKind.AMOUNT_MISMATCH
        )
        # An authorized session's hold is its order's: told of another amount, keep the
        # fact and leave the money to whoever reads the anomaly.
        at_hand = None if session.status is _AUTHORIZED else provider
        held = " ".join(str(f) for f in (facts.amount, facts.currency) if f is not None)
        why = f"amount mismatch voided: the provider holds {held}, not {session.amount}"
        voided = self._void_and_cancel(snapshot, anomaly, at_hand, heard.now, why)
        return ReconciliationAnomaly(
            session.id,
            session.status,
            session.provider_id,
            facts.provider_status,
            heard.mapped,
            event_id=facts.event_id,
            kind=AnomalyKind.AMOUNT_MISMATCH,
            voided=voided,
        )

    def _double_authorization(
        self, snapshot: Snapshot, heard: _Heard, conflict: str, provider: Providers | None
    ) -> DoubleAuthorization:
        """Record the anomaly; with a provider, void the hold, then cancel the session."""
        session = snapshot.session
        anomaly = heard.event(
            EventOutcome.ANOMALY, snapshot.version, kind=AnomalyKind.DOUBLE_AUTHORIZATION
        )
        why = f"double authorization voided: {conflict}"
        voided = self._void_and_cancel(snapshot, anomaly, provider, heard.now, why)
        return DoubleAuthorization(
            session.id,
            session.status,
            session.provider_id,
            anomaly.provider_status,
            anomaly.status,
            event_id=_named(anomaly),
            conflict=conflict,
            voided=voided,
        )

    def _void(self, session: PaymentSession, provider: Providers) -> ProviderCall:
        """Void the session's hold at its provider; the call, as asked and answered."""
        payments = provider_for(provider, session)
        key = void_key(session)
        asked = self._writer.now()
        reply = payments.cancel(session, idempotency_key=key)
        return provider_call(self._writer.clock, session, CallAction.VOID, key, reply, asked)

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
            self._store.record_event(
                anomaly,
                expected_version=snapshot.version,
                calls=() if call is None else (call,),
            )
            return False
        self._cancel_voided(snapshot, anomaly, MoveRequest(reason=why, at=now), call)
        return True

    def _cancel_voided(
        self,
        snapshot: Snapshot,
        anomaly: ProviderEvent,
        request: MoveRequest,
        call: ProviderCall,
    ) -> None:
        """Cancel a session whose hold was voided, recording the anomaly and the void
        call with the move (``request`` says why and when)."""
        pending: ProviderEvent | None = anomaly  # None once an anomaly for the void is kept
        for _ in range(_VOID_ATTEMPTS):
            session = snapshot.session
            if session.status is _CANCELED:
                break
            by_provider = attrs.evolve(request, actor=f"provider:{session.provider_id}")
            try:
                if pending is None:
                    self._writer.apply(snapshot, [(_CANCEL, {})], by_provider)
                    self._store.record_calls([call])
                else:
                    self._writer.apply(
                        snapshot, [(_CANCEL, {})], by_provider, event=pending, calls=(call,)
                    )
            except ConcurrentUpdate:
                # Moved meanwhile, or the event id was taken by a racing delivery of the
                # same report: reload, and look for where the anomaly goes now.
                if pending is not None:
                    pending = self._void_slot(anomaly)
                snapshot = self._writer.load(session.id)
                continue
            return
        if pending is not None:
            self._record_void(anomaly, call)
        else:
            self._store.record_calls([call])

    def _void_slot(self, anomaly: ProviderEvent) -> ProviderEvent | None:
        """The event that records a void's anomaly; None when one is recorded already.

        The report's own event id, unless a racing delivery recorded that id with
        another outcome (stale: the same report, recorded first by a completion's
        answer) while the hold was being voided: then ``<event id>:void``. The money
        moved either way, so the anomaly must be kept even when the id is taken.
        """
        for event_id in (anomaly.event_id, f"{anomaly.event_id}:void"):
            found = self._store.provider_event(anomaly.session_id, event_id)
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
                self._store.record_event(event, calls=(call,))
            except ConcurrentUpdate:
                continue  # the id was taken meanwhile: the next look moves past it
            return
        self._store.record_calls([call])


def _named(event: ProviderEvent) -> str | None:
    """The event id a report came with; None for one that came without."""
    return None if event.event_id.startswith("unidentified:") else event.event_id


def _report_problems(
    provider_status: object, event_id: object, observed_at: object
) -> dict[str, str]:
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
    return problems


__all__ = ["FUTURE_TOLERANCE", "Reconciler", "Reconciliation", "ReportFacts", "amount_differs"]
