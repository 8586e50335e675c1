"""The hook registry: declared once, shared by every machine and service that uses it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import attrs

from paysession._compiled import slot_filler
from paysession.errors import DefinitionError
from paysession.lifecycle import MOVES
from paysession.session import PaymentSession
from paysession.status import PaymentSessionStatus


@attrs.frozen(slots=True)
class TransitionEvent:
    """What every hook receives about one move; immutable.

    ``before`` and ``after`` are the session snapshots on either side of the move (for a
    before-hook, ``after`` is what the move is about to produce).
    """

    trigger: str
    source: PaymentSessionStatus
    dest: PaymentSessionStatus
    before: PaymentSession
    after: PaymentSession
    at: datetime
    actor: str | None
    reason: str | None
    idempotency_key: str | None

    @property
    def session_id(self) -> str:
        return self.before.id


new_event: Callable[..., TransitionEvent] = slot_filler(
    TransitionEvent, [field.name for field in attrs.fields(TransitionEvent)], "new_event"
)
"""``TransitionEvent(...)`` with the fields in order, for the engine, whose values are
already checked: a move builds one for its hooks every time."""

Hook = Callable[[TransitionEvent], object]
H = TypeVar("H", bound=Hook)

_BEFORE, _AFTER, _EXIT, _ENTER = "before", "after", "on_exit", "on_enter"


class Hooks:
    """A registry of hooks, in four kinds, each run in registration order.

    - ``before(trigger=None)``: before a move is applied; raising vetoes it (nothing
      changes, nothing is recorded, the exception reaches the caller unchanged).
    - ``on_exit(status)``: like ``before``, for status moves leaving ``status``.
    - ``on_enter(status)``: once a status move into ``status`` is final.
    - ``after(trigger=None)``: once the move is final (with a store, after the commit).
      ``after()`` with no trigger is a listener that sees every move.

    ``on_exit``/``on_enter`` fire for the moves of the status table (even
    ``require_more`` from ``requires_more``), not for moves inside a status
    (``initiate``, ``update``, ``select``, ``deselect``). An exception from an
    ``on_enter`` or ``after`` hook does not undo the move: the caller gets a
    :class:`~paysession.HookError` carrying the new session and its record.
    """

    def __init__(self) -> None:
        self._hooks: list[tuple[str, str | None, Hook]] = []
        # The hooks of one stage of one move, in the order they run, by (stage, trigger,
        # status): filled on first need, emptied whenever a hook is registered.
        self._compiled: dict[tuple[str, str, str | None], tuple[Hook, ...]] = {}

    def before(self, trigger: str | None = None) -> Callable[[H], H]:
        return self._register(_BEFORE, _trigger_name(trigger))

    def after(self, trigger: str | None = None) -> Callable[[H], H]:
        return self._register(_AFTER, _trigger_name(trigger))

    def on_exit(self, status: PaymentSessionStatus | str) -> Callable[[H], H]:
        return self._register(_EXIT, _status_name(status))

    def on_enter(self, status: PaymentSessionStatus | str) -> Callable[[H], H]:
        return self._register(_ENTER, _status_name(status))

    def _register(self, kind: str, name: str | None) -> Callable[[H], H]:
        def decorate(hook: H) -> H:
            self._hooks.append((kind, name, hook))
            self._compiled.clear()
            return hook

        return decorate

    def _stage(self, stage: str, trigger: str, status: str | None) -> tuple[Hook, ...]:
        """The hooks of one stage of a move, in the order they run.

        ``stage`` _BEFORE: the before-hooks of ``trigger``, then the on_exit hooks of
        ``status``; _AFTER: the on_enter hooks of ``status``, then the after-hooks of
        ``trigger``. ``status`` is None for a move inside a status (no exit, no enter).
        Found on the first move of its kind since a hook was registered, then kept.
        """
        on_status = _EXIT if stage == _BEFORE else _ENTER
        by_trigger = [h for k, n, h in self._hooks if k == stage and n in (None, trigger)]
        # Registered statuses are names, never None: a move inside a status gets none.
        by_status = [h for k, n, h in self._hooks if k == on_status and n == status]
        found = tuple(by_trigger + by_status if stage == _BEFORE else by_status + by_trigger)
        self._compiled[(stage, trigger, status)] = found
        return found

    def run_before(self, event: TransitionEvent, status_move: bool) -> None:
        """Run the vetoing hooks; the first exception propagates."""
        # A status is a str: it is its own key, and equals the name it was registered by.
        key = (_BEFORE, event.trigger, event.source if status_move else None)
        hooks = self._compiled.get(key)
        for hook in self._stage(*key) if hooks is None else hooks:
            hook(event)

    def run_after(self, event: TransitionEvent, status_move: bool) -> list[BaseException]:
        """Run every post-move hook; return the exceptions instead of stopping at one."""
        failures: list[BaseException] = []
        key = (_AFTER, event.trigger, event.dest if status_move else None)
        hooks = self._compiled.get(key)
        for hook in self._stage(*key) if hooks is None else hooks:
            try:
                hook(event)
            except Exception as error:  # every after-hook must still run
                failures.append(error)
        return failures

    def __len__(self) -> int:
        return len(self._hooks)


def _trigger_name(trigger: str | None) -> str | None:
    if trigger is not None and trigger not in MOVES:
        raise DefinitionError("trigger", str(trigger), MOVES)
    return trigger


def _status_name(status: PaymentSessionStatus | str) -> str:
    try:
        return PaymentSessionStatus(status).value
    except ValueError:
        known = [member.value for member in PaymentSessionStatus]
        raise DefinitionError("status", str(status), known) from None


__all__ = ["Hooks", "TransitionEvent"]
