"""AsyncPaymentSessions: the service for asyncio checkout code (FastAPI, Starlette, aiohttp).

Each call runs the synchronous :class:`~paysession.PaymentSessions` method in a worker
thread (the loop's default executor, or one you pass), so a database round trip, an
fsync or a provider call never blocks the event loop. The stores are safe to share
between threads: SqliteStore opens one connection per thread (one shared connection,
taken in turns, for ``":memory:"``), PostgresStore draws from a thread-safe pool, and
MemoryStore takes a lock. Hooks run in the worker thread.

Cancelling an awaiting task does not stop the call already running in its thread: the
move may still commit. Use idempotency keys (and event ids for reconciliation) so that
a retried request is harmless.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from datetime import datetime, timedelta
from typing import TypeVar

from paysession.audit import AuditReport
from paysession.checkout import (
    Completion,
    cancel_payment,
    complete_cart,
    complete_session,
)
from paysession.expiry import Expiry, expire_sessions
from paysession.providers import PaymentProvider, Providers
from paysession.record import TransitionRecord
from paysession.service import DEFAULT_LEASE, PaymentSessions, Reconciliation
from paysession.session import PaymentSession
from paysession.status import PaymentSessionStatus
from paysession.store.base import (
    AnomalyKind,
    Claim,
    ClaimAction,
    Claimed,
    EventOutcome,
    LoggedRecord,
    ProviderEvent,
)

_T = TypeVar("_T")


class AsyncPaymentSessions:
    """:class:`~paysession.PaymentSessions` with awaitable methods, for asyncio code.

    Wraps a service (share one per process); ``executor`` runs the calls (None: the
    running loop's default executor). ``async with`` closes the store at the end.
    """

    def __init__(self, sessions: PaymentSessions, *, executor: Executor | None = None) -> None:
        self.sessions = sessions
        self._executor = executor

    async def _run(self, call: Callable[[], _T]) -> _T:
        loop = asyncio.get_running_loop()
        # Carry the caller's context variables (request ids, tracing) into the thread.
        context = contextvars.copy_context()
        return await loop.run_in_executor(self._executor, functools.partial(context.run, call))

    async def create(
        self,
        *,
        cart_id: str | None,
        provider_id: str,
        amount: int | None,
        data: Mapping[str, object] | None = None,
    ) -> PaymentSession:
        """:meth:`PaymentSessions.create <paysession.PaymentSessions.create>`."""
        return await self._run(
            functools.partial(
                self.sessions.create,
                cart_id=cart_id,
                provider_id=provider_id,
                amount=amount,
                data=data,
            )
        )

    async def get(self, session_id: str) -> PaymentSession:
        """The session as last committed; SessionNotFound if there is none."""
        return await self._run(functools.partial(self.sessions.get, session_id))

    async def find(
        self, *, cart_id: str | None = None, status: PaymentSessionStatus | str | None = None
    ) -> list[PaymentSession]:
        """The sessions of a cart and/or in a status, oldest first."""
        return await self._run(
            functools.partial(self.sessions.find, cart_id=cart_id, status=status)
        )

    async def selected(self, cart_id: str) -> PaymentSession | None:
        """The cart's selected session, or None."""
        return await self._run(functools.partial(self.sessions.selected, cart_id))

    async def history(self, session_id: str) -> tuple[TransitionRecord, ...]:
        """The session's trail, record 0 first."""
        return await self._run(functools.partial(self.sessions.history, session_id))

    async def verify(self, session_id: str) -> AuditReport:
        """Check the session's trail."""
        return await self._run(functools.partial(self.sessions.verify, session_id))

    async def fire(
        self,
        session_id: str,
        trigger: str,
        /,
        *,
        expected_version: int | None = None,
        actor: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
        **args: object,
    ) -> TransitionRecord:
        """:meth:`PaymentSessions.fire <paysession.PaymentSessions.fire>`."""
        return await self._run(
            functools.partial(
                self.sessions.fire,
                session_id,
                trigger,
                expected_version=expected_version,
                actor=actor,
                reason=reason,
                idempotency_key=idempotency_key,
                **args,
            )
        )

    async def select(
        self,
        session_id: str,
        *,
        expected_version: int | None = None,
        actor: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> TransitionRecord:
        """Make this session its cart's choice (deselecting the cart's other one)."""
        return await self._run(
            functools.partial(
                self.sessions.select,
                session_id,
                expected_version=expected_version,
                actor=actor,
                reason=reason,
                idempotency_key=idempotency_key,
            )
        )

    async def fire_many(
        self,
        session_id: str,
        moves: Sequence[tuple[str, Mapping[str, object]]],
        /,
        *,
        expected_version: int | None = None,
        actor: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[TransitionRecord]:
        """:meth:`PaymentSessions.fire_many <paysession.PaymentSessions.fire_many>`."""
        return await self._run(
            functools.partial(
                self.sessions.fire_many,
                session_id,
                moves,
                expected_version=expected_version,
                actor=actor,
                reason=reason,
                idempotency_key=idempotency_key,
            )
        )

    async def fire_with_retry(
        self,
        session_id: str,
        trigger: str,
        /,
        *,
        attempts: int = 5,
        actor: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
        **args: object,
    ) -> TransitionRecord:
        """:meth:`PaymentSessions.fire_with_retry <paysession.PaymentSessions.fire_with_retry>`."""
        return await self._run(
            functools.partial(
                self.sessions.fire_with_retry,
                session_id,
                trigger,
                attempts=attempts,
                actor=actor,
                reason=reason,
                idempotency_key=idempotency_key,
                **args,
            )
        )

    async def record_answer(
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
    ) -> tuple[list[TransitionRecord], bool]:
        """:meth:`PaymentSessions.record_answer <paysession.PaymentSessions.record_answer>`."""
        return await self._run(
            functools.partial(
                self.sessions.record_answer,
                session_id,
                moves,
                provider_status=provider_status,
                observed_at=observed_at,
                actor=actor,
                idempotency_key=idempotency_key,
                reason=reason,
                release=release,
            )
        )

    async def version(self, session_id: str) -> int:
        """The seq of the session's last record."""
        return await self._run(functools.partial(self.sessions.version, session_id))

    async def records_since(self, position: int = 0, limit: int = 1000) -> list[LoggedRecord]:
        """Every session's records after ``position``, in commit order."""
        return await self._run(functools.partial(self.sessions.records_since, position, limit))

    async def claim_cart(
        self,
        cart_id: str,
        *,
        lease: timedelta = DEFAULT_LEASE,
        session_id: str | None = None,
        action: ClaimAction | str = ClaimAction.AUTHORIZE,
    ) -> Claimed:
        """:meth:`PaymentSessions.claim_cart <paysession.PaymentSessions.claim_cart>`."""
        return await self._run(
            functools.partial(
                self.sessions.claim_cart,
                cart_id,
                lease=lease,
                session_id=session_id,
                action=action,
            )
        )

    async def release_cart(self, claim: Claim) -> None:
        """Release a claim taken by :meth:`claim_cart`."""
        await self._run(functools.partial(self.sessions.release_cart, claim))

    async def claim_of(self, cart_id: str) -> Claim | None:
        """The claim on the cart, live or expired, or None."""
        return await self._run(functools.partial(self.sessions.claim_of, cart_id))

    async def stale(self, older_than: timedelta, *, limit: int = 1000) -> list[PaymentSession]:
        """Sessions with no move for ``older_than`` that are neither authorized nor canceled."""
        return await self._run(functools.partial(self.sessions.stale, older_than, limit=limit))

    async def authorization_conflict(self, session_id: str) -> str | None:
        """Why an authorization of this session would be one its cart cannot keep, or None."""
        return await self._run(functools.partial(self.sessions.authorization_conflict, session_id))

    async def reconcile(
        self,
        session_id: str,
        provider_status: str,
        *,
        event_id: str | None = None,
        observed_at: datetime | None = None,
        attempts: int = 5,
        provider: Providers | None = None,
    ) -> list[TransitionRecord]:
        """:meth:`PaymentSessions.reconcile <paysession.PaymentSessions.reconcile>`."""
        return await self._run(
            functools.partial(
                self.sessions.reconcile,
                session_id,
                provider_status,
                event_id=event_id,
                observed_at=observed_at,
                attempts=attempts,
                provider=provider,
            )
        )

    async def reconcile_result(
        self,
        session_id: str,
        provider_status: str,
        *,
        event_id: str | None = None,
        observed_at: datetime | None = None,
        attempts: int = 5,
        provider: Providers | None = None,
    ) -> Reconciliation:
        """:meth:`reconcile`, telling what it did."""
        return await self._run(
            functools.partial(
                self.sessions.reconcile_result,
                session_id,
                provider_status,
                event_id=event_id,
                observed_at=observed_at,
                attempts=attempts,
                provider=provider,
            )
        )

    async def anomalies(
        self, session_id: str | None = None, *, kind: AnomalyKind | str | None = None
    ) -> list[ProviderEvent]:
        """The provider reports recorded as anomalies, oldest first."""
        return await self._run(functools.partial(self.sessions.anomalies, session_id, kind=kind))

    async def provider_events(
        self, *, session_id: str | None = None, outcome: EventOutcome | str | None = None
    ) -> list[ProviderEvent]:
        """The provider reports reconciliation recorded."""
        return await self._run(
            functools.partial(self.sessions.provider_events, session_id=session_id, outcome=outcome)
        )

    async def complete_cart(
        self,
        provider: PaymentProvider | Mapping[str, PaymentProvider],
        cart_id: str,
        *,
        actor: str = "checkout",
        attempts: int = 5,
        lease: timedelta = DEFAULT_LEASE,
    ) -> Completion:
        """:func:`paysession.checkout.complete_cart`; the provider is called in the thread too."""
        return await self._run(
            functools.partial(
                complete_cart,
                self.sessions,
                provider,
                cart_id,
                actor=actor,
                attempts=attempts,
                lease=lease,
            )
        )

    async def complete_session(
        self,
        provider: PaymentProvider | Mapping[str, PaymentProvider],
        session_id: str,
        *,
        actor: str = "checkout",
        attempts: int = 5,
        lease: timedelta = DEFAULT_LEASE,
    ) -> Completion:
        """:func:`paysession.checkout.complete_session`."""
        return await self._run(
            functools.partial(
                complete_session,
                self.sessions,
                provider,
                session_id,
                actor=actor,
                attempts=attempts,
                lease=lease,
            )
        )

    async def cancel_payment(
        self,
        provider: PaymentProvider | Mapping[str, PaymentProvider],
        session_id: str,
        *,
        actor: str = "checkout",
        lease: timedelta = DEFAULT_LEASE,
    ) -> list[TransitionRecord]:
        """:func:`paysession.checkout.cancel_payment`."""
        return await self._run(
            functools.partial(
                cancel_payment, self.sessions, provider, session_id, actor=actor, lease=lease
            )
        )

    async def expire_sessions(
        self,
        provider: PaymentProvider | Mapping[str, PaymentProvider],
        *,
        older_than: timedelta,
        limit: int = 1000,
    ) -> Expiry:
        """:func:`paysession.checkout.expire_sessions`."""
        return await self._run(
            functools.partial(
                expire_sessions, self.sessions, provider, older_than=older_than, limit=limit
            )
        )

    async def aclose(self) -> None:
        """Close the store (its connections) once the calls in flight are done."""
        await self._run(self.sessions.store.close)

    async def __aenter__(self) -> AsyncPaymentSessions:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncPaymentSessions {self.sessions.store!r}>"


__all__ = ["AsyncPaymentSessions"]
