"""Where a trail is kept: MemorySink, the records a machine sends it, JsonlSink and read_jsonl."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest

from paysession import Hooks, PaySessionError, SessionMachine, TransitionRecord
from paysession._wire import canonical_json
from paysession.audit import (
    AuditReport,
    AuditSink,
    BadLine,
    JsonlSink,
    MemorySink,
    SinkError,
    encode_line,
    read_jsonl,
    verify,
)

from .helpers import StepClock, drive, facts, numbered_session, story


class TestMemorySink:
    def test_keeps_records_in_order(self) -> None:
        """A MemorySink is an AuditSink that keeps what it is given."""
        sink: AuditSink = MemorySink()
        history = story().history
        for record in history:
            sink.append(record)
        assert isinstance(sink, MemorySink) and sink.records == history


class TestMachineSink:
    def test_record_zero_then_each_move_once(self) -> None:
        """The sink gets record 0 first, then each move's record, once each."""
        clock = StepClock()
        sink = MemorySink()
        machine = SessionMachine(numbered_session(1, clock), clock=clock, sink=sink)
        machine.initiate({"id": "pi_1"})
        machine.authorize()
        assert [r.trigger for r in sink.records] == ["create", "initiate", "authorize"]
        assert sink.records == machine.history

    def test_record_zero_sent_once_when_history_is_read_first(self) -> None:
        """Reading history builds record 0 and sends it; the next move does not resend it."""
        clock = StepClock()
        sink = MemorySink()
        machine = SessionMachine(numbered_session(1, clock), clock=clock, sink=sink)
        assert machine.history == sink.records and len(sink.records) == 1
        machine.select()
        assert [r.seq for r in sink.records] == [0, 1]

    def test_idle_machine_sends_nothing(self) -> None:
        """A machine that never moved and was never read sends nothing yet."""
        sink = MemorySink()
        SessionMachine(numbered_session(1, StepClock()), sink=sink)
        assert sink.records == ()

    def test_refused_and_repeated_moves_send_nothing(self) -> None:
        """Illegal moves, failed guards, vetoes and idempotent repeats add no record."""
        hooks = Hooks()

        @hooks.before("select")
        def veto(event: object) -> None:
            raise PermissionError("no")

        clock = StepClock()
        sink = MemorySink()
        machine = SessionMachine(numbered_session(1, clock), clock=clock, sink=sink, hooks=hooks)
        for attempt in (machine.retry, machine.authorize, machine.select):
            with pytest.raises((PaySessionError, PermissionError)):
                attempt()
        machine.initiate({"id": "pi_1"}, idempotency_key="k1")
        machine.initiate({"id": "pi_1"}, idempotency_key="k1")
        assert [r.trigger for r in sink.records] == ["create", "initiate"]

    def test_record_is_in_the_sink_before_after_hooks_run(self) -> None:
        """After-hooks see the move's record already in the sink; a failing one keeps it."""
        hooks = Hooks()
        sink = MemorySink()
        seen = []

        @hooks.after()
        def check(event: object) -> None:
            seen.append(sink.records[-1].trigger)
            raise RuntimeError("after-hook failed")

        clock = StepClock()
        machine = SessionMachine(numbered_session(1, clock), clock=clock, sink=sink, hooks=hooks)
        with pytest.raises(PaySessionError):
            machine.select()
        assert seen == ["select"] and sink.records == machine.history

    def test_many_threads_one_file(self, tmp_path: Path) -> None:
        """Machines on several threads sharing one JsonlSink leave a verifiable file."""
        path = tmp_path / "trail.jsonl"
        with JsonlSink(path, fsync=False, checkpoint_every=None) as sink:

            def run(offset: int) -> None:
                clock = StepClock()
                machines = [
                    SessionMachine(numbered_session(offset + n, clock), clock=clock, sink=sink)
                    for n in range(20)
                ]
                drive(machines, 100, offset)

            threads = [threading.Thread(target=run, args=(100 * t,)) for t in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert verify(read_jsonl(path)) == AuditReport(
            ok=True, sessions=80, records=480, problems=()
        )


class TestJsonlSink:
    def test_round_trip(self, tmp_path: Path) -> None:
        """Each record is one canonical line; reading the file gives the records back."""
        path = tmp_path / "trail.jsonl"
        history = story().history
        with JsonlSink(path, checkpoint_every=None) as sink:
            for record in history:
                sink.append(record)
        assert path.read_bytes() == b"".join(
            (canonical_json(r.to_dict()) + "\n").encode() for r in history
        )
        assert list(read_jsonl(path)) == list(history)

    def test_appends_to_an_existing_file(self, tmp_path: Path) -> None:
        """A second sink on the same file appends after what is there."""
        path = tmp_path / "trail.jsonl"
        clock = StepClock()
        a, b = story(clock, number=1).history, story(clock, number=2).history
        for history in (a, b):
            with JsonlSink(path, fsync=False, checkpoint_every=None) as sink:
                for record in history:
                    sink.append(record)
        assert list(read_jsonl(path)) == [*a, *b]

    @pytest.mark.parametrize("fsync", [True, False])
    def test_one_write_per_record_and_fsync(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool
    ) -> None:
        """Each append is one os.write of the whole line, then one fsync if asked for."""
        writes: list[bytes] = []
        syncs: list[int] = []
        real_write = os.write

        def write(fd: int, data: bytes) -> int:
            writes.append(bytes(data))
            return real_write(fd, data)

        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "fsync", syncs.append)
        sink = JsonlSink(tmp_path / "trail.jsonl", fsync=fsync, checkpoint_every=None)
        syncs.clear()  # the directory's, when the file is created
        history = story().history
        for record in history:
            sink.append(record)
        sink.close()
        assert writes == [encode_line(r) for r in history]
        assert len(syncs) == (len(history) if fsync else 0)

    def test_torn_tail_is_left_on_its_own_line(self, tmp_path: Path) -> None:
        """After a crash mid-write, the next record starts on a new line."""
        path = tmp_path / "trail.jsonl"
        history = story().history
        whole = encode_line(history[0])
        path.write_bytes(whole + encode_line(history[1])[:50])
        with JsonlSink(path, checkpoint_every=None) as sink:
            sink.append(history[1])
            sink.append(history[2])
        items = list(read_jsonl(path))
        assert items[0] == history[0] and items[2:] == [history[1], history[2]]
        assert (items[1].line, items[1].reason, items[1].session_id) == (2, "torn_line", None)  # type: ignore[union-attr]
        assert facts(verify(items)) == [(None, None, 1, "torn_line")]

    def test_closed(self, tmp_path: Path) -> None:
        """A closed sink refuses appends; closing twice is harmless."""
        sink = JsonlSink(tmp_path / "trail.jsonl", checkpoint_every=None)
        sink.close()
        sink.close()
        assert sink.closed
        with pytest.raises(SinkError, match="the sink is closed"):
            sink.append(story().history[0])


class TestReadJsonl:
    def write(self, tmp_path: Path, blob: bytes) -> list[TransitionRecord | BadLine]:
        path = tmp_path / "trail.jsonl"
        path.write_bytes(blob)
        return list(read_jsonl(path))

    def test_empty_file(self, tmp_path: Path) -> None:
        """An empty file holds no records."""
        assert self.write(tmp_path, b"") == []

    @pytest.mark.parametrize(
        ("line", "reason", "named"),
        [
            pytest.param(b"", "torn_line", None, id="empty line"),
            pytest.param(b'{"session_id":"ps_0001","seq":', "torn_line", None, id="cut short"),
            pytest.param(b"\xff\xfe", "torn_line", None, id="not ASCII"),
            pytest.param(b"NaN", "torn_line", None, id="not JSON"),
            pytest.param(b"[1,2]", "malformed", None, id="an array"),
            pytest.param(b'{"session_id":"ps_0001"}', "malformed", "ps_0001", id="keys missing"),
        ],
    )
    def test_bad_lines(self, tmp_path: Path, line: bytes, reason: str, named: str | None) -> None:
        """Every line that is not a record yields a BadLine naming its line and session."""
        first = story().history[0]
        items = self.write(tmp_path, encode_line(first) + line + b"\n" + encode_line(first))
        assert len(items) == 3 and items[0] == items[2] == first
        bad = items[1]
        assert isinstance(bad, BadLine)
        assert (bad.line, bad.reason, bad.session_id) == (2, reason, named)

    @pytest.mark.parametrize(
        "respell",
        [
            pytest.param(lambda t: t.replace(",", ", ", 1), id="a space"),
            pytest.param(lambda t: t + "\r", id="CRLF"),
            pytest.param(
                lambda t: re.sub(r'("at":"[^"]*)Z"', r'\1+00:00"', t, count=1),
                id="another offset",
            ),
            pytest.param(lambda t: t.replace("refus\\u00e9", "refus\\u00E9"), id="upper hex"),
            pytest.param(
                lambda t: '{"trigger":"select",' + t[1:].replace(',"trigger":"select"', ""),
                id="keys out of order",
            ),
        ],
    )
    def test_non_canonical_spelling(self, tmp_path: Path, respell: object) -> None:
        """A record spelled any other way than canonically is an encoding problem."""
        clock = StepClock()
        machine = SessionMachine(numbered_session(1, clock), clock=clock)
        record = machine.select(reason="paiement refusé")
        text = canonical_json(record.to_dict())
        changed = respell(text)  # type: ignore[operator]
        assert changed != text
        items = self.write(tmp_path, changed.encode() + b"\n")
        assert [(i.line, i.reason, i.session_id) for i in items] == [  # type: ignore[union-attr]
            (1, "encoding", "ps_0001")
        ]

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file raises FileNotFoundError when read."""
        with pytest.raises(FileNotFoundError):
            list(read_jsonl(tmp_path / "nope.jsonl"))
