"""SessionMachine: one session driven through the transition table, in memory.

The moves themselves are planned by the engine in ``paysession/planning.py``, which
the durable service shares; this shell keeps the session, its trail, its idempotency
keys and its lock, and hands each record to an audit sink.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, TypedDict

from paysession import _log
from paysession.errors import (
    REFUSALS,
    IdempotencyConflict,
    InvalidSessionData,
    ReentrantMove,
    SinkError,
)
from paysession.hooks import Hooks
from paysession.lifecycle import ALLOWED, Trigger
from paysession.planning import (
    UNSET,
    Context,
    can_fire,
    check_legal,
    check_meta,
    check_params,
    create_record,
    fingerprint,
    finish,
    plan,
    resolve,
)
from paysession.record import AuditSink, TransitionRecord
from paysession.session import (
    Clock,
    PaymentSession,
    clock_reading,
    system_clock,
)

if TYPE_CHECKING:  # typing.Unpack is new in 3.11, and only the type checker reads it
    from typing_extensions import Unpack


class MoveMeta(TypedDict, total=False):
    """What any move may carry besides its own arguments: who, why, and its key.

    ``actor`` and ``reason`` go into the move's record; ``idempotency_key`` makes a
    repeat of the same move return the first one's record (see ``SessionMachine.fire``).
    """

    actor: str | None
    reason: str | None
    idempotency_key: str | None


class SessionMachine:
    """Drives one session through the table: every move enforced, stamped, hooked, recorded.

    Creating one is cheap (no ``transitions.Machine`` is built). A machine is safe to
    share between threads: moves are serialized on a per-machine lock; hooks of a move
    must not fire another move on the same machine before it is final (after-hooks may).
    """

    __slots__ = (
        "_busy",
        "_clock",
        "_history",
        "_hooks",
        "_key",
        "_keys",
        "_lock",
        "_session",
        "_sink",
    )

    def __init__(
        self,
        session: PaymentSession,
        *,
        hooks: Hooks | None = None,
        clock: Clock | None = None,
        sink: AuditSink | None = None,
        key: bytes | None = None,
    ) -> None:
        if not isinstance(session, PaymentSession):
            raise InvalidSessionData(
                {"session": f"must be a PaymentSession, got {type(session).__name__}"}
            )
        self._session = session
        self._hooks = hooks
        self._clock: Callable[[], datetime] = clock or system_clock
        self._sink = sink
        self._key = key
        # Record 0 is built on first need: an idle machine holds only its snapshot.
        self._history: list[TransitionRecord] | None = None
        self._keys: dict[str, tuple[str, TransitionRecord]] | None = None
        self._lock = threading.RLock()
        self._busy = False

    @property
    def session(self) -> PaymentSession:
        """The current snapshot."""
        return self._session

    @property
    def history(self) -> tuple[TransitionRecord, ...]:
        """Every record so far, oldest first; record 0 opens the trail."""
        return tuple(self._trail())

    def _trail(self) -> list[TransitionRecord]:
        with self._lock:
            if self._history is None:
                # Built from the session as it was given (no move has run yet); the sink
                # gets record 0 here, so before any move's record, and only once.
                first = create_record(self._session, self._key)
                if self._sink is not None:
                    _keep(self._sink, first)
                self._history = [first]
            return self._history

    def allowed(self) -> frozenset[str]:
        """The triggers the table allows from the current status (guards aside)."""
        return ALLOWED[self._session.status]

    def can(self, trigger: str) -> bool:
        """Whether ``trigger`` would pass the table and its guards now. Runs no hook."""
        return can_fire(trigger, self._session)

    def fire(
        self,
        trigger: Trigger,
        /,
        *,
        actor: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
        **params: object,
    ) -> TransitionRecord:
        """Run ``trigger`` with its arguments; return the move's record.

        With an ``idempotency_key`` already bound by an earlier move of this machine, the
        same trigger and arguments return that move's record (no hook runs, nothing is
        added); anything else raises IdempotencyConflict.
        """
        # One frame from the caller to the engine: this runs on every move. The lock is
        # taken with acquire() and release() rather than a with statement, which builds
        # two bound methods and an argument tuple for __exit__ each time.
        try:
            lock = self._lock
            lock.acquire()
            try:
                if self._busy:
                    raise ReentrantMove()
                session = self._session
                move = resolve(trigger, session.status)
                # The checks' own shortcuts, taken here: most moves carry nothing to check.
                changes = check_params(move, params) if params or move.params else {}
                if actor is not None or reason is not None or idempotency_key is not None:
                    check_meta(actor, reason, idempotency_key)
                print_ = None
                if idempotency_key is not None:
                    print_ = fingerprint(move.trigger, changes)
                    bound = self._keys.get(idempotency_key) if self._keys else None
                    if bound is not None:
                        if bound[0] != print_:
                            raise IdempotencyConflict(
                                idempotency_key, bound[1].trigger, move.trigger
                            )
                        return bound[1]
                check_legal(move, session.status)
                trail = self._history
                if trail is None:
                    trail = self._trail()
                last = trail[-1]
                self._busy = True
                try:
                    planned = plan(
                        session,
                        move,
                        changes,
                        seq=last.seq + 1,
                        prev_hash=last.hash,
                        context=Context(
                            clock_reading(self._clock), self._hooks, actor, reason, self._key
                        ),
                        idempotency_key=idempotency_key,
                    )
                finally:
                    self._busy = False
                # The record is kept first: a move whose record the sink cannot take does
                # not happen, so the machine, its trail and the sink's file still agree.
                if self._sink is not None:
                    _keep(self._sink, planned.record)
                self._session = planned.session
                trail.append(planned.record)
                if idempotency_key is not None and print_ is not None:
                    if self._keys is None:
                        self._keys = {}
                    self._keys[idempotency_key] = (print_, planned.record)
            finally:
                lock.release()
            finish(self._hooks, planned)
            return planned.record
        except REFUSALS as refused:
            _log.REFUSALS.info("%r %r refused: %r", self._session.id, trigger, str(refused))
            raise

    def authorize(self, **meta: Unpack[MoveMeta]) -> TransitionRecord:
        """pending/requires_more → authorized; needs is_initiated and amount > 0."""
        return self.fire("authorize", **meta)

    def require_more(self, **meta: Unpack[MoveMeta]) -> TransitionRecord:
        """pending/requires_more → requires_more: the customer must act (3-D Secure)."""
        return self.fire("require_more", **meta)

    def fail(self, **meta: Unpack[MoveMeta]) -> TransitionRecord:
        """pending/requires_more → error; say why in ``reason``."""
        return self.fire("fail", **meta)

    def retry(self, **meta: Unpack[MoveMeta]) -> TransitionRecord:
        """requires_more/error → pending, for a new attempt."""
        return self.fire("retry", **meta)

    def cancel(self, **meta: Unpack[MoveMeta]) -> TransitionRecord:
        """pending/requires_more/error/authorized → canceled, which is final."""
        return self.fire("cancel", **meta)

    def initiate(self, data: Mapping[str, object], **meta: Unpack[MoveMeta]) -> TransitionRecord:
        """In pending: the provider was called; its ``data`` replaces the session's."""
        return self.fire("initiate", data=data, **meta)

    def update(
        self,
        *,
        amount: int = UNSET,
        data: Mapping[str, object] = UNSET,
        **meta: Unpack[MoveMeta],
    ) -> TransitionRecord:
        """In pending/requires_more: a new ``amount`` and/or ``data``."""
        return self.fire("update", amount=amount, data=data, **meta)

    def select(self, **meta: Unpack[MoveMeta]) -> TransitionRecord:
        """Mark this session as the one its cart completes with."""
        return self.fire("select", **meta)

    def deselect(self, **meta: Unpack[MoveMeta]) -> TransitionRecord:
        """Unmark this session as its cart's choice."""
        return self.fire("deselect", **meta)

    def __repr__(self) -> str:
        return f"<SessionMachine {self._session.id} {self._session.status.value}>"


def _keep(sink: AuditSink, record: TransitionRecord) -> None:
    """Hand the record to the sink; SinkError, whatever the sink raised, if it failed."""
    try:
        sink.append(record)
    except SinkError:
        raise
    except Exception as error:  # a sink of the caller's own: its failure is a SinkError too
        raise SinkError(
            "append",
            f"{type(error).__name__}: {error}",
            path=repr(sink),
            session_id=record.session_id,
            seq=record.seq,
        ) from error


__all__ = ["MoveMeta", "SessionMachine"]
