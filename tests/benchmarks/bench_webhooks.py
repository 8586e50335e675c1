"""A Stripe webhook, from its raw bytes to the move, timed against ``reconcile`` given the
fields already extracted: ``python -m tests.benchmarks.bench_webhooks [--rounds N]``.

On a SQLite file, each round times ``--per-round`` webhooks of each kind on fresh
initiated sessions, in turn:

- ``reconcile``: the yardstick, ``PaymentSessions.reconcile`` with the status, event id,
  instant, event type, amount and currency a hand-written endpoint extracted;
- ``by session id``: ``parse_webhook`` (the SDK's signature check, the JSON, the report)
  then ``reconcile_report``, the event naming its session in ``metadata.session_id``
  (as the intents ``StripeProvider`` makes do);
- ``by reference``: the same, the event naming only its PaymentIntent, found through
  the provider-reference index (as Medusa's sessions are).

The events are the corpus's ``payment_intent.succeeded`` (a real Stripe event, 5 KB),
each signed beforehand (Stripe signs, not the endpoint). The median of the rounds is
printed in microseconds per webhook, with each path's ratio to the yardstick; the
target is 1.2 at most.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import stripe

from paysession import PaymentSessions
from paysession.providers.stripe import parse_webhook
from paysession.store import SqliteStore

SECRET = "whsec_bench"
EVENT = (
    Path(__file__).resolve().parents[1]
    / "data/providers/stripe/event_payment_intent_succeeded.stripe-ruby-mock.json"
)
TARGET = 1.2


def _events(sessions: PaymentSessions, count: int, tag: str, name_session: bool) -> list[Any]:
    """Fresh initiated sessions, each with its signed succeeded event."""
    template = json.loads(EVENT.read_text())
    made = []
    for n in range(count):
        session = sessions.create(cart_id=None, provider_id="stripe", amount=2000)
        intent_id = f"pi_{tag}_{n}"
        sessions.fire(session.id, "initiate", data={"id": intent_id, "currency": "usd"})
        event = json.loads(json.dumps(template))
        event["id"] = f"evt_{tag}_{n}"
        event["data"]["object"]["id"] = intent_id
        event["data"]["object"]["metadata"] = {"session_id": session.id} if name_session else {}
        body = json.dumps(event).encode()
        header = stripe.WebhookSignature.generate_signature_header(body.decode(), SECRET)
        made.append((session.id, event, body, header))
    return made


def _timed(work: Callable[[], None], count: int) -> float:
    start = time.perf_counter()
    work()
    return (time.perf_counter() - start) / count * 1e6


def measure(store: SqliteStore, rounds: int, per_round: int) -> dict[str, float]:
    sessions = PaymentSessions(store)
    figures: dict[str, list[float]] = {"reconcile": [], "by session id": [], "by reference": []}
    for number in range(rounds):
        plain = _events(sessions, per_round, f"p{number}", True)
        named = _events(sessions, per_round, f"s{number}", True)
        referenced = _events(sessions, per_round, f"r{number}", False)

        def extracted(made: list[Any] = plain) -> None:
            for session_id, event, _, _ in made:
                intent = event["data"]["object"]
                sessions.reconcile(
                    session_id,
                    intent["status"],
                    event_id=event["id"],
                    observed_at=datetime.fromtimestamp(event["created"], tz=timezone.utc),
                    event_type=event["type"],
                    amount=intent["amount"],
                    currency=intent["currency"],
                )

        def raw(made: list[Any]) -> Callable[[], None]:
            def run() -> None:
                for _, _, body, header in made:
                    report = parse_webhook(body, header, SECRET)
                    assert report is not None
                    sessions.reconcile_report(report)

            return run

        # In turn, and in another order each round, so that no path always runs first.
        timings = [
            ("reconcile", extracted),
            ("by session id", raw(named)),
            ("by reference", raw(referenced)),
        ]
        for offset in range(3):
            name, work = timings[(number + offset) % 3]
            figures[name].append(_timed(work, per_round))
        for made in (plain, named, referenced):
            for session_id, *_ in made:
                assert sessions.get(session_id).status == "authorized"
    return {name: statistics.median(values) for name, values in figures.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--per-round", type=int, default=300)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as place:
        store = SqliteStore(Path(place) / "bench.db")
        try:
            medians = measure(store, args.rounds, args.per_round)
        finally:
            store.close()
    base = medians["reconcile"]
    print(f"{'path':<16} {'µs/webhook':>11} {'ratio':>7}  target <= {TARGET}")
    worst = 0.0
    for name, value in medians.items():
        ratio = value / base
        worst = max(worst, ratio)
        print(f"{name:<16} {value:>11.1f} {ratio:>7.3f}")
    print("PASS" if worst <= TARGET else "FAIL")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
