"""Small builders shared by the tests: a controllable clock and sessions in any status."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from paysession import PaymentSession, PaymentSessionStatus, SessionMachine
from paysession.lifecycle import MOVES

T0 = datetime(2024, 4, 21, 14, 50, 24, 77000, tzinfo=timezone.utc)


class StepClock:
    """A clock that advances by ``step`` on every reading; ``back()`` makes it jump back."""

    def __init__(self, start: datetime = T0, step: timedelta = timedelta(milliseconds=1)):
        self.now = start
        self.step = step

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now

    def back(self, by: timedelta = timedelta(seconds=5)) -> None:
        self.now -= by


# The shortest way to reach each status from a new, initiated session with an amount.
PATHS: dict[PaymentSessionStatus, tuple[str, ...]] = {
    PaymentSessionStatus.PENDING: (),
    PaymentSessionStatus.REQUIRES_MORE: ("require_more",),
    PaymentSessionStatus.AUTHORIZED: ("authorize",),
    PaymentSessionStatus.ERROR: ("fail",),
    PaymentSessionStatus.CANCELED: ("cancel",),
}


def args_for(trigger: str) -> dict[str, object]:
    """Valid arguments for ``trigger``."""
    params = MOVES[trigger].params
    if "amount" in params:
        return {"amount": 2500}
    if "data" in params:
        return {"data": {"id": "pi_1"}}
    return {}


def machine_in(
    status: PaymentSessionStatus, clock: StepClock | None = None, **kwargs: object
) -> SessionMachine:
    """A machine whose initiated session (amount 1000) has reached ``status``."""
    clock = clock or StepClock()
    session = PaymentSession.new(cart_id="cart_1", provider_id="stripe", amount=1000, clock=clock)
    machine = SessionMachine(session, clock=clock, **kwargs)  # type: ignore[arg-type]
    machine.initiate({"id": "pi_1", "client_secret": "pi_1_secret_abc"})
    for trigger in PATHS[status]:
        machine.fire(trigger)
    assert machine.session.status is status
    return machine
