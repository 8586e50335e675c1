"""PaymentSessions: the service checkout code calls, a store plus the machine.

One move is one transaction. The service reads the session (its row, its version, the
hash its trail ends with and, for a keyed move, the key's binding), plans the move
through the transition table and the before-hooks without holding anything, then asks
the store to commit the new row, its record and its key in one transaction that
succeeds only if the session is still at the version it read (optimistic
concurrency). After-hooks run once the commit has returned, so they never see a move
that was rolled back.
"""

from __future__ import annotations

import enum
import random
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import NoReturn, TypeVar

import attrs

from paysession.audit import AuditReport, verify
from paysession.errors import (
    CartNotFound,
    ClaimNotHeld,
    ConcurrentUpdate,
    DoubleAuthorization,
    GuardRejected,
    HookError,
    IdempotencyConflict,
    InvalidSessionData,
    NoSelectedSession,
    ReconciliationAnomaly,
    SessionNotFound,
    StoreError,
)
from paysession.hooks import Hooks
from paysession.lifecycle import MOVES, Move, shortest_path
from paysession.planning import (
    Planned,
    check_meta,
    check_params,
    create_record,
    fingerprint,
    finish,
    plan,
    resolve,
)
from paysession.providers import (
    PaymentProvider,
    map_status,
    provider_for,
    void_key,
)
from paysession.record import TransitionRecord
from paysession.session import Clock, PaymentSession, clock_reading, utc_now
from paysession.status import PaymentSessionStatus
from paysession.store.base import (
    NUL_IN_KEY,
    AnomalyKind,
    Binding,
    CartCheck,
    Claim,
    ClaimAction,
    Claimed,
    EventOutcome,
    LoggedRecord,
    ProviderEvent,
    SessionStore,
    Snapshot,
    Write,
    has_nul,
)

_SELECT = MOVES["select"]
_DESELECT = MOVES["deselect"]
_CANCEL = MOVES["cancel"]
_AUTHORIZED = PaymentSessionStatus.AUTHORIZED
_CANCELED = PaymentSessionStatus.CANCELED

DEFAULT_LEASE = timedelta(seconds=30)
"""How long a claim holds a cart when its holder never comes back: longer than any
provider call should take (a provider's own timeout is usually well under it)."""

MAX_LEASE = timedelta(days=1)
"""The longest lease a claim may ask for; a cart held longer is a cart lost."""

Providers = PaymentProvider | Mapping[str, PaymentProvider]
"""A provider, or a mapping from provider id to provider."""


@attrs.frozen
class Reconciliation:
    """What :meth:`PaymentSessions.reconcile_result` did with one provider report.

    ``outcome`` is applied, noop, stale or duplicate (an anomaly raises instead);
    ``records`` the moves it committed (empty unless applied); ``event`` the stored
    event row (for a duplicate, the first delivery's); ``lost_races`` how many times a
    concurrent move committed first and the path was recomputed.
    """

    outcome: EventOutcome
    records: tuple[TransitionRecord, ...]
    event: ProviderEvent | None
    lost_races: int = 0


_E = TypeVar("_E", bound=enum.Enum)


def _member(kind: type[_E], value: object, field: str) -> _E:
    """``value`` as a member of the str enum ``kind``; InvalidSessionData naming ``field``."""
    try:
        return kind(value)
    except ValueError:
        names = ", ".join(str(member.value) for member in kind)
        raise InvalidSessionData({field: f"must be one of {names}"}) from None


class PaymentSessions:
    """Payment sessions kept in a :class:`~paysession.store.SessionStore`.

    ``hooks`` run around every move (after-hooks only once it is committed); ``clock``
    stamps moves (UTC now by default); ``key`` makes every record's hash an HMAC under
    it. The service holds no state of its own: share one between threads, or open one
    per process on the same database.
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        hooks: Hooks | None = None,
        clock: Clock | None = None,
        key: bytes | None = None,
    ) -> None:
        self.store = store
        self._hooks = hooks
        self._clock: Clock = clock or utc_now
        self._key = key

    # -- reading

    def create(
        self,
        *,
        cart_id: str | None,
        provider_id: str,
        amount: int | None,
        data: Mapping[str, object] | None = None,
    ) -> PaymentSession:
        """A new pending session, stored with its record 0 in one transaction.

        Raises DuplicateSession when the cart already has a session with this provider.
        """
        session = PaymentSession.new(
            cart_id=cart_id, provider_id=provider_id, amount=amount, data=data, clock=self._now
        )
        self.store.create(session, create_record(session, self._key))
        return session

    def get(self, session_id: str) -> PaymentSession:
        """The session as last committed; SessionNotFound if there is none."""
        return self._load(session_id).session

    def version(self, session_id: str) -> int:
        """The seq of the session's last record: what ``expected_version`` compares with."""
        return self._load(session_id).version

    def find(
        self, *, cart_id: str | None = None, status: PaymentSessionStatus | str | None = None
    ) -> list[PaymentSession]:
        """The sessions of a cart and/or in a status, oldest first."""
        wanted = None if status is None else _member(PaymentSessionStatus, status, "status")
        return self.store.find(cart_id=cart_id, status=wanted)

    def history(self, session_id: str) -> tuple[TransitionRecord, ...]:
        """The session's trail, record 0 first; SessionNotFound if there is none."""
        trail = self.store.history(session_id)
        if not trail:
            raise SessionNotFound(session_id)
        return tuple(trail)

    def verify(self, session_id: str) -> AuditReport:
        """Check the session's trail: links, hashes (under the service's key), table."""
        return verify(self.history(session_id), key=self._key)

    def records_since(self, position: int = 0, limit: int = 1000) -> list[LoggedRecord]:
        """Every session's records after ``position``, in commit order, at most ``limit``.

        Follow all moves by passing the last position read back in: positions are given
        out at commit, so a record that commits later never has a lower position than
        one already read.
        """
        return self.store.records_since(position, limit)

    # -- moving

    def fire(
        self,
        session_id: str,
        trigger: str,
        /,
        *,
        expected_version: int | None = None,
        actor: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
        **args: object,
    ) -> TransitionRecord:
        """Run ``trigger`` on the session in one transaction; return the move's record.

        ``expected_version``, when given, must be the session's version or nothing
        happens (ConcurrentUpdate). A move that loses a race to another writer raises
        ConcurrentUpdate too and writes nothing. With an ``idempotency_key`` already
        bound on this session, the same trigger and arguments return the stored record
        (no hook runs), anything else raises IdempotencyConflict. ``select`` also
        deselects the cart's other sessions, as :meth:`select` says.
        """
        return self._fire(
            session_id, trigger, expected_version, actor, reason, idempotency_key, args
        )

    def _fire(
        self,
        session_id: str,
        trigger: str,
        expected_version: int | None,
        actor: str | None,
        reason: str | None,
        idempotency_key: str | None,
        args: Mapping[str, object],
    ) -> TransitionRecord:
        if expected_version is not None and (
            type(expected_version) is not int or expected_version < 0
        ):
            raise InvalidSessionData({"expected_version": "must be an int >= 0 or None"})
        snapshot = self._load(session_id, idempotency_key)
        move = resolve(trigger, snapshot.session.status)
        changes = check_params(move, args)
        check_meta(actor, reason, idempotency_key)
        binding = None
        if idempotency_key is not None:
            print_ = fingerprint(move.trigger, changes)
            binding = Binding(session_id, idempotency_key, print_, snapshot.version + 1)
            if snapshot.binding is not None:
                return self._bound(snapshot.binding, binding, move)
        if expected_version is not None and expected_version != snapshot.version:
            raise ConcurrentUpdate(session_id, expected_version, snapshot.version)
        # The cart is read before anything is planned: what the before-hooks see (and
        # whatever they do) comes after the read, and the commit checks it all.
        selected: list[Snapshot] = []
        if move is _SELECT and snapshot.session.cart_id is not None:
            selected = [
                other
                for other in self.store.load_selected(snapshot.session.cart_id)
                if other.session.id != session_id
            ]
        now = clock_reading(self._clock)
        planned = plan(
            snapshot.session,
            move,
            changes,
            seq=snapshot.version + 1,
            prev_hash=snapshot.head,
            now=now,
            hooks=self._hooks,
            actor=actor,
            reason=reason,
            idempotency_key=idempotency_key,
            key=self._key,
        )
        others = [
            (
                other,
                plan(
                    other.session,
                    _DESELECT,
                    {},
                    seq=other.version + 1,
                    prev_hash=other.head,
                    now=now,
                    hooks=self._hooks,
                    actor=actor,
                    reason=f"replaced by {session_id}",
                    idempotency_key=None,
                    key=self._key,
                ),
            )
            for other in selected
        ]
        # Deselect first: the database checks "one selected per cart" statement by
        # statement, so the old choice must be gone before the new one is written.
        writes = [Write(p.session, o.version, (p.record,)) for o, p in others]
        writes.append(Write(planned.session, snapshot.version, (planned.record,)))
        cart_id = snapshot.session.cart_id
        # Changing the cart's choice is refused while a completion holds the cart.
        cart_check = (
            CartCheck(cart_id, now)
            if cart_id is not None and (move is _SELECT or move is _DESELECT)
            else None
        )
        try:
            self.store.commit(writes, binding, cart_check=cart_check)
        except ConcurrentUpdate:
            if binding is None:
                raise
            # Another process may have bound the key first (a retried request racing the
            # original): its record is the answer, or the key was used for another move.
            again = self.store.load(session_id, idempotency_key)
            if again is None or again.binding is None:
                raise
            return self._bound(again.binding, binding, move)
        self._finish([p for _, p in others], planned)
        return planned.record

    def fire_many(
        self,
        session_id: str,
        moves: Sequence[tuple[str, Mapping[str, object]]],
        /,
        *,
        expected_version: int | None = None,
        actor: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[TransitionRecord]:
        """Run several moves of one session, in order, in one transaction; their records.

        ``moves`` holds (trigger, arguments) pairs, each planned from the session as the
        one before leaves it; all are committed or none. ``idempotency_key`` binds the
        last move (its record carries the key): when the key is bound already, the list
        holds that move's stored record alone, or IdempotencyConflict is raised as for
        :meth:`fire`. ``select`` cannot be one of the moves (it deselects other sessions).
        """
        if not moves:
            raise InvalidSessionData({"moves": "must hold at least one (trigger, arguments)"})
        if expected_version is not None and (
            type(expected_version) is not int or expected_version < 0
        ):
            raise InvalidSessionData({"expected_version": "must be an int >= 0 or None"})
        snapshot = self._load(session_id, idempotency_key)
        steps = self._resolve_moves(snapshot, moves, actor, reason, idempotency_key)
        last, last_changes = steps[-1]
        binding = None
        if idempotency_key is not None:
            print_ = fingerprint(last.trigger, last_changes)
            binding = Binding(session_id, idempotency_key, print_, snapshot.version + len(steps))
            if snapshot.binding is not None:
                return [self._bound(snapshot.binding, binding, last)]
        if expected_version is not None and expected_version != snapshot.version:
            raise ConcurrentUpdate(session_id, expected_version, snapshot.version)
        planned = self._plan_moves(snapshot, steps, actor, reason, idempotency_key)
        records = [step.record for step in planned]
        cart_id = snapshot.session.cart_id
        cart_check = (
            CartCheck(cart_id, records[-1].at)
            if cart_id is not None and any(move is _DESELECT for move, _ in steps)
            else None
        )
        try:
            self.store.commit(
                [Write(planned[-1].session, snapshot.version, tuple(records))],
                binding,
                cart_check=cart_check,
            )
        except ConcurrentUpdate:
            if binding is None:
                raise
            again = self.store.load(session_id, idempotency_key)
            if again is None or again.binding is None:
                raise
            return [self._bound(again.binding, binding, last)]
        self._finish(planned[:-1], planned[-1])
        return records

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
    ) -> tuple[list[TransitionRecord], bool]:
        """Commit the moves that record a provider's answer to our own request, once.

        What cart completion uses. The answer is also kept as a provider event (event id
        ``idempotency_key``, outcome applied, ``observed_at`` as the provider gave it) in
        the same transaction, so webhooks observed before the answer are stale when they
        arrive. The last move's record carries ``idempotency_key``; ``reason`` is the
        provider status. Returns the records and True, or, when an answer was recorded
        under this key already (by a racing request), the record of its last move and
        False. ConcurrentUpdate when the session moved meanwhile (reload and decide
        again) or when a newer provider report was applied first. ``reason``, when given,
        replaces the provider status as the records' reason; ``release`` is a claim on
        the session's cart to release in the same transaction.
        """
        if not moves:
            raise InvalidSessionData({"moves": "must hold at least one (trigger, arguments)"})
        self._check_report(provider_status, idempotency_key, observed_at, 1)
        snapshot = self._load(session_id)
        stored = self._answered(session_id, idempotency_key)
        if stored is not None:
            return stored, False
        mapped = map_status(snapshot.session.provider_id, provider_status)
        why = provider_status if reason is None else reason
        steps = self._resolve_moves(snapshot, moves, actor, why, idempotency_key)
        planned = self._plan_moves(snapshot, steps, actor, why, idempotency_key)
        records = [step.record for step in planned]
        event = ProviderEvent(
            session_id=session_id,
            event_id=idempotency_key,
            provider_status=provider_status,
            status=mapped,
            session_status=snapshot.session.status,
            outcome=EventOutcome.APPLIED,
            observed_at=observed_at,
            recorded_at=records[-1].at,
            version=records[-1].seq,
        )
        write = Write(planned[-1].session, snapshot.version, tuple(records))
        try:
            self.store.record_event(event, write, release=release)
        except ConcurrentUpdate:
            stored = self._answered(session_id, idempotency_key)
            if stored is None:
                raise
            return stored, False
        self._finish(planned[:-1], planned[-1])
        return records, True

    def _answered(self, session_id: str, event_id: str) -> list[TransitionRecord] | None:
        event = self.store.provider_event(session_id, event_id)
        if event is None:
            return None
        record = self.store.record(session_id, event.version)
        if record is None:  # the event and its moves are committed together
            raise StoreError("provider_event", f"event {event_id!r} names a missing record")
        return [record]

    def _resolve_moves(
        self,
        snapshot: Snapshot,
        moves: Sequence[tuple[str, Mapping[str, object]]],
        actor: str | None,
        reason: str | None,
        idempotency_key: str | None,
    ) -> list[tuple[Move, dict[str, object]]]:
        steps: list[tuple[Move, dict[str, object]]] = []
        for trigger, args in moves:
            move = resolve(trigger, snapshot.session.status)
            if move is _SELECT:
                raise InvalidSessionData({"moves": "select must be fired on its own"})
            steps.append((move, check_params(move, args)))
        check_meta(actor, reason, idempotency_key)
        return steps

    def _plan_moves(
        self,
        snapshot: Snapshot,
        steps: list[tuple[Move, dict[str, object]]],
        actor: str | None,
        reason: str | None,
        idempotency_key: str | None,
    ) -> list[Planned]:
        """Plan each move from the session as the one before leaves it; the last gets the key."""
        now = clock_reading(self._clock)
        planned: list[Planned] = []
        current, seq, head = snapshot.session, snapshot.version, snapshot.head
        for index, (move, changes) in enumerate(steps, 1):
            step = plan(
                current,
                move,
                changes,
                seq=seq + 1,
                prev_hash=head,
                now=now,
                hooks=self._hooks,
                actor=actor,
                reason=reason,
                idempotency_key=idempotency_key if index == len(steps) else None,
                key=self._key,
            )
            planned.append(step)
            current, seq, head = step.session, step.record.seq, step.record.hash
        return planned

    def select(
        self,
        session_id: str,
        *,
        expected_version: int | None = None,
        actor: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> TransitionRecord:
        """Make this session its cart's choice; return the select record.

        The cart's other selected session (if any) is deselected in the same
        transaction, each deselect an audited move of its own (reason ``replaced by
        <id>``). A selected session that can no longer be deselected (authorized,
        canceled) makes the select fail with IllegalTransition.
        """
        return self.fire(
            session_id,
            "select",
            expected_version=expected_version,
            actor=actor,
            reason=reason,
            idempotency_key=idempotency_key,
        )

    def fire_with_retry(
        self,
        session_id: str,
        trigger: str,
        /,
        *,
        attempts: int = 5,
        actor: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
        **args: object,
    ) -> TransitionRecord:
        """:meth:`fire`, reloading and trying again after a lost race, up to ``attempts``.

        Each attempt re-reads the session and re-plans the move from what it finds, so a
        move that the winner made illegal raises IllegalTransition (or GuardRejected)
        instead of being forced through. Waits a few random milliseconds between tries.
        """
        if type(attempts) is not int or attempts < 1:
            raise InvalidSessionData({"attempts": "must be an int >= 1"})
        # Each pass either returns or raises; the count bounds the retries.
        attempt = -1
        while True:
            attempt += 1
            try:
                return self._fire(session_id, trigger, None, actor, reason, idempotency_key, args)
            except ConcurrentUpdate:
                if attempt == attempts - 1:
                    raise
                time.sleep(random.uniform(0, 0.002 * 2**attempt))

    def selected(self, cart_id: str) -> PaymentSession | None:
        """The cart's selected session, or None when it has none."""
        chosen = self.store.load_selected(cart_id)
        return chosen[0].session if chosen else None

    # -- claims: one provider call per cart at a time

    def claim_cart(
        self,
        cart_id: str,
        *,
        lease: timedelta = DEFAULT_LEASE,
        session_id: str | None = None,
        action: ClaimAction | str = ClaimAction.AUTHORIZE,
    ) -> Claimed:
        """Hold the cart while a provider call about one of its sessions is in flight.

        The claim is taken in the same transaction that reads the session it is about:
        the cart's selected session, or ``session_id`` (which must belong to the cart).
        Until it is released, or ``lease`` has passed, no other caller can select or
        deselect a session of the cart, take a claim on it (so complete it, cancel its
        payment or expire it): each gets CartBusy. A claim whose lease has passed (its
        holder crashed) is taken over and returned as ``previous``; see
        :func:`paysession.checkout.complete_cart`, which uses this. Raises CartNotFound
        for a cart without sessions, NoSelectedSession, SessionNotFound for a
        ``session_id`` that is not a session of the cart, and InvalidSessionData for a
        bad argument.
        """
        problems: dict[str, str] = {}
        if not isinstance(cart_id, str) or not cart_id or has_nul(cart_id):
            problems["cart_id"] = "must be a non-empty string without NUL"
        if session_id is not None and (
            not isinstance(session_id, str) or not session_id or has_nul(session_id)
        ):
            problems["session_id"] = "must be a non-empty string without NUL, or None"
        if not isinstance(lease, timedelta) or not timedelta(0) < lease <= MAX_LEASE:
            problems["lease"] = f"must be a timedelta above zero and at most {MAX_LEASE}"
        try:
            wanted = ClaimAction(action)
        except ValueError:
            problems["action"] = "must be one of authorize, cancel"
        if problems:
            raise InvalidSessionData(problems)
        now = self._now()
        claim = Claim(cart_id, secrets.token_hex(16), session_id or "", wanted, now + lease)
        claimed = self.store.claim(claim, now, selected=session_id is None)
        if claimed.claim is None:
            if session_id is not None:
                raise SessionNotFound(session_id)
            if not self.store.find(cart_id=cart_id):
                raise CartNotFound(cart_id)
            raise NoSelectedSession(cart_id)
        return claimed

    def release_cart(self, claim: Claim) -> None:
        """Release a claim taken by :meth:`claim_cart`.

        ClaimNotHeld when its token no longer holds the cart: released already, or taken
        over by another caller after the lease passed.
        """
        if not isinstance(claim, Claim):
            raise InvalidSessionData({"claim": "must be a Claim from claim_cart"})
        if not self.store.release(claim):
            raise ClaimNotHeld(claim.cart_id)

    def claim_of(self, cart_id: str) -> Claim | None:
        """The claim on the cart, live or expired (its holder crashed), or None."""
        if not isinstance(cart_id, str) or has_nul(cart_id):
            raise InvalidSessionData({"cart_id": "must be a string without NUL"})
        return self.store.claim_of(cart_id)

    def stale(self, older_than: timedelta, *, limit: int = 1000) -> list[PaymentSession]:
        """Sessions in pending, requires_more or error with no move for ``older_than``.

        Least recently moved first, at most ``limit``: what
        :func:`paysession.checkout.expire_sessions` cancels.
        """
        problems: dict[str, str] = {}
        if not isinstance(older_than, timedelta) or older_than <= timedelta(0):
            problems["older_than"] = "must be a timedelta above zero"
        if type(limit) is not int or limit < 1:
            problems["limit"] = "must be an int >= 1"
        if problems:
            raise InvalidSessionData(problems)
        try:
            before = self._now() - older_than
        except OverflowError:
            return []  # before the first instant a datetime can hold: nothing is older
        return self.store.stale(before, limit)

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

    # -- reconciling with a provider

    def reconcile(
        self,
        session_id: str,
        provider_status: str,
        *,
        event_id: str | None = None,
        observed_at: datetime | None = None,
        attempts: int = 5,
        provider: Providers | None = None,
    ) -> list[TransitionRecord]:
        """Move the session to what its provider reports; return the records committed.

        ``provider_status`` is the provider's own name (``requires_capture``,
        ``COMPLETED``), read through the status map of the session's ``provider_id``;
        a name the map does not know raises UnknownProviderStatus and records nothing.
        The session moves along the shortest legal path to the mapped status in one
        transaction, each step audited with actor ``provider:<provider_id>`` and the
        provider status and event id in ``reason``; the event row is written in the same
        transaction. Returns ``[]``, having applied nothing, when the session is there
        already (noop), when ``event_id`` was handled before (duplicate, even by another
        process long ago), or when ``observed_at`` is older than the newest report
        applied or found a no-op, or is the very same report (same status, same instant)
        under another event id (stale). A status no legal path reaches, or a path a
        guard refuses, raises ReconciliationAnomaly (recorded, never applied). A
        concurrent move makes it reload and recompute, up to ``attempts`` times.

        An authorization reported for a session that cannot be its cart's authorized
        one (see :meth:`authorization_conflict`) is a double authorization: money is held
        all the same. It is recorded as an anomaly of kind ``double_authorization``
        and, with ``provider`` (the provider, or a mapping from provider id to
        provider), the hold is voided through the provider's cancel (under the key
        ``<session key>:void``) and the session canceled with a reason naming the cart's
        choice, in one transaction with the anomaly; DoubleAuthorization is raised
        either way (``voided`` says which). An authorization reported for a canceled
        session is voided the same way when ``provider`` is given.
        """
        return list(
            self.reconcile_result(
                session_id,
                provider_status,
                event_id=event_id,
                observed_at=observed_at,
                attempts=attempts,
                provider=provider,
            ).records
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
        """:meth:`reconcile`, telling what it did: the outcome, records and lost races."""
        self._check_report(provider_status, event_id, observed_at, attempts)
        if provider is not None and not (
            isinstance(provider, Mapping) or callable(getattr(provider, "cancel", None))
        ):
            raise InvalidSessionData(
                {"provider": "must be a PaymentProvider, a mapping of them by id, or None"}
            )
        stored_id = event_id if event_id is not None else f"unidentified:{uuid.uuid4().hex}"
        # Each pass either returns or raises; the count bounds the retries.
        attempt = -1
        while True:
            attempt += 1
            try:
                return self._reconcile(
                    session_id, provider_status, event_id, stored_id, observed_at, attempt, provider
                )
            except ConcurrentUpdate:
                if attempt == attempts - 1:
                    raise
                time.sleep(random.uniform(0, 0.002 * 2**attempt))

    def provider_events(
        self, *, session_id: str | None = None, outcome: EventOutcome | str | None = None
    ) -> list[ProviderEvent]:
        """The provider reports reconciliation recorded, in the order it recorded them."""
        wanted = None if outcome is None else _member(EventOutcome, outcome, "outcome")
        return self.store.provider_events(session_id=session_id, outcome=wanted)

    def anomalies(
        self, session_id: str | None = None, *, kind: AnomalyKind | str | None = None
    ) -> list[ProviderEvent]:
        """The reports recorded as anomalies (of one session, or of all), oldest first.

        ``kind`` keeps those of one kind (``double_authorization``, say).
        """
        wanted = None if kind is None else _member(AnomalyKind, kind, "kind")
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
        if observed_at is not None and (
            not isinstance(observed_at, datetime) or observed_at.utcoffset() is None
        ):
            problems["observed_at"] = "must be a timezone-aware datetime or None"
        if type(attempts) is not int or attempts < 1:
            problems["attempts"] = "must be an int >= 1"
        if problems:
            raise InvalidSessionData(problems)

    def _reconcile(
        self,
        session_id: str,
        provider_status: str,
        event_id: str | None,
        stored_id: str,
        observed_at: datetime | None,
        lost: int,
        provider: Providers | None,
    ) -> Reconciliation:
        snapshot = self._load(session_id)
        session = snapshot.session
        mapped = map_status(session.provider_id, provider_status)
        if event_id is not None:
            seen = self.store.provider_event(session_id, event_id)
            if seen is not None:
                self.store.count_duplicate(session_id, event_id)
                return Reconciliation(EventOutcome.DUPLICATE, (), seen, lost)
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

        if observed_at is not None and self._outdated(session_id, provider_status, observed_at):
            stale = event(EventOutcome.STALE, snapshot.version)
            self.store.record_event(stale)
            return Reconciliation(EventOutcome.STALE, (), stale, lost)
        path = shortest_path(session.status, mapped)
        if path is None:
            anomaly = event(EventOutcome.ANOMALY, snapshot.version, kind=AnomalyKind.NO_LEGAL_PATH)
            voided = False
            if mapped is _AUTHORIZED and session.status is _CANCELED and provider is not None:
                # Authorized at the provider after we canceled: money is held for nothing.
                voided = self._void(session, provider)
            self._anomaly(anomaly, session, None, voided=voided)
        if path and mapped is _AUTHORIZED:
            conflict = self._conflict(session)
            if conflict is not None:
                anomaly = event(
                    EventOutcome.ANOMALY, snapshot.version, kind=AnomalyKind.DOUBLE_AUTHORIZATION
                )
                self._double_authorization(snapshot, anomaly, conflict, provider, now)
        if not path:
            noop = event(EventOutcome.NOOP, snapshot.version)
            self.store.record_event(noop, expected_version=snapshot.version)
            return Reconciliation(EventOutcome.NOOP, (), noop, lost)
        actor = f"provider:{session.provider_id}"
        reason = provider_status if event_id is None else f"{provider_status} (event {event_id})"
        steps: list[Planned] = []
        current, seq, head = session, snapshot.version, snapshot.head
        for trigger in path:
            try:
                planned = plan(
                    current,
                    MOVES[trigger],
                    {},
                    seq=seq + 1,
                    prev_hash=head,
                    now=now,
                    hooks=self._hooks,
                    actor=actor,
                    reason=reason,
                    idempotency_key=None,
                    key=self._key,
                )
            except GuardRejected as refused:
                anomaly = event(
                    EventOutcome.ANOMALY,
                    snapshot.version,
                    refused.guard,
                    kind=AnomalyKind.GUARD_REFUSED,
                )
                self._anomaly(anomaly, session, refused.guard)
            steps.append(planned)
            current, seq, head = planned.session, planned.record.seq, planned.record.hash
        applied = event(EventOutcome.APPLIED, seq)
        self.store.record_event(
            applied, Write(current, snapshot.version, tuple(p.record for p in steps))
        )
        self._finish(steps[:-1], steps[-1])
        return Reconciliation(EventOutcome.APPLIED, tuple(p.record for p in steps), applied, lost)

    def _outdated(self, session_id: str, provider_status: str, observed_at: datetime) -> bool:
        """Whether an applied or no-op report is newer, or the same report is known.

        The same provider status at the same instant is what the provider sends twice
        under two names (a webhook for the state a completion's answer already recorded):
        nothing new, so stale rather than applied again after the session moved on.
        """
        for event in self.store.provider_events(session_id=session_id):
            if not event.advances or event.observed_at is None:
                continue
            if event.observed_at > observed_at or (
                event.observed_at == observed_at and event.provider_status == provider_status
            ):
                return True
        return False

    def _anomaly(
        self,
        event: ProviderEvent,
        session: PaymentSession,
        guard: str | None,
        *,
        voided: bool = False,
    ) -> NoReturn:
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

    def _void(self, session: PaymentSession, provider: Providers) -> bool:
        """Void the session's hold at its provider; whether the provider says it is gone."""
        payments = provider_for(provider, session)
        reply = payments.cancel(session, idempotency_key=void_key(session))
        return map_status(session.provider_id, reply.status) is _CANCELED

    def _double_authorization(
        self,
        snapshot: Snapshot,
        anomaly: ProviderEvent,
        conflict: str,
        provider: Providers | None,
        now: datetime,
    ) -> NoReturn:
        """Record the anomaly; with a provider, void the hold and cancel, in one commit.

        The provider is asked first: when the commit then loses a race, the retry asks
        again under the same key and gets the same answer, so the hold is voided once.
        """
        session = snapshot.session
        voided = provider is not None and self._void(session, provider)
        if not voided:
            self.store.record_event(anomaly, expected_version=snapshot.version)
        else:
            planned = plan(
                session,
                _CANCEL,
                {},
                seq=snapshot.version + 1,
                prev_hash=snapshot.head,
                now=now,
                hooks=self._hooks,
                actor=f"provider:{session.provider_id}",
                reason=f"double authorization voided: {conflict}",
                idempotency_key=None,
                key=self._key,
            )
            self.store.record_event(
                attrs.evolve(anomaly, version=planned.record.seq),
                Write(planned.session, snapshot.version, (planned.record,)),
            )
            self._finish([], planned)
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

    # -- helpers

    def _now(self) -> datetime:
        return clock_reading(self._clock)

    def _load(self, session_id: str, idempotency_key: str | None = None) -> Snapshot:
        if has_nul(idempotency_key):
            # Every store's commit refuses it too; here, before any before-hook runs.
            raise InvalidSessionData({"idempotency_key": NUL_IN_KEY})
        snapshot = self.store.load(session_id, idempotency_key)
        if snapshot is None:
            raise SessionNotFound(session_id)
        return snapshot

    def _bound(self, stored: Binding, attempted: Binding, move: Move) -> TransitionRecord:
        record = self.store.record(stored.session_id, stored.seq)
        if record is None:  # the key's foreign key rules this out in a sound database
            raise StoreError("idempotency", f"key {stored.key!r} names a missing record")
        if stored.fingerprint != attempted.fingerprint:
            raise IdempotencyConflict(stored.key, record.trigger, move.trigger)
        return record

    def _finish(self, others: list[Planned], planned: Planned) -> None:
        if not others:
            finish(self._hooks, planned)
            return
        # Every committed move gets its after-hooks, even when an earlier one's failed.
        errors: list[BaseException] = []
        for done in (*others, planned):
            try:
                finish(self._hooks, done)
            except HookError as error:
                errors.extend(error.errors)
        if errors:
            raise HookError(errors, planned.session, planned.record)

    def __repr__(self) -> str:
        return f"<PaymentSessions {self.store!r}>"


__all__ = ["DEFAULT_LEASE", "PaymentSessions", "Reconciliation"]
