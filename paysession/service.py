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
from datetime import timedelta

from paysession import _log, telemetry
from paysession.audit import AuditReport, Heads
from paysession.audit.stored import Progress, store_heads, verify_store, verify_stored
from paysession.durable import member as _member
from paysession.durable import retrying
from paysession.errors import (
    REFUSALS,
    CartNotFound,
    ClaimNotHeld,
    ConcurrentUpdate,
    InvalidSessionData,
    NoSelectedSession,
    SessionNotFound,
)
from paysession.feed import check_feed_args
from paysession.feed import follow as follow_feed
from paysession.lifecycle import MOVES, Move, Trigger
from paysession.limits import check_counter
from paysession.planning import (
    check_meta,
    check_params,
    create_record,
    fingerprint,
    plan,
    plan_chain,
    resolve,
)
from paysession.reconcile import Reconciler, Reconciliation
from paysession.record import TransitionRecord
from paysession.session import PaymentSession
from paysession.status import PaymentSessionStatus
from paysession.store.base import (
    Binding,
    CartCheck,
    Claim,
    ClaimAction,
    Claimed,
    LoggedRecord,
    Snapshot,
    Write,
    has_nul,
)

_SELECT = MOVES["select"]
_DESELECT = MOVES["deselect"]
_UPDATE = MOVES["update"]
_CANCEL = MOVES["cancel"]
_AUTHORIZED = PaymentSessionStatus.AUTHORIZED
_CANCELED = PaymentSessionStatus.CANCELED

DEFAULT_LEASE = timedelta(seconds=30)
"""How long a claim holds a cart when its holder never comes back: longer than any
provider call should take (a provider's own timeout is usually well under it)."""

MAX_LEASE = timedelta(days=1)
"""The longest lease a claim may ask for; a cart held longer is a cart lost."""


class PaymentSessions(Reconciler):
    """Payment sessions kept in a :class:`~paysession.store.SessionStore`.

    ``hooks`` run around every move (after-hooks only once it is committed); ``clock``
    stamps moves (UTC now by default); ``key`` makes every record's hash an HMAC under
    it. The service holds no state of its own: share one between threads, or open one
    per process on the same database. Provider reports are handled by the methods it
    inherits from ``paysession/reconcile.py``.
    """

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
            cart_id=cart_id, provider_id=provider_id, amount=amount, data=data, clock=self._now
        )
        self.store.create(session, create_record(session, self._key))
        return session

    def version(self, session_id: str) -> int:
        """The seq of the session's last record: what ``expected_version`` compares with."""
        return self._load(session_id).version

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
        wanted = None if status is None else _member(PaymentSessionStatus, status, "status")
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
        report = verify_stored(self.store, session_id, self._key)
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
        return verify_store(self.store, self._key, heads=heads, progress=progress)

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
                return self._fire(
                    session_id, trigger, expected_version, actor, reason, idempotency_key, args
                )
        except REFUSALS as refused:
            _log.REFUSALS.info("%r %r refused: %r", session_id, trigger, str(refused))
            raise

    def _fire(
        self,
        session_id: str,
        trigger: str,
        expected_version: int | None,
        actor: str | None,
        reason: str | None,
        idempotency_key: str | None,
        args: Mapping[str, object],
    ) -> TransitionRecord:
        _check_expected(expected_version)
        snapshot = self._load(session_id, idempotency_key)
        move = resolve(trigger, snapshot.session.status)
        changes = check_params(move, args)
        check_meta(actor, reason, idempotency_key)
        binding = None
        if idempotency_key is not None:
            print_ = fingerprint(move.trigger, changes)
            binding = Binding(session_id, idempotency_key, print_, snapshot.version + 1)
            if snapshot.binding is not None:
                return self._bound(snapshot.binding, binding, move)
        if expected_version is not None and expected_version != snapshot.version:
            raise ConcurrentUpdate(session_id, expected_version, snapshot.version)
        # The cart is read before anything is planned: what the before-hooks see (and
        # whatever they do) comes after the read, and the commit checks it all.
        selected: list[Snapshot] = []
        if move is _SELECT and snapshot.session.cart_id is not None:
            selected = [
                other
                for other in self.store.load_selected(snapshot.session.cart_id)
                if other.session.id != session_id
            ]
        context = self._context(actor, reason)
        planned = plan(
            snapshot.session,
            move,
            changes,
            seq=snapshot.version + 1,
            prev_hash=snapshot.head,
            context=context,
            idempotency_key=idempotency_key,
        )
        replaced = context.because(f"replaced by {session_id}")
        others = [
            (
                other,
                plan(
                    other.session,
                    _DESELECT,
                    {},
                    seq=other.version + 1,
                    prev_hash=other.head,
                    context=replaced,
                ),
            )
            for other in selected
        ]
        # Deselect first: the database checks "one selected per cart" statement by
        # statement, so the old choice must be gone before the new one is written.
        writes = [Write(p.session, o.version, (p.record,)) for o, p in others]
        writes.append(Write(planned.session, snapshot.version, (planned.record,)))
        cart_id = snapshot.session.cart_id
        # Changing the cart's choice is refused while a completion holds the cart.
        cart_check = (
            CartCheck(cart_id, context.now)
            if cart_id is not None
            and (move is _SELECT or move is _DESELECT or _new_amount(snapshot, move, changes))
            else None
        )
        try:
            self.store.commit(writes, binding, cart_check=cart_check)
        except ConcurrentUpdate:
            if binding is None:
                raise
            # Another process may have bound the key first (a retried request racing the
            # original): its record is the answer, or the key was used for another move.
            again = self.store.load(session_id, idempotency_key)
            if again is None or again.binding is None:
                raise
            return self._bound(again.binding, binding, move)
        self._finish([p for _, p in others], planned)
        return planned.record

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
        snapshot = self._load(session_id, idempotency_key)
        steps = self._resolve_moves(snapshot, moves, actor, reason, idempotency_key)
        last, last_changes = steps[-1]
        binding = None
        if idempotency_key is not None:
            print_ = fingerprint(last.trigger, last_changes)
            binding = Binding(session_id, idempotency_key, print_, snapshot.version + len(steps))
            if snapshot.binding is not None:
                return [self._bound(snapshot.binding, binding, last)]
        if expected_version is not None and expected_version != snapshot.version:
            raise ConcurrentUpdate(session_id, expected_version, snapshot.version)
        planned = plan_chain(
            snapshot.session,
            snapshot.version,
            snapshot.head,
            steps,
            self._context(actor, reason),
            idempotency_key,
        )
        records = [step.record for step in planned]
        cart_id = snapshot.session.cart_id
        cart_check = (
            CartCheck(cart_id, records[-1].at)
            if cart_id is not None
            and any(
                move is _DESELECT or _new_amount(snapshot, move, changes) for move, changes in steps
            )
            else None
        )
        try:
            self.store.commit(
                [Write(planned[-1].session, snapshot.version, tuple(records))],
                binding,
                cart_check=cart_check,
            )
        except ConcurrentUpdate:
            if binding is None:
                raise
            again = self.store.load(session_id, idempotency_key)
            if again is None or again.binding is None:
                raise
            return [self._bound(again.binding, binding, last)]
        self._finish(planned[:-1], planned[-1])
        return records

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
        return retrying(
            attempts,
            lambda _: self._fire(session_id, trigger, None, actor, reason, idempotency_key, args),
        )

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
        now = self._now()
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

    def stale(self, older_than: timedelta, *, limit: int = 1000) -> list[PaymentSession]:
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
            before = self._now() - older_than
        except OverflowError:
            return []  # before the first instant a datetime can hold: nothing is older
        return self.store.stale(before, limit)

    def __repr__(self) -> str:
        return f"<PaymentSessions {self.store!r}>"


def _new_amount(snapshot: Snapshot, move: Move, changes: Mapping[str, object]) -> bool:
    """Whether ``move`` changes the session's amount: refused while a provider call for its
    cart is in flight (the provider would hold one amount and the session say another).
    Moves that leave the amount alone pay nothing for claims."""
    return move is _UPDATE and "amount" in changes and changes["amount"] != snapshot.session.amount


def _check_expected(expected_version: object) -> None:
    problems: dict[str, str] = {}
    check_counter(expected_version, "expected_version", problems, nullable=True)
    if problems:
        raise InvalidSessionData(problems)


__all__ = ["DEFAULT_LEASE", "PaymentSessions", "Reconciliation"]
