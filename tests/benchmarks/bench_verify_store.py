"""verify_all on a SQLite store of a million records: records per second, and memory.

``python -m tests.benchmarks.bench_verify_store [--records N] [--quick]``. Builds a
store of sessions ten records long (record 0 and nine moves, made by SessionMachine in
memory and committed as one write each), then, in a fresh child process, times
``PaymentSessions.verify_all()`` beside the yardstick of reading the same records
alone (the paged SELECT and the decoding of each record, no checks), sampling the
child's RSS at every page. Targets: at least 20,000 records/s, and an RSS that does
not grow with the store (the highest sample of the run within 5% of the highest in
its first tenth, once warm).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from paysession import PaymentSession, PaymentSessions, SessionMachine
from paysession.store import SqliteStore, Write

MOVES = (
    ("initiate", {"data": {"id": "pi", "client_secret": "pi_secret"}}),
    ("update", {"amount": 1200}),
    ("require_more", {}),
    ("retry", {}),
    ("select", {}),
    ("require_more", {}),
    ("retry", {}),
    ("authorize", {}),
    ("cancel", {}),
)


def build(path: Path, sessions: int) -> None:
    """``sessions`` sessions of ten records each, on distinct carts."""
    store = SqliteStore(path, synchronous="NORMAL")
    start = datetime(2024, 4, 21, tzinfo=timezone.utc)
    for number in range(sessions):
        clock = _Ticks(start + number * 10 * _TICK)
        initial = PaymentSession.new(
            cart_id=f"cart_{number:07d}", provider_id="stripe", amount=1000, clock=clock
        )
        machine = SessionMachine(initial, clock=clock)
        for trigger, args in MOVES:
            machine.fire(trigger, **args)
        history = machine.history
        store.create(initial, history[0])
        store.commit([Write(machine.session, 0, tuple(history[1:]))])
    store.close()


_TICK = timedelta(milliseconds=1)


class _Ticks:
    """A clock one millisecond further on at each reading."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        self.at += _TICK
        return self.at


def _rss() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def child(path: str, what: str) -> dict[str, object]:
    store = SqliteStore(path)
    samples: list[int] = []
    started = time.perf_counter()
    if what == "verify_all":
        report = PaymentSessions(store).verify_all(progress=lambda s, r: samples.append(_rss()))
        records, ok = report.records, report.ok
    else:  # the yardstick: the same pages read and decoded, nothing checked
        records, after = 0, None
        while True:
            page = store.trails(after=after, limit=500)
            records += sum(len(trail) for _, trail in page)
            samples.append(_rss())
            if len(page) < 500:
                break
            after = page[-1][0].session.id
        ok = True
    seconds = time.perf_counter() - started
    return {"records": records, "seconds": seconds, "ok": ok, "rss": samples}


def run_child(path: Path, what: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.bench_verify_store", "--child", str(path), what],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 records")
    parser.add_argument("--child", nargs=2, metavar=("PATH", "WHAT"))
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    total = 100_000 if args.quick else args.records
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "verify.db"
        started = time.perf_counter()
        build(path, total // 10)
        print(
            f"built {total:,} records in {time.perf_counter() - started:.0f} s "
            f"({os.path.getsize(path) / 2**20:.0f} MB)",
            file=sys.stderr,
        )
        rows = []
        failed = 0
        for what in ("read only (yardstick)", "verify_all"):
            result = run_child(path, "read" if what.startswith("read") else what)
            records = int(result["records"])  # type: ignore[call-overload]
            seconds = float(result["seconds"])  # type: ignore[arg-type]
            rss: list[int] = result["rss"]  # type: ignore[assignment]
            rate = records / seconds
            # Warm-up (SQLite's page cache, the first pages' objects) fills the first
            # tenth of the run; memory that grew with the store would keep rising after.
            growth = max(rss) / max(rss[: max(1, len(rss) // 10)])
            rows.append((what, records, rate, rss[0], max(rss), growth, result["ok"]))
        print(
            "| pass | records | records/s | RSS first page | RSS highest | highest / highest "
            "in the first tenth | ok |"
        )
        print("|---|---:|---:|---:|---:|---:|---|")
        for what, records, rate, first, high, growth, ok in rows:
            print(
                f"| {what} | {records:,} | {rate:,.0f} | {first / 2**20:.1f} MB "
                f"| {high / 2**20:.1f} MB | {growth:.3f}x | {ok} |"
            )
        _, _, rate, _, _, growth, ok = rows[-1]
        for label, passed in (
            (f"verify_all >= 20,000 records/s: {rate:,.0f}", rate >= 20_000),
            (f"verify_all RSS growth <= 1.05x: {growth:.3f}x", growth <= 1.05),
            ("verify_all finds the clean store clean", ok is True),
        ):
            failed += not passed
            print(f"{'PASS' if passed else 'FAIL'}  {label}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
