"""One root error and typed children that carry their facts.

Messages are built from the attributes and never include a session's ``data`` or
``cart``: both can hold provider secrets or personal data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
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


class SessionNotFound(PaySessionError, LookupError):
    """No session with this id in the store."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(session_id)

    def __str__(self) -> str:
        return f"no payment session {self.session_id!r}"


class ConcurrentUpdate(PaySessionError):
    """Another move of the session committed first; this one wrote nothing.

    ``expected`` is the version the move was planned from (None when unknown) and
    ``actual`` the version found in the store (None when the store could not tell).
    Reload and decide again, or let ``PaymentSessions.fire_with_retry`` do it.
    """

    def __init__(self, session_id: str, expected: int | None, actual: int | None = None) -> None:
        self.session_id = session_id
        self.expected = expected
        self.actual = actual
        super().__init__(session_id, expected, actual)

    def __str__(self) -> str:
        found = "" if self.actual is None else f", found {self.actual}"
        return (
            f"session {self.session_id} was changed by another move first "
            f"(expected version {self.expected}{found}); nothing was written"
        )


class _CartConflict(ConcurrentUpdate):
    """A write refused by a rule of the cart (one selected, one authorized)."""

    def __init__(self, session_id: str, cart_id: str | None) -> None:
        self.cart_id = cart_id
        super().__init__(session_id, None)
        self.args = (session_id, cart_id)


class SelectionConflict(_CartConflict):
    """Another session of the same cart is selected: at most one may be.

    A lost race when it comes out of ``PaymentSessions.select`` (which deselects the
    cart's other sessions in the same transaction), hence a :class:`ConcurrentUpdate`.
    """

    def __str__(self) -> str:
        return (
            f"cannot select session {self.session_id}: another session of cart "
            f"{self.cart_id} is selected; nothing was written"
        )


class DuplicateSession(PaySessionError):
    """A session with this id, or for this cart and provider, already exists.

    ``fields`` names the rule that refused it: ``("id",)`` or ``("cart_id", "provider_id")``.
    """

    def __init__(
        self,
        session_id: str,
        cart_id: str | None,
        provider_id: str,
        fields: tuple[str, ...],
    ) -> None:
        self.session_id = session_id
        self.cart_id = cart_id
        self.provider_id = provider_id
        self.fields = fields
        super().__init__(session_id, cart_id, provider_id, fields)

    def __str__(self) -> str:
        if self.fields == ("id",):
            return f"a payment session with id {self.session_id} already exists"
        return (
            f"cart {self.cart_id} already has a payment session with provider {self.provider_id!r}"
        )


class StoreError(PaySessionError):
    """The store failed for a reason that no rule of ours explains (a driver error).

    ``operation`` says what the store was doing; the driver's exception is the
    ``__cause__``. Whether a failed write was applied is unknown only when the
    connection broke during the commit: retry with the same idempotency key.
    """

    def __init__(self, operation: str, detail: str) -> None:
        self.operation = operation
        self.detail = detail
        super().__init__(operation, detail)

    def __str__(self) -> str:
        return f"session store failed during {self.operation}: {self.detail}"


class AuthorizationConflict(_CartConflict):
    """Another session of the same cart is authorized: at most one may be.

    The database refuses the second authorization; nothing was written. A lost race
    when it comes out of reconciliation or cart completion (which then look again, and
    void the extra hold), hence a :class:`ConcurrentUpdate`. ``cart_id`` names the cart.
    """

    def __str__(self) -> str:
        return (
            f"cannot authorize session {self.session_id}: another session of cart "
            f"{self.cart_id} is authorized already; nothing was written"
        )


class CartBusy(PaySessionError):
    """A completion (or a cancellation) of this cart is in flight at its provider.

    While a live claim holds the cart, its sessions cannot be selected or deselected,
    and it cannot be completed or have its payment canceled. ``expires_at`` is when the
    claim lapses if its holder never comes back (a crashed process): after that,
    the next completion takes it over.
    """

    def __init__(self, cart_id: str, expires_at: datetime) -> None:
        self.cart_id = cart_id
        self.expires_at = expires_at
        super().__init__(cart_id, expires_at)

    def __str__(self) -> str:
        return (
            f"cart {self.cart_id} is busy: a provider call for it is in flight "
            f"(claim held until {self.expires_at.isoformat()}); nothing was written"
        )


class ClaimNotHeld(PaySessionError):
    """A claim released (or used) with a token that does not hold the cart."""

    def __init__(self, cart_id: str) -> None:
        self.cart_id = cart_id
        super().__init__(cart_id)

    def __str__(self) -> str:
        return (
            f"this token does not hold the claim on cart {self.cart_id} "
            "(it was released, or taken over after it expired)"
        )


class NoSelectedSession(InvalidSessionData, LookupError):
    """The cart has no selected payment session to complete with."""

    def __init__(self, cart_id: str, why: str | None = None) -> None:
        self.cart_id = cart_id
        super().__init__({"cart_id": why or f"cart {cart_id} has no selected payment session"})


class CartNotFound(NoSelectedSession):
    """No payment session of the store belongs to this cart."""

    def __init__(self, cart_id: str) -> None:
        super().__init__(cart_id, f"cart {cart_id} has no payment sessions")


class MigrationRefused(StoreError):
    """The database breaks a rule the new schema enforces; nothing was migrated.

    ``offenders`` names what breaks it (for the one-authorization-per-cart rule, the
    carts with more than one authorized session). No row is ever dropped to make a
    migration pass: settle those first (cancel the extra sessions, voiding their holds).
    """

    def __init__(self, detail: str, offenders: Iterable[str]) -> None:
        self.offenders: tuple[str, ...] = tuple(offenders)
        super().__init__("migrate", detail)


__all__ += [
    "AuthorizationConflict",
    "CartBusy",
    "CartNotFound",
    "ClaimNotHeld",
    "ConcurrentUpdate",
    "DuplicateSession",
    "MigrationRefused",
    "NoSelectedSession",
    "SelectionConflict",
    "SessionNotFound",
    "StoreError",
]
