"""What ``paysession demo`` prints: its progress and its summary, with the verdict."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TextIO

from paysession.audit import verify
from paysession.cli._table import format_table
from paysession.record import TransitionRecord
from paysession.service import PaymentSessions
from paysession.simulation import SimulatedProvider
from paysession.status import PaymentSessionStatus
from paysession.store.base import AnomalyKind, CallAction, EventOutcome


class Progress:
    """A bar redrawn in place on a terminal; a plain line at each quarter otherwise."""

    def __init__(self, out: TextIO, total: int) -> None:
        self.out = out
        self.total = max(total, 1)
        self.tty = out.isatty()
        self.shown = -1

    def __call__(self, done: int, elapsed: float) -> None:
        if self.tty:
            filled = 30 * done // self.total
            self.out.write(
                f"\r  [{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} carts "
                f"{elapsed:5.1f} s"
            )
            self.out.flush()
            return
        quarter = 4 * done // self.total
        if quarter > self.shown:
            if quarter > 0:
                self.out.write(f"  {done}/{self.total} carts completed ({elapsed:.1f} s)\n")
                self.out.flush()
            self.shown = quarter

    def finish(self, done: int, elapsed: float) -> None:
        self(done, elapsed)
        if self.tty:
            self.out.write("\n")
        self.out.flush()


def _all_records(sessions: PaymentSessions) -> Iterator[TransitionRecord]:
    cursor = None
    while True:
        page = sessions.records_since(cursor, 5000)
        if not page:
            return
        yield from (logged.record for logged in page)
        cursor = page[-1].cursor


def summary(
    sessions: PaymentSessions,
    ledger: SimulatedProvider,
    tallies: list[tuple[str, dict[str, int], str | None]],
    expired: int,
    out: TextIO,
    elapsed: float,
) -> bool:
    tally: Counter[str] = Counter()
    for _, counts, _ in tallies:
        tally.update(counts)
    records = list(_all_records(sessions))
    report = verify(records)
    found = sessions.find()
    statuses = Counter(session.status for session in found)
    authorized = Counter(
        session.cart_id for session in found if session.status is PaymentSessionStatus.AUTHORIZED
    )
    keeps = {session.id for session in found if session.status is PaymentSessionStatus.AUTHORIZED}
    holds = ledger.holds()
    orphaned = [hold for hold in holds if hold.session_id not in keeps]
    authorizations = ledger.authorizations
    moves = Counter(record.trigger for record in records if record.seq > 0)
    authorized_by = Counter(
        "webhook" if (record.actor or "").startswith("provider:") else "storefront"
        for record in records
        if record.trigger == "authorize"
    )
    events = sessions.provider_events()
    voids = sum(
        1
        for session in found
        for call in sessions.store.provider_calls(session.id)
        if call.action is CallAction.VOID and call.releases
    )
    outcomes = Counter(event.outcome for event in events if event.event_id.startswith("evt_"))
    doubles = sessions.anomalies(kind=AnomalyKind.DOUBLE_AUTHORIZATION)
    twice = sum(1 for count in authorized.values() if count > 1)
    rows: list[tuple[str, object]] = [
        *((f"sessions {status.value}", statuses[status]) for status in PaymentSessionStatus),
        ("moves recorded", sum(moves.values())),
        *((f"  {trigger}", count) for trigger, count in sorted(moves.items())),
        ("authorizations recorded by the storefront", authorized_by["storefront"]),
        ("authorizations recorded by a webhook first", authorized_by["webhook"]),
        ("storefront races lost (reloaded, decided again)", tally["storefront races lost"]),
        ("webhook races lost (reloaded, path recomputed)", tally["webhook races lost"]),
        ("3-D Secure challenges", tally["3-D Secure challenges"]),
        ("payments processing, then settled", tally["payments processing, then settled"]),
        ("declines, then a new attempt", tally["declines retried"]),
        ("provider timeouts, resumed with the same key", tally["timeouts resumed"]),
        (
            "switches refused while a completion was in flight",
            tally["switches refused while a completion was in flight"],
        ),
        ("completions crashed after the provider's yes", tally["completions crashed"]),
        ("claims taken over after a crash", tally["claims taken over after a crash"]),
        ("webhooks delivered", tally["webhooks delivered"]),
        ("  applied", outcomes[EventOutcome.APPLIED]),
        ("  no-ops", outcomes[EventOutcome.NOOP]),
        ("  duplicates ignored", sum(event.duplicates for event in events)),
        ("  stale reports ignored", outcomes[EventOutcome.STALE]),
        ("  anomalies caught (recorded, not applied)", outcomes[EventOutcome.ANOMALY]),
        ("double authorizations (recorded as anomalies)", len(doubles)),
        ("abandoned sessions expired", expired),
        ("provider authorizations", sum(authorizations.values())),
        ("  keys authorized twice", sum(1 for n in authorizations.values() if n > 1)),
        ("carts authorized twice", twice),
        ("holds voided", len(ledger.voided())),
        ("  voids recorded in the store (audit holds)", voids),
        ("orphaned holds", len(orphaned)),
        ("  holds the store says are not released", len(sessions.unreleased_holds())),
    ]
    out.write("\n" + format_table(("", "count"), rows) + "\n")
    anomalies = sessions.anomalies()
    if anomalies:
        first = anomalies[0]
        out.write(
            f"\nan anomaly, for example: session {first.session_id} was "
            f"{first.session_status.value} when the provider reported "
            f"{first.provider_status!r} ({first.status.value})\n"
        )
    verdict = "ok" if report.ok else f"FAILED ({len(report.problems)} bad sessions)"
    out.write(
        f"\ntrails verified: {report.sessions} sessions, {report.records} records: {verdict}\n"
    )
    for problem in report.problems[:10]:
        out.write(f"  session {problem.session_id} seq {problem.seq}: {problem.message}\n")
    for hold in orphaned[:10]:
        out.write(f"  orphaned hold: session {hold.session_id} ({hold.provider_id})\n")
    out.write(f"finished in {elapsed:.1f} s\n")
    return report.ok and twice == 0 and not orphaned


__all__ = ["Progress", "summary"]
