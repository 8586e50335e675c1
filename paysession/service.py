"""PaymentSessions: the service checkout code calls, a store plus the move engine.

One move is one transaction. The service reads the session (its row, its version, the
hash its trail ends with and, for a keyed move, the key's binding), plans the move
through the transition table and the before-hooks without holding anything, then asks
the store to commit the new row, its record and its key in one transaction that
succeeds only if the session is still at the version it read (optimistic
concurrency). After-hooks run once the commit has returned, so they never see a move
that was rolled back.
"""

from __future__ import annotations

import secrets
from collections.abc import Generator, Mapping, Sequence
from datetime import datetime, timedelta

from paysession import _log, telemetry
from paysession.audit import AuditReport, Heads
from paysession.audit.stored import Progress, store_heads, verify_store, verify_stored
from paysession.errors import (
    REFUSALS,
    CartNotFound,
    ClaimNotHeld,
    InvalidSessionData,
    NoSelectedSession,
    SessionNotFound,
)
from paysession.feed import check_feed_args
from paysession.feed import follow as follow_feed
from paysession.holds import Holds
from paysession.hooks import Hooks
from paysession.lifecycle import MOVES, Trigger
from paysession.limits import check_counter, member
from paysession.planning import check_meta, check_params, create_record, resolve
from paysession.providers import ProviderReport, Providers
from paysession.reconcile import Reconciler, Reconciliation, ReportFacts
from paysession.record import TransitionRecord
from paysession.session import Clock, PaymentSession
from paysession.status import PaymentSessionStatus
from paysession.store.base import (
    AnomalyKind,
    Claim,
    ClaimAction,
    Claimed,
    EventOutcome,
    LoggedRecord,
    ProviderCall,
    ProviderEvent,
    SessionStore,
    Snapshot,
    has_nul,
)
from paysession.transaction import Joined, join
from paysession.writer import AfterCommit, MoveRequest, MoveWriter, retrying

_SELECT = MOVES["select"]

DEFAULT_LEASE = timedelta(seconds=30)
"""How long a claim holds a cart when its holder never comes back: longer than any
provider call should take (a provider's own timeout is usually well under it)."""

MAX_LEASE = timedelta(days=1)
"""The longest lease a claim may ask for; a cart held longer is a cart lost."""


class PaymentSessions:
    """Payment sessions kept in a :class:`~paysession.store.SessionStore`.

    ``hooks`` run around every move (after-hooks only once it is committed); ``clock``
    stamps moves (UTC now by default); ``key`` makes every record's hash an HMAC under
    it. The service holds no state of its own: share one between threads, or open one
    per process on the same database. Every move goes through one
    :class:`~paysession.writer.MoveWriter`; provider reports through a
    :class:`~paysession.reconcile.Reconciler` on the same writer.
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        hooks: Hooks | None = None,
        clock: Clock | None = None,
        key: bytes | None = None,
    ) -> None:
        self._build(MoveWriter(store, hooks=hooks, clock=clock, key=key), None)

    def _build(self, writer: MoveWriter, joined: Joined | None) -> None:
        self.store = writer.store
        self._writer = writer
        self._reconciler = Reconciler(writer)
        self._joined = joined

    def within(self, connection: object) -> PaymentSessions:
        """This service inside the caller's open transaction on ``connection``.

        The view reads and writes the store's tables through ``connection``: its moves,
        their records and keys, provider events, provider calls and claims are part of
        the caller's transaction, so nothing commits until the caller commits, and a
        rollback leaves nothing. After-hooks run only once that commit has happened:
        through the framework's own hook (SQLAlchemy's, Django's ``on_commit``), or, for
        a bare ``sqlite3`` or ``psycopg`` connection, when the view's :meth:`commit` has
        committed it; never after a rollback. The compare-and-set, the one authorized
        session per cart and the claims hold inside the transaction as outside it: a
        move that loses a race raises ConcurrentUpdate when it is made. See
        ``docs/transactions.md`` for the connections and isolation levels supported.

        Raises InvalidSessionData for a connection of another kind and StoreError for a
        connection to another database than the store's, before anything is written.
        """
        joined = join(connection)
        writer = self._writer
        view = PaymentSessions.__new__(PaymentSessions)
        view._build(
            MoveWriter(
                self.store.within(joined.connection),
                hooks=writer.hooks,
                clock=writer.clock,
                key=writer.key,
                after_commit=AfterCommit(joined.hand_over),
            ),
            joined,
        )
        return view

    def commit(self) -> None:
        """Commit the transaction a :meth:`within` view writes in, then run the
        after-hooks of its moves (HookError if any failed: the moves stand).

        InvalidSessionData on a service that is not such a view: it commits each move
        itself.
        """
        joined = self._joined
        if joined is None:
            raise InvalidSessionData({"commit": "only a view from within() has one to commit"})
        joined.commit()
        waiting = self._writer.after_commit
        if waiting is not None:
            waiting.run()

    def rollback(self) -> None:
        """Roll back the transaction a :meth:`within` view writes in: its moves, records,
        keys, events and claims are gone, and their after-hooks never run."""
        joined = self._joined
        if joined is None:
            raise InvalidSessionData({"rollback": "only a view from within() has one to roll back"})
        joined.rollback()
        waiting = self._writer.after_commit
        if waiting is not None:
            waiting.drop()

    @property
    def clock(self) -> Clock:
        """The clock every move, report and provider call is stamped by."""
        return self._writer.clock

    def get(self, session_id: str) -> PaymentSession:
        """The session as last committed; SessionNotFound if there is none."""
        return self._writer.load(session_id).session

    def create(
        self,
        *,
        cart_id: str | None,
        provider_id: str,
        amount: int | None,
        data: Mapping[str, object] | None = None,
    ) -> PaymentSession:
        """A new pending session, stored with its record 0 in one transaction.

        Raises DuplicateSession when the cart already has a session with this provider.
        """
        session = PaymentSession.new(
            cart_id=cart_id,
            provider_id=provider_id,
            amount=amount,
            data=data,
            clock=self._writer.now,
        )
        self.store.create(session, create_record(session, self._writer.key))
        return session

    def version(self, session_id: str) -> int:
        """The seq of the session's last record: what ``expected_version`` compares with."""
        return self._writer.load(session_id).version

    def find(
        self,
        *,
        cart_id: str | None = None,
        status: PaymentSessionStatus | str | None = None,
        provider_id: str | None = None,
        provider_ref: str | None = None,
    ) -> list[PaymentSession]:
        """The sessions of a cart, in a status, of a provider and/or whose payment the
        provider knows as ``provider_ref`` (Stripe's PaymentIntent id in ``data["id"]``;
        see ``docs/providers.md``), oldest first."""
        wanted = None if status is None else member(PaymentSessionStatus, status, "status")
        return self.store.find(
            cart_id=cart_id, status=wanted, provider_id=provider_id, provider_ref=provider_ref
        )

    def history(self, session_id: str) -> tuple[TransitionRecord, ...]:
        """The session's trail, record 0 first; SessionNotFound if there is none."""
        trail = self.store.history(session_id)
        if not trail:
            raise SessionNotFound(session_id)
        return tuple(trail)

    def verify(self, session_id: str) -> AuditReport:
        """Check the session's trail, and the trail against the session's row.

        The chain (links, hashes under the service's key, every move against the
        table), then that it leads to the row: its last seq is the row's version, its
        hash the row's head, and replaying it gives the stored session in every field
        (``data`` and ``cart`` by digest). A record removed from the end, or all of
        them, and a row edited in the database are each found. SessionNotFound if there
        is no such session.
        """
        report = verify_stored(self.store, session_id, self._writer.key)
        if not report.sessions:
            raise SessionNotFound(session_id)
        return report

    def heads(self) -> dict[str, tuple[int, str]]:
        """Every session's ``(version, head)``, by id: keep them elsewhere (a bucket that
        cannot be rewritten, a ticket) and give them to :meth:`verify_all` later, which
        then finds a session whose head went back or that vanished since."""
        return store_heads(self.store)

    def verify_all(
        self, *, heads: Heads | None = None, progress: Progress | None = None
    ) -> AuditReport:
        """:meth:`verify` for every session of the store, a page at a time.

        Memory stays constant however large the store; ``progress(sessions, records)``,
        if given, is called as the check goes. The report holds the first problem of
        each bad session. ``heads``, taken earlier (``paysession audit heads``) and kept
        elsewhere, name a record each session must still hold: a session whose head went
        back since, or that vanished, is reported too (``anchor``).
        """
        return verify_store(self.store, self._writer.key, heads=heads, progress=progress)

    def records_since(
        self, cursor: str | int | None = None, limit: int = 1000
    ) -> list[LoggedRecord]:
        """Every session's records after ``cursor``, in feed order, at most ``limit``.

        Read on by passing the last record's ``cursor`` back in (None, or 0, is the
        start). A record that commits later never lands behind a cursor already read,
        and each session's records come in seq order. On SQLite and in memory the cursor
        is the record's position, and an int position is taken too.
        """
        return self.store.records_since(check_feed_args(cursor, limit, "limit"), limit)

    def follow(
        self, cursor: str | int | None = None, *, batch: int = 500, idle: float | None = None
    ) -> Generator[LoggedRecord, None, None]:
        """Every session's records after ``cursor``, as they commit: the outbox's feed.

        An iterator: it reads ``batch`` records at a time and, once caught up, waits for
        more (woken by the commits' notices on PostgreSQL, polling with backoff on SQLite
        and in memory). It ends after ``idle`` seconds with nothing new; with None it
        follows until the caller stops iterating. Save each handled record's
        ``cursor``; pass the last one saved after a restart, and no record is missed or
        delivered twice.
        """
        return follow_feed(self.store, cursor, batch=batch, idle=idle)

    def fire(
        self,
        session_id: str,
        trigger: Trigger,
        /,
        *,
        expected_version: int | None = None,
        actor: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
        **args: object,
    ) -> TransitionRecord:
        """Run ``trigger`` on the session in one transaction; return the move's record.

        ``expected_version``, when given, must be the session's version or nothing
        happens (ConcurrentUpdate). A move that loses a race to another writer raises
        ConcurrentUpdate too and writes nothing. With an ``idempotency_key`` already
        bound on this session, the same trigger and arguments return the stored record
        (no hook runs), anything else raises IdempotencyConflict. ``select`` also
        deselects the cart's other sessions, as :meth:`select` says.
        """
        try:
            with telemetry.move(session_id, trigger):
                request = MoveRequest(actor, reason, idempotency_key, expected_version)
                return self._fire(session_id, trigger, request, args)
        except REFUSALS as refused:
            _log.REFUSALS.info("%r %r refused: %r", session_id, trigger, str(refused))
            raise

    def _fire(
        self, session_id: str, trigger: str, request: MoveRequest, args: Mapping[str, object]
    ) -> TransitionRecord:
        _check_expected(request.expected_version)
        snapshot = self._writer.load(session_id, request.key)
        move = resolve(trigger, snapshot.session.status)
        step = (move, check_params(move, args))
        check_meta(request.actor, request.reason, request.key)
        # The cart is read before anything is planned: what the before-hooks see (and
        # whatever they do) comes after the read, and the commit checks it all.
        replacing: list[Snapshot] = []
        if move is _SELECT and snapshot.session.cart_id is not None:
            replacing = [
                other
                for other in self.store.load_selected(snapshot.session.cart_id)
                if other.session.id != session_id
            ]
        applied = self._writer.apply(snapshot, [step], request, replacing=replacing)
        return applied.records[-1]

    def fire_many(
        self,
        session_id: str,
        moves: Sequence[tuple[Trigger, Mapping[str, object]]],
        /,
        *,
        expected_version: int | None = None,
        actor: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[TransitionRecord]:
        """Run several moves of one session, in order, in one transaction; their records.

        ``moves`` holds (trigger, arguments) pairs, each planned from the session as the
        one before leaves it; all are committed or none. ``idempotency_key`` binds the
        last move (its record carries the key): when the key is bound already, the list
        holds that move's stored record alone, or IdempotencyConflict is raised as for
        :meth:`fire`. ``select`` cannot be one of the moves (it deselects other sessions).
        """
        if not moves:
            raise InvalidSessionData({"moves": "must hold at least one (trigger, arguments)"})
        _check_expected(expected_version)
        request = MoveRequest(actor, reason, idempotency_key, expected_version)
        snapshot = self._writer.load(session_id, idempotency_key)
        steps = self._writer.steps(snapshot, moves, request)
        return list(self._writer.apply(snapshot, steps, request).records)

    def select(
        self,
        session_id: str,
        *,
        expected_version: int | None = None,
        actor: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> TransitionRecord:
        """Make this session its cart's choice; return the select record.

        The cart's other selected session (if any) is deselected in the same
        transaction, each deselect an audited move of its own (reason ``replaced by
        <id>``). A selected session that can no longer be deselected (authorized,
        canceled) makes the select fail with IllegalTransition.
        """
        return self.fire(
            session_id,
            "select",
            expected_version=expected_version,
            actor=actor,
            reason=reason,
            idempotency_key=idempotency_key,
        )

    def fire_with_retry(
        self,
        session_id: str,
        trigger: Trigger,
        /,
        *,
        attempts: int = 5,
        actor: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
        **args: object,
    ) -> TransitionRecord:
        """:meth:`fire`, reloading and trying again after a lost race, up to ``attempts``.

        Each attempt re-reads the session and re-plans the move from what it finds, so a
        move that the winner made illegal raises IllegalTransition (or GuardRejected)
        instead of being forced through. Waits a few random milliseconds between tries.
        """
        request = MoveRequest(actor, reason, idempotency_key)
        return retrying(attempts, lambda _: self._fire(session_id, trigger, request, args))

    def selected(self, cart_id: str) -> PaymentSession | None:
        """The cart's selected session, or None when it has none."""
        chosen = self.store.load_selected(cart_id)
        return chosen[0].session if chosen else None

    def claim_cart(
        self,
        cart_id: str,
        *,
        lease: timedelta = DEFAULT_LEASE,
        session_id: str | None = None,
        action: ClaimAction | str = ClaimAction.AUTHORIZE,
    ) -> Claimed:
        """Hold the cart while a provider call about one of its sessions is in flight.

        The claim is taken in the same transaction that reads the session it is about:
        the cart's selected session, or ``session_id`` (which must belong to the cart).
        Until it is released, or ``lease`` has passed, no other caller can select or
        deselect a session of the cart, take a claim on it (so complete it, cancel its
        payment or expire it): each gets CartBusy. A claim whose lease has passed (its
        holder crashed) is taken over and returned as ``previous``; see
        :func:`paysession.checkout.complete_cart`, which uses this. Raises CartNotFound
        for a cart without sessions, NoSelectedSession, SessionNotFound for a
        ``session_id`` that is not a session of the cart, and InvalidSessionData for a
        bad argument.
        """
        problems: dict[str, str] = {}
        if not isinstance(cart_id, str) or not cart_id or has_nul(cart_id):
            problems["cart_id"] = "must be a non-empty string without NUL"
        if session_id is not None and (
            not isinstance(session_id, str) or not session_id or has_nul(session_id)
        ):
            problems["session_id"] = "must be a non-empty string without NUL, or None"
        if not isinstance(lease, timedelta) or not timedelta(0) < lease <= MAX_LEASE:
            problems["lease"] = f"must be a timedelta above zero and at most {MAX_LEASE}"
        try:
            wanted = ClaimAction(action)
        except ValueError:
            problems["action"] = "must be one of authorize, cancel"
        if problems:
            raise InvalidSessionData(problems)
        now = self._writer.now()
        claim = Claim(cart_id, secrets.token_hex(16), session_id or "", wanted, now + lease)
        claimed = self.store.claim(claim, now, selected=session_id is None)
        if claimed.claim is None:
            if session_id is not None:
                raise SessionNotFound(session_id)
            if not self.store.find(cart_id=cart_id):
                raise CartNotFound(cart_id)
            raise NoSelectedSession(cart_id)
        return claimed

    def release_cart(self, claim: Claim) -> None:
        """Release a claim taken by :meth:`claim_cart`.

        ClaimNotHeld when its token no longer holds the cart: released already, or taken
        over by another caller after the lease passed.
        """
        if not isinstance(claim, Claim):
            raise InvalidSessionData({"claim": "must be a Claim from claim_cart"})
        if not self.store.release(claim):
            raise ClaimNotHeld(claim.cart_id)

    def claim_of(self, cart_id: str) -> Claim | None:
        """The claim on the cart, live or expired (its holder crashed), or None."""
        if not isinstance(cart_id, str) or has_nul(cart_id):
            raise InvalidSessionData({"cart_id": "must be a string without NUL"})
        return self.store.claim_of(cart_id)

    def abandoned(self, older_than: timedelta, *, limit: int = 1000) -> list[PaymentSession]:
        """Sessions in pending, requires_more or error with no move for ``older_than``.

        Least recently moved first, at most ``limit``: what
        :func:`paysession.checkout.expire_sessions` cancels.
        """
        problems: dict[str, str] = {}
        if not isinstance(older_than, timedelta) or older_than <= timedelta(0):
            problems["older_than"] = "must be a timedelta above zero"
        check_counter(limit, "limit", problems, low=1)
        if problems:
            raise InvalidSessionData(problems)
        try:
            before = self._writer.now() - older_than
        except OverflowError:
            return []  # before the first instant a datetime can hold: nothing is older
        return self.store.stale(before, limit)

    # Provider reports: what reconciliation (``paysession/reconcile.py``) does with them.

    def authorization_conflict(self, session_id: str) -> str | None:
        """Why an authorization of this session would hold money its cart must not keep.

        A session cannot be its cart's authorized one when another session of the cart
        is authorized, or when the cart switched away from it (it is not selected while
        another one is, or it was deselected). Returns the reason, naming the cart and
        the other session, or None when an authorization is the cart's to keep.
        """
        return self._reconciler.authorization_conflict(self.get(session_id))

    def record_answer(
        self,
        session_id: str,
        moves: Sequence[tuple[str, Mapping[str, object]]],
        /,
        *,
        provider_status: str,
        observed_at: datetime | None = None,
        actor: str | None = None,
        idempotency_key: str,
        reason: str | None = None,
        release: Claim | None = None,
        calls: Sequence[ProviderCall] = (),
        amount: int | None = None,
        currency: str | None = None,
        decline: str | None = None,
    ) -> tuple[list[TransitionRecord], bool]:
        """Commit the moves that record a provider's answer to our own request, once.

        What cart completion uses. ``moves`` may be empty: an answer that moves nothing
        (a payment still in flight) is kept as a no-op event. The answer is also kept as a
        provider event (event id
        ``idempotency_key``, outcome applied, ``observed_at`` as the provider gave it) in
        the same transaction, so webhooks observed before the answer are stale when they
        arrive. The last move's record carries ``idempotency_key``; ``reason`` is the
        provider status. Returns the records and True, or, when an answer was recorded
        under this key already (by a racing request), the record of its last move and
        False. ConcurrentUpdate when the session moved meanwhile (reload and decide
        again) or when a newer provider report was applied first. ``reason``, when given,
        replaces the provider status as the records' reason; ``release`` is a claim on
        the session's cart to release in the same transaction; ``calls`` the provider
        calls that led to the answer, kept with it. ``amount`` and ``currency`` are what
        the provider said it holds: an authorize move is refused with ConcurrentUpdate
        when they are not the session's as committed (its amount changed while the
        provider was asked: decide again); ``decline`` the provider's reason for a
        decline. ``observed_at`` is kept at the provider's precision.
        """
        facts = ReportFacts(
            provider_status,
            observed_at=observed_at,
            amount=amount,
            currency=currency,
            decline=decline,
        )
        why = provider_status if reason is None else reason
        request = MoveRequest(actor, why, idempotency_key)
        return self._reconciler.record_answer(
            session_id, moves, facts, request, release=release, calls=calls
        )

    def reconcile(
        self,
        session_id: str,
        provider_status: str,
        *,
        event_id: str | None = None,
        observed_at: datetime | None = None,
        attempts: int = 5,
        provider: Providers | None = None,
        event_type: str | None = None,
        amount: int | None = None,
        currency: str | None = None,
        decline: str | None = None,
    ) -> Reconciliation:
        """Move the session to what its provider reports; say what was done.

        ``provider_status`` is the provider's own name (``requires_capture``,
        ``COMPLETED``), read through the status map of the session's ``provider_id``;
        a name the map does not know raises UnknownProviderStatus and records nothing.
        The session moves along the shortest legal path to the mapped status in one
        transaction, each step audited with actor ``provider:<provider_id>`` and the
        provider status and event id in ``reason``; the event row is written in the same
        transaction. Returns a :class:`Reconciliation`: the outcome, the records
        committed and the races lost. It holds no records, having applied nothing, when
        the session is there already (noop), when ``event_id`` was handled before
        (duplicate, even by another process long ago), or when ``observed_at`` is older
        than the newest report applied or found a no-op, or is the very same report (same
        status, same instant) under another event id (stale). A status no legal path
        reaches, or a path a guard refuses, raises ReconciliationAnomaly (recorded, never
        applied). A concurrent move makes it reload and recompute, up to ``attempts``
        times.

        An authorization reported for a session that cannot be its cart's authorized
        one (see :meth:`authorization_conflict`) is a double authorization: money is held
        all the same. It is recorded as an anomaly of kind ``double_authorization``
        and, with ``provider`` (the provider, or a mapping from provider id to
        provider), the hold is voided through the provider's cancel (under the key
        ``<session key>:void``) and the session canceled with a reason naming the cart's
        choice, in one transaction with the anomaly; DoubleAuthorization is raised
        either way (``voided`` says which). An authorization reported for a canceled
        session is voided the same way when ``provider`` is given, and so is one whose
        event was recorded before without a provider at hand (a redelivery, then
        ``voided`` on the duplicate).

        What the provider says besides its status is weighed too (see
        ``docs/providers.md``): ``event_type`` (its event rules, such as Stripe's
        ``payment_intent.payment_failed``, a decline), ``decline`` (its reason for a
        decline: a report that would leave the session waiting is then ``error``), and
        ``amount`` (minor units) and ``currency``: an authorization for another amount
        than the session's is an anomaly of kind ``amount_mismatch``, never applied, its
        hold voided (and the session canceled) when ``provider`` is given. Reports are
        ordered at the provider's precision (Stripe: whole seconds): one is stale only
        when it is older there; two of one instant are ordered by how far along the
        payment each says it is. A status in flight (Stripe's ``processing``) never
        moves a session back from requires_more.
        """
        facts = ReportFacts(
            provider_status, event_id, observed_at, event_type, amount, currency, decline
        )
        return self._reconciler.reconcile(session_id, facts, attempts=attempts, provider=provider)

    def reconcile_report(
        self,
        report: ProviderReport,
        *,
        provider: Providers | None = None,
        attempts: int = 5,
    ) -> Reconciliation:
        """Reconcile what a provider's verified notification says (see
        :mod:`paysession.providers.stripe` and its siblings), as :meth:`reconcile` does.

        The session is the one the report names (``session_id``), or else the one whose
        payment the provider knows as ``provider_ref`` (found by index: see
        ``docs/providers.md`` for where each provider's id is read from the session's
        data). SessionNotFound, recording nothing, when neither finds one;
        InvalidSessionData (field ``report.provider_id``) when the session belongs to
        another provider, or (field ``report.provider_ref``) when the reference names
        several sessions. The report's event id, instant, event type, amount, currency
        and decline are weighed as :meth:`reconcile` weighs them.
        """
        return self._reconciler.reconcile_report(report, provider=provider, attempts=attempts)

    def provider_events(
        self, *, session_id: str | None = None, outcome: EventOutcome | str | None = None
    ) -> list[ProviderEvent]:
        """The provider reports reconciliation recorded, in the order it recorded them."""
        return self._reconciler.provider_events(session_id=session_id, outcome=outcome)

    def anomalies(
        self, session_id: str | None = None, *, kind: AnomalyKind | str | None = None
    ) -> list[ProviderEvent]:
        """The reports recorded as anomalies (of one session, or of all), oldest first.

        ``kind`` keeps those of one kind (``double_authorization``, say).
        """
        return self._reconciler.anomalies(session_id, kind=kind)

    def holds(self, session_id: str) -> Holds:
        """What the provider said of the session's money: holds asked and released.

        From the calls paysession made (authorize, cancel, void) and the reports it
        recorded. ``unreleased`` is true when the provider said it holds money and never
        that it let go while the session is not authorized: money its cart cannot keep.
        """
        return self._reconciler.holds(self.get(session_id))

    def unreleased_holds(self, *, limit: int = 1000) -> list[PaymentSession]:
        """Sessions (not authorized) whose provider holds money and was never told to let
        go, least recently moved first: what an audit lists and expiry voids."""
        return self.store.unreleased_holds(limit)

    def release_hold(self, session_id: str, provider: Providers) -> bool:
        """Void at its provider a hold the session cannot keep; whether it is released.

        Only when the provider said it holds money for the session, nothing released it
        since, and the session cannot keep it: it is canceled, or its cart is authorized
        with (or switched to) another session. The void is asked under the key
        ``<session key>:void`` and kept as a provider call. False, asking nothing, for
        any other session.
        """
        return self._reconciler.release_hold(self.get(session_id), provider)

    def __repr__(self) -> str:
        joined = "" if self._joined is None else " within the caller's transaction"
        return f"<PaymentSessions {self.store!r}{joined}>"


def _check_expected(expected_version: object) -> None:
    problems: dict[str, str] = {}
    check_counter(expected_version, "expected_version", problems, nullable=True)
    if problems:
        raise InvalidSessionData(problems)


__all__ = ["DEFAULT_LEASE", "PaymentSessions", "Reconciliation"]
