"""The inspector under load: 60 concurrent requests for a 2,000-move session with 4 KB
strings, served for real by ``paysession inspect``.

``python -m tests.benchmarks.bench_inspect_load [--clients 60] [--rounds 5] [--moves 2000]``.

Builds a SQLite store holding one session of 2,000 moves whose actor and reason are
each 4,000 characters (the longest the limits allow), starts ``paysession inspect`` on
it in a child process, and measures, side by side in one run:

- idle (the yardstick): the server's RSS once started and after one request for the
  session's page, and ``/healthz``'s response time with nothing else running;
- under load: ``--clients`` threads each asking ``--rounds`` times, all at once, for the
  session's page (the first page of its trail, the whole trail checked) and for a page
  of its trail from the API, while another process asks for ``/healthz`` every 50 ms
  (its own, so that the times are the server's); the server's RSS
  is sampled every 20 ms and its peak (VmHWM) read at the end.

Targets (issue 24): the server's peak RSS stays below 200 MB, and ``/healthz`` answers
in under 100 ms throughout (the slowest answer counts).
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from paysession import PaymentSessions
from paysession.store import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
LONG = "x" * 4000
RSS_TARGET_MB = 200.0
HEALTHZ_TARGET_MS = 100.0


def build(path: Path, moves: int) -> str:
    """One session of ``moves`` moves, each with a 4,000-character actor and reason."""
    store = SqliteStore(path, synchronous="NORMAL")
    sessions = PaymentSessions(store)
    made = sessions.create(cart_id="cart_load", provider_id="stripe", amount=1)
    sessions.fire(made.id, "initiate", data={"id": "pi_load"})
    for n in range(moves - 1):
        sessions.fire(made.id, "update", amount=n + 2, actor=f"{n} {LONG}", reason=f"{n} {LONG}")
    store.close()
    return made.id


def _status(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` figure in bytes (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise LookupError(field)


def _get(port: int, path: str) -> tuple[int, float, int]:
    """Status, seconds and body size of one GET on a new connection."""
    began = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", path, headers={"Host": "127.0.0.1"})
        response = conn.getresponse()
        body = response.read()
        return response.status, time.perf_counter() - began, len(body)
    finally:
        conn.close()


def serve(path: Path) -> tuple[subprocess.Popen[str], int]:
    server = subprocess.Popen(
        [sys.executable, "-m", "paysession", "inspect", "--db", str(path), "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    port = int(line.split("http://127.0.0.1:", 1)[1].split("/", 1)[0])
    return server, port


def run(clients: int, rounds: int, moves: int) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "load.db"
        began = time.perf_counter()
        session_id = build(path, moves)
        size = os.path.getsize(path) / 2**20
        print(
            f"store: one session of {moves:,} moves, {size:.0f} MB, built in "
            f"{time.perf_counter() - began:.0f} s"
        )
        server, port = serve(path)
        try:
            return _measure(server, port, session_id, clients, rounds)
        finally:
            server.terminate()
            server.wait()


def _measure(
    server: subprocess.Popen[str], port: int, session_id: str, clients: int, rounds: int
) -> int:
    page = f"/sessions/{session_id}"
    api = f"/api/sessions/{session_id}/trail?trail_from=1000"
    started_rss = _status(server.pid, "VmRSS")
    status, one_page, body = _get(port, page)
    assert status == 200, status
    idle_rss = _status(server.pid, "VmRSS")
    idle_healthz = [_get(port, "/healthz")[1] for _ in range(20)]

    stop = threading.Event()
    samples: list[int] = []
    pages: list[float] = []
    failures: list[int] = []

    def sample() -> None:
        while not stop.is_set():
            samples.append(_status(server.pid, "VmRSS"))
            stop.wait(0.02)

    def client(number: int) -> None:
        for round_ in range(rounds):
            status, seconds, _ = _get(port, api if (number + round_) % 2 else page)
            pages.append(seconds)
            if status != 200:
                failures.append(status)

    # /healthz is asked from a process of its own, so that its times are the server's,
    # not those of this process's 60 client threads taking turns.
    watcher = subprocess.Popen(
        [sys.executable, "-m", "tests.benchmarks.bench_inspect_load", "--healthz", str(port)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    watchers = [threading.Thread(target=sample)]
    for thread in watchers:
        thread.start()
    time.sleep(0.3)
    load_began = time.perf_counter()
    workers = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    load_seconds = time.perf_counter() - load_began
    stop.set()
    for thread in watchers:
        thread.join()
    peak = _status(server.pid, "VmHWM")
    answers, _ = watcher.communicate("")
    healthz = [float(t) for t in answers.split()[1:]]
    failures.extend([0] * int(answers.split()[0]))

    def ms(value: float) -> str:
        return f"{value * 1000:.1f} ms"

    rss_ok = peak / 2**20 < RSS_TARGET_MB
    healthz_ok = max(healthz) * 1000 < HEALTHZ_TARGET_MS
    print(f"\none page of the session: {body / 1024:.0f} KiB, {ms(one_page)} on an idle server")
    print(
        f"{clients} clients x {rounds} requests (the session's page, a page of its trail "
        f"from the API, alternately): {len(pages)} answered in {load_seconds:.1f} s, "
        f"median {ms(statistics.median(pages))}, slowest {ms(max(pages))}; "
        f"{len(failures)} not 200"
    )
    print("\n| measure | idle (yardstick) | under load | target | result |")
    print("|---|---:|---:|---:|---|")
    print(
        f"| server RSS | {started_rss / 2**20:.1f} MB started, {idle_rss / 2**20:.1f} MB "
        f"after one page | {max(samples) / 2**20:.1f} MB sampled, {peak / 2**20:.1f} MB peak "
        f"(VmHWM) | < {RSS_TARGET_MB:.0f} MB | {'PASS' if rss_ok else 'FAIL'} |"
    )
    print(
        f"| /healthz | median {ms(statistics.median(idle_healthz))}, slowest "
        f"{ms(max(idle_healthz))} | median {ms(statistics.median(healthz))}, slowest "
        f"{ms(max(healthz))} ({len(healthz)} asked) | < {HEALTHZ_TARGET_MS:.0f} ms | "
        f"{'PASS' if healthz_ok else 'FAIL'} |"
    )
    return 0 if rss_ok and healthz_ok and not failures else 1


def watch_healthz(port: int) -> None:
    """Ask /healthz every 50 ms until stdin closes; print how many failed, then each
    answer's seconds."""
    times: list[float] = []
    failed = 0
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    while not done.is_set():
        status, seconds, _ = _get(port, "/healthz")
        times.append(seconds)
        failed += status != 200
        done.wait(0.05)
    print(failed, *times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--healthz", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--clients", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--moves", type=int, default=2000)
    args = parser.parse_args(argv)
    if args.healthz:
        watch_healthz(args.healthz)
        return 0
    return run(args.clients, args.rounds, args.moves)


if __name__ == "__main__":
    sys.exit(main())
