"""MemoryStore: the store contract in a process's memory, for tests and prototypes."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime

import attrs

from paysession import telemetry
from paysession.errors import (
    AuthorizationConflict,
    CartBusy,
    ConcurrentUpdate,
    DuplicateSession,
    InvalidSessionData,
    SelectionConflict,
    SessionNotFound,
)
from paysession.record import TransitionRecord
from paysession.session import PaymentSession
from paysession.status import PaymentSessionStatus
from paysession.store._feed import Sleeper, Wakeup, position_of
from paysession.store._tables import provider_ref as reference
from paysession.store.base import (
    STALE_STATUSES,
    Binding,
    CartCheck,
    Claim,
    Claimed,
    EventOutcome,
    LoggedRecord,
    ProviderCall,
    ProviderEvent,
    Snapshot,
    StoredTrail,
    Write,
    check_writes,
)


class _Row:
    __slots__ = ("head", "session", "version")

    def __init__(self, session: PaymentSession, version: int, head: str) -> None:
        self.session = session
        self.version = version
        self.head = head


class MemoryStore:
    """A :class:`~paysession.store.SessionStore` held in dicts, safe between threads.

    It checks the rules a database holds, in the order a database would, and refuses
    with the same errors: nothing of a refused commit is applied. Nothing survives the
    process; use :class:`~paysession.store.SqliteStore` for that.
    """

    SCHEMA_VERSION = 4

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, _Row] = {}
        self._trails: dict[str, list[TransitionRecord]] = {}
        self._keys: dict[tuple[str, str], Binding] = {}
        self._log: list[TransitionRecord] = []
        self._by_cart_provider: dict[tuple[str, str], str] = {}
        # A cart's sessions (a session's cart never changes): what find(cart_id=) reads.
        self._by_cart: dict[str, list[str]] = {}
        self._selected: dict[str, str] = {}
        self._authorized: dict[str, str] = {}
        self._claims: dict[str, Claim] = {}
        self._events: dict[tuple[str, str], ProviderEvent] = {}
        # A session's event ids in the order they were recorded: what a reconciliation
        # reads for each report, without a pass over every session's events.
        self._event_ids: dict[str, list[str]] = {}
        self._newest: dict[str, datetime] = {}
        self._calls: dict[tuple[str, str, str], ProviderCall] = {}
        # The sessions whose provider said it holds money, and those it said it let go
        # of (a payment canceled at its provider is never authorized there again).
        self._held: set[str] = set()
        self._released: set[str] = set()

    def migrate(self) -> int:
        return self.SCHEMA_VERSION

    def create(self, session: PaymentSession, record: TransitionRecord) -> None:
        check_writes([Write(session, -1, (record,))])
        with self._lock:
            if session.id in self._rows:
                raise DuplicateSession(session.id, session.cart_id, session.provider_id, ("id",))
            pair = None if session.cart_id is None else (session.cart_id, session.provider_id)
            if pair is not None and pair in self._by_cart_provider:
                raise DuplicateSession(
                    session.id, session.cart_id, session.provider_id, ("cart_id", "provider_id")
                )
            if session.is_selected and session.cart_id in self._selected:
                raise SelectionConflict(session.id, session.cart_id)
            authorized = session.status is PaymentSessionStatus.AUTHORIZED
            if authorized and session.cart_id in self._authorized:
                raise AuthorizationConflict(session.id, session.cart_id)
            self._rows[session.id] = _Row(session, record.seq, record.hash)
            self._trails[session.id] = [record]
            self._log.append(record)
            if pair is not None:
                self._by_cart_provider[pair] = session.id
                self._by_cart.setdefault(pair[0], []).append(session.id)
            if session.is_selected and session.cart_id is not None:
                self._selected[session.cart_id] = session.id
            if authorized and session.cart_id is not None:
                self._authorized[session.cart_id] = session.id

    def load(self, session_id: str, idempotency_key: str | None = None) -> Snapshot | None:
        with self._lock:
            row = self._rows.get(session_id)
            if row is None:
                return None
            binding = None
            if idempotency_key is not None:
                binding = self._keys.get((session_id, idempotency_key))
            return Snapshot(row.session, row.version, row.head, binding)

    def load_selected(self, cart_id: str) -> list[Snapshot]:
        with self._lock:
            session_id = self._selected.get(cart_id)
            if session_id is None:
                return []
            row = self._rows[session_id]
            return [Snapshot(row.session, row.version, row.head)]

    def commit(
        self,
        writes: Sequence[Write],
        binding: Binding | None = None,
        *,
        cart_check: CartCheck | None = None,
        release: Claim | None = None,
    ) -> None:
        check_writes(writes, binding)
        commit = telemetry.span("paysession.commit", **{"paysession.sessions": len(writes)})
        with commit, self._lock:
            if cart_check is not None:
                held = self._claims.get(cart_check.cart_id)
                if held is not None and held.live(cart_check.now):
                    raise CartBusy(held.cart_id, held.expires_at)
            self._commit_locked(writes, binding)
            self._release_locked(release)

    def _commit_locked(self, writes: Sequence[Write], binding: Binding | None) -> None:
        # Check every rule first, against the state as the writes would leave it,
        # so that a refused commit leaves no trace.
        selected = dict(self._selected)
        authorized = dict(self._authorized)
        for write in writes:
            session = write.session
            row = self._rows.get(session.id)
            if row is None:
                raise SessionNotFound(session.id)
            if row.version != write.expected_version:
                raise ConcurrentUpdate(session.id, write.expected_version, row.version)
            trail = self._trails[session.id]
            if any(record.seq < len(trail) for record in write.records):
                raise ConcurrentUpdate(session.id, write.expected_version)
            cart_id = session.cart_id
            if cart_id is not None:
                if selected.get(cart_id) == session.id and not session.is_selected:
                    del selected[cart_id]
                elif session.is_selected:
                    if selected.get(cart_id, session.id) != session.id:
                        raise SelectionConflict(session.id, cart_id)
                    selected[cart_id] = session.id
                if session.status is PaymentSessionStatus.AUTHORIZED:
                    if authorized.get(cart_id, session.id) != session.id:
                        raise AuthorizationConflict(session.id, cart_id)
                    authorized[cart_id] = session.id
                elif authorized.get(cart_id) == session.id:
                    del authorized[cart_id]
        if binding is not None and (binding.session_id, binding.key) in self._keys:
            raise ConcurrentUpdate(binding.session_id, None)
        for write in writes:
            row = self._rows[write.session.id]
            row.session, row.version, row.head = write.session, write.version, write.head
            self._trails[write.session.id].extend(write.records)
            self._log.extend(write.records)
        self._selected = selected
        self._authorized = authorized
        if binding is not None:
            self._keys[(binding.session_id, binding.key)] = binding

    def _release_locked(self, release: Claim | None) -> bool:
        if release is None:
            return False
        held = self._claims.get(release.cart_id)
        if held is None or held.token != release.token:
            return False
        del self._claims[release.cart_id]
        return True

    def claim(self, claim: Claim, now: datetime, *, selected: bool) -> Claimed:
        with self._lock:
            held = self._claims.get(claim.cart_id)
            if held is not None and held.token != claim.token and held.live(now):
                raise CartBusy(held.cart_id, held.expires_at)
            session_id = self._selected.get(claim.cart_id) if selected else claim.session_id
            row = None if session_id is None else self._rows.get(session_id)
            if row is None or row.session.cart_id != claim.cart_id:
                return Claimed(None, None)
            taken = attrs.evolve(claim, session_id=row.session.id)
            self._claims[claim.cart_id] = taken
            previous = held if held is not None and held.token != claim.token else None
            return Claimed(taken, Snapshot(row.session, row.version, row.head), previous)

    def release(self, claim: Claim) -> bool:
        with self._lock:
            return self._release_locked(claim)

    def claim_of(self, cart_id: str) -> Claim | None:
        with self._lock:
            return self._claims.get(cart_id)

    def stale(self, before: datetime, limit: int) -> list[PaymentSession]:
        with self._lock:
            found = [
                row.session
                for row in self._rows.values()
                if row.session.status in STALE_STATUSES and row.session.updated_at < before
            ]
        found.sort(key=lambda session: (session.updated_at, session.id))
        return found[: max(limit, 0)]

    def record(self, session_id: str, seq: int) -> TransitionRecord | None:
        with self._lock:
            trail = self._trails.get(session_id, [])
            return trail[seq] if 0 <= seq < len(trail) else None

    def trails(
        self, *, after: str | None = None, only: str | None = None, limit: int = 500
    ) -> list[StoredTrail]:
        with self._lock:
            if only is not None:
                ids = [only] if only in self._rows else []
            else:
                ids = sorted(i for i in self._rows if after is None or i > after)[:limit]
            return [
                (
                    Snapshot(self._rows[i].session, self._rows[i].version, self._rows[i].head),
                    list(self._trails[i]),
                )
                for i in ids
            ]

    def history(self, session_id: str) -> list[TransitionRecord]:
        with self._lock:
            return list(self._trails.get(session_id, ()))

    def find(
        self,
        *,
        cart_id: str | None = None,
        status: PaymentSessionStatus | None = None,
        provider_id: str | None = None,
        provider_ref: str | None = None,
    ) -> list[PaymentSession]:
        with self._lock:
            rows = (
                self._rows.values()
                if cart_id is None
                else [self._rows[session_id] for session_id in self._by_cart.get(cart_id, ())]
            )
            found = [
                row.session
                for row in rows
                if (cart_id is None or row.session.cart_id == cart_id)
                and (status is None or row.session.status is status)
                and (provider_id is None or row.session.provider_id == provider_id)
                and (
                    provider_ref is None
                    or reference(row.session.provider_id, row.session.data) == provider_ref
                )
            ]
        return sorted(found, key=lambda session: (session.created_at, session.id))

    def records_since(self, cursor: str | None, limit: int) -> list[LoggedRecord]:
        start = position_of(cursor)
        with self._lock:
            chunk = self._log[start : start + max(limit, 0)]
        return [
            LoggedRecord(start + offset, record, str(start + offset))
            for offset, record in enumerate(chunk, 1)
        ]

    def wakeups(self) -> AbstractContextManager[Wakeup]:
        return nullcontext(Sleeper())

    def provider_event(self, session_id: str, event_id: str) -> ProviderEvent | None:
        with self._lock:
            return self._events.get((session_id, event_id))

    def record_event(
        self,
        event: ProviderEvent,
        write: Write | None = None,
        *,
        expected_version: int | None = None,
        release: Claim | None = None,
        calls: Sequence[ProviderCall] = (),
    ) -> None:
        if write is not None:
            check_writes([write])
            expected_version = write.expected_version
        with self._lock:
            for call in calls:
                if call.session_id not in self._rows:
                    raise SessionNotFound(call.session_id)
            row = self._rows.get(event.session_id)
            if row is None:
                raise SessionNotFound(event.session_id)
            if expected_version is not None and row.version != expected_version:
                raise ConcurrentUpdate(event.session_id, expected_version, row.version)
            observed = event.observed_at if event.advances else None
            newest = self._newest.get(event.session_id)
            if observed is not None and newest is not None and newest > observed:
                raise ConcurrentUpdate(event.session_id, expected_version, row.version)
            if (event.session_id, event.event_id) in self._events:
                raise ConcurrentUpdate(event.session_id, expected_version, row.version)
            if write is not None:
                self._commit_locked([write], None)
            self._events[(event.session_id, event.event_id)] = event
            self._event_ids.setdefault(event.session_id, []).append(event.event_id)
            if observed is not None and (newest is None or observed > newest):
                self._newest[event.session_id] = observed
            self._note_money(event.session_id, event.status)
            self._keep_calls_locked(calls)
            self._release_locked(release)

    def _note_money(self, session_id: str, status: PaymentSessionStatus) -> None:
        if status is PaymentSessionStatus.AUTHORIZED:
            self._held.add(session_id)
        elif status is PaymentSessionStatus.CANCELED:
            self._released.add(session_id)

    def _keep_calls_locked(self, calls: Sequence[ProviderCall]) -> None:
        for call in calls:
            key = (call.session_id, call.action.value, call.idempotency_key)
            if key not in self._calls:
                self._calls[key] = call
                self._note_money(call.session_id, call.status)

    def record_calls(self, calls: Sequence[ProviderCall]) -> None:
        with self._lock:
            for call in calls:
                if call.session_id not in self._rows:
                    raise SessionNotFound(call.session_id)
            self._keep_calls_locked(calls)

    def provider_calls(self, session_id: str) -> list[ProviderCall]:
        with self._lock:
            return [call for call in self._calls.values() if call.session_id == session_id]

    def unreleased_holds(self, limit: int) -> list[PaymentSession]:
        with self._lock:
            found = [
                self._rows[session_id].session
                for session_id in self._held - self._released
                if self._rows[session_id].session.status is not PaymentSessionStatus.AUTHORIZED
            ]
        found.sort(key=lambda session: (session.updated_at, session.id))
        return found[: max(limit, 0)]

    def count_duplicate(self, session_id: str, event_id: str) -> None:
        with self._lock:
            event = self._events.get((session_id, event_id))
            if event is not None:
                self._events[(session_id, event_id)] = attrs.evolve(
                    event, duplicates=event.duplicates + 1
                )

    def provider_events(
        self, *, session_id: str | None = None, outcome: EventOutcome | None = None
    ) -> list[ProviderEvent]:
        with self._lock:
            if session_id is None:
                found = list(self._events.values())
            else:
                events = self._events
                found = [
                    events[session_id, event_id] for event_id in self._event_ids.get(session_id, ())
                ]
            return (
                found if outcome is None else [event for event in found if event.outcome is outcome]
            )

    def committed(self) -> None:
        pass  # no view of a MemoryStore is ever made

    def within(self, connection: object) -> MemoryStore:
        raise InvalidSessionData(
            {"connection": "a MemoryStore keeps no database: there is no transaction to join"}
        )

    def close(self) -> None:
        pass

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<MemoryStore {len(self._rows)} sessions>"


__all__ = ["MemoryStore"]
