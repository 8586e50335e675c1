"""verify: each record checked, and a big trail tampered with in every way (flipped bytes, lines
deleted, copied, swapped or cut, chains re-sealed without the key) found at the right line."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import attrs
import pytest

from paysession import PaymentSessionStatus, SessionMachine, TransitionRecord
from paysession._wire import format_datetime
from paysession.audit import (
    EMPTY_DIGEST,
    REASONS,
    AuditReport,
    BadLine,
    decode_line,
    encode_line,
    read_jsonl,
    verify,
)
from paysession.record import RecordFields, compute_hash, make_record

from .helpers import KEY, StepClock, facts, forge, numbered_session, rechain, story, write_trail

S = PaymentSessionStatus


def split_lines(blob: bytes) -> list[bytes]:
    """A file's lines as read_jsonl sees them: split on b"\\n", last line maybe unterminated."""
    lines = blob.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def interleave(*trails: Sequence[TransitionRecord]) -> list[TransitionRecord]:
    """Round-robin the records of several sessions, keeping each session's order."""
    return [t[i] for i in range(max(map(len, trails))) for t in trails if i < len(t)]


# ---------------------------------------------------------------------------------------
# The big trail used by the tamper tests


@attrs.frozen
class Trail:
    path: Path
    blob: bytes
    lines: list[bytes]
    records: list[TransitionRecord]
    machines: list[SessionMachine]

    def session_lines(self, session_id: str) -> list[int]:
        return [i for i, r in enumerate(self.records) if r.session_id == session_id]


def load_trail(path: Path, machines: list[SessionMachine]) -> Trail:
    blob = path.read_bytes()
    records = list(read_jsonl(path))
    assert all(isinstance(r, TransitionRecord) for r in records)
    return Trail(path, blob, split_lines(blob), records, machines)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Trail:
    path = tmp_path_factory.mktemp("audit") / "trail.jsonl"
    return load_trail(path, write_trail(path))


@pytest.fixture(scope="module")
def keyed_trail(tmp_path_factory: pytest.TempPathFactory) -> Trail:
    path = tmp_path_factory.mktemp("audit") / "keyed.jsonl"
    return load_trail(path, write_trail(path, key=KEY, seed=11))


class Checker:
    """verify() over a file's bytes, decoding each distinct line once across calls.

    decode_line is a pure function of a line's bytes, and read_jsonl is decode_line over
    the lines: caching the records of unchanged lines keeps hundreds of whole-file checks
    fast without changing what is checked.
    """

    def __init__(self) -> None:
        self.cache: dict[bytes, TransitionRecord] = {}

    def items(self, blob: bytes) -> list[TransitionRecord | BadLine]:
        out: list[TransitionRecord | BadLine] = []
        for number, raw in enumerate(split_lines(blob), 1):
            item = self.cache.get(raw)
            if item is None:
                decoded = decode_line(raw, number)
                if isinstance(decoded, TransitionRecord):
                    self.cache[raw] = decoded
                out.append(decoded)
            else:
                out.append(item)
        return out

    def verify(self, blob: bytes, key: bytes | None = None) -> AuditReport:
        return verify(self.items(blob), key=key)


@pytest.fixture(scope="module")
def checker() -> Checker:
    return Checker()


def flip(blob: bytes, offset: int, mask: int) -> bytes:
    return blob[:offset] + bytes([blob[offset] ^ mask]) + blob[offset + 1 :]


def line_offsets(lines: Sequence[bytes]) -> list[int]:
    offsets, at = [], 0
    for line in lines:
        offsets.append(at)
        at += len(line) + 1
    return offsets


# ---------------------------------------------------------------------------------------


class TestTamper:
    def test_trail_is_big_and_clean(self, trail: Trail) -> None:
        """The generated trail has over 1,000 moves over over 100 sessions, and verifies."""
        sessions = {r.session_id for r in trail.records}
        moves = sum(1 for r in trail.records if r.seq > 0)
        assert len(sessions) == 120 and moves == 1200
        assert verify(read_jsonl(trail.path)) == AuditReport(
            ok=True, sessions=120, records=len(trail.lines), problems=()
        )

    def test_every_sampled_byte_flip_is_reported_at_its_line(
        self, trail: Trail, checker: Checker
    ) -> None:
        """A flipped byte is the first problem, for the session its line names as read."""
        rng = random.Random(2024)
        offsets = line_offsets(trail.lines)
        last = len(trail.lines) - 1
        samples = [(0, pos) for pos in range(0, len(trail.lines[0]) + 1, 53)]
        samples += [(last, pos) for pos in range(0, len(trail.lines[last]) + 1, 53)]
        samples += [(0, len(trail.lines[0])), (last, len(trail.lines[last]))]  # the newlines
        for _ in range(40):
            index = rng.randrange(len(trail.lines))
            samples.append((index, rng.randrange(len(trail.lines[index]) + 1)))
        for index, pos in samples:
            corrupted = flip(trail.blob, offsets[index] + pos, rng.randrange(1, 256))
            report = checker.verify(corrupted)
            named = decode_line(split_lines(corrupted)[index], index + 1).session_id
            first = min(report.problems, key=lambda p: p.position)
            assert not report.ok
            assert (first.position, first.session_id) == (index, named), (index, pos)

    def test_every_byte_flip_of_a_small_trail_is_detected(self) -> None:
        """Exhaustively: each byte of a whole trail, flipped, is reported at its own line."""
        lines = [encode_line(r) for r in story().history]
        blob = b"".join(lines)
        checker = Checker()
        offsets = line_offsets([line[:-1] for line in lines])
        rng = random.Random(5)
        for offset in range(len(blob)):
            index = max(i for i, start in enumerate(offsets) if start <= offset)
            report = checker.verify(flip(blob, offset, rng.randrange(1, 256)))
            assert min(p.position for p in report.problems) == index, offset

    def test_flip_into_another_sessions_id(self, trail: Trail, checker: Checker) -> None:
        """A record renamed to another session is that session's; the loser shows a gap."""
        victim = trail.session_lines("ps_0001")
        index = victim[1]
        seq = trail.records[index].seq
        pos = trail.lines[index].index(b'"session_id":"ps_0001"') + len('"session_id":"ps_000')
        corrupted = flip(trail.blob, line_offsets(trail.lines)[index] + pos, ord("1") ^ ord("3"))
        report = checker.verify(corrupted)
        assert facts(report) == [
            ("ps_0003", seq, index, "hash"),
            ("ps_0001", seq + 1, victim[2], "sequence"),
        ]

    def test_deleted_line(self, trail: Trail, checker: Checker) -> None:
        """Deleting a record (record 0 included) is reported at the session's next record."""
        rng = random.Random(3)
        chosen = [0, *rng.sample(range(len(trail.lines)), 12)]
        for index in chosen:
            record = trail.records[index]
            later = [i for i in trail.session_lines(record.session_id) if i > index]
            if not later:
                continue
            lines = trail.lines[:index] + trail.lines[index + 1 :]
            report = checker.verify(b"\n".join(lines) + b"\n")
            assert facts(report) == [
                (record.session_id, record.seq + 1, later[0] - 1, "sequence")
            ], index

    def test_deleting_a_sessions_last_record_is_not_detectable(
        self, trail: Trail, checker: Checker
    ) -> None:
        """A hash chain cannot see its own tail cut off (a documented limit)."""
        index = trail.session_lines("ps_0002")[-1]
        lines = trail.lines[:index] + trail.lines[index + 1 :]
        assert checker.verify(b"\n".join(lines) + b"\n").ok

    def test_duplicated_line(self, trail: Trail, checker: Checker) -> None:
        """A copy of a record, right after it or anywhere later, is reported at the copy."""
        rng = random.Random(4)
        for index in rng.sample(range(len(trail.lines)), 12):
            record = trail.records[index]
            target = rng.choice([index + 1, rng.randrange(index + 1, len(trail.lines) + 1)])
            lines = [*trail.lines[:target], trail.lines[index], *trail.lines[target:]]
            report = checker.verify(b"\n".join(lines) + b"\n")
            assert facts(report) == [(record.session_id, record.seq, target, "sequence")]

    def test_swapped_lines_of_one_session(self, trail: Trail, checker: Checker) -> None:
        """Swapping two records of a session is reported at the earlier line."""
        rng = random.Random(6)
        for number in rng.sample(range(120), 12):
            own = trail.session_lines(f"ps_{number:04d}")
            if len(own) < 2:
                continue
            i, j = sorted(rng.sample(own, 2))
            lines = list(trail.lines)
            lines[i], lines[j] = lines[j], lines[i]
            report = checker.verify(b"\n".join(lines) + b"\n")
            record = trail.records[j]
            assert facts(report) == [(record.session_id, record.seq, i, "sequence")]

    def test_truncated_last_line(self, trail: Trail, checker: Checker) -> None:
        """A last line cut short (a crash mid-write) is a torn line, reported at its number."""
        last = len(trail.lines) - 1
        head = b"".join(line + b"\n" for line in trail.lines[:last])
        for keep in (1, 2, 40, len(trail.lines[last]) // 2, len(trail.lines[last]) - 1):
            report = checker.verify(head + trail.lines[last][:keep])
            assert facts(report) == [(None, None, last, "torn_line")]

    def test_last_line_without_its_newline_is_whole(self, trail: Trail, checker: Checker) -> None:
        """Only the newline missing: the record's bytes are whole and it verifies."""
        assert checker.verify(trail.blob[:-1]).ok

    def test_interleaving_is_not_corruption(self, trail: Trail, checker: Checker) -> None:
        """Any interleaving of the sessions that keeps each one's order verifies."""
        for seed in range(3):
            rng = random.Random(seed)
            queues: dict[str, list[bytes]] = {}
            for record, line in zip(trail.records, trail.lines, strict=True):
                queues.setdefault(record.session_id, []).append(line)
            merged: list[bytes] = []
            pending = [list(reversed(q)) for q in queues.values()]
            while pending:
                queue = rng.choice(pending)
                merged.append(queue.pop())
                if not queue:
                    pending.remove(queue)
            assert merged != trail.lines
            report = checker.verify(b"\n".join(merged) + b"\n")
            assert report == AuditReport(
                ok=True, sessions=120, records=len(trail.lines), problems=()
            )

    def test_same_results_through_the_file_reader(self, trail: Trail, tmp_path: Path) -> None:
        """The cached checker gives what verify(read_jsonl(file)) gives, on corrupted files."""
        checker = Checker()
        rng = random.Random(8)
        for _ in range(5):
            corrupted = flip(trail.blob, rng.randrange(len(trail.blob)), rng.randrange(1, 256))
            path = tmp_path / "corrupted.jsonl"
            path.write_bytes(corrupted)
            assert verify(read_jsonl(path)) == checker.verify(corrupted)

    def test_keyed_chain_rehashed_without_the_key_fails(
        self, keyed_trail: Trail, checker: Checker
    ) -> None:
        """A forger without the key can rebuild a SHA-256 chain; the key sees it.

        Without the key the chain itself holds, but its digests are HMACs, which no
        trail made without a key has: that is found too.
        """
        assert checker.verify(keyed_trail.blob, key=KEY).ok
        forged = rechain(keyed_trail.records)
        blob = b"".join(encode_line(r) for r in forged)
        unkeyed = checker.verify(blob)
        assert {(p.seq, p.reason) for p in unkeyed.problems} == {(0, "changes")}
        report = checker.verify(blob, key=KEY)
        firsts = {}
        for index, record in enumerate(forged):
            firsts.setdefault(record.session_id, index)
        assert facts(report) == [(sid, 0, index, "hash") for sid, index in firsts.items()]

    def test_keyed_trail_fails_without_the_key_or_with_another(
        self, keyed_trail: Trail, checker: Checker
    ) -> None:
        """Every session of a keyed trail fails at record 0 without its key."""
        for key in (None, b"another key"):
            report = checker.verify(keyed_trail.blob, key=key)
            assert {p.reason for p in report.problems} == {"hash"}
            assert len(report.problems) == report.sessions == 120
            hint = "the trail looks keyed" in report.problems[0].message
            assert hint is (key is None)


class TestVerify:
    def test_one_session(self) -> None:
        """A machine's own history verifies."""
        history = story().history
        assert verify(history) == AuditReport(ok=True, sessions=1, records=7, problems=())

    def test_interleaved_sessions_from_a_generator(self) -> None:
        """Sessions may interleave; any iterable is read once, lazily."""
        clock = StepClock()
        a, b = story(clock, number=1).history, story(clock, number=2).history
        merged = iter(interleave(a, b))
        assert verify(merged) == AuditReport(ok=True, sessions=2, records=14, problems=())

    def test_empty(self) -> None:
        """No records is a clean, empty report."""
        assert verify([]) == AuditReport(ok=True, sessions=0, records=0, problems=())

    def test_wrong_hash(self) -> None:
        """A record changed after sealing fails its hash."""
        history = list(story().history)
        history[3] = attrs.evolve(history[3], actor="someone else")
        assert facts(verify(history)) == [("ps_0001", 3, 3, "hash")]

    def test_broken_link(self) -> None:
        """A record sealed over a prev_hash that is not its predecessor's hash."""
        history = list(story().history)
        unlinked = attrs.evolve(history[4], prev_hash="f" * 64)
        history[4] = attrs.evolve(unlinked, hash=compute_hash(unlinked.body()))
        assert facts(verify(history)) == [("ps_0001", 4, 4, "link")]

    def test_sequence_gap_and_repeat(self) -> None:
        """A missing record, a repeated one and a missing record 0 are sequence problems."""
        history = story().history
        assert facts(verify(history[:2] + history[3:])) == [("ps_0001", 3, 2, "sequence")]
        assert facts(verify(history[:3] + history[2:])) == [("ps_0001", 2, 3, "sequence")]
        assert facts(verify(history[1:])) == [("ps_0001", 1, 0, "sequence")]

    def test_record_zero_must_link_to_genesis(self) -> None:
        """Record 0's prev_hash is the genesis hash."""
        forged = forge(story().history, 0, prev_hash="a" * 64)
        assert facts(verify(forged)) == [("ps_0001", 0, 0, "link")]

    @pytest.mark.parametrize(
        ("index", "changes"),
        [
            pytest.param(0, {"trigger": "initiate"}, id="record 0 not a create"),
            pytest.param(0, {"source": S.PENDING}, id="record 0 with a source"),
            pytest.param(2, {"trigger": "create"}, id="a second create"),
            pytest.param(2, {"trigger": "capture"}, id="not a trigger"),
            pytest.param(4, {"trigger": "retry"}, id="trigger not allowed from source"),
            pytest.param(4, {"dest": S.ERROR}, id="dest not the table's"),
            pytest.param(4, {"source": S.REQUIRES_MORE}, id="source not the previous dest"),
            pytest.param(6, {"trigger": "fail"}, id="fail from authorized"),
        ],
    )
    def test_illegal_moves(self, index: int, changes: dict[str, object]) -> None:
        """A move the table forbids is reported even when the chain is re-sealed."""
        forged = forge(story().history, index, **changes)
        assert facts(verify(forged)) == [("ps_0001", index, index, "illegal_move")]

    def test_failed_guard(self) -> None:
        """authorize before the session is initiated breaks the is_initiated guard."""
        clock = StepClock()
        machine = SessionMachine(numbered_session(1, clock), clock=clock)
        first = machine.history[0]
        at = clock()
        forged = make_record(
            RecordFields(
                session_id=first.session_id,
                seq=1,
                trigger="authorize",
                source=S.PENDING,
                dest=S.AUTHORIZED,
                at=at,
                actor=None,
                reason=None,
                idempotency_key=None,
                changes={
                    "updated_at": (format_datetime(first.at), format_datetime(at)),
                    "payment_authorized_at": (None, format_datetime(at)),
                },
                prev_hash=first.hash,
            )
        )
        assert facts(verify([first, forged])) == [("ps_0001", 1, 1, "illegal_move")]

    def test_time_going_backwards(self) -> None:
        """A record stamped before its predecessor."""
        history = story().history
        forged = forge(history, 3, at=history[2].at.replace(year=2020))
        assert facts(verify(forged)) == [("ps_0001", 3, 3, "time")]

    @pytest.mark.parametrize(
        ("index", "name", "pair"),
        [
            pytest.param(3, "amount", (1, 2500), id="old value not the current one"),
            pytest.param(3, "amount", (None, -1), id="amount negative"),
            pytest.param(3, "amount", (None, True), id="amount a bool"),
            pytest.param(3, "amount", (None, None), id="a change that changes nothing"),
            pytest.param(5, "amount", (2500, 9999), id="authorize changes amount"),
            pytest.param(2, "data", ("x", "y"), id="select changes data"),
            pytest.param(1, "data", (EMPTY_DIGEST, {"client_secret": "x"}), id="data in clear"),
            pytest.param(2, "is_selected", (False, "yes"), id="select sets a non-bool"),
            pytest.param(4, "status", ("pending", "requires_more"), id="status in changes"),
            pytest.param(4, "id", ("ps_0001", "ps_0009"), id="id changed"),
            pytest.param(3, "updated_at", (None, None), id="updated_at not at"),
        ],
    )
    def test_changes_that_replay_refutes(
        self, index: int, name: str, pair: tuple[object, object]
    ) -> None:
        """A change the move cannot have made, or from a value the field did not have."""
        history = story().history
        changes = dict(history[index].changes)
        if name == "updated_at":
            changes[name] = (changes[name][0], "2031-01-01T00:00:00.000Z")
        else:
            changes[name] = pair
        forged = forge(history, index, changes=changes)
        assert facts(verify(forged)) == [("ps_0001", index, index, "changes")]

    @pytest.mark.parametrize(
        "stamp",
        [None, "2031-01-01T00:00:00.000Z", "missing"],
        ids=["cleared", "not at", "missing"],
    )
    def test_authorize_must_stamp_payment_authorized_at(self, stamp: str | None) -> None:
        """authorize without a payment_authorized_at equal to its time is refuted."""
        history = story().history
        changes = dict(history[5].changes)
        if stamp == "missing":
            del changes["payment_authorized_at"]
        else:
            changes["payment_authorized_at"] = (None, stamp)
        forged = forge(history, 5, changes=changes)
        assert facts(verify(forged)) == [("ps_0001", 5, 5, "changes")]

    def test_missing_updated_at(self) -> None:
        """A move whose time is later than updated_at must record the new updated_at."""
        history = story().history
        changes = {k: v for k, v in history[2].changes.items() if k != "updated_at"}
        forged = forge(history, 2, changes=changes)
        assert facts(verify(forged)) == [("ps_0001", 2, 2, "changes")]

    @pytest.mark.parametrize(
        "edit",
        [
            pytest.param(lambda c: c.pop("provider_id"), id="a field missing"),
            pytest.param(lambda c: c.update(extra=(None, 1)), id="not a field"),
            pytest.param(lambda c: c.update(amount=(None, -5)), id="an invalid session"),
            pytest.param(lambda c: c.update(amount=(7, 7)), id="an old value"),
            pytest.param(lambda c: c.update(data=(None, {"a": 1})), id="data in clear"),
            pytest.param(
                lambda c: c.update(created_at=(None, "2024-04-21T14:50:24.078+00:00")),
                id="a timestamp not canonical",
            ),
            pytest.param(
                lambda c: c.update(updated_at=(None, "2030-01-01T00:00:00.000Z")),
                id="updated_at not its time",
            ),
        ],
    )
    def test_bad_record_zero(self, edit: object) -> None:
        """Record 0 gives every field but id and status, from None, as a valid session."""
        history = story().history
        changes = dict(history[0].changes)
        edit(changes)  # type: ignore[operator]
        forged = forge(history, 0, changes=changes)
        assert facts(verify(forged)) == [("ps_0001", 0, 0, "changes")]

    def test_trail_starting_in_any_status(self) -> None:
        """A machine may take over a session that is already authorized."""
        clock = StepClock()
        machine = SessionMachine(numbered_session(1, clock, status=S.AUTHORIZED), clock=clock)
        machine.cancel()
        assert verify(machine.history).ok

    def test_keyed(self) -> None:
        """An HMAC trail verifies with its key only."""
        history = story(key=KEY).history
        assert verify(history, key=KEY).ok
        assert facts(verify(history)) == [("ps_0001", 0, 0, "hash")]
        assert facts(verify(history, key=b"other")) == [("ps_0001", 0, 0, "hash")]

    def test_first_problem_per_session_others_still_checked(self) -> None:
        """Each bad session is reported once, at its first bad record; good ones pass."""
        clock = StepClock()
        a = list(story(clock, number=1).history)
        b = list(story(clock, number=2).history)
        c = list(story(clock, number=3).history)
        a[2] = attrs.evolve(a[2], reason="edited")
        a[5] = attrs.evolve(a[5], reason="edited")
        del c[4]
        report = verify(interleave(a, b, c))
        assert (report.ok, report.sessions, report.records) == (False, 3, 20)
        assert facts(report) == [("ps_0001", 2, 6, "hash"), ("ps_0003", 5, 14, "sequence")]

    def test_bad_lines(self) -> None:
        """A BadLine is a problem of the session it names, or of no session."""
        history = story().history
        items: list[TransitionRecord | BadLine] = [
            BadLine(1, "torn_line", "torn"),
            *history[:3],
            BadLine(5, "malformed", "bad", "ps_0001"),
            *history[3:],
        ]
        assert facts(verify(items)) == [
            (None, None, 0, "torn_line"),
            ("ps_0001", None, 4, "malformed"),
        ]

    def test_every_reason_is_documented(self, trail: Trail, checker: Checker) -> None:
        """Each reason reported is a key of REASONS, with a readable message."""
        rng = random.Random(9)
        seen = set()
        for _ in range(10):
            blob = flip(trail.blob, rng.randrange(len(trail.blob)), rng.randrange(1, 256))
            for problem in checker.verify(blob).problems:
                seen.add(problem.reason)
                assert problem.reason in REASONS and problem.message
        assert {"hash", "torn_line"} <= seen
