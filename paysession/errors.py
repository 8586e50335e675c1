"""One root error and typed children that carry their facts.

Messages are built from the attributes and never include a session's ``data`` or
``cart``: both can hold provider secrets or personal data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from paysession.record import TransitionRecord
    from paysession.session import PaymentSession


class PaySessionError(Exception):
    """The root of every error paysession raises on purpose."""


class InvalidSessionData(PaySessionError, ValueError):
    """Input that cannot be a payment session (or a move's argument).

    ``problems`` maps each bad field, by path (``amount``, ``data.items[3]``), to what is
    wrong with it; ``fields`` is the paths alone, in order.
    """

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems: dict[str, str] = dict(problems)
        super().__init__(self.problems)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.problems)

    def __str__(self) -> str:
        details = "; ".join(f"{path}: {why}" for path, why in self.problems.items())
        return f"invalid payment session data: {details}"


class IllegalTransition(PaySessionError):
    """A trigger the transition table does not allow from the current status.

    Also raised for a trigger name the table does not know at all.
    """

    def __init__(self, trigger: str, status: str, allowed: Iterable[str]) -> None:
        self.trigger = trigger
        self.status = status
        self.allowed: frozenset[str] = frozenset(allowed)
        super().__init__(trigger, status, self.allowed)

    def __str__(self) -> str:
        legal = ", ".join(sorted(self.allowed)) or "none: the status is final"
        return f"cannot {self.trigger!r} a session that is {self.status!r}; legal here: {legal}"


class GuardRejected(PaySessionError):
    """The table allows the trigger from this status, but one of its guards said no."""

    def __init__(self, trigger: str, guard: str, why: str = "") -> None:
        self.trigger = trigger
        self.guard = guard
        self.why = why
        super().__init__(trigger, guard)

    def __str__(self) -> str:
        suffix = f" ({self.why})" if self.why else ""
        return f"{self.trigger!r} refused by guard {self.guard!r}{suffix}"


class HookError(PaySessionError):
    """An after-hook (or on-enter hook) raised once the move was final.

    The move stands: ``session`` is the new snapshot and ``record`` its audit record.
    ``error`` is the first hook exception, ``errors`` all of them (every after-hook still
    runs when one fails).
    """

    def __init__(
        self,
        errors: Iterable[BaseException],
        session: PaymentSession,
        record: TransitionRecord,
    ) -> None:
        self.errors: tuple[BaseException, ...] = tuple(errors)
        self.error = self.errors[0]
        self.session = session
        self.record = record
        super().__init__(self.error)

    def __str__(self) -> str:
        kinds = ", ".join(type(e).__name__ for e in self.errors)
        return (
            f"{len(self.errors)} hook(s) failed after {self.record.trigger!r} on "
            f"{self.record.session_id} (seq {self.record.seq}): {kinds}; the move stands"
        )


class IdempotencyConflict(PaySessionError):
    """An idempotency key already bound to a different trigger or different arguments."""

    def __init__(self, key: str, trigger: str, attempted: str) -> None:
        self.key = key
        self.trigger = trigger
        self.attempted = attempted
        super().__init__(key, trigger, attempted)

    def __str__(self) -> str:
        if self.trigger == self.attempted:
            return (
                f"idempotency key {self.key!r} was used for {self.trigger!r} with other arguments"
            )
        return f"idempotency key {self.key!r} was used for {self.trigger!r}, not {self.attempted!r}"


class ImmutableSession(PaySessionError, AttributeError):
    """A field of a session snapshot was assigned; sessions change only through moves."""

    def __init__(self, field: str) -> None:
        self.field = field
        super().__init__(field)

    def __str__(self) -> str:
        return (
            f"PaymentSession is immutable: {self.field!r} changes only through a move "
            "(SessionMachine or PaymentSessions.fire)"
        )


__all__ = [
    "GuardRejected",
    "HookError",
    "IdempotencyConflict",
    "IllegalTransition",
    "ImmutableSession",
    "InvalidSessionData",
    "PaySessionError",
]
