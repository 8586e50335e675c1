"""One root error and typed children that carry their facts.

Messages are built from the attributes and never include a session's ``data`` or
``cart``: both can hold provider secrets or personal data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, ClassVar

from paysession.status import PaymentSessionStatus


class PaySessionError(Exception):
    """The root of every error paysession raises on purpose."""


class _Facts(PaySessionError):
    """An error whose positional arguments are its facts, named by ``_facts``."""

    _facts: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *values: Any) -> None:
        # Facts not given take their class default: every fact is on the instance.
        values += tuple(getattr(type(self), name) for name in self._facts[len(values) :])
        for name, value in zip(self._facts, values, strict=True):
            setattr(self, name, value)
        super().__init__(*values)


class InvalidSessionData(PaySessionError, ValueError):
    """Input that cannot be a payment session or a move's argument; nothing happened.
    ``problems`` maps each bad field's path (``data.<key 2>[3]``) to what is wrong with it."""

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
    """A mistake in setting paysession up (a hook for a trigger or status the table lacks).

    ``kind`` is what was named (``trigger``, ``status``), ``name`` the name given and
    ``known`` the names that would have been accepted. Not a refusal at run time.
    """

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.known: tuple[str, ...] = tuple(known)
        super().__init__(kind, name, self.known)

    def __str__(self) -> str:
        known = ", ".join(self.known)
        return f"no {self.kind} {self.name!r} in the transition table; known: {known}"


class ReentrantMove(PaySessionError, RuntimeError):
    """A before-hook fired another move on its own machine; nothing changed."""

    def __str__(self) -> str:
        return "a move's before-hooks cannot fire another move on the same machine"


class IllegalTransition(PaySessionError):
    """A trigger the table does not allow from the current status (or does not know)."""

    def __init__(self, trigger: str, status: str, allowed: Iterable[str]) -> None:
        self.trigger = trigger
        self.status = status
        self.allowed: frozenset[str] = frozenset(allowed)
        super().__init__(trigger, status, self.allowed)

    def __str__(self) -> str:
        legal = ", ".join(sorted(self.allowed)) or "none: the status is final"
        return f"cannot {self.trigger!r} a session that is {self.status!r}; legal here: {legal}"


class GuardRejected(_Facts):
    """The table allows the trigger from this status, but one of its guards said no."""

    _facts = ("trigger", "guard", "why")
    trigger: str
    guard: str
    why: str = ""

    def __str__(self) -> str:
        suffix = f" ({self.why})" if self.why else ""
        return f"{self.trigger!r} refused by guard {self.guard!r}{suffix}"


class HookError(PaySessionError):
    """An after-hook (or on-enter hook) raised once the move was final; the move stands.
    ``session``: the new snapshot; ``record``: its audit record; ``errors``: every hook
    exception (all after-hooks run), ``error`` the first."""

    def __init__(self, errors: Iterable[BaseException], session: Any, record: Any) -> None:
        self.errors: tuple[BaseException, ...] = tuple(errors)
        self.error = self.errors[0]
        self.session = session
        self.record = record
        super().__init__(self.error)

    def __str__(self) -> str:
        kinds = ", ".join(type(e).__name__ for e in self.errors)
        move = f"{self.record.trigger!r} on {self.record.session_id} (seq {self.record.seq})"
        return f"{len(self.errors)} hook(s) failed after {move}: {kinds}; the move stands"


class IdempotencyConflict(_Facts):
    """An idempotency key already bound to a different trigger or different arguments."""

    _facts = ("key", "trigger", "attempted")
    key: str
    trigger: str
    attempted: str

    def __str__(self) -> str:
        other = "with other arguments" if self.trigger == self.attempted else None
        used = f"idempotency key {self.key!r} was used for {self.trigger!r}"
        return f"{used} {other}" if other else f"{used}, not {self.attempted!r}"


class ImmutableSession(_Facts, AttributeError):
    """A field of a session snapshot was assigned; sessions change only through moves."""

    _facts = ("field",)
    field: str

    def __str__(self) -> str:
        return f"PaymentSession is immutable: {self.field!r} changes only through a move"


class SessionNotFound(_Facts, LookupError):
    """No session with this id in the store."""

    _facts = ("session_id",)
    session_id: str

    def __str__(self) -> str:
        return f"no payment session {self.session_id!r}"


class ConcurrentUpdate(_Facts):
    """Another move of the session committed first; this one wrote nothing. ``expected``:
    the version it was planned from, ``actual`` the one found (each None when unknown).
    Reload and decide again (``PaymentSessions.fire_with_retry``)."""

    _facts = ("session_id", "expected", "actual")
    session_id: str
    expected: int | None
    actual: int | None = None

    def __str__(self) -> str:
        found = "" if self.actual is None else f", found {self.actual}"
        first = f"session {self.session_id} was changed by another move first"
        return f"{first} (expected version {self.expected}{found}); nothing was written"


class _CartConflict(ConcurrentUpdate):
    """A write refused by a rule of the cart (one selected, one authorized)."""

    def __init__(self, session_id: str, cart_id: str | None) -> None:
        self.cart_id = cart_id
        super().__init__(session_id, None)
        self.args = (session_id, cart_id)


class SelectionConflict(_CartConflict):
    """Another session of the cart is selected (at most one may be): a lost race."""

    def __str__(self) -> str:
        other = f"another session of cart {self.cart_id} is selected"
        return f"cannot select session {self.session_id}: {other}; nothing was written"


class DuplicateSession(_Facts):
    """A session with this id, or for this cart and provider, already exists. ``fields``
    names the rule that refused it: ``("id",)`` or ``("cart_id", "provider_id")``."""

    _facts = ("session_id", "cart_id", "provider_id", "fields")
    session_id: str
    cart_id: str | None
    provider_id: str
    fields: tuple[str, ...]

    def __str__(self) -> str:
        if self.fields == ("id",):
            return f"a payment session with id {self.session_id} already exists"
        provider = f"provider {self.provider_id!r}"
        return f"cart {self.cart_id} already has a payment session with {provider}"


class StoreError(_Facts):
    """The store failed for a reason no rule of ours explains (a driver error, the cause).
    ``operation``: what the store was doing. A write is in doubt only when the connection
    broke during its commit: retry with the same idempotency key."""

    _facts = ("operation", "detail")
    operation: str
    detail: str

    def __str__(self) -> str:
        return f"session store failed during {self.operation}: {self.detail}"


class AuthorizationConflict(_CartConflict):
    """Another session of the cart is authorized (at most one may be); nothing written.
    A lost race for reconciliation and completion, which look again and void the hold."""

    def __str__(self) -> str:
        other = f"another session of cart {self.cart_id} is authorized already"
        return f"cannot authorize session {self.session_id}: {other}; nothing was written"


class CartBusy(_Facts):
    """A completion (or a cancellation) of this cart is in flight at its provider. Until
    the claim is released, or lapses at ``expires_at`` (its holder crashed), the cart's
    choice of session cannot change and nothing else may claim it."""

    _facts = ("cart_id", "expires_at")
    cart_id: str
    expires_at: datetime

    def __str__(self) -> str:
        held = f"claim held until {self.expires_at.isoformat()}"
        return f"cart {self.cart_id} is busy: a provider call is in flight ({held})"


class CartConflict(_Facts):
    """The session cannot be its cart's authorized one (another is authorized, or the cart
    chose another): completing it would hold money the cart must give back, so its
    provider was not asked. ``reason`` says why, naming the other session."""

    _facts = ("session_id", "cart_id", "reason")
    session_id: str
    cart_id: str
    reason: str

    def __str__(self) -> str:
        return f"session {self.session_id} cannot be completed: {self.reason}; nothing was asked"


class ClaimNotHeld(_Facts):
    """A claim released (or used) with a token that does not hold the cart."""

    _facts = ("cart_id",)
    cart_id: str

    def __str__(self) -> str:
        return f"this token does not hold the claim on cart {self.cart_id} (released or taken over)"


class NoSelectedSession(_Facts, LookupError):
    """The cart has no selected payment session to complete with: a state of the cart,
    not bad input (a handler of InvalidSessionData does not catch it)."""

    _facts = ("cart_id",)
    cart_id: str

    def __str__(self) -> str:
        return f"cart {self.cart_id} has no selected payment session"


class CartNotFound(NoSelectedSession):
    """No payment session of the store belongs to this cart."""

    def __str__(self) -> str:
        return f"cart {self.cart_id} has no payment sessions"


class MigrationRefused(StoreError):
    """The database breaks a rule the new schema enforces; nothing was migrated.
    ``offenders`` names what breaks it (carts with two authorized sessions, say). No row
    is ever dropped to make a migration pass: settle those first."""

    def __init__(self, detail: str, offenders: Iterable[str]) -> None:
        self.offenders: tuple[str, ...] = tuple(offenders)
        super().__init__("migrate", detail)


class AuditError(PaySessionError, ValueError):
    """A trail that cannot be replayed, or replay input that does not match it.

    ``reason``: a key of ``REASONS``; ``session_id``, ``seq``: the record (None where
    unknown); ``position``: its index in the input (its line in a file, minus 1).
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
        where = "audit trail" + ("" if self.session_id is None else f" of {self.session_id!r}")
        where += "" if self.seq is None else f" at seq {self.seq}"
        where += "" if self.position is None else f" (input position {self.position})"
        return f"{where}: {self.reason}: {self.message}"


class SinkError(PaySessionError, OSError):
    """An audit sink could not keep a record, or found that its file lost records.

    ``operation``: ``write`` or ``fsync`` (the disk refused, or the sink is closed),
    ``truncated`` (someone cut the file), ``open`` (an anchored file whose last
    checkpoint does not verify), ``checkpoint`` or ``append`` (a sink of the
    caller's own failed; its exception is the cause). ``session_id`` and ``seq`` name the
    record: its move did not happen."""

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
        record = f"{self.session_id!r} seq {self.seq}"
        return f"audit sink {self.path} failed during {self.operation} of {record}: {self.detail}"


class DiagramError(PaySessionError):
    """A diagram could not be drawn: an unknown format, or a trail the table cannot draw."""


class MissingRenderer(_Facts, DiagramError, RuntimeError):
    """A format needs a tool that is not installed; ``install`` says how to get it."""

    _facts = ("fmt", "tool", "install")
    fmt: str
    tool: str
    install: str

    def __str__(self) -> str:
        return f"{self.fmt} diagrams need {self.tool}, which is missing; install it: {self.install}"


class MissingExtra(_Facts, ImportError):
    """A part of paysession needs packages that its optional extra installs."""

    _facts = ("part", "extra")
    part: str
    extra: str

    def __str__(self) -> str:
        return f"{self.part} needs the {self.extra} extra: pip install 'paysession[{self.extra}]'"


class WebhookRejected(_Facts, ValueError):
    """A provider's notification that cannot be trusted or read: a missing or wrong
    signature, a timestamp outside the tolerance, or a body that is not the provider's
    event. Nothing is recorded. ``provider_id`` names the provider, ``why`` the reason
    (never the secret, the signature or the body)."""

    _facts = ("provider_id", "why")
    provider_id: str
    why: str

    def __str__(self) -> str:
        return f"{self.provider_id} notification rejected: {self.why}"


class UnknownProviderStatus(_Facts, LookupError):
    """A provider, or a provider's status name, that no status map knows."""

    _facts = ("provider_id", "provider_status")
    provider_id: str
    provider_status: str | None

    def __str__(self) -> str:
        if self.provider_status is None:
            return f"no status map is registered for provider {self.provider_id!r}"
        return f"provider {self.provider_id!r} status {self.provider_status[:60]!r} is not mapped"


class ReconciliationAnomaly(PaySessionError):
    """A provider report recorded as an anomaly (``kind``), never applied: ``status`` is
    the session's, ``mapped`` what the map made of ``provider_status``, ``guard`` the guard
    that refused the path (or None), ``voided`` whether the hold was voided."""

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
            "it says it was observed further ahead of now than clock skew explains"
            if self.kind == "future_report"
            else "the provider authorized another amount (or currency) than the session's"
            if self.kind == "amount_mismatch"
            else "no legal path leads there"
            if self.guard is None
            else f"guard {self.guard!r} refuses the path"
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
    ``conflict`` says why, naming the other session. ``voided``: the hold was voided and
    the session canceled; otherwise the money is still held (``expire_sessions`` voids it)."""

    def __init__(self, *args: Any, conflict: str, **kwargs: Any) -> None:
        super().__init__(*args, kind="double_authorization", **kwargs)
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


class CompletionTimeout(_Facts, ProviderTimeout):
    """The provider did not answer in time; completing again resumes under the same key."""

    _facts = ("session_id", "idempotency_key")
    session_id: str
    idempotency_key: str

    def __str__(self) -> str:
        late = f"the provider did not answer in time for session {self.session_id}"
        return f"{late}; complete the cart again to resume (the same idempotency key is used)"


REFUSALS = (IllegalTransition, GuardRejected, ConcurrentUpdate, IdempotencyConflict)
"""The answers that refuse a move (logged at INFO, counted as refused), not failures."""


__all__ = [
    "REFUSALS",
    "AuditError",
    "AuthorizationConflict",
    "CartBusy",
    "CartConflict",
    "CartNotFound",
    "ClaimNotHeld",
    "CompletionTimeout",
    "ConcurrentUpdate",
    "DefinitionError",
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
    "MissingExtra",
    "MissingRenderer",
    "NoSelectedSession",
    "PaySessionError",
    "ProviderTimeout",
    "ReconciliationAnomaly",
    "ReentrantMove",
    "SelectionConflict",
    "SessionNotFound",
    "SinkError",
    "StoreError",
    "UnknownProviderStatus",
    "WebhookRejected",
]
