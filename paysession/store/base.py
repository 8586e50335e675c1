"""The store seam: the SessionStore protocol and the values that cross it.

A store keeps three things and the rules that bind them:

- one row per session, with its ``version`` (the seq of its last record) and ``head``
  (that record's hash, which the next record chains to);
- the trail, one record per move, under the primary key (session_id, seq), each
  reachable through the feed (:meth:`SessionStore.records_since`) by a cursor;
- the idempotency keys, one per (session_id, key), each naming the record it produced;
- the provider events, one per (session_id, event_id): every provider report that
  reconciliation handled, with its outcome, written in the same transaction as the
  moves it caused;
- the claims, at most one per cart: which caller holds the cart while a provider call
  for one of its sessions is in flight, and until when (see :class:`Claim`).

The rules the database holds (and :class:`~paysession.store.MemoryStore` emulates): a
write is a compare-and-set on the version; (session_id, seq) and (session_id, key)
are unique; at most one selected session per cart; at most one authorized session per
cart; one session per (cart, provider); no select or deselect while another caller's
claim on the cart is live.
Stores know nothing of the transition table: the service plans every move, a store
makes it durable or refuses it whole. How the rules hold under concurrency, and the
feed: ``docs/concurrency.md``; claims: ``docs/one-charge.md``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

import attrs

from paysession.errors import InvalidSessionData
from paysession.record import TransitionRecord
from paysession.session import PaymentSession
from paysession.status import PaymentSessionStatus
from paysession.store._feed import Wakeup


@attrs.frozen(slots=True)
class Binding:
    """An idempotency key bound to a session: what it binds and the record it produced."""

    session_id: str
    key: str
    fingerprint: str
    seq: int


@attrs.frozen(slots=True)
class Snapshot:
    """A session as stored, with what the next move needs to chain onto it.

    ``binding`` is set only when the load asked about an idempotency key that is bound.
    """

    session: PaymentSession
    version: int
    head: str
    binding: Binding | None = None


@attrs.frozen(slots=True)
class Unreadable:
    """A stored session that paysession never wrote: its row, or one of its records,
    cannot be decoded (edited by hand, say). ``seq`` names the record; None, the row.
    An audit names it as a problem of that session and goes on to the next."""

    session_id: str
    seq: int | None
    why: str


StoredTrail = tuple[Snapshot, list[TransitionRecord]] | Unreadable
"""What :meth:`SessionStore.trails` gives for each session: its row and its records,
or what makes them unreadable."""


@attrs.frozen(slots=True)
class Write:
    """One session's part of a commit: its new row and the records that lead to it.

    The store writes it only if the session is still at ``expected_version``; the new
    version is the seq of the last record.
    """

    session: PaymentSession
    expected_version: int
    records: tuple[TransitionRecord, ...]

    @property
    def version(self) -> int:
        return self.records[-1].seq

    @property
    def head(self) -> str:
        return self.records[-1].hash


@attrs.frozen(slots=True)
class LoggedRecord:
    """A record as the feed delivers it, with the cursor that reads on after it.

    ``cursor`` is what to pass back to ``records_since`` or ``follow`` (and what a
    consumer saves): an opaque token, to be kept as given. ``position`` is the record's
    number in the store: on SQLite and in memory, its place in commit order (1, 2, 3,
    ... without a gap), which is also its cursor; on PostgreSQL a unique number that
    grows along each session's trail but says nothing of commit order across sessions.
    """

    position: int
    record: TransitionRecord
    cursor: str


class AnomalyKind(str, enum.Enum):
    """Why reconciliation recorded a provider report as an anomaly."""

    NO_LEGAL_PATH = "no_legal_path"
    """No legal path leads from the session's status to the reported one."""
    GUARD_REFUSED = "guard_refused"
    """A legal path exists, but a guard refuses it."""
    DOUBLE_AUTHORIZATION = "double_authorization"
    """Authorized at the provider, but the session cannot be its cart's authorized one:
    another session of the cart is authorized, or the cart switched away from it."""
    FUTURE_REPORT = "future_report"
    """The report says it was observed further ahead of its recording than any clock
    skew explains: applied, it would make every later report look stale."""
    AMOUNT_MISMATCH = "amount_mismatch"
    """Authorized at the provider for another amount (or currency) than the session's:
    never the session's authorization; the hold is voided when the provider is at hand."""

    def __str__(self) -> str:
        return self.value


class EventOutcome(str, enum.Enum):
    """What reconciliation did with a provider's report."""

    APPLIED = "applied"
    """The session moved along the shortest legal path to the reported status."""
    NOOP = "noop"
    """The session was in the reported status already."""
    STALE = "stale"
    """Observed before a report already applied (or found a no-op): ignored."""
    DUPLICATE = "duplicate"
    """An event id seen before: ignored. The store counts it on the first delivery's row."""
    ANOMALY = "anomaly"
    """No legal path reaches the reported status (or a guard refused it): not applied."""

    def __str__(self) -> str:
        return self.value


@attrs.frozen(slots=True)
class ProviderEvent:
    """One provider report as reconciliation handled it: a row of the provider-events table.

    ``status`` is what the provider's status map made of ``provider_status``;
    ``session_status`` the session's status when the report was handled (before any
    move); ``version`` the session's version after it (for an applied report, the seq
    of the last record it caused). ``guard`` names the guard that refused the path of an
    anomaly, when a guard did, and ``kind`` says why an anomaly is one (None for other
    outcomes, and for anomalies recorded before kinds were kept). ``duplicates`` counts
    later deliveries of the same event id, each ignored. A report without an event id is
    kept under a generated id that starts with ``unidentified:``.
    """

    session_id: str
    event_id: str
    provider_status: str
    status: PaymentSessionStatus
    session_status: PaymentSessionStatus
    outcome: EventOutcome
    observed_at: datetime | None
    recorded_at: datetime
    version: int
    guard: str | None = None
    duplicates: int = 0
    kind: AnomalyKind | None = None

    @property
    def advances(self) -> bool:
        """Whether this report moves the session's watermark (the newest applied report)."""
        return self.observed_at is not None and self.outcome in _ACCEPTED


_ACCEPTED = frozenset({EventOutcome.APPLIED, EventOutcome.NOOP})


class CallAction(str, enum.Enum):
    """What paysession asked of a provider, among the requests that hold or release money."""

    AUTHORIZE = "authorize"
    """Authorize the session's payment (cart completion)."""
    CANCEL = "cancel"
    """Cancel the session's payment (``cancel_payment``, expiry)."""
    VOID = "void"
    """Void a hold the session cannot keep (a double or late authorization, an amount
    mismatch)."""

    def __str__(self) -> str:
        return self.value


@attrs.frozen(slots=True)
class ProviderCall:
    """One request that holds or releases money, as asked of a provider and answered.

    Kept once per (session_id, action, idempotency_key): a retried request under the
    same key is the same request. ``provider_status`` is the answer in the provider's
    words and ``status`` what it reads as; ``amount`` and ``currency`` what the provider
    said it holds, when it said. Nothing of the provider's data (client secrets) is
    kept. An answer that reads as authorized is a hold asked; one that reads as
    canceled, a hold released.
    """

    session_id: str
    action: CallAction
    idempotency_key: str
    provider_status: str
    status: PaymentSessionStatus
    asked_at: datetime
    answered_at: datetime
    amount: int | None = None
    currency: str | None = None

    @property
    def holds(self) -> bool:
        """Whether the provider answered that it holds the money."""
        return self.status is PaymentSessionStatus.AUTHORIZED

    @property
    def releases(self) -> bool:
        """Whether the provider answered that the payment is canceled (its hold gone)."""
        return self.status is PaymentSessionStatus.CANCELED


class ClaimAction(str, enum.Enum):
    """What the holder of a claim is asking the cart's provider to do."""

    AUTHORIZE = "authorize"
    CANCEL = "cancel"

    def __str__(self) -> str:
        return self.value


@attrs.frozen(slots=True)
class Claim:
    """A cart held by one caller while it asks a provider about one of its sessions.

    ``token`` identifies the holder (random, never shown to another caller);
    ``session_id`` is the session the provider is asked about and ``action`` what it is
    asked to do; the claim is live until ``expires_at``. A holder that crashes leaves
    its claim behind: once expired, the next caller takes it over and first finishes
    what it started, with the same idempotency key.
    """

    cart_id: str
    token: str = attrs.field(repr=False)
    session_id: str
    action: ClaimAction
    expires_at: datetime

    def live(self, now: datetime) -> bool:
        """Whether the claim still holds the cart at ``now``."""
        return self.expires_at > now


@attrs.frozen(slots=True)
class Claimed:
    """What taking a claim found, read in the same transaction that took it.

    ``claim`` is the claim now held, and ``session`` the session it is about; both are
    None when the cart had no such session (nothing was written then). ``previous`` is
    an expired claim that was taken over: its holder never finished.
    """

    claim: Claim | None
    session: Snapshot | None
    previous: Claim | None = None


@attrs.frozen(slots=True)
class CartCheck:
    """Asks a commit to refuse (CartBusy) when a claim on ``cart_id`` is live at ``now``."""

    cart_id: str
    now: datetime


class SessionStore(Protocol):
    """A protocol: where sessions, their trails and their idempotency keys are kept.

    Every write is one transaction, applied whole or not at all. Implementations
    translate their driver's errors into paysession errors: ConcurrentUpdate (a version
    that moved, a seq or a key taken first), SelectionConflict, DuplicateSession,
    SessionNotFound, and StoreError for the rest. They create and migrate their schema
    on first use.
    """

    def migrate(self) -> int:
        """Create or upgrade the schema; return the schema version now in force."""
        ...

    def create(self, session: PaymentSession, record: TransitionRecord) -> None:
        """Insert a new session at version 0 with its record 0; DuplicateSession if taken."""
        ...

    def load(self, session_id: str, idempotency_key: str | None = None) -> Snapshot | None:
        """The session as committed, or None; with ``idempotency_key``, its binding too."""
        ...

    def load_selected(self, cart_id: str) -> list[Snapshot]:
        """The selected sessions of ``cart_id`` (at most one while the rules hold)."""
        ...

    def commit(
        self,
        writes: Sequence[Write],
        binding: Binding | None = None,
        *,
        cart_check: CartCheck | None = None,
        release: Claim | None = None,
    ) -> None:
        """Apply ``writes`` (in order) and bind ``binding`` in one transaction, or nothing.

        Raises ConcurrentUpdate when a session is no longer at its expected version,
        when one of the records' (session_id, seq) is taken, or when the key is bound
        already; SessionNotFound for a session that does not exist; SelectionConflict
        when the writes would leave two sessions of a cart selected;
        AuthorizationConflict when they would leave two authorized; CartBusy when
        ``cart_check`` is given and a claim on its cart is live. ``release`` is a claim
        to drop in the same transaction (if its token still holds it).
        """
        ...

    def claim(self, claim: Claim, now: datetime, *, selected: bool) -> Claimed:
        """Take ``claim`` on its cart and read its session, in one transaction.

        With ``selected``, the session is the cart's selected one (``claim.session_id``
        is replaced by its id); otherwise it is ``claim.session_id``, which must belong
        to the cart. Raises CartBusy, writing nothing, when another token's claim is live
        at ``now``; an expired claim is replaced and returned as ``previous``.
        """
        ...

    def release(self, claim: Claim) -> bool:
        """Drop ``claim`` if its token still holds its cart; whether it did."""
        ...

    def claim_of(self, cart_id: str) -> Claim | None:
        """The claim on ``cart_id``, live or expired, or None."""
        ...

    def stale(self, before: datetime, limit: int) -> list[PaymentSession]:
        """Up to ``limit`` sessions in pending, requires_more or error whose
        ``updated_at`` is before ``before``, least recently moved first."""
        ...

    def record(self, session_id: str, seq: int) -> TransitionRecord | None:
        """One record of a trail, or None."""
        ...

    def history(self, session_id: str) -> list[TransitionRecord]:
        """A session's trail, oldest first; empty for an unknown session."""
        ...

    def trails(
        self, *, after: str | None = None, only: str | None = None, limit: int = 500
    ) -> list[StoredTrail]:
        """Sessions as the database holds them, each with its trail, for an audit.

        Up to ``limit`` sessions with ids after ``after`` (all, from the first, with
        None), in id order; with ``only``, that session alone (or nothing). The rows are
        read as stored, never from a cache, so that a row edited behind the store's back
        is seen, and rows and records are read in one consistent snapshot: a record past
        its row's version is not a move committing meanwhile but damage (a forged
        record, or a row rolled back). A session whose row or a record cannot be decoded
        comes as :class:`Unreadable`, in its place.
        """
        ...

    def find(
        self,
        *,
        cart_id: str | None = None,
        status: PaymentSessionStatus | None = None,
        provider_id: str | None = None,
        provider_ref: str | None = None,
    ) -> list[PaymentSession]:
        """Sessions matching every filter given, oldest first.

        ``provider_ref`` is the provider's own id of the payment, read from the session's
        ``data`` by its provider's ``reference`` rule (see
        :func:`paysession.provider_api.provider_ref`); SQL stores find it by index.
        """
        ...

    def records_since(self, cursor: str | None, limit: int) -> list[LoggedRecord]:
        """Up to ``limit`` records after ``cursor`` (from the first, with None).

        The feed's promise: a reader passing each page's last cursor back in sees every
        committed record exactly once, each session's records in seq order, and never a
        record that commits later appearing behind a cursor it has passed. Raises
        InvalidSessionData for a cursor this store did not give out.
        """
        ...

    def wakeups(self) -> AbstractContextManager[Wakeup]:
        """What a follower waits on between reads: announced commits, or a plain sleep."""
        ...

    def provider_event(self, session_id: str, event_id: str) -> ProviderEvent | None:
        """The event recorded under (session_id, event_id), or None."""
        ...

    def record_event(
        self,
        event: ProviderEvent,
        write: Write | None = None,
        *,
        expected_version: int | None = None,
        release: Claim | None = None,
        calls: Sequence[ProviderCall] = (),
    ) -> None:
        """Insert ``event`` and apply ``write`` (the moves it caused) in one transaction.

        ``release`` is a claim to drop in the same transaction, as for :meth:`commit`;
        ``calls`` the provider calls that led to the event, kept with it (each once).

        Raises ConcurrentUpdate, writing nothing, when the session is no longer at
        ``write.expected_version`` (or at ``expected_version`` when there is no write),
        when the event id is taken, or when the event is applied or a no-op with an
        ``observed_at`` and an applied or no-op event observed later was recorded first;
        SessionNotFound for a session that does not exist.
        """
        ...

    def record_calls(self, calls: Sequence[ProviderCall]) -> None:
        """Keep provider calls that caused no event (each once), in one transaction."""
        ...

    def provider_calls(self, session_id: str) -> list[ProviderCall]:
        """The provider calls kept for a session, in the order they were kept."""
        ...

    def unreleased_holds(self, limit: int) -> list[PaymentSession]:
        """Up to ``limit`` sessions, not authorized, whose provider last said it holds money.

        The provider's facts are the calls' answers and the reports (events) that read
        as authorized or canceled, in the order they were recorded (a call kept with an
        event counts after it); a session whose last such fact is an authorization while
        the session is not authorized holds money it cannot keep. Least recently moved
        first.
        """
        ...

    def count_duplicate(self, session_id: str, event_id: str) -> None:
        """Add one to the ``duplicates`` of a recorded event (a redelivery was ignored)."""
        ...

    def provider_events(
        self, *, session_id: str | None = None, outcome: EventOutcome | None = None
    ) -> list[ProviderEvent]:
        """Recorded events matching every filter given, in the order they were recorded."""
        ...

    def within(self, connection: object) -> SessionStore:
        """This store's tables read and written through ``connection`` (the driver's
        connection a caller holds), inside the transaction the caller has open: nothing
        it writes commits until the caller commits. Each write is a savepoint of that
        transaction, so a refused one leaves the rest of it as it was.

        StoreError, before anything is written, when ``connection`` is not to this
        store's database; InvalidSessionData for a connection of another driver, or a
        store that has no database to join (MemoryStore).
        """
        ...

    def committed(self) -> None:
        """Called once the caller's transaction that a view from :meth:`within` wrote in
        has committed: wakes the store's followers where the store has any to wake (a
        notice sent inside the caller's transaction would change how it commits)."""
        ...

    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
        ...


STALE_STATUSES = frozenset(
    {PaymentSessionStatus.PENDING, PaymentSessionStatus.REQUIRES_MORE, PaymentSessionStatus.ERROR}
)
"""The statuses a session can be abandoned in: neither authorized nor canceled."""

NUL_IN_KEY = "must not contain NUL (\\x00): not every database can keep it in a key"
"""Why a store refuses an id, cart id, provider id or idempotency key holding NUL."""

_KEY_FIELDS = ("id", "cart_id", "provider_id", "idempotency_key")


def has_nul(text: object) -> bool:
    """Whether ``text`` is a string holding NUL, which no store keeps in a key column.

    Every store refuses such keys alike (InvalidSessionData naming the field), and
    finds nothing under them; NUL in ``data``, ``cart``, ``actor`` and ``reason`` is kept
    (JSON escapes it).
    """
    return isinstance(text, str) and "\x00" in text


def check_writes(writes: Sequence[Write], binding: Binding | None = None) -> None:
    """Refuse a malformed commit before it reaches a database.

    Each write's records must continue its session's trail from ``expected_version``
    one seq at a time and end at the session the write stores; a binding must name a
    record of the commit (a key binds the move it produced). No id or key may hold NUL.
    """
    problems: dict[str, str] = {}
    if not writes:
        problems["writes"] = "a commit needs at least one write"
    if binding is not None and has_nul(binding.key):
        problems["idempotency_key"] = NUL_IN_KEY
    seen: set[str] = set()
    for index, write in enumerate(writes):
        session = write.session
        session_id = session.id
        if (
            "\x00" in session_id
            or "\x00" in session.provider_id
            or "\x00" in (session.cart_id or "")
            or "\x00" in (session.idempotency_key or "")
        ):
            for name in _KEY_FIELDS:
                if has_nul(getattr(session, name)):
                    problems[name] = NUL_IN_KEY
        if session_id in seen:
            problems[f"writes[{index}]"] = f"writes session {session_id} a second time"
        seen.add(session_id)
        records = write.records
        if not records:
            problems[f"writes[{index}]"] = "has no record"
            continue
        seq = write.expected_version
        for record in records:
            seq += 1
            if record.session_id != session_id:
                problems[f"writes[{index}].records"] = (
                    f"holds a record of session {record.session_id}"
                )
            elif record.seq != seq:
                problems[f"writes[{index}].records"] = (
                    f"must continue from version {write.expected_version} one seq at a time"
                )
        if records[-1].dest is not session.status:
            problems[f"writes[{index}].session"] = "status differs from the last record's dest"
    if binding is not None and not any(
        record.session_id == binding.session_id and record.seq == binding.seq
        for write in writes
        for record in write.records
    ):
        problems["binding"] = "must name a record of the same commit"
    if problems:
        raise InvalidSessionData(problems)


__all__ = [
    "AnomalyKind",
    "Binding",
    "CallAction",
    "CartCheck",
    "Claim",
    "ClaimAction",
    "Claimed",
    "EventOutcome",
    "LoggedRecord",
    "ProviderCall",
    "ProviderEvent",
    "SessionStore",
    "Snapshot",
    "StoredTrail",
    "Unreadable",
    "Write",
]
