"""Random moves, random tampering: every tampering the README says is found, is found.

One property for anchored JSON Lines trails of one to three runs of the application
(with and without a key, with and without heads from outside; runs removed, reordered,
copied, or the file cut at a run's end), one for SQLite and PostgreSQL stores (records
removed, rows edited, a record inserted past the row's version, a row rolled back with
its later records left or, found only with heads taken before, removed, a record that
does not decode). Clean trails must verify: no
false alarm. A tampering that leaves every session's records and every checkpoint as
they were (two lines of different sessions swapped, with nothing between them that
depends on their order) changes nothing a trail means, and may pass.

``PAYSESSION_TAMPER_EXAMPLES`` sets the number of examples (default 300 for files, 60 for
each store); ``PAYSESSION_TAMPER_EXAMPLES=10000`` is the long run. The counts of each
run (examples, tamperings, detected, false alarms) are printed with ``-s``.
"""

from __future__ import annotations

import collections
import json
import os
import random
import sqlite3
import tempfile
from pathlib import Path

import attrs
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from paysession import PaymentSession, PaymentSessions, SessionMachine, TransitionRecord
from paysession.audit import Checkpoint, JsonlSink, read_jsonl, verify
from paysession.audit.anchors import make_checkpoint
from paysession.lifecycle import ALLOWED
from paysession.store import PostgresStore, SqliteStore
from paysession.store._rows import record_wire

from .helpers import StepClock

EXAMPLES = int(os.environ.get("PAYSESSION_TAMPER_EXAMPLES", "300"))
STORE_EXAMPLES = int(os.environ.get("PAYSESSION_TAMPER_EXAMPLES", "60"))
KEY = b"tamper-property-key"
COUNTS: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)

FILE_TAMPERINGS = (
    "none",
    "byte_flip",
    "delete_line",
    "duplicate_line",
    "swap_lines",
    "cut_tail",
    "remove_session",
    "remove_session_and_reseal",
    "edit_checkpoint",
    "remove_run",
    "reorder_runs",
    "duplicate_run",
    "cut_at_run_end",
)


class Relay:
    """A sink handing each record to the run's JsonlSink: the machines live on from run
    to run of the application, each run opening the file with a new sink."""

    def __init__(self) -> None:
        self.target: JsonlSink | None = None

    def append(self, record: TransitionRecord) -> None:
        assert self.target is not None
        self.target.append(record)


def play(machines: list[SessionMachine], rng: random.Random, moves: int) -> None:
    """``moves`` random legal moves spread over the machines."""
    for _ in range(moves):
        machine = rng.choice(machines)
        allowed = sorted(
            t for t in ALLOWED[machine.session.status] if t not in ("select", "deselect")
        )
        if not allowed:
            continue
        trigger = rng.choice(allowed)
        if trigger == "initiate":
            machine.initiate({"id": f"pi_{rng.randrange(100)}"})
        elif trigger == "update":
            machine.update(amount=rng.randrange(1, 10_000))
        elif trigger == "authorize" and not machine.can("authorize"):
            continue
        else:
            machine.fire(trigger)


def write_trail(
    path: Path, seed: int, sessions: int, moves: int, every: int, key: bytes | None, runs: int = 1
) -> dict[str, tuple[int, str]]:
    """``runs`` runs of the application, each its own sink appended to ``path``."""
    rng = random.Random(seed)
    clock = StepClock()
    relay = Relay()
    with JsonlSink(path, fsync=False, checkpoint_every=every, key=key) as relay.target:
        machines = [
            SessionMachine(
                PaymentSession.new(cart_id=f"c{n}", provider_id="stripe", amount=5, clock=clock),
                sink=relay,
                clock=clock,
                key=key,
            )
            for n in range(sessions)
        ]
        for machine in machines:
            assert machine.history  # record 0 goes to the sink now, while it is open
        play(machines, rng, moves // runs)
    for _ in range(runs - 1):
        with JsonlSink(path, fsync=False, checkpoint_every=every, key=key) as relay.target:
            play(machines, rng, moves // runs)
    return {m.session.id: (m.history[-1].seq, m.history[-1].hash) for m in machines}


def runs_of(lines: list[bytes]) -> list[list[bytes]]:
    """The file's runs: each from its sink's opening checkpoint to its closing one."""
    found: list[list[bytes]] = []
    for line in lines:
        if (
            line.startswith(b'{"checkpoint"')
            and b'"records":0,' in line
            and (b'"heads":{}' in line and b'"final":false' in line)
        ):
            found.append([])
        found[-1].append(line)
    return found


def meaning(path: Path) -> tuple[object, ...]:
    """What a trail says: each session's records in order, and each checkpoint with how
    far each session it names had got when it was written."""
    per_session: dict[str, list[bytes]] = collections.defaultdict(list)
    checkpoints: list[tuple[bytes, tuple[tuple[str, int], ...]]] = []
    for line in path.read_bytes().splitlines():
        if line.startswith(b'{"checkpoint"'):
            try:
                named = sorted(json.loads(line)["checkpoint"]["heads"])
            except (ValueError, KeyError, TypeError):
                named = []
            reached = tuple((sid, len(per_session[sid])) for sid in named)
            checkpoints.append((line, reached))
            continue
        try:
            per_session[json.loads(line)["session_id"]].append(line)
        except (ValueError, KeyError, TypeError):
            per_session["?"].append(line)
    sessions = tuple(sorted((k, tuple(v)) for k, v in per_session.items() if v))
    return sessions, tuple(checkpoints)


def tamper(path: Path, how: str, rng: random.Random, key: bytes | None) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    record_lines = [i for i, line in enumerate(lines) if not line.startswith(b'{"checkpoint"')]
    if how == "byte_flip":
        index = rng.randrange(len(lines))
        line = bytearray(lines[index])
        at = rng.randrange(len(line) - 1)  # never the newline
        line[at] = (line[at] + rng.randrange(1, 94)) % 94 + 33
        lines[index] = bytes(line)
    elif how == "delete_line":
        del lines[rng.randrange(len(lines))]
    elif how == "duplicate_line":
        index = rng.randrange(len(lines))
        lines.insert(rng.randrange(index, len(lines)) + 1, lines[index])
    elif how == "swap_lines":
        a, b = sorted(rng.sample(range(len(lines)), 2))
        lines[a], lines[b] = lines[b], lines[a]
    elif how == "cut_tail":
        lines = lines[: rng.randrange(len(lines))]
    elif how in ("remove_session", "remove_session_and_reseal"):
        victim = json.loads(lines[rng.choice(record_lines)])["session_id"]
        lines = [line for line in lines if f'"session_id":"{victim}"'.encode() not in line]
        if how == "remove_session_and_reseal":
            lines = reseal_without(lines, victim, key=None)  # the attacker has no key
    elif how in ("remove_run", "reorder_runs", "duplicate_run", "cut_at_run_end"):
        runs = runs_of(lines)
        if len(runs) > 1:
            at = rng.randrange(len(runs) - 1)  # never the last: that is a cut at a run's end
            if how == "remove_run":
                del runs[at]
            elif how == "reorder_runs":
                runs[at], runs[at + 1] = runs[at + 1], runs[at]
            elif how == "duplicate_run":
                runs.insert(at + 1, runs[at])
            else:
                runs = runs[: at + 1]
            lines = [line for run in runs for line in run]
    elif how == "edit_checkpoint":
        checkpoints = [i for i, line in enumerate(lines) if line.startswith(b'{"checkpoint"')]
        index = rng.choice(checkpoints)
        wire = json.loads(lines[index])
        wire["checkpoint"]["records"] += 1
        lines[index] = (json.dumps(wire, sort_keys=True, separators=(",", ":")) + "\n").encode()
    path.write_bytes(b"".join(lines))


def reseal_without(lines: list[bytes], victim: str, key: bytes | None) -> list[bytes]:
    """The checkpoints rewritten, chained and sealed again, without the victim's heads."""
    out: list[bytes] = []
    prev: dict[str, str] = {}
    for line in lines:
        if not line.startswith(b'{"checkpoint"'):
            out.append(line)
            continue
        (item,) = read_lines([line])
        assert isinstance(item, Checkpoint)
        heads = {sid: head for sid, head in item.heads.items() if sid != victim}
        redone = make_checkpoint(
            item.sink, prev.get(item.sink, "0" * 64), item.records, item.final, heads, key
        )
        prev[item.sink] = redone.seal
        out.append((redone.line() + "\n").encode())
    return out


def read_lines(lines: list[bytes]) -> list[object]:
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as scratch:
        Path(scratch.name).write_bytes(b"".join(lines))
        return list(read_jsonl(scratch.name))


def expected_found(
    how: str, key: bytes | None, with_heads: bool, records_cut: bool, at_run_end: bool
) -> bool:
    """What the README's table promises for an anchored trail."""
    if how == "remove_session_and_reseal":
        return key is not None or with_heads
    if how == "cut_at_run_end" or (how == "cut_tail" and at_run_end):
        # The genuine file of that day: only heads kept elsewhere show records are gone.
        return with_heads and records_cut
    return how != "none"


def records_in(path: Path) -> int:
    return sum(not line.startswith(b'{"checkpoint"') for line in path.read_bytes().splitlines())


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    sessions=st.integers(1, 4),
    moves=st.integers(0, 20),
    every=st.integers(1, 5),
    keyed=st.booleans(),
    with_heads=st.booleans(),
    how=st.sampled_from(FILE_TAMPERINGS),
    runs=st.integers(1, 3),
)
def test_file_trails(
    seed: int,
    sessions: int,
    moves: int,
    every: int,
    keyed: bool,
    with_heads: bool,
    how: str,
    runs: int,
) -> None:
    key = KEY if keyed else None
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "trail.jsonl"
        heads = write_trail(path, seed, sessions, moves, every, key, runs)
        before, records_before = meaning(path), records_in(path)
        tamper(path, how, random.Random(seed), key)
        changed = meaning(path) != before
        records_cut = records_in(path) < records_before
        kept = path.read_bytes().splitlines()
        at_run_end = bool(kept) and b'"final":true' in kept[-1]
        report = verify(read_jsonl(path), key=key, heads=heads if with_heads else None)
    counts = COUNTS["file"]
    counts["examples"] += 1
    if how == "none" or not changed:
        counts["false alarms"] += not report.ok
        assert report.ok, report.problems
        return
    counts["tamperings"] += 1
    # A file cut to nothing holds no record: the CLI fails it ("an empty trail proves
    # nothing"), and so does this property.
    found = not report.ok or report.records == 0
    counts["detected"] += found
    if expected_found(how, key, with_heads, records_cut, at_run_end):
        counts["promised"] += 1
        assert found, (how, keyed, with_heads)


class _Database:
    """A SQLite file or a PostgreSQL database, reached with raw SQL."""

    def __init__(self, kind: str, place: str) -> None:
        self.kind, self.place = kind, place

    def store(self) -> SqliteStore | PostgresStore:
        return SqliteStore(self.place) if self.kind == "sqlite" else PostgresStore(self.place)

    def row(self, session_id: str) -> dict[str, object]:
        """The session's row as stored, column by column."""
        query = "SELECT * FROM paysession_sessions WHERE id = ?"
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.place)
            cursor = conn.execute(query, (session_id,))
            row = dict(zip([c[0] for c in cursor.description], cursor.fetchone(), strict=True))
            conn.close()
            return row
        with psycopg.connect(self.place) as pg:
            found = pg.execute(query.replace("?", "%s"), (session_id,))
            assert found.description is not None
            names = [c.name for c in found.description]
            return dict(zip(names, found.fetchone() or (), strict=True))

    def restore(self, session_id: str, row: dict[str, object]) -> None:
        """Put an earlier genuine row of the session back."""
        columns = [name for name in row if name not in ("id", "xact", "provider_ref")]
        values = [Jsonb(row[n]) if isinstance(row[n], dict) else row[n] for n in columns]
        assignments = ", ".join(f"{name} = ?" for name in columns)
        self.run(
            f"UPDATE paysession_sessions SET {assignments} WHERE id = ?", (*values, session_id)
        )

    def run(self, sql: str, params: tuple[object, ...]) -> None:
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.place)
            with conn:
                conn.execute(sql, params)
            conn.close()
        else:
            with psycopg.connect(self.place) as pg:
                pg.execute(sql.replace("?", "%s"), params)


STORE_TAMPERINGS = (
    "none",
    "delete_last",
    "delete_middle",
    "delete_all",
    "edit_amount",
    "edit_head",
    "insert_past",
    "roll_back",
    "roll_back_and_cut",
    "unreadable_record",
)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_store_trails(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    place = (
        request.getfixturevalue("postgres_dsn") if kind == "postgres" else str(tmp_path / "s.db")
    )
    database = _Database(kind, place)
    store = database.store()
    sessions = PaymentSessions(store, clock=StepClock())
    counter = iter(range(10**9))

    @settings(max_examples=STORE_EXAMPLES, deadline=None, derandomize=False)
    @given(
        seed=st.integers(0, 2**32 - 1),
        moves=st.integers(1, 8),
        how=st.sampled_from(STORE_TAMPERINGS),
    )
    def run(seed: int, moves: int, how: str) -> None:
        rng = random.Random(seed)
        session = sessions.create(cart_id=f"cart_{next(counter)}", provider_id="stripe", amount=5)
        rows = [database.row(session.id)]  # the genuine row at each version
        for _ in range(moves):
            status = sessions.get(session.id).status
            allowed = sorted(
                t
                for t in ALLOWED[status]
                if t not in ("select", "deselect", "initiate", "update", "authorize")
            )
            if not allowed:
                break
            sessions.fire(session.id, rng.choice(allowed))
            rows.append(database.row(session.id))
        version = sessions.version(session.id)
        heads = {session.id: (version, str(rows[-1]["head"]))}
        if how == "delete_last" and version > 0:
            database.run(
                "DELETE FROM paysession_records WHERE session_id = ? AND seq = ?",
                (session.id, version),
            )
        elif how == "delete_middle" and version > 1:
            database.run(
                "DELETE FROM paysession_records WHERE session_id = ? AND seq = ?",
                (session.id, rng.randrange(1, version)),
            )
        elif how == "delete_all":
            database.run("DELETE FROM paysession_records WHERE session_id = ?", (session.id,))
        elif how == "edit_amount":
            database.run(
                "UPDATE paysession_sessions SET amount = amount + 1 WHERE id = ?", (session.id,)
            )
        elif how == "edit_head":
            database.run(
                "UPDATE paysession_sessions SET head = ? WHERE id = ?", ("f" * 64, session.id)
            )
        elif how == "insert_past":
            # A forged record one past the row's version, as an insider would add it.
            last = sessions.history(session.id)[-1]
            forged = attrs.evolve(last, seq=version + 1, actor="mallory", prev_hash=last.hash)
            database.run(
                "INSERT INTO paysession_records (session_id, seq, trigger, at, hash, wire"
                + (", xact) " if kind == "postgres" else ", position) ")
                + "SELECT session_id, ?, trigger, at, ?, ?"
                + (", pg_current_xact_id() " if kind == "postgres" else ", position + 100000 ")
                + "FROM paysession_records WHERE session_id = ? AND seq = ?",
                (forged.seq, "f" * 64, record_wire(forged), session.id, version),
            )
        elif how in ("roll_back", "roll_back_and_cut") and version > 0:
            back = rng.randrange(version)
            database.restore(session.id, rows[back])
            if how == "roll_back_and_cut":
                database.run(
                    "DELETE FROM paysession_records WHERE session_id = ? AND seq > ?",
                    (session.id, back),
                )
        elif how == "unreadable_record":
            database.run(
                "UPDATE paysession_records SET wire = ? WHERE session_id = ? AND seq = ?",
                ('{"seq": "x"}', session.id, rng.randrange(version + 1)),
            )
        else:
            how = "none"
        if how == "roll_back_and_cut":
            # Consistent with itself: only heads taken before show the head went back.
            assert sessions.verify(session.id).ok
            whole = sessions.verify_all(heads=heads)  # earlier examples' sessions too
            found = [p.reason for p in whole.problems if p.session_id == session.id]
            assert found == ["anchor"], found
            COUNTS[kind]["examples"] += 1
            COUNTS[kind]["tamperings"] += 1
            COUNTS[kind]["detected"] += 1
            return
        report = sessions.verify(session.id)
        counts = COUNTS[kind]
        counts["examples"] += 1
        if how == "none":
            counts["false alarms"] += not report.ok
            assert report.ok, report.problems
        else:
            counts["tamperings"] += 1
            counts["detected"] += not report.ok
            assert not report.ok and report.problems[0].session_id == session.id, how

    try:
        run()
    finally:
        store.close()


def teardown_module() -> None:
    for name, counts in sorted(COUNTS.items()):
        print(
            f"\ntamper property, {name}: {counts['examples']} examples, "
            f"{counts['tamperings']} tamperings, {counts['detected']} detected "
            f"({counts['promised'] or counts['tamperings']} the README promises to find, all "
            f"found), {counts['false alarms']} false alarms"
        )
