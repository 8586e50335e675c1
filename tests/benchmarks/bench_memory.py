"""Comparison 4: what a live session costs in memory, and whether dropped ones come back.

Both measurements run in a fresh child process (``python -m
tests.benchmarks.bench_memory --child ...``) so that neither the timing benchmarks nor
tracemalloc's own bookkeeping disturb them; the child prints one JSON object.

- ``--child tracemalloc N``: N idle sessions, each ``PaymentSession.new(..., data={})``
  with its ``SessionMachine`` (no move yet, no hooks), kept alive in a list; the traced
  bytes after minus before, over N. ``data`` is excluded by subtracting the size of the
  (empty, read-only) mapping each session holds. For scale, the same count is taken for a
  ``transitions.Machine(model=obj)`` and a python-statemachine instance over a plain
  object (the model not included), and for the snapshot and the machine apart.
- ``--child rss N``: N sessions created, moved (initiate with provider data,
  require_more, authorize with an idempotency key, cancel; a shared ``Hooks`` registry
  with a before- and an after-hook) and dropped, in batches of 10,000; the resident set
  size (``VmRSS``) after the first batch and after the last, both after a full
  collection. Their ratio should stay within 5%.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.benchmarks.bench_engine import Row, check_row

ROOT = Path(__file__).resolve().parents[2]
BATCH = 10_000


def _traced(build: Callable[[int], list[Any]], n: int) -> tuple[float, list[Any]]:
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    kept = build(n)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    return (after - before) / n, kept


def child_tracemalloc(n: int) -> dict[str, float]:
    from paysession import PaymentSession, SessionMachine
    from tests.benchmarks.bench_engine import (
        PlainSession,
        statemachine_for,
        transitions_machine,
    )

    def sessions(count: int) -> list[Any]:
        return [
            PaymentSession.new(cart_id=f"cart_{i:08d}", provider_id="stripe", amount=4999, data={})
            for i in range(count)
        ]

    # Warm every path once, so that one-off caches do not land in the first count.
    SessionMachine(sessions(1)[0])
    plain = PlainSession("ps_warm", "pending", sessions(1)[0].created_at)
    transitions_machine(plain)
    statemachine_for(PlainSession("ps_warm2", "pending", plain.created_at))

    tracemalloc.start()
    both, kept = _traced(
        lambda count: [SessionMachine(session) for session in sessions(count)],
        n,
    )
    data_bytes = sum(sys.getsizeof(m.session.data) for m in kept) / n
    del kept
    snapshot, kept_sessions = _traced(sessions, n)
    machine, kept_machines = _traced(
        lambda count: [SessionMachine(s) for s in kept_sessions[:count]], n
    )
    del kept_machines
    small = max(1, n // 10)
    models = [PlainSession(f"ps_{i}", "pending", plain.created_at) for i in range(small)]
    tr, kept_tr = _traced(lambda count: [transitions_machine(m) for m in models[:count]], small)
    del kept_tr, models
    models = [PlainSession(f"ps_{i}", "pending", plain.created_at) for i in range(small)]
    sm, _kept_sm = _traced(lambda count: [statemachine_for(m) for m in models[:count]], small)
    tracemalloc.stop()
    return {
        "count": n,
        "session_and_machine": both,
        "data": data_bytes,
        "snapshot": snapshot,
        "machine": machine,
        "transitions_machine": tr,
        "statemachine": sm,
    }


def _rss_bytes() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # a peak, not current


def child_rss(n: int) -> dict[str, Any]:
    from paysession import Hooks, PaymentSession, SessionMachine

    hooks = Hooks()
    hooks.before()(lambda event: None)
    hooks.after()(lambda event: None)

    def batch(start: int) -> None:
        machines = [
            SessionMachine(
                PaymentSession.new(
                    cart_id=f"cart_{start + i:08d}", provider_id="stripe", amount=4999, data={}
                ),
                hooks=hooks,
            )
            for i in range(BATCH)
        ]
        for i, machine in enumerate(machines):
            machine.initiate({"id": f"pi_{start + i:08d}", "client_secret": "pi_secret_x"})
            machine.require_more(actor="provider:stripe", reason="requires_action")
            machine.authorize(actor="provider:stripe", idempotency_key=f"auth_{start + i}")
            machine.cancel(actor="admin", reason="benchmark")
        del machines

    started = time.perf_counter()
    samples: list[tuple[int, int]] = []
    done = 0
    batches = max(1, n // BATCH)
    first = 0
    for b in range(batches):
        batch(done)
        done += BATCH
        if b == 0 or (b + 1) % max(1, batches // 10) == 0 or b + 1 == batches:
            gc.collect()
            rss = _rss_bytes()
            samples.append((done, rss))
            if b == 0:
                first = rss
    gc.collect()
    last = _rss_bytes()
    return {
        "sessions": done,
        "moves_each": 4,
        "rss_first": first,
        "rss_last": last,
        "samples": samples,
        "seconds": time.perf_counter() - started,
    }


def _run_child(kind: str, n: int) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.bench_memory", "--child", kind, str(n)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"memory child {kind} failed:\n{result.stderr}")
    parsed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


def collect(quick: bool = False) -> list[Row]:
    """Comparison 4: bytes per idle session (tracemalloc) and RSS over many sessions."""
    group = "4. memory"
    print(f"  {group}: tracemalloc, 10,000 idle sessions", file=sys.stderr, flush=True)
    traced = _run_child("tracemalloc", 10_000)
    per = traced["session_and_machine"] - traced["data"]
    rows = [
        Row(group, "idle session + SessionMachine, data excluded", per, "B"),
        Row(
            group, "  of which the PaymentSession snapshot (data included)", traced["snapshot"], "B"
        ),
        Row(group, "  of which the SessionMachine", traced["machine"], "B"),
        Row(group, "  the empty data mapping (excluded)", traced["data"], "B"),
        Row(group, "transitions.Machine(model=obj), per model", traced["transitions_machine"], "B"),
        Row(group, "python-statemachine instance, per model", traced["statemachine"], "B"),
        check_row(group, "bytes per idle session", per, "<=", 2048, "B"),
    ]
    total = 100_000 if quick else 1_000_000
    print(
        f"  {group}: RSS over {total:,} sessions created, moved and dropped (a child process)",
        file=sys.stderr,
        flush=True,
    )
    rss = _run_child("rss", total)
    first, last = rss["rss_first"], rss["rss_last"]
    peak = max(value for _, value in rss["samples"])
    note = f"{rss['sessions']:,} sessions x {rss['moves_each']} moves in {rss['seconds']:.0f} s"
    rows += [
        Row(group, f"RSS after the first {BATCH:,} sessions", first / 2**20, "MB"),
        Row(group, f"RSS after {rss['sessions']:,} sessions", last / 2**20, "MB", note=note),
        Row(group, "RSS, highest sample during the run", peak / 2**20, "MB"),
        check_row(
            group, f"RSS {rss['sessions']:,} / RSS first {BATCH:,}", last / first, "<=", 1.05
        ),
    ]
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("KIND", "N"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.child:
        kind, count = args.child[0], int(args.child[1])
        result = child_tracemalloc(count) if kind == "tracemalloc" else child_rss(count)
        print(json.dumps(result))
        return 0
    from tests.benchmarks.__main__ import main as suite_main

    return suite_main(["--only", "memory", *(["--quick"] if args.quick else [])])


if __name__ == "__main__":
    sys.exit(main())
