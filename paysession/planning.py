"""The move engine: one planning step for every move, on the ``transitions`` engine.

One ``transitions.Machine`` is built at import from :data:`~paysession.TRANSITIONS` and
shared by every session: binding a session costs a few attribute writes, not a machine.
Each attempt hands the shared machine a throwaway model, ``_Attempt``, whose ``status``
starts at the session's; the engine's registry decides whether the trigger leaves the
session's status, and the engine's own transition evaluates the guards, calls
``_prepare`` (our before-phase) and moves the status. Nothing is added to the
shared machine's model list, so nothing leaks.

Both shells drive this engine: :class:`~paysession.SessionMachine` (one session in
memory, ``paysession/machine.py``) and :class:`~paysession.PaymentSessions` (sessions in
a store, ``paysession/service.py``). Neither reaches into the other. ``resolve`` names
the move, ``check_params`` and ``check_meta`` check its arguments, ``fingerprint`` keys
its idempotency, ``plan`` runs it without committing anything, ``finish`` runs the
after-hooks of a move once it is final.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from transitions import Machine
from transitions.core import EventData

from paysession import _log
from paysession._frozen import freeze, is_text
from paysession._wire import canonical_json, digest, format_datetime
from paysession.errors import (
    GuardRejected,
    HookError,
    IllegalTransition,
    InvalidSessionData,
    PaySessionError,
)
from paysession.hooks import Hooks, TransitionEvent, new_event
from paysession.lifecycle import ALLOWED, CREATE, GUARDS, MOVES, TRANSITIONS, Move
from paysession.limits import current
from paysession.record import GENESIS, Change, RecordFields, TransitionRecord, make_record
from paysession.session import (
    FIELDS,
    MAX_AMOUNT,
    PaymentSession,
    evolve_moved,
    evolve_trusted,
)
from paysession.status import PaymentSessionStatus

_STATUS_BY_VALUE = {status.value: status for status in PaymentSessionStatus}
_MOVES = dict(MOVES)  # a read-only view's get() calls the dict's get() by name
_new = object.__new__
UNSET: Any = object()
"""The default of an argument not given (``None`` may be a value given on purpose)."""


class Context:
    """What every move of one request shares: when, who, why, its hooks and its seal key.

    ``now`` is the request's clock reading; ``key`` is the HMAC key records are sealed
    with (None: plain SHA-256).
    """

    __slots__ = ("actor", "hooks", "key", "now", "reason")

    def __init__(
        self,
        now: datetime,
        hooks: Hooks | None,
        actor: str | None,
        reason: str | None,
        key: bytes | None,
    ) -> None:
        self.now = now
        self.hooks = hooks
        self.actor = actor
        self.reason = reason
        self.key = key

    def because(self, reason: str) -> Context:
        """The same request, with another reason (a deselect it causes, say)."""
        return Context(self.now, self.hooks, self.actor, reason, self.key)


class _Attempt:
    """The model ``transitions`` moves for one attempt at one move; lives for one call.

    Filled in by ``plan`` field by field rather than by an ``__init__``: calling a class
    costs two argument tuples and a lookup of ``__init__``, and every move builds one.
    """

    __slots__ = (
        "context",
        "failed_guard",
        "idempotency_key",
        "move",
        "now",
        "params",
        "planned",
        "prev_hash",
        "seq",
        "session",
        "status",
    )

    context: Context
    failed_guard: str | None
    idempotency_key: str | None
    move: Move
    now: datetime
    params: dict[str, object]
    planned: Planned | None
    prev_hash: str
    seq: int
    session: PaymentSession
    status: str

    def updates(
        self, dest: PaymentSessionStatus, now_text: str, changes: dict[str, Change]
    ) -> dict[str, object]:
        """The fields a move with stamps, flags or arguments sets; their changes go into
        ``changes``."""
        session, move, now, key = self.session, self.move, self.now, self.context.key
        updates: dict[str, object] = {"status": dest, "updated_at": now}
        for name in move.stamps:
            updates[name] = now
            old = getattr(session, name)
            if old != now:
                changes[name] = (_wire_value(name, old), now_text)
        for name, flag in move.sets:
            updates[name] = flag
            old = getattr(session, name)
            if old != flag:
                changes[name] = (old, flag)
        for name, value in self.params.items():
            updates[name] = value
            old = getattr(session, name)
            if old is value:
                continue
            # Compared as they are written, never by Python's ==: 0 == False == 0.0 and
            # 0.0 == -0.0, but each is different JSON, and a change the record did not
            # show would leave it with the old digest.
            before = _wire_value(name, old, key)
            after_value = _wire_value(name, value, key)
            if type(before) is not type(after_value) or before != after_value:
                changes[name] = (before, after_value)
        return updates


class Planned:
    """A move that ``transitions`` allowed and the before-hooks let through, not yet final.

    ``event`` is what the hooks saw, and None when the move ran without hooks. Filled in
    by the engine's before-phase, field by field, like ``_Attempt``.
    """

    __slots__ = ("event", "record", "session", "status_move")

    event: TransitionEvent | None
    record: TransitionRecord
    session: PaymentSession
    status_move: bool


def _guard_condition(name: str) -> Callable[[EventData], bool]:
    check = GUARDS[name].check

    def condition(event_data: EventData) -> bool:
        attempt: _Attempt = event_data.model  # type: ignore[assignment]  # (cast() is a call)
        if check(attempt.session):
            return True
        attempt.failed_guard = name
        return False

    return condition


def _prepare(event_data: EventData) -> None:
    """Our before-phase, called by ``transitions`` once the source and the guards passed:
    build the new snapshot and its record, then let the before-hooks veto."""
    attempt: _Attempt = event_data.model  # type: ignore[assignment]  # (cast() is a call)
    session, move, now, context = attempt.session, attempt.move, attempt.now, attempt.context
    source = session.status
    dest = source if move.dest is None else move.dest
    # Spelled out rather than diffing every field: this runs on every move, and the
    # move itself says which fields it can touch.
    old_text = format_datetime(session.updated_at)
    now_text = format_datetime(now)
    changes: dict[str, Change] = {}
    if old_text != now_text:
        changes["updated_at"] = (old_text, now_text)
    if move.stamps or move.sets or attempt.params:
        after = evolve_trusted(session, attempt.updates(dest, now_text, changes))
    else:
        after = evolve_moved(session, dest, now)
    record = make_record(
        RecordFields(
            session.id,
            attempt.seq,
            attempt.prev_hash,
            move.trigger,
            source,
            dest,
            now,
            context.actor,
            context.reason,
            attempt.idempotency_key,
            changes,
        ),
        context.key,
    )
    planned = _new(Planned)
    planned.session = after
    planned.record = record
    planned.status_move = status_move = move.dest is not None
    hooks = context.hooks
    if hooks is None:
        # Nobody to tell: the event would be built only to be thrown away.
        planned.event = None
        attempt.planned = planned
        return
    planned.event = event = new_event(
        move.trigger,
        source,
        dest,
        session,
        after,
        now,
        context.actor,
        context.reason,
        attempt.idempotency_key,
    )
    hooks.run_before(event, status_move)
    attempt.planned = planned


def _build_engine() -> Machine:
    engine = Machine(
        model=None,
        states=[status.value for status in PaymentSessionStatus],
        initial=PaymentSessionStatus.PENDING.value,
        auto_transitions=False,
        send_event=True,
        model_attribute="status",
    )
    for move in TRANSITIONS:
        engine.add_transition(
            move.trigger,
            [source.value for source in move.sources],
            None if move.dest is None else move.dest.value,
            conditions=[_guard_condition(name) for name in move.guards],
            before=[_prepare],
        )
    return engine


_ENGINE = _build_engine()
_EVENTS = {name: _ENGINE.events[name] for name in MOVES}
_STATES = {name: _ENGINE.get_state(name) for name in _ENGINE.states}


def _wire_value(name: str, value: object, key: bytes | None = None) -> object:
    if value is None or type(value) is bool or type(value) is int or type(value) is str:
        return value
    if name == "data" or name == "cart":
        return digest(value, key)
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, PaymentSessionStatus):
        return value.value
    return value


def create_record(session: PaymentSession, key: bytes | None = None) -> TransitionRecord:
    """Record 0 of a trail: the session's values as the trail begins."""
    changes = {
        name: (None, _wire_value(name, getattr(session, name), key))
        for name in FIELDS
        if name not in ("id", "status")
    }
    fields = RecordFields(
        session.id,
        0,
        GENESIS,
        CREATE,
        None,
        session.status,
        session.updated_at,
        None,
        None,
        None,
        changes,
    )
    return make_record(fields, key)


def check_params(move: Move, params: Mapping[str, object]) -> dict[str, object]:
    """Validate a move's keyword arguments; return the fields they set."""
    if not params and not move.params:
        return {}
    problems: dict[str, str] = {}
    out: dict[str, object] = {}
    for name, value in params.items():
        if name not in move.params:
            takes = ", ".join(move.params) or "no arguments"
            problems[name] = f"{move.trigger} takes {takes}"
        elif value is UNSET:
            continue
        elif name == "amount":
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not 0 <= value <= MAX_AMOUNT
            ):
                problems["amount"] = f"must be an int from 0 to {MAX_AMOUNT} (minor units)"
            else:
                out["amount"] = value
        elif name == "data":
            if isinstance(value, Mapping):
                out["data"] = freeze(value, "data", problems)
            else:
                problems["data"] = f"must be a JSON object, got {type(value).__name__}"
    if not problems and move.params and move.needs_params and not out:
        # The table says the move takes nothing without at least one of its arguments.
        problems[move.params[0]] = f"{move.trigger} needs {' and/or '.join(move.params)}"
    if problems:
        raise InvalidSessionData(problems)
    return out


def check_meta(actor: object, reason: object, idempotency_key: object) -> None:
    """Validate the metadata every move takes."""
    if actor is None and reason is None and idempotency_key is None:
        return
    problems: dict[str, str] = {}
    limits = current()
    for name, value, limit in (
        ("actor", actor, limits.text_length),
        ("reason", reason, limits.text_length),
        ("idempotency_key", idempotency_key, limits.id_length),
    ):
        if value is None:
            continue
        if not isinstance(value, str):
            problems[name] = f"must be a string or None, got {type(value).__name__}"
        elif not value:
            problems[name] = "must not be empty"
        elif not is_text(value):
            problems[name] = "must be valid Unicode text (it holds a lone surrogate)"
        elif len(value) > limit:
            problems[name] = f"must be at most {limit} characters, got {len(value)}"
    if problems:
        raise InvalidSessionData(problems)


def fingerprint(trigger: str, params: Mapping[str, object]) -> str:
    """What an idempotency key binds: the trigger and its arguments (data as a digest)."""
    wire = {name: _wire_value(name, value) for name, value in params.items()}
    return canonical_json([trigger, wire])


def resolve(trigger: object, status: PaymentSessionStatus) -> Move:
    """The table's move for ``trigger``, or IllegalTransition for a name it does not know."""
    move = _MOVES.get(trigger) if isinstance(trigger, str) else None
    if move is None:
        raise IllegalTransition(str(trigger), status.value, ALLOWED[status])
    return move


def legal(trigger: str, status: PaymentSessionStatus) -> bool:
    """Whether the shared ``transitions`` machine has ``trigger`` from ``status``.

    The one place legality is decided: it asks the engine's own registry (the lookup
    ``Event.trigger`` starts with), so the verdict is ``transitions``'; the machine, the
    service and the audit check all ask here.
    """
    event = _EVENTS.get(trigger)
    # A status is a str equal to its value, the name transitions keys its sources by.
    return event is not None and status in event.transitions


def can_fire(trigger: str, session: PaymentSession) -> bool:
    """Whether ``trigger`` would pass the engine and its guards on ``session`` now."""
    if not legal(trigger, session.status):
        return False
    return all(GUARDS[name].check(session) for name in MOVES[trigger].guards)


def check_legal(move: Move, status: PaymentSessionStatus) -> None:
    """Raise IllegalTransition unless :func:`legal` says yes.

    Spares a refused move the clock reading, the attempt and the exception that a full
    trigger would cost; the verdict is the engine's all the same.
    """
    event = _EVENTS.get(move.trigger)  # legal(), written out: every move asks twice
    if event is None or status not in event.transitions:
        raise IllegalTransition(move.trigger, status.value, ALLOWED[status])


def plan(
    session: PaymentSession,
    move: Move,
    params: dict[str, object],
    *,
    seq: int,
    prev_hash: str,
    context: Context,
    idempotency_key: str | None = None,
) -> Planned:
    """Run one move through ``transitions`` up to, not including, making it final.

    Raises IllegalTransition, GuardRejected, or whatever a before-hook raised; in every
    case nothing has changed.
    """
    check_legal(move, session.status)
    now = context.now
    attempt = _new(_Attempt)
    attempt.session = session
    # The plain text: transitions names its states by value, and would take a member for
    # its name.
    attempt.status = session.status._value_
    attempt.move = move
    attempt.params = params
    attempt.seq = seq
    attempt.prev_hash = prev_hash
    # A clock that steps back (NTP, another host of the fleet) must not make a trail run
    # backwards: a move is never stamped earlier than the session's last one.
    attempt.now = now if now > session.updated_at else session.updated_at
    attempt.context = context
    attempt.idempotency_key = idempotency_key
    attempt.failed_guard = None
    attempt.planned = None
    # The engine's transitions from the session's status, run as ``Event.trigger`` runs
    # them once it has found them (the first whose guards pass is made), without the
    # event-level steps this machine has no use for: its queue, its model-state lookup
    # and source check (check_legal just asked the same registry), and its empty
    # preparation and finalization callbacks, which cost a move about a sixth of its time.
    event = _EVENTS[move.trigger]
    data = EventData(_STATES[attempt.status], event, _ENGINE, attempt, (), {})
    moved = False
    for transition in event.transitions[attempt.status]:
        data.transition = transition
        if transition.execute(data):
            moved = True
            break
    if not moved:
        guard = attempt.failed_guard or "?"
        raise GuardRejected(
            move.trigger, guard, GUARDS[guard].description if guard in GUARDS else ""
        )
    planned = attempt.planned
    if planned is None or _STATUS_BY_VALUE[attempt.status] is not planned.session.status:
        raise PaySessionError(f"internal error: {move.trigger} was not planned consistently")
    return planned


def plan_chain(
    session: PaymentSession,
    version: int,
    head: str,
    steps: Sequence[tuple[Move, dict[str, object]]],
    context: Context,
    idempotency_key: str | None = None,
) -> list[Planned]:
    """Plan each move from the session as the one before leaves it; the last gets the key.

    ``version`` and ``head`` are the seq and hash of the session's last record. Raises
    as :func:`plan` does, for the first move that cannot be made; nothing has changed.
    """
    planned: list[Planned] = []
    last = len(steps)
    for index, (move, params) in enumerate(steps, 1):
        step = plan(
            session,
            move,
            params,
            seq=version + 1,
            prev_hash=head,
            context=context,
            idempotency_key=idempotency_key if index == last else None,
        )
        planned.append(step)
        session, version, head = step.session, step.record.seq, step.record.hash
    return planned


def finish(hooks: Hooks | None, planned: Planned) -> None:
    """Run the post-move hooks of a final move; raise HookError if any failed."""
    record = planned.record
    if _log.MOVES.isEnabledFor(logging.DEBUG):  # spares reading the record for nobody
        _log.MOVES.debug(
            "%r seq %d: %s, %s -> %s",
            record.session_id,
            record.seq,
            record.trigger,
            record.source,
            record.dest,
        )
    event = planned.event
    if hooks is None or event is None:
        return
    failures = hooks.run_after(event, planned.status_move)
    if failures:
        kinds = ", ".join(type(failure).__name__ for failure in failures)
        _log.HOOKS.warning(
            "%r seq %d: after-hooks failed: %s", record.session_id, record.seq, kinds
        )
        raise HookError(failures, planned.session, planned.record)


__all__ = [
    "UNSET",
    "Context",
    "Planned",
    "can_fire",
    "check_legal",
    "check_meta",
    "check_params",
    "create_record",
    "fingerprint",
    "finish",
    "legal",
    "plan",
    "plan_chain",
    "resolve",
]
