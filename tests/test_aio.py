"""AsyncPaymentSessions on SQLite and PostgreSQL: the same service, off the event loop."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import time
from collections.abc import Awaitable, Callable

import pytest

from paysession import (
    Hooks,
    PaymentSessions,
    PaymentSessionStatus,
    SessionNotFound,
    TransitionEvent,
)
from paysession.aio import AsyncPaymentSessions
from paysession.checkout import CompletionOutcome
from paysession.providers import ReconciliationAnomaly, SimulatedProvider
from paysession.store.base import EventOutcome

from .conftest import StoreFactory

S = PaymentSessionStatus
REQUEST = contextvars.ContextVar("request", default="none")


async def ticking_while(call: Awaitable[object], every: float = 0.005) -> tuple[object, float]:
    """Await ``call`` while a ticker runs on the loop; return its result and the longest gap."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(every)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        result = await call
    finally:
        done.set()
        await ticker
    return result, max(gaps)


def run(factory: Callable[[], Awaitable[object]]) -> object:
    return asyncio.run(factory())  # type: ignore[arg-type]


class TestAsyncPaymentSessions:
    store_kinds = ("sqlite", "postgres")

    def test_create_fire_reconcile_complete(self, store_factory: StoreFactory) -> None:
        """The service's calls, awaited: a checkout from creation to authorization."""

        async def scenario() -> None:
            async with AsyncPaymentSessions(PaymentSessions(store_factory())) as sessions:
                session = await sessions.create(cart_id="cart_1", provider_id="stripe", amount=900)
                await sessions.fire(session.id, "initiate", data={"id": "pi_1"}, actor="shop")
                await sessions.select(session.id, actor="shop")
                assert (await sessions.selected("cart_1")) == await sessions.get(session.id)
                moved = await sessions.reconcile(session.id, "requires_action", event_id="e1")
                assert [r.trigger for r in moved] == ["require_more"]
                again = await sessions.reconcile(session.id, "requires_action", event_id="e1")
                assert again.outcome is EventOutcome.DUPLICATE
                seed = next(
                    n
                    for n in range(999)
                    if SimulatedProvider(n).scenario(session.id) == "authorized"
                )
                done = await sessions.complete_cart(SimulatedProvider(seed), "cart_1")
                assert done.outcome is CompletionOutcome.AUTHORIZED
                with pytest.raises(ReconciliationAnomaly):
                    await sessions.reconcile(session.id, "processing", event_id="e2")
                assert [a.event_id for a in await sessions.anomalies()] == ["e2"]
                events = await sessions.provider_events(session_id=session.id)
                assert [e.outcome for e in events] == [
                    EventOutcome.APPLIED,  # the webhook's requires_action
                    EventOutcome.APPLIED,  # the provider's answer to the completion
                    EventOutcome.ANOMALY,
                ]
                assert [s.id for s in await sessions.find(status="authorized")] == [session.id]
                assert len(await sessions.history(session.id)) == 6
                assert (await sessions.verify(session.id)).ok
                with pytest.raises(SessionNotFound):
                    await sessions.get("ps_missing")

        run(scenario)

    def test_the_loop_stays_responsive(self, store_factory: StoreFactory) -> None:
        """A call that takes 300 ms in its thread never stalls the loop for 100 ms."""
        hooks = Hooks()

        @hooks.after("authorize")
        def slow_ledger(event: TransitionEvent) -> None:
            time.sleep(0.3)  # a blocking call (a ledger, a mail) inside the move's hooks

        async def scenario() -> None:
            sessions = AsyncPaymentSessions(PaymentSessions(store_factory(), hooks=hooks))
            session = await sessions.create(cart_id="cart_1", provider_id="stripe", amount=900)
            await sessions.fire(session.id, "initiate", data={"id": "pi_1"})
            started = time.perf_counter()
            moved, gap = await ticking_while(sessions.reconcile(session.id, "succeeded"))
            assert time.perf_counter() - started >= 0.3
            assert [r.trigger for r in moved] == ["authorize"]  # type: ignore[attr-defined]
            assert gap < 0.1

        run(scenario)

    def test_many_calls_at_once(self, store_factory: StoreFactory) -> None:
        """Forty awaited calls in flight over twenty sessions: each commits, trails verify."""

        async def scenario() -> None:
            sessions = AsyncPaymentSessions(PaymentSessions(store_factory()))
            created = await asyncio.gather(
                *(
                    sessions.create(cart_id=f"cart_{n}", provider_id="stripe", amount=100 + n)
                    for n in range(20)
                )
            )
            await asyncio.gather(
                *(sessions.fire(s.id, "initiate", data={"id": s.id}) for s in created)
            )
            # Two reports per session at once, racing each other: one applies, one no-op.
            await asyncio.gather(
                *(
                    sessions.reconcile(s.id, "requires_capture", event_id=f"{s.id}_{k}")
                    for s in created
                    for k in range(2)
                )
            )
            for session in created:
                assert (await sessions.get(session.id)).status is S.AUTHORIZED
                assert [r.trigger for r in await sessions.history(session.id)] == [
                    "create",
                    "initiate",
                    "authorize",
                ]
                assert (await sessions.verify(session.id)).ok

        run(scenario)

    def test_context_reaches_the_hooks(self, store_factory: StoreFactory) -> None:
        """Context variables set by the request are seen by hooks in the worker thread."""
        hooks, seen = Hooks(), []
        hooks.after()(lambda event: seen.append(REQUEST.get()))

        async def scenario() -> None:
            sessions = AsyncPaymentSessions(PaymentSessions(store_factory(), hooks=hooks))
            session = await sessions.create(cart_id=None, provider_id="stripe", amount=1)
            REQUEST.set("req-42")
            await sessions.fire(session.id, "cancel")

        run(scenario)
        assert seen == ["req-42"]


class TestNoDrift:
    def test_every_public_method_and_parameter_has_its_twin(self) -> None:
        """A public method of PaymentSessions, or a parameter of one, missing here fails."""

        def public(cls: type) -> dict[str, inspect.Signature]:
            return {
                name: inspect.signature(function)
                for name, function in inspect.getmembers(cls, inspect.isfunction)
                if not name.startswith("_")
            }

        sync, twin = public(PaymentSessions), public(AsyncPaymentSessions)
        assert sorted(set(sync) - set(twin)) == []
        for name, signature in sync.items():
            mine = twin[name].parameters
            for parameter in signature.parameters.values():
                assert parameter.name in mine, (name, parameter.name)
                theirs = mine[parameter.name]
                assert (theirs.kind, theirs.default) == (parameter.kind, parameter.default), (
                    name,
                    parameter.name,
                )
            twin_function = getattr(AsyncPaymentSessions, name)
            if name == "follow":  # an iterator's twin is an async iterator
                assert inspect.isasyncgenfunction(twin_function), name
            else:
                assert inspect.iscoroutinefunction(twin_function), name
