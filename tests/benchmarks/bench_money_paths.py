"""The money paths, timed: ``python -m tests.benchmarks.bench_money_paths [--rounds N]``.

Two paths a checkout pays on every order, on a SQLite file (and in memory):

- ``complete_cart``: claim the cart, ask the provider to authorize, record the answer
  (and, since the provider-call ledger, the call itself);
- ``reconcile``: a webhook's report of an authorization applied to an initiated session.

The provider answers at once (no network), so what is timed is paysession's own work.
Each round times ``--per-round`` operations of each path on fresh sessions; the median
of the rounds is printed, in microseconds per operation. Run it on two checkouts of the
code (``PYTHONPATH=<checkout>``) one after the other, to compare before and after.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paysession import PaymentSessions, ProviderReply
from paysession.checkout import complete_cart
from paysession.store import MemoryStore, SessionStore, SqliteStore


class InstantProvider:
    """A provider that authorizes at once, for the sessions' own amount."""

    id = "stripe"

    def _reply(self, session: Any, status: str) -> Any:
        return ProviderReply(status, {"id": f"pi_{session.id}"})

    def initiate(self, session: Any) -> Any:
        return self._reply(session, "requires_payment_method")

    def update(self, session: Any) -> Any:
        return self._reply(session, "requires_payment_method")

    def authorize(self, session: Any, *, idempotency_key: str) -> Any:
        return self._reply(session, "requires_capture")

    def cancel(self, session: Any, *, idempotency_key: str) -> Any:
        return self._reply(session, "canceled")

    def status(self, session: Any) -> Any:
        return self._reply(session, "requires_capture")


def _prepare(sessions: PaymentSessions, count: int, tag: str) -> list[tuple[str, str]]:
    made = []
    for n in range(count):
        cart_id = f"cart_{tag}_{n}"
        session = sessions.create(cart_id=cart_id, provider_id="stripe", amount=1000)
        sessions.fire(session.id, "initiate", data={"id": f"pi_{session.id}"})
        sessions.select(session.id)
        made.append((cart_id, session.id))
    return made


def _timed(work: Callable[[], None], count: int) -> float:
    start = time.perf_counter()
    work()
    return (time.perf_counter() - start) / count * 1e6


def measure(store: SessionStore, rounds: int, per_round: int) -> dict[str, float]:
    sessions = PaymentSessions(store)
    provider = InstantProvider()
    figures: dict[str, list[float]] = {"complete_cart": [], "reconcile": []}
    for number in range(rounds):
        carts = _prepare(sessions, per_round, f"c{number}")
        reports = _prepare(sessions, per_round, f"r{number}")

        def complete(carts: list[tuple[str, str]] = carts) -> None:
            for cart_id, _ in carts:
                complete_cart(sessions, provider, cart_id)

        def reconcile(reports: list[tuple[str, str]] = reports, number: int = number) -> None:
            for n, (_, session_id) in enumerate(reports):
                sessions.reconcile(session_id, "requires_capture", event_id=f"evt_{number}_{n}")

        figures["complete_cart"].append(_timed(complete, per_round))
        figures["reconcile"].append(_timed(reconcile, per_round))
    return {name: statistics.median(values) for name, values in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per-round", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        stores: dict[str, SessionStore] = {
            "memory": MemoryStore(),
            "sqlite": SqliteStore(Path(folder) / "bench.db"),
        }
        print("| store | path | µs per operation (median) |")
        print("|---|---|---|")
        for name, store in stores.items():
            for path, value in measure(store, args.rounds, args.per_round).items():
                print(f"| {name} | {path} | {value:.0f} |")
            store.close()


if __name__ == "__main__":
    main()
