"""A SessionMachine shared by many threads loses no move and keeps one consistent trail."""

from __future__ import annotations

import threading

from paysession import (
    Hooks,
    IllegalTransition,
    PaymentSession,
    PaymentSessionStatus,
    SessionMachine,
)
from paysession.audit import MemorySink, verify

THREADS = 16
MOVES_PER_THREAD = 200


class TestSharedMachine:
    def test_sixteen_threads(self) -> None:
        """16 threads updating one machine at once: every move recorded once, in one chain."""
        hooks, seen = Hooks(), []
        hooks.after()(lambda event: seen.append(event.after.amount))
        sink = MemorySink()
        machine = SessionMachine(
            PaymentSession.new(cart_id="c", provider_id="p", amount=1), hooks=hooks, sink=sink
        )
        start = threading.Barrier(THREADS)

        def work(worker: int) -> None:
            start.wait()
            for i in range(MOVES_PER_THREAD):
                machine.update(amount=worker * 10_000 + i, idempotency_key=f"{worker}-{i}")

        threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        history = machine.history
        assert len(history) == 1 + THREADS * MOVES_PER_THREAD
        assert [r.seq for r in history] == list(range(len(history)))
        assert list(sink.records) == list(history)
        assert verify(history).ok
        amounts = sorted(r.changes["amount"][1] for r in history[1:])  # type: ignore[index]
        assert amounts == sorted(
            w * 10_000 + i for w in range(THREADS) for i in range(MOVES_PER_THREAD)
        )
        assert len(seen) == THREADS * MOVES_PER_THREAD
        assert machine.session.amount == history[-1].changes["amount"][1]

    def test_racing_status_moves(self) -> None:
        """Threads racing authorize, fail and cancel: authorize and fail never both win."""
        for _ in range(20):
            machine, won = race(("authorize", "fail", "cancel"))
            assert verify(machine.history).ok
            # cancel may follow authorize or fail; authorize and fail exclude each other.
            assert not {"authorize", "fail"} <= set(won)
            assert machine.session.status in {
                PaymentSessionStatus.AUTHORIZED,
                PaymentSessionStatus.ERROR,
                PaymentSessionStatus.CANCELED,
            }
            assert len(machine.history) == 2 + len(won)


def race(triggers: tuple[str, ...]) -> tuple[SessionMachine, list[str]]:
    """Fire each trigger from its own thread at once on one initiated session."""
    machine = SessionMachine(PaymentSession.new(cart_id="c", provider_id="p", amount=5))
    machine.initiate({})
    start = threading.Barrier(len(triggers))
    won: list[str] = []

    def attempt(trigger: str) -> None:
        start.wait()
        try:
            machine.fire(trigger)
        except IllegalTransition:  # the losers are refused by the table
            return
        won.append(trigger)

    threads = [threading.Thread(target=attempt, args=(t,)) for t in triggers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return machine, won
