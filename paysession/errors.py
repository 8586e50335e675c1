"""One root error and typed children that carry their facts.

Messages are built from the attributes and never include a session's ``data`` or
``cart``: both can hold provider secrets or personal data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from paysession.status import PaymentSessionStatus


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


class DefinitionError(PaySessionError, ValueError):
    """A mistake in setting paysession up, not a refusal at run time.

    A hook registered for a trigger or a status the table does not have, say. ``kind``
    is what was named (``trigger``, ``status``) and ``name`` the name given; ``known``
    the names that would have been accepted.
    """

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.known: tuple[str, ...] = tuple(known)
        super().__init__(kind, name, self.known)

    def __str__(self) -> str:
        return f"no {self.kind} {self.name!r} in the transition table; known: " + ", ".join(
            self.known
        )


class ReentrantMove(PaySessionError, RuntimeError):
    """A before-hook fired another move on the machine whose move it is part of.

    Nothing changed: the outer move is refused too. After-hooks may fire moves.
    """

    def __str__(self) -> str:
        return "a move's before-hooks cannot fire another move on the same machine"


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
        session: Any,
        record: Any,
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


class AuditError(PaySessionError, ValueError):
    """A trail that cannot be replayed, or replay input that does not match it.

    ``reason`` is a short kind (a key of :data:`REASONS`), ``message`` says what is wrong;
    ``session_id`` and ``seq`` name the record (None where unknown); ``position`` is the
    record's index in the input (``position + 1`` is its line in a JSON Lines file).
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        session_id: str | None = None,
        seq: int | None = None,
        position: int | None = None,
    ) -> None:
        self.reason = reason
        self.message = message
        self.session_id = session_id
        self.seq = seq
        self.position = position
        super().__init__(reason, message, session_id, seq, position)

    def __str__(self) -> str:
        where = "audit trail"
        if self.session_id is not None:
            where += f" of {self.session_id!r}"
        if self.seq is not None:
            where += f" at seq {self.seq}"
        if self.position is not None:
            where += f" (input position {self.position})"
        return f"{where}: {self.reason}: {self.message}"


class SinkError(PaySessionError, OSError):
    """An audit sink could not keep a record, or found that its file lost records.

    ``operation`` is ``write`` or ``fsync`` (the disk refused: full, read-only, I/O
    error; the OSError is the ``__cause__`` and its ``errno`` is this error's) or
    ``truncated`` (the file is shorter than what the sink wrote to it: someone cut it).
    ``session_id`` and ``seq`` name the record being appended. After a ``write`` or
    ``truncated`` error the record is not in the file as a whole line; ``verify`` of the
    file reports the gap it leaves.
    """

    def __init__(
        self,
        operation: str,
        detail: str,
        *,
        path: str,
        session_id: str,
        seq: int,
        errno: int | None = None,
    ) -> None:
        super().__init__(errno, detail)
        self.operation = operation
        self.detail = detail
        self.path = path
        self.session_id = session_id
        self.seq = seq

    def __str__(self) -> str:
        return (
            f"audit sink {self.path} failed during {self.operation} of "
            f"{self.session_id!r} seq {self.seq}: {self.detail}"
        )


class DiagramError(PaySessionError):
    """A diagram could not be drawn: an unknown format, or a trail the table cannot draw."""


class MissingRenderer(DiagramError, RuntimeError):
    """A format needs a tool that is not installed; ``install`` says how to get it."""

    def __init__(self, fmt: str, tool: str, install: str) -> None:
        self.fmt = fmt
        self.tool = tool
        self.install = install
        super().__init__(fmt, tool, install)

    def __str__(self) -> str:
        return f"{self.fmt} diagrams need {self.tool}, which is missing; install it: {self.install}"


class UnknownProviderStatus(PaySessionError, LookupError):
    """A provider, or a provider's status name, that no status map knows."""

    def __init__(self, provider_id: str, provider_status: str | None) -> None:
        self.provider_id = provider_id
        self.provider_status = provider_status
        super().__init__(provider_id, provider_status)

    def __str__(self) -> str:
        if self.provider_status is None:
            return f"no status map is registered for provider {self.provider_id!r}"
        shown = repr(self.provider_status[:60])
        return f"provider {self.provider_id!r} status {shown} is not in its status map"


class ReconciliationAnomaly(PaySessionError):
    """A provider reported a status the session cannot legally reach; nothing was applied.

    ``status`` is the session's status, ``provider_status`` what the provider reported
    and ``mapped`` what its status map made of it. ``guard`` names the guard that refused
    the path when the table has one (an authorization reported for a session that was
    never initiated, or has no amount); None when no legal path exists at all (anything
    after canceled, authorized back to pending). The report is recorded in the store with
    the outcome ``anomaly`` (see ``PaymentSessions.anomalies``).
    """

    def __init__(
        self,
        session_id: str,
        status: PaymentSessionStatus,
        provider_id: str,
        provider_status: str,
        mapped: PaymentSessionStatus,
        *,
        event_id: str | None = None,
        guard: str | None = None,
        kind: object = None,
        voided: bool = False,
    ) -> None:
        self.session_id = session_id
        self.status = status
        self.provider_id = provider_id
        self.provider_status = provider_status
        self.mapped = mapped
        self.event_id = event_id
        self.guard = guard
        self.kind = None if kind is None else str(kind)
        self.voided = voided
        super().__init__(session_id, status, provider_id, provider_status, mapped)

    def __str__(self) -> str:
        why = (
            f"guard {self.guard!r} refuses the path"
            if self.guard is not None
            else "no legal path leads there"
        )
        event = "" if self.event_id is None else f" (event {self.event_id[:80]!r})"
        voided = "; the hold was voided at the provider" if self.voided else ""
        return (
            f"provider {self.provider_id!r} reported {self.provider_status[:60]!r}{event}, "
            f"that is {self.mapped.value!r}, for session {self.session_id} which is "
            f"{self.status.value!r}: {why}; recorded as an anomaly, not applied{voided}"
        )


class DoubleAuthorization(ReconciliationAnomaly):
    """The provider authorized a session that cannot be its cart's authorized one.

    ``conflict`` says why (another session of the cart is authorized, or the cart
    switched away from this one), naming the other session. The report is recorded as
    an anomaly of kind ``double_authorization``. ``voided`` is True when the hold was
    voided at the provider and the session canceled (reconciliation was given the
    provider); otherwise the money is still held: void it (``cancel_payment``, or
    ``expire_sessions`` once the session is stale).
    """

    def __init__(
        self,
        session_id: str,
        status: PaymentSessionStatus,
        provider_id: str,
        provider_status: str,
        mapped: PaymentSessionStatus,
        *,
        event_id: str | None = None,
        conflict: str,
        voided: bool,
    ) -> None:
        super().__init__(
            session_id,
            status,
            provider_id,
            provider_status,
            mapped,
            event_id=event_id,
            kind="double_authorization",
            voided=voided,
        )
        self.conflict = conflict

    def __str__(self) -> str:
        event = "" if self.event_id is None else f" (event {self.event_id[:80]!r})"
        then = (
            "the hold was voided at the provider and the session canceled"
            if self.voided
            else "the money is still held: void it at the provider"
        )
        return (
            f"double authorization: provider {self.provider_id!r} authorized session "
            f"{self.session_id}{event}, but {self.conflict}; recorded as an anomaly, {then}"
        )


class ProviderTimeout(PaySessionError, TimeoutError):
    """The provider did not answer in time; the request may or may not have happened."""


class CompletionTimeout(ProviderTimeout):
    """The provider did not answer in time; completing the cart again resumes safely.

    ``idempotency_key`` is the key the provider was asked with; the retry asks with the
    same one, so a request that did reach the provider is not made twice.
    """

    def __init__(self, session_id: str, idempotency_key: str) -> None:
        self.session_id = session_id
        self.idempotency_key = idempotency_key
        super().__init__(session_id, idempotency_key)

    def __str__(self) -> str:
        return (
            f"the provider did not answer in time for session {self.session_id}; "
            "complete the cart again to resume (the same idempotency key is used)"
        )


class DemoError(PaySessionError):
    """The demo cannot run as asked (the database path is not a demo database)."""


__all__ = [
    "AuditError",
    "AuthorizationConflict",
    "CartBusy",
    "CartNotFound",
    "ClaimNotHeld",
    "CompletionTimeout",
    "ConcurrentUpdate",
    "DemoError",
    "DiagramError",
    "DoubleAuthorization",
    "DuplicateSession",
    "GuardRejected",
    "HookError",
    "IdempotencyConflict",
    "IllegalTransition",
    "ImmutableSession",
    "InvalidSessionData",
    "MigrationRefused",
    "MissingRenderer",
    "NoSelectedSession",
    "PaySessionError",
    "ProviderTimeout",
    "ReconciliationAnomaly",
    "SelectionConflict",
    "SessionNotFound",
    "SinkError",
    "StoreError",
    "UnknownProviderStatus",
]
