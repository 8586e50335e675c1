"""What both halves of the service share: the store, the clock, the key, the hooks.

``PaymentSessions`` (``paysession/service.py``) is built in two floors so that neither
file does every job: this base loads sessions and plans, finishes and binds moves on the
engine of ``paysession/planning.py``; ``paysession/reconcile.py`` adds what provider
reports need (reconciliation, answers, anomalies, voids); the service on top adds
creating, firing, selecting, claims and reads.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar, overload

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
    finish,
    resolve,
)
from paysession.record import TransitionRecord
from paysession.session import Clock, PaymentSession, clock_reading, utc_now
from paysession.store.base import (
    NUL_IN_KEY,
    Binding,
    EventOutcome,
    ProviderEvent,
    SessionStore,
    Snapshot,
    has_nul,
)

_SELECT = MOVES["select"]
_E = TypeVar("_E", bound=enum.Enum)
_T = TypeVar("_T")


def member(kind: type[_E], value: object, field: str) -> _E:
    """``value`` as a member of the str enum ``kind``; InvalidSessionData naming ``field``."""
    try:
        return kind(value)
    except ValueError:
        names = ", ".join(str(item.value) for item in kind)
        raise InvalidSessionData({field: f"must be one of {names}"}) from None


def check_attempts(attempts: object) -> None:
    """InvalidSessionData naming ``attempts`` unless it is an int of at least 1."""
    if type(attempts) is not int or attempts < 1:
        raise InvalidSessionData({"attempts": "must be an int >= 1"})


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


@attrs.frozen
class Reconciliation(Sequence[TransitionRecord]):
    """What :meth:`PaymentSessions.reconcile` did with one provider report (kept here,
    below the reconciler, so that both halves of the service can name it).

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


class DurableBase:
    """The state and helpers of :class:`~paysession.PaymentSessions`; not used alone."""

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

    @property
    def clock(self) -> Clock:
        """The clock every move, report and provider call is stamped by."""
        return self._clock

    def get(self, session_id: str) -> PaymentSession:
        """The session as last committed; SessionNotFound if there is none."""
        return self._load(session_id).session

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

    def _context(
        self, actor: str | None, reason: str | None, now: datetime | None = None
    ) -> Context:
        """The shared part of a request's moves, read from the clock unless given."""
        return Context(
            clock_reading(self._clock) if now is None else now,
            self._hooks,
            actor,
            reason,
            self._key,
        )


__all__ = ["DurableBase", "Reconciliation", "check_attempts", "member", "retrying"]
