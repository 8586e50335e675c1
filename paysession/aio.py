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
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

from paysession.checkout import cancel_payment, complete_cart, complete_session
from paysession.expiry import expire_sessions
from paysession.feed import FeedReader
from paysession.service import PaymentSessions
from paysession.store.base import LoggedRecord

_P = ParamSpec("_P")
_T = TypeVar("_T")


def _in_thread(
    function: Callable[Concatenate[PaymentSessions, _P], _T],
) -> Callable[Concatenate[AsyncPaymentSessions, _P], Awaitable[_T]]:
    """The awaitable twin of a method of PaymentSessions, or of a function taking one.

    Built from the synchronous callable, so the twin takes exactly its parameters (mypy
    checks calls against them) and carries its docstring: the two cannot drift apart.
    """

    async def twin(self: AsyncPaymentSessions, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await self._run(functools.partial(function, self.sessions, *args, **kwargs))

    functools.update_wrapper(twin, function)
    # What help() and inspect show: the callable's parameters, with self for the service.
    signature = inspect.signature(function)
    service, *rest = signature.parameters.values()
    described: Any = twin
    described.__signature__ = signature.replace(
        parameters=[service.replace(name="self", annotation=inspect.Parameter.empty), *rest]
    )
    return twin


class AsyncPaymentSessions:
    """:class:`~paysession.PaymentSessions` with awaitable methods, for asyncio code.

    Wraps a service (share one per process); ``executor`` runs the calls (None: the
    running loop's default executor). ``async with`` closes the store at the end. Each
    method takes the parameters of the synchronous method of the same name, and
    ``complete_cart``, ``complete_session``, ``cancel_payment`` and ``expire_sessions``
    those of the functions in :mod:`paysession.checkout` and :mod:`paysession.expiry`
    without their first (the service); the provider is called in the worker thread too.
    """

    def __init__(self, sessions: PaymentSessions, *, executor: Executor | None = None) -> None:
        self.sessions = sessions
        self._executor = executor

    async def _run(self, call: Callable[[], _T]) -> _T:
        loop = asyncio.get_running_loop()
        # Carry the caller's context variables (request ids, tracing) into the thread.
        context = contextvars.copy_context()
        return await loop.run_in_executor(self._executor, functools.partial(context.run, call))

    # The service's methods, in the order PaymentSessions documents them.
    create = _in_thread(PaymentSessions.create)
    get = _in_thread(PaymentSessions.get)
    find = _in_thread(PaymentSessions.find)
    selected = _in_thread(PaymentSessions.selected)
    history = _in_thread(PaymentSessions.history)
    verify = _in_thread(PaymentSessions.verify)
    verify_all = _in_thread(PaymentSessions.verify_all)
    heads = _in_thread(PaymentSessions.heads)
    version = _in_thread(PaymentSessions.version)
    records_since = _in_thread(PaymentSessions.records_since)
    fire = _in_thread(PaymentSessions.fire)
    fire_many = _in_thread(PaymentSessions.fire_many)
    fire_with_retry = _in_thread(PaymentSessions.fire_with_retry)
    select = _in_thread(PaymentSessions.select)
    claim_cart = _in_thread(PaymentSessions.claim_cart)
    release_cart = _in_thread(PaymentSessions.release_cart)
    claim_of = _in_thread(PaymentSessions.claim_of)
    abandoned = _in_thread(PaymentSessions.abandoned)
    authorization_conflict = _in_thread(PaymentSessions.authorization_conflict)
    record_answer = _in_thread(PaymentSessions.record_answer)
    reconcile = _in_thread(PaymentSessions.reconcile)
    reconcile_report = _in_thread(PaymentSessions.reconcile_report)
    provider_events = _in_thread(PaymentSessions.provider_events)
    anomalies = _in_thread(PaymentSessions.anomalies)
    holds = _in_thread(PaymentSessions.holds)
    unreleased_holds = _in_thread(PaymentSessions.unreleased_holds)
    release_hold = _in_thread(PaymentSessions.release_hold)
    commit = _in_thread(PaymentSessions.commit)
    rollback = _in_thread(PaymentSessions.rollback)

    async def within(self, connection: object) -> AsyncPaymentSessions:
        """The awaitable twin of :meth:`PaymentSessions.within`: a view in the caller's
        transaction on ``connection``, its calls run in worker threads like every other
        (a ``sqlite3`` connection must then be opened with ``check_same_thread=False``;
        a psycopg connection may be used from any thread)."""
        view = await self._run(functools.partial(self.sessions.within, connection))
        return AsyncPaymentSessions(view, executor=self._executor)

    async def follow(
        self, cursor: str | int | None = None, *, batch: int = 500, idle: float | None = None
    ) -> AsyncIterator[LoggedRecord]:
        """:meth:`PaymentSessions.follow <paysession.PaymentSessions.follow>`, as an
        async iterator.

        Its reads and waits run in a thread of its own, not the executor's: a follower
        waits for as long as the feed is quiet, and must not hold a thread that requests
        need. The arguments are checked at the first iteration. Leaving the loop, or
        cancelling the task, closes the feed (on PostgreSQL, its listening connection)
        once the read or wait in flight has ended.
        """
        reader = FeedReader(self.sessions.store, cursor, batch=batch, idle=idle)
        loop = asyncio.get_running_loop()
        own = ThreadPoolExecutor(max_workers=1, thread_name_prefix="paysession-follow")
        try:
            while (page := await loop.run_in_executor(own, reader.step)) is not None:
                for logged in page:
                    yield logged
        finally:
            # Queued behind the step in flight (a cancellation does not stop it, and it
            # lasts at most one read or one wait of LONGEST_PAUSE): never closed mid-step.
            closing = loop.run_in_executor(own, reader.close)
            own.shutdown(wait=False)
            await closing

    # The checkout flows, which take the service as their first argument.
    complete_cart = _in_thread(complete_cart)
    complete_session = _in_thread(complete_session)
    cancel_payment = _in_thread(cancel_payment)
    expire_sessions = _in_thread(expire_sessions)

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
