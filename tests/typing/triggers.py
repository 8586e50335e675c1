"""Checked by mypy in CI, never run: a misspelt trigger is a type error on every surface.

Each misspelling carries ``# type: ignore[...]`` for the error it must raise. ``mypy
--strict`` reports an ignore that silences nothing, so CI fails the day a misspelt
trigger type-checks again.
"""

from __future__ import annotations

from paysession import AsyncPaymentSessions, PaymentSessions, SessionMachine


def fires(sessions: PaymentSessions, machine: SessionMachine) -> None:
    sessions.fire("ps_1", "authorize")
    sessions.fire("ps_1", "authorise")  # type: ignore[arg-type]
    sessions.fire_with_retry("ps_1", "cancel", attempts=3)
    sessions.fire_with_retry("ps_1", "cancle")  # type: ignore[arg-type]
    sessions.fire_many("ps_1", [("fail", {}), ("retry", {})])
    sessions.fire_many("ps_1", [("fial", {})])  # type: ignore[list-item]
    machine.fire("require_more")
    machine.fire("require-more")  # type: ignore[arg-type]


async def fires_async(twin: AsyncPaymentSessions) -> None:
    await twin.fire("ps_1", "authorize")
    await twin.fire("ps_1", "authorise")  # type: ignore[arg-type]
    await twin.fire_with_retry("ps_1", "select")
    await twin.fire_with_retry("ps_1", "selcet")  # type: ignore[arg-type]
