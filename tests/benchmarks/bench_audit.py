"""Audit trail throughput: JSON Lines appends (fsync on and off) and verify speed.

A plain script, not a test: ``python tests/benchmarks/bench_audit.py [--quick]``; its
``collect(quick)`` also feeds ``python -m tests.benchmarks --only audit``.
It drives random sessions through SessionMachine to get realistic records, then times
JsonlSink.append, read_jsonl, and verify over the same records. Figures depend on the
disk (fsync) and the CPU; run it on the machine you care about.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import NamedTuple

from paysession import PaymentSession, PaymentSessionStatus, PaySessionError, SessionMachine
from paysession.audit import JsonlSink, read_jsonl, verify
from paysession.cli import format_table
from paysession.record import TransitionRecord

TRIGGERS = {
    "initiate": 4.0,
    "update": 4.0,
    "select": 2.0,
    "deselect": 2.0,
    "require_more": 3.0,
    "retry": 4.0,
    "fail": 2.0,
    "authorize": 3.0,
    "cancel": 0.3,
}


def make_records(count: int, key: bytes | None, seed: int = 1) -> list[TransitionRecord]:
    """About ``count`` records of interleaved sessions (ten moves a session on average)."""
    rng = random.Random(seed)
    now = datetime(2024, 4, 21, tzinfo=timezone.utc)

    def clock() -> datetime:
        nonlocal now
        now += timedelta(milliseconds=rng.randrange(1, 50))
        return now

    machines = []
    for number in range(max(1, count // 10)):
        at = clock()
        session = PaymentSession(
            id=f"ps_bench_{number:06d}",
            cart_id=f"cart_{number:06d}",
            provider_id="stripe",
            is_selected=False,
            is_initiated=False,
            status=PaymentSessionStatus.PENDING,
            data={},
            idempotency_key=f"idem_{number:06d}",
            amount=4999,
            payment_authorized_at=None,
            created_at=at,
            updated_at=at,
        )
        machines.append(SessionMachine(session, clock=clock, key=key))
    records: list[TransitionRecord] = []
    sent = {id(m): 0 for m in machines}
    names, weights = list(TRIGGERS), list(TRIGGERS.values())
    while len(records) < count:
        machine = rng.choice(machines)
        trigger = rng.choices(names, weights)[0]
        params: dict[str, object] = {}
        if trigger == "initiate":
            params["data"] = {"id": f"pi_{len(records)}", "client_secret": "pi_secret_x"}
        elif trigger == "update":
            params["amount"] = rng.randrange(1, 100_000)
        try:
            machine.fire(trigger, actor="storefront", **params)
        except PaySessionError:
            continue
        history = machine.history
        records.extend(history[sent[id(machine)] :])
        sent[id(machine)] = len(history)
    return records


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def append_all(path: Path, records: list[TransitionRecord], fsync: bool) -> None:
    with JsonlSink(path, fsync=fsync) as sink:
        for record in records:
            sink.append(record)


def measure(count: int, synced_count: int, directory: Path | None = None) -> list[Timing]:
    """Time each operation over about ``count`` records (``synced_count`` with fsync)."""
    key = b"bench-key"
    plain = make_records(count, None)
    keyed = make_records(count, key)
    timings: list[Timing] = []
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        where = Path(scratch)
        synced = plain[:synced_count]
        path, keyed_path = where / "trail.jsonl", where / "keyed.jsonl"
        append_all(keyed_path, keyed, False)
        runs: list[tuple[str, int, Callable[[], object]]] = [
            (
                "JsonlSink.append, fsync=True",
                len(synced),
                lambda: append_all(where / "synced.jsonl", synced, True),
            ),
            ("JsonlSink.append, fsync=False", len(plain), lambda: append_all(path, plain, False)),
            ("read_jsonl (decode + canonical check)", len(plain), lambda: list(read_jsonl(path))),
            ("verify, records in memory", len(plain), lambda: verify(plain)),
            ("verify, HMAC key, in memory", len(keyed), lambda: verify(keyed, key=key)),
            ("verify(read_jsonl(file))", len(plain), lambda: verify(read_jsonl(path))),
            (
                "verify(read_jsonl(file)), HMAC key",
                len(keyed),
                lambda: verify(read_jsonl(keyed_path), key=key),
            ),
        ]
        for name, n, run in runs:
            timings.append(Timing(name, n, timed(run)))
        report = verify(read_jsonl(path))
        assert report.ok and report.records == len(plain), report.problems[:3]
    return timings


class Timing(NamedTuple):
    operation: str
    records: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def collect(quick: bool = False) -> list[dict[str, object]]:
    """Rows for ``python -m tests.benchmarks``: time per record, with the rate as a note."""
    count, synced = (2_000, 200) if quick else (20_000, 1_000)
    return [
        {
            "group": "6. audit",
            "name": t.operation,
            "value": t.seconds / t.records * 1e9,
            "unit": "ns",
            "note": f"{t.rate:,.0f} records/s",
        }
        for t in measure(count, synced)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000, help="records to time")
    parser.add_argument("--fsync-records", type=int, default=1_000, help="records with fsync")
    parser.add_argument("--quick", action="store_true", help="2,000 records, 200 with fsync")
    parser.add_argument("--dir", type=Path, help="where to write (default: a temporary directory)")
    args = parser.parse_args()
    count, synced = (2_000, 200) if args.quick else (args.records, args.fsync_records)
    timings = measure(count, synced, args.dir)
    rows = [[t.operation, t.records, f"{t.seconds:.3f}", f"{t.rate:,.0f}"] for t in timings]
    print(format_table(("operation", "records", "seconds", "records/s"), rows))
    print(f"\n{count} records over {count // 10} sessions")


if __name__ == "__main__":
    main()
