"""The move pipeline: every move a store keeps is planned, committed and finished here.

:class:`MoveWriter` owns what a move needs besides the session: the store, the clock,
the key records are sealed with and the hooks. Its one method, :meth:`MoveWriter.apply`,
plans a chain of moves on the engine (``paysession/planning.py``), commits it (alone,
with the keys it binds, or with the provider event that caused it), settles a lost race
for a key already used, and runs the after-hooks once the commit is final. The service
(``paysession/service.py``), reconciliation (``paysession/reconcile.py``) and, through
them, the checkout flows all write through one writer, so a move behaves the same
whoever asks for it.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar

import attrs

from paysession import _log
from paysession.errors import (
    ConcurrentUpdate,
    HookError,
    IdempotencyConflict,
    InvalidSessionData,
    SessionNotFound,
    StoreError,
)
from paysession.hooks import Hooks
from paysession.lifecycle import MOVES, Move
from paysession.planning import (
    Context,
    Planned,
    check_meta,
    check_params,
    fingerprint,
    finish,
    plan,
    plan_chain,
    resolve,
)
from paysession.record import TransitionRecord
from paysession.session import Clock, clock_reading, utc_now
from paysession.store.base import (
    NUL_IN_KEY,
    Binding,
    CartCheck,
    Claim,
    EventOutcome,
    ProviderCall,
    ProviderEvent,
    SessionStore,
    Snapshot,
    Write,
    has_nul,
)

_SELECT = MOVES["select"]
_DESELECT = MOVES["deselect"]
_UPDATE = MOVES["update"]
_T = TypeVar("_T")

Step = tuple[Move, dict[str, object]]
"""One move of a chain with its checked arguments (``check_params``)."""


def attempts_problem(attempts: object) -> str | None:
    """What is wrong with ``attempts`` (how many tries a racing call makes), or None."""
    return None if type(attempts) is int and attempts >= 1 else "must be an int >= 1"


def check_attempts(attempts: object) -> None:
    """InvalidSessionData naming ``attempts`` unless it is an int of at least 1."""
    problem = attempts_problem(attempts)
    if problem is not None:
        raise InvalidSessionData({"attempts": problem})


def retrying(attempts: int, attempt: Callable[[int], _T], *, wait: bool = True) -> _T:
    """``attempt(n)`` for n = 0, 1, ... until it returns; each lost race is tried again.

    A ConcurrentUpdate (another writer committed first) starts the next attempt, after a
    few random milliseconds that double each time when ``wait``; the last attempt's
    ConcurrentUpdate reaches the caller. ``attempt`` reloads whatever it decides from.
    ``attempts`` is checked before anything runs.
    """
    check_attempts(attempts)
    for number in range(attempts - 1):
        try:
            return attempt(number)
        except ConcurrentUpdate as lost:
            _log.RACES.warning(
                "%r: another move committed first; trying again (%d of %d)",
                lost.session_id,
                number + 2,
                attempts,
            )
            if wait:
                time.sleep(random.uniform(0, 0.002 * 2**number))
    return attempt(attempts - 1)


class AfterCommit:
    """The after-hooks of moves written inside a transaction their caller commits: run
    once that commit has happened, never after a rollback. Safe between threads.

    With ``hand_over`` (a framework's own commit hook, such as Django's
    ``transaction.on_commit``), each finish is handed to it as it comes, and the
    framework runs it after the commit or drops it on a rollback. Without, they wait
    here for :meth:`run` (after the caller's commit) or :meth:`drop` (after a rollback).
    """

    def __init__(self, hand_over: Callable[[Callable[[], None]], None] | None = None) -> None:
        self._hand_over = hand_over
        self._waiting: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def add(self, finish: Callable[[], None]) -> None:
        """Run ``finish`` (the after-hooks of one chain) once the transaction commits."""
        if self._hand_over is not None:
            self._hand_over(finish)
            return
        with self._lock:
            self._waiting.append(finish)

    def run(self) -> None:
        """Run every waiting finish, in the order the moves were made; each runs even
        when an earlier one's hooks failed, and HookError then names every failure."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
        errors: list[BaseException] = []
        last: HookError | None = None
        for after in waiting:
            try:
                after()
            except HookError as error:
                errors.extend(error.errors)
                last = error
        if last is not None:
            raise HookError(errors, last.session, last.record)

    def drop(self) -> None:
        """Forget every waiting finish: their moves were rolled back."""
        with self._lock:
            self._waiting = []

    def __len__(self) -> int:
        return len(self._waiting)


@attrs.frozen
class MoveRequest:
    """Who asks for a chain of moves, why, when, and under which key.

    ``key`` is the idempotency key the chain's last record carries: bound to the chain
    (a second request under it gets the first one's record back), or, for a chain
    recorded with a provider event, the event's id. ``expected_version``, when given,
    must be the session's version. ``at`` is the clock's reading unless given.
    """

    actor: str | None = None
    reason: str | None = None
    key: str | None = None
    expected_version: int | None = None
    at: datetime | None = None


@attrs.frozen
class Applied:
    """What :meth:`MoveWriter.apply` committed: the chain's records, and ``fresh``,
    False when the key was used before (by this request's earlier try, or a racing one)
    and ``records`` holds that use's last record instead."""

    records: tuple[TransitionRecord, ...]
    fresh: bool = True


class MoveWriter:
    """Plans moves on the engine and commits them to ``store``: the one path of a move.

    ``hooks`` run around every move (after-hooks only once it is committed); ``clock``
    stamps moves (UTC now by default); ``key`` makes every record's hash an HMAC under
    it. Holds no state of its own besides these: share one between threads. With
    ``after_commit``, the store writes inside a transaction someone else commits: the
    after-hooks wait there for that commit.
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        hooks: Hooks | None = None,
        clock: Clock | None = None,
        key: bytes | None = None,
        after_commit: AfterCommit | None = None,
    ) -> None:
        self.store = store
        self.hooks = hooks
        self.clock: Clock = clock or utc_now
        self.key = key
        self.after_commit = after_commit

    def now(self) -> datetime:
        """The clock's reading, checked to be an aware datetime."""
        return clock_reading(self.clock)

    def load(self, session_id: str, idempotency_key: str | None = None) -> Snapshot:
        """The session as committed, with the binding of ``idempotency_key`` if any;
        SessionNotFound if there is none."""
        if has_nul(idempotency_key):
            # Every store's commit refuses it too; here, before any before-hook runs.
            raise InvalidSessionData({"idempotency_key": NUL_IN_KEY})
        snapshot = self.store.load(session_id, idempotency_key)
        if snapshot is None:
            raise SessionNotFound(session_id)
        return snapshot

    def steps(
        self,
        snapshot: Snapshot,
        moves: Sequence[tuple[str, Mapping[str, object]]],
        request: MoveRequest,
    ) -> list[Step]:
        """The moves named by (trigger, arguments) pairs, checked, with the request's
        metadata. ``select`` is not one of them: it deselects other sessions, which
        :meth:`apply` is told of with ``replacing``."""
        steps: list[Step] = []
        for trigger, args in moves:
            move = resolve(trigger, snapshot.session.status)
            if move is _SELECT:
                raise InvalidSessionData({"moves": "select must be fired on its own"})
            steps.append((move, check_params(move, args)))
        check_meta(request.actor, request.reason, request.key)
        return steps

    def context(
        self, actor: str | None, reason: str | None, now: datetime | None = None
    ) -> Context:
        """What the moves of one request share, read from the clock unless ``now``."""
        return Context(self.now() if now is None else now, self.hooks, actor, reason, self.key)

    def apply(
        self,
        snapshot: Snapshot,
        steps: Sequence[Step],
        request: MoveRequest,
        *,
        replacing: Sequence[Snapshot] = (),
        event: ProviderEvent | None = None,
        release: Claim | None = None,
        calls: Sequence[ProviderCall] = (),
    ) -> Applied:
        """Plan ``steps`` from ``snapshot``, commit them in one transaction, finish them.

        ``replacing`` are the cart's selected sessions a select takes over: each is
        deselected first, in the same transaction (reason ``replaced by <id>``).
        ``event`` is the provider report the moves record, kept with them at the last
        move's seq (or at the session's version when ``steps`` is empty: a report that
        moves nothing), with ``calls``, the provider calls that led to it. ``release``
        is a claim on the cart to drop in the same transaction.

        A key already bound on the session answers with its record (IdempotencyConflict
        when it was bound to another move), before anything is planned; a commit that
        loses to a racing request under the same key answers the same way. Any other
        lost race is ConcurrentUpdate, with nothing written; so is a session no longer
        at ``request.expected_version``. A chain that changes the cart's choice or the
        amount is refused with CartBusy while a claim holds the cart. After-hooks run
        once the commit is final, every one of them even when an earlier one failed
        (HookError then names them all).
        """
        binding = None
        if request.key is not None and event is None:
            last, changes = steps[-1]
            print_ = fingerprint(last.trigger, changes)
            binding = Binding(
                snapshot.session.id, request.key, print_, snapshot.version + len(steps)
            )
            if snapshot.binding is not None:
                return Applied((self._bound(snapshot.binding, binding, last),), fresh=False)
        expected = request.expected_version
        if expected is not None and expected != snapshot.version:
            raise ConcurrentUpdate(snapshot.session.id, expected, snapshot.version)
        context = self.context(request.actor, request.reason, request.at)
        planned = self._plan(snapshot, steps, request.key, context, replacing)
        cart_check = None if event is not None else _cart_check(snapshot, planned, context.now)
        try:
            records = self._commit(snapshot, planned, binding, cart_check, event, release, calls)
        except ConcurrentUpdate:
            replayed = self._replayed(snapshot, steps, binding, event if request.key else None)
            if replayed is None:
                raise
            return replayed
        if self.after_commit is None:
            self._finish(planned)
        else:
            self.after_commit.add(functools.partial(self._finish_committed, planned))
        return Applied(records)

    def answered(self, session_id: str, event_id: str) -> TransitionRecord | None:
        """The last record of the moves a provider event under ``event_id`` applied, or
        None when there is no such event or it applied nothing."""
        event = self.store.provider_event(session_id, event_id)
        if event is None or event.outcome is not EventOutcome.APPLIED:
            return None
        record = self.store.record(session_id, event.version)
        if record is None:  # the event and its moves are committed together
            raise StoreError("provider_event", f"event {event_id!r} names a missing record")
        return record

    def _plan(
        self,
        snapshot: Snapshot,
        steps: Sequence[Step],
        key: str | None,
        context: Context,
        replacing: Sequence[Snapshot],
    ) -> list[tuple[Snapshot, Planned]]:
        """Each planned move with the snapshot it is written over: the deselects of
        ``replacing`` first (the database checks "one selected per cart" statement by
        statement, so the old choice must be gone before the new one is written), then
        the chain, its moves sharing the session's snapshot. The chain is planned
        first: its before-hooks see the move asked for before the moves it causes."""
        chain = plan_chain(snapshot.session, snapshot.version, snapshot.head, steps, context, key)
        replaced = context.because(f"replaced by {snapshot.session.id}")
        planned = [
            (
                other,
                plan(
                    other.session,
                    _DESELECT,
                    {},
                    seq=other.version + 1,
                    prev_hash=other.head,
                    context=replaced,
                ),
            )
            for other in replacing
        ]
        planned.extend((snapshot, step) for step in chain)
        return planned

    def _commit(
        self,
        snapshot: Snapshot,
        planned: list[tuple[Snapshot, Planned]],
        binding: Binding | None,
        cart_check: CartCheck | None,
        event: ProviderEvent | None,
        release: Claim | None,
        calls: Sequence[ProviderCall],
    ) -> tuple[TransitionRecord, ...]:
        """Write the planned moves in one transaction; the chain's records."""
        records = tuple(step.record for over, step in planned if over is snapshot)
        if not records:  # a report that moves nothing
            if event is not None:
                self.store.record_event(
                    event, expected_version=snapshot.version, release=release, calls=calls
                )
            return records
        writes = [
            Write(step.session, over.version, (step.record,))
            for over, step in planned
            if over is not snapshot
        ]
        writes.append(Write(planned[-1][1].session, snapshot.version, records))
        if event is not None:
            kept = attrs.evolve(event, version=records[-1].seq, recorded_at=records[-1].at)
            self.store.record_event(kept, writes[-1], release=release, calls=calls)
            return records
        self.store.commit(writes, binding, cart_check=cart_check, release=release)
        return records

    def _replayed(
        self,
        snapshot: Snapshot,
        steps: Sequence[Step],
        binding: Binding | None,
        event: ProviderEvent | None,
    ) -> Applied | None:
        """After a lost commit: what a racing request under the same key committed, or
        None when the race was lost to anything else."""
        session_id = snapshot.session.id
        if binding is not None:
            # A retried request racing the original may have bound the key first: its
            # record is the answer, or the key was used for another move.
            again = self.store.load(session_id, binding.key)
            if again is None or again.binding is None:
                return None
            return Applied((self._bound(again.binding, binding, steps[-1][0]),), fresh=False)
        if event is None:
            return None
        if not steps:
            kept = self.store.provider_event(session_id, event.event_id)
            return None if kept is None else Applied((), fresh=False)
        record = self.answered(session_id, event.event_id)
        return None if record is None else Applied((record,), fresh=False)

    def _bound(self, stored: Binding, attempted: Binding, move: Move) -> TransitionRecord:
        record = self.store.record(stored.session_id, stored.seq)
        if record is None:  # the key's foreign key rules this out in a sound database
            raise StoreError("idempotency", f"key {stored.key!r} names a missing record")
        if stored.fingerprint != attempted.fingerprint:
            raise IdempotencyConflict(stored.key, record.trigger, move.trigger)
        return record

    def _finish_committed(self, planned: list[tuple[Snapshot, Planned]]) -> None:
        """The after-work of moves written in a caller's transaction, once it committed:
        the store wakes its followers, then the after-hooks run."""
        self.store.committed()
        self._finish(planned)

    def _finish(self, planned: list[tuple[Snapshot, Planned]]) -> None:
        last = planned[-1][1] if planned else None
        if last is None:
            return
        if len(planned) == 1:
            finish(self.hooks, last)
            return
        # Every committed move gets its after-hooks, even when an earlier one's failed.
        errors: list[BaseException] = []
        for _, done in planned:
            try:
                finish(self.hooks, done)
            except HookError as error:
                errors.extend(error.errors)
        if errors:
            raise HookError(errors, last.session, last.record)


def _cart_check(
    snapshot: Snapshot, planned: list[tuple[Snapshot, Planned]], at: datetime
) -> CartCheck | None:
    """The cart whose claim must not be live for these moves: changing the cart's
    choice, or the amount (the provider would hold one amount and the session say
    another), is refused while a provider call for the cart is in flight. Moves that
    leave both alone pay nothing for claims."""
    cart_id = snapshot.session.cart_id
    if cart_id is None:
        return None
    amount = snapshot.session.amount
    for _, step in planned:
        trigger = step.record.trigger
        if trigger in ("select", "deselect"):
            return CartCheck(cart_id, at)
        if trigger == "update" and step.session.amount != amount:
            return CartCheck(cart_id, at)
    return None


__all__ = [
    "AfterCommit",
    "Applied",
    "MoveRequest",
    "MoveWriter",
    "Step",
    "attempts_problem",
    "check_attempts",
    "retrying",
]
