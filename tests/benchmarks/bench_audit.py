"""Audit trail throughput: JSON Lines appends (fsync on and off) and verify speed.

A plain script, not a test: ``python tests/benchmarks/bench_audit.py [--records N]``.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--records", type=int, default=20_000, help="records to time (default 20000)"
    )
    parser.add_argument(
        "--fsync-records", type=int, default=1_000, help="records to time with fsync (default 1000)"
    )
    parser.add_argument("--dir", type=Path, help="where to write (default: a temporary directory)")
    args = parser.parse_args()

    key = b"bench-key"
    plain = make_records(args.records, None)
    keyed = make_records(args.records, key)
    rows: list[list[object]] = []

    def row(what: str, count: int, seconds: float) -> None:
        rows.append([what, count, f"{seconds:.3f}", f"{count / seconds:,.0f}"])

    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        directory = Path(scratch)
        synced = plain[: args.fsync_records]
        row(
            "JsonlSink.append, fsync=True",
            len(synced),
            timed(lambda: append_all(directory / "synced.jsonl", synced, True)),
        )
        path = directory / "trail.jsonl"
        row(
            "JsonlSink.append, fsync=False",
            len(plain),
            timed(lambda: append_all(path, plain, False)),
        )
        keyed_path = directory / "keyed.jsonl"
        append_all(keyed_path, keyed, False)

        row(
            "read_jsonl (decode + canonical check)",
            len(plain),
            timed(lambda: list(read_jsonl(path))),
        )
        report = verify(plain)
        assert report.ok, report.problems[:3]
        row("verify, records in memory", len(plain), timed(lambda: verify(plain)))
        row("verify, HMAC key, in memory", len(keyed), timed(lambda: verify(keyed, key=key)))
        row(
            "verify(read_jsonl(file))",
            len(plain),
            timed(lambda: verify(read_jsonl(path))),
        )
        row(
            "verify(read_jsonl(file)), HMAC key",
            len(keyed),
            timed(lambda: verify(read_jsonl(keyed_path), key=key)),
        )
        size = path.stat().st_size

    print(format_table(("operation", "records", "seconds", "records/s"), rows))
    sessions = len({r.session_id for r in plain})
    print(f"\n{len(plain)} records over {sessions} sessions, {size / len(plain):.0f} bytes a line")


if __name__ == "__main__":
    main()
