"""Small builders shared by the tests: a controllable clock, sessions in any status,
trails, and the command line run in this process."""

from __future__ import annotations

import io
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO, TextIO

import attrs

from paysession import (
    Hooks,
    PaymentSession,
    PaymentSessions,
    PaymentSessionStatus,
    PaySessionError,
    SessionMachine,
    TransitionRecord,
)
from paysession.audit import AuditReport, JsonlSink
from paysession.cli import main
from paysession.lifecycle import MOVES
from paysession.planning import Context, check_params, create_record, plan
from paysession.record import compute_hash
from paysession.store import LoggedRecord, SessionStore, Snapshot, Write

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


# Stores driven directly, with writes planned by the engine.

CLOCK = StepClock()


def new_session(cart_id: str | None = "cart_1", provider_id: str = "stripe") -> PaymentSession:
    """A pending session, created one millisecond after the previous one."""
    return PaymentSession.new(cart_id=cart_id, provider_id=provider_id, amount=1000, clock=CLOCK)


def created(
    store: SessionStore, cart_id: str | None = "cart_1", provider: str = "stripe"
) -> Snapshot:
    """A new session stored with its record 0; its snapshot."""
    session = new_session(cart_id, provider)
    store.create(session, create_record(session))
    snapshot = store.load(session.id)
    assert snapshot is not None
    return snapshot


def move(snapshot: Snapshot, trigger: str, *, key: str | None = None, **params: object) -> Write:
    """The write of ``trigger`` planned from ``snapshot``."""
    planned = plan(
        snapshot.session,
        MOVES[trigger],
        check_params(MOVES[trigger], params),
        seq=snapshot.version + 1,
        prev_hash=snapshot.head,
        context=Context(snapshot.session.updated_at, None, "test", None, None),
        idempotency_key=key,
    )
    return Write(planned.session, snapshot.version, (planned.record,))


def committed(store: SessionStore, snapshot: Snapshot, trigger: str, **params: object) -> Snapshot:
    store.commit([move(snapshot, trigger, **params)])
    again = store.load(snapshot.session.id)
    assert again is not None
    return again


def log(store: SessionStore) -> list[LoggedRecord]:
    return store.records_since(None, 10_000)


# PaymentSessions over a store.


def service(store: SessionStore, hooks: Hooks | None = None) -> PaymentSessions:
    """The service over ``store``, on a clock that steps a millisecond a reading."""
    return PaymentSessions(store, hooks=hooks, clock=StepClock())


def initiated(
    sessions: PaymentSessions,
    cart_id: str | None = "cart_1",
    provider: str = "stripe",
    *,
    amount: int = 1000,
    actor: str | None = None,
) -> str:
    """Create, then initiate: a new session of ``cart_id`` its provider has been called for."""
    session = sessions.create(cart_id=cart_id, provider_id=provider, amount=amount)
    sessions.fire(session.id, "initiate", data={"id": "pi_1", "client_secret": "s"}, actor=actor)
    return session.id


_RUN_PAGE = """
import re, sys
from pathlib import Path
page = Path(sys.argv[1])
namespace = {"__name__": "docs"}
blocks = re.findall(r"```python\\n(.*?)```", page.read_text(), flags=re.S)
for number, block in enumerate(blocks, 1):
    exec(compile(block, f"{page.name} python block {number}", "exec"), namespace)
print(len(blocks))
"""


def run_doc_page(
    page: Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Every python block of ``page`` run in order, in one namespace, by a fresh
    interpreter in ``cwd`` (with ``env`` added to this process's environment): for a
    page whose examples set up process-wide state (Django's settings), kept out of the
    test process. It prints how many blocks it ran."""
    return subprocess.run(
        [sys.executable, "-c", _RUN_PAGE, str(page)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={
            **os.environ,
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
            **(env or {}),
        },
        timeout=300,
        check=False,
    )


def run_without(package: str, code: str) -> subprocess.CompletedProcess[str]:
    """``code`` run by a fresh interpreter in which ``package`` cannot be imported, as if
    the extra that installs it were not installed."""
    blocked = f"import sys\nsys.modules[{package!r}] = None\n"
    return subprocess.run(
        [sys.executable, "-c", blocked + code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=60,
        check=False,
    )


def kill_once_moved(args: Sequence[str]) -> None:
    """Run ``python *args`` from the repository root, wait for it to print ``moved``
    (its move made, its transaction not committed) and SIGKILL it there."""
    root = Path(__file__).resolve().parent.parent
    child = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"moved"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL


def as_a_terminal_job() -> None:
    """Run in a child before it starts (``preexec_fn``): Ctrl-C's signal is delivered as
    to a job of a terminal, even when the tests themselves were started with it ignored
    (``pytest &`` in a script: a shell's background job ignores SIGINT, and a child
    inherits that, and Python then installs no handler for it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def inspector_running(db: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``paysession inspect`` over ``db`` in a subprocess, on a free loopback port: the
    process and the address it says it serves at. Killed on the way out, if still up."""
    process = subprocess.Popen(
        [sys.executable, "-m", "paysession", "inspect", "--db", str(db), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_a_terminal_job,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        if " at http://127.0.0.1:" not in first:
            process.kill()
            _, stderr = process.communicate(timeout=10)
            raise AssertionError(f"paysession inspect did not start: {first}{stderr}")
        yield process, first.split(" at ", 1)[1].split("/;", 1)[0]
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


PROVIDERS_DOC = Path(__file__).resolve().parent.parent / "docs" / "providers.md"


def provider_table() -> list[tuple[str, str, str | None, PaymentSessionStatus]]:
    """Each row of docs/providers.md's tables: (provider id, status, event, becomes)."""
    rows = []
    provider = None
    for line in PROVIDERS_DOC.read_text().splitlines():
        if line.startswith("## ") and "provider id `" in line:
            provider = line.split("provider id `")[1].split("`")[0]
        elif provider and line.startswith("| `"):
            status, event, becomes = (cell.strip().strip("`") for cell in line.split("|")[1:4])
            rows.append((provider, status, event or None, PaymentSessionStatus(becomes)))
    return rows


# Audit trails: reproducible sessions, long random runs, records forged after sealing.

SECRET = "sk_live_CANARY_7f3a9c_never_logged"
KEY = b"audit-key-for-tests"

# Weights that keep sessions alive long enough to make long trails (cancel is final).
WEIGHTS = {
    "authorize": 3.0,
    "require_more": 3.0,
    "fail": 2.0,
    "retry": 4.0,
    "cancel": 0.3,
    "initiate": 4.0,
    "update": 4.0,
    "select": 2.0,
    "deselect": 2.0,
}
ACTORS = (None, "storefront", "provider:stripe", "admin:ops")
REASONS_TEXT = (None, "card declined", "paiement refusé — carte expirée", "requires_action")


def numbered_session(
    number: int,
    clock: StepClock,
    *,
    amount: int | None = 4999,
    data: dict[str, object] | None = None,
    cart: dict[str, object] | None = None,
    status: PaymentSessionStatus = PaymentSessionStatus.PENDING,
) -> PaymentSession:
    """A session with a fixed id (``ps_0007``) and key, so that trails are reproducible."""
    at = clock()
    return PaymentSession(
        id=f"ps_{number:04d}",
        cart_id=f"cart_{number:04d}",
        provider_id="stripe",
        is_selected=False,
        is_initiated=status is PaymentSessionStatus.AUTHORIZED,
        status=status,
        data={} if data is None else data,
        idempotency_key=f"idem_{number:04d}",
        amount=amount,
        payment_authorized_at=at if status is PaymentSessionStatus.AUTHORIZED else None,
        created_at=at,
        updated_at=at,
        cart=cart,
    )


def drive(machines: Sequence[SessionMachine], moves: int, seed: int) -> None:
    """Make ``moves`` successful random moves, spread over ``machines``."""
    rng = random.Random(seed)
    triggers, weights = list(WEIGHTS), list(WEIGHTS.values())
    done = 0
    for _ in range(moves * 100):
        if done == moves:
            return
        machine = rng.choice(machines)
        trigger = rng.choices(triggers, weights)[0]
        params: dict[str, object] = {}
        if trigger == "initiate":
            params["data"] = {"id": f"pi_{done}", "client_secret": f"{SECRET}_{done}"}
        elif trigger == "update":
            params["amount"] = rng.randrange(0, 20_000)
        try:
            machine.fire(
                trigger, actor=rng.choice(ACTORS), reason=rng.choice(REASONS_TEXT), **params
            )
        except PaySessionError:
            continue
        done += 1
    raise AssertionError(f"only {done} of {moves} moves before the sessions were canceled")


def write_trail(
    path: Path, *, sessions: int = 120, moves: int = 1200, seed: int = 7, key: bytes | None = None
) -> list[SessionMachine]:
    """A JSON Lines trail of many interleaved sessions, written by machines through a sink."""
    clock = StepClock()
    with JsonlSink(path, fsync=False, checkpoint_every=None) as sink:
        machines = [
            SessionMachine(numbered_session(n, clock), clock=clock, sink=sink, key=key)
            for n in range(sessions)
        ]
        drive(machines, moves, seed)
    return machines


def story(
    clock: StepClock | None = None, *, key: bytes | None = None, number: int = 1
) -> SessionMachine:
    """One session through every kind of move: create(0) initiate(1) select(2) update(3)
    require_more(4) authorize(5) cancel(6)."""
    clock = clock or StepClock()
    machine = SessionMachine(numbered_session(number, clock, amount=None), clock=clock, key=key)
    machine.initiate({"id": "pi_1", "client_secret": SECRET})
    machine.select(actor="storefront")
    machine.update(amount=2500)
    machine.require_more(actor="provider:stripe", reason="requires_action")
    machine.authorize(actor="provider:stripe")
    machine.cancel(actor="admin:ops", reason="customer canceled")
    return machine


def rechain(
    records: Iterable[TransitionRecord], key: bytes | None = None
) -> list[TransitionRecord]:
    """Re-link and re-seal records as a forger without the key would (per session)."""
    out: list[TransitionRecord] = []
    last: dict[str, str] = {}
    for record in records:
        prev = last.get(record.session_id, record.prev_hash)
        linked = attrs.evolve(record, prev_hash=prev)
        sealed = attrs.evolve(linked, hash=compute_hash(linked.body(), key))
        last[record.session_id] = sealed.hash
        out.append(sealed)
    return out


def forge(
    history: Sequence[TransitionRecord], index: int, **changes: object
) -> list[TransitionRecord]:
    """``history`` with record ``index`` edited, then the whole chain re-sealed."""
    edited = list(history)
    edited[index] = attrs.evolve(edited[index], **changes)
    return rechain(edited)


def facts(report: AuditReport) -> list[tuple[str | None, int | None, int, str]]:
    """Each problem as (session_id, seq, position, reason)."""
    return [(p.session_id, p.seq, p.position, p.reason) for p in report.problems]


ROOT = Path(__file__).resolve().parent.parent

# What a fresh interpreter ignores (see the warnings module's default filters).
_IGNORED_BY_DEFAULT = (
    DeprecationWarning,
    PendingDeprecationWarning,
    ImportWarning,
    ResourceWarning,
)


def cli(
    *argv: str, stdin: bytes | BinaryIO = b"", cwd: Path = ROOT
) -> subprocess.CompletedProcess[bytes]:
    """``paysession *argv`` run in this process by ``paysession.cli.main``, answered as
    ``subprocess.run(..., capture_output=True)`` would: exit code, stdout and stderr bytes.

    A process costs a quarter of a second to start and import; most command-line tests
    are about what a command says and its exit code, which ``main`` decides alone. What
    only a real process shows (the console script, signals, a closed pipe, imports, a
    server) is tested with one. The command finds what a fresh interpreter would give it:
    standard streams of its own (pipes, not terminals), a root logger without handlers
    (pytest's would swallow a library's warning that a process prints), warnings printed
    to stderr, the working directory ``cwd``; and it must leave no thread behind, which
    would keep a process from exiting.
    """
    out, err = io.BytesIO(), io.BytesIO()
    source = io.BytesIO(stdin) if isinstance(stdin, bytes) else stdin
    streams = sys.stdin, sys.stdout, sys.stderr
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    where = Path.cwd()
    threads = set(threading.enumerate())
    ours = (
        io.TextIOWrapper(source, encoding="utf-8"),
        io.TextIOWrapper(out, encoding="utf-8"),
        io.TextIOWrapper(err, encoding="utf-8", errors="backslashreplace"),
    )
    try:
        sys.stdin, sys.stdout, sys.stderr = ours
        root.handlers, root.level = [], logging.WARNING
        os.chdir(cwd)
        with warnings.catch_warnings():
            warnings.resetwarnings()
            for category in _IGNORED_BY_DEFAULT:
                warnings.simplefilter("ignore", category)
            warnings.showwarning = _warn_on_stderr
            code = _exit_code(argv)
    finally:
        sys.stdin, sys.stdout, sys.stderr = streams
        root.handlers[:], root.level = handlers, level
        os.chdir(where)
        for wrapper in ours:
            wrapper.detach()  # flushed, and the bytes left readable
    left = [t for t in threading.enumerate() if t not in threads and not t.daemon]
    assert not left, f"paysession {' '.join(argv)} left threads running: {left}"
    return subprocess.CompletedProcess(["paysession", *argv], code, out.getvalue(), err.getvalue())


def _exit_code(argv: tuple[str, ...]) -> int:
    """The exit code of ``main(argv)``, as the interpreter turns SystemExit into one."""
    try:
        return main(list(argv))
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        sys.stderr.write(f"{exit_.code}\n")
        return 1


def _warn_on_stderr(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))
