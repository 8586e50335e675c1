"""The JSON Lines audit trail under faults: a full disk, a file cut under the sink, a failed fsync.

Whatever happens, ``JsonlSink.append`` reports it with a SinkError (never silence), the
records written before and after stay readable, and ``verify(read_jsonl(path))`` names
the damage.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from paysession import PaymentSessionStatus, TransitionRecord
from paysession.audit import (
    AuditProblem,
    BadLine,
    JsonlSink,
    SinkError,
    encode_line,
    read_jsonl,
    verify,
)

from .faultfs import FULL, small_disk
from .helpers import machine_in

pytestmark = pytest.mark.slow


def trail(moves: int = 40, reason_length: int = 3000) -> tuple[TransitionRecord, ...]:
    """One session's trail: record 0, initiate, then ``moves`` updates with long reasons."""
    machine = machine_in(PaymentSessionStatus.PENDING)
    for n in range(moves):
        machine.update(amount=n + 1, reason=f"{n:04d}" + "r" * reason_length)
    return machine.history


def records_in(path: Path) -> list[TransitionRecord]:
    return [item for item in read_jsonl(path) if isinstance(item, TransitionRecord)]


def bad_lines(path: Path) -> list[BadLine]:
    return [item for item in read_jsonl(path) if isinstance(item, BadLine)]


def facts(error: SinkError) -> dict[str, object]:
    return {
        "operation": error.operation,
        "path": error.path,
        "session_id": error.session_id,
        "seq": error.seq,
    }


def half_then_full(
    monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], object] = lambda: None
) -> None:
    """os.write takes half of the first bytes it is given (then ``meanwhile`` runs), and
    finds the disk full after that."""
    real_write = os.write
    calls: list[int] = []

    def write(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            written = real_write(fd, bytes(data)[: len(data) // 2])
            meanwhile()
            return written
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", write)


class TestDiskFull:
    def test_a_full_disk_is_a_sink_error_and_the_gap_is_found(self, tmp_path: Path) -> None:
        """A write refused mid-append raises SinkError; later lines stay whole; verify finds it."""
        history = trail()
        with small_disk(tmp_path, "512k") as disk:
            path = disk.path / "trail.jsonl"
            sink = JsonlSink(path, fsync=False, checkpoint_every=None)
            for record in history[:10]:
                sink.append(record)
            disk.fill()
            failed: SinkError | None = None
            for record in history[10:]:
                try:
                    sink.append(record)
                except SinkError as error:
                    failed = error
                    break
            assert failed is not None, "a full disk took every record"
            lost = history[failed.seq]
            assert facts(failed) == {
                "operation": "write",
                "path": str(path),
                "session_id": lost.session_id,
                "seq": lost.seq,
            }
            assert failed.errno in FULL
            assert isinstance(failed.__cause__, OSError)
            disk.free()
            for record in history[lost.seq + 1 :]:
                sink.append(record)
            sink.close()
            kept = [r for r in history if r is not lost]
            assert records_in(path) == kept
            torn = bad_lines(path)
            # The bytes the disk took of the lost line, if any, are a line of their own.
            assert [(b.line, b.reason) for b in torn] in ([], [(lost.seq + 1, "torn_line")])
            after = lost.seq + len(torn)
            report = verify(read_jsonl(path))
            assert report.problems == (
                *[AuditProblem(None, None, lost.seq, "torn_line", torn[0].message) for _ in torn],
                AuditProblem(
                    lost.session_id,
                    lost.seq + 1,
                    after,
                    "sequence",
                    f"expected seq {lost.seq}, got {lost.seq + 1} (a gap)",
                ),
            )

    def test_a_machine_move_reports_the_full_disk(self, tmp_path: Path) -> None:
        """A move whose record the disk refuses does not happen: SinkError, nothing moved."""
        with small_disk(tmp_path, "64k") as disk:
            path = disk.path / "trail.jsonl"
            with JsonlSink(path, fsync=True, checkpoint_every=None) as sink:
                machine = machine_in(PaymentSessionStatus.PENDING, sink=sink)
                disk.fill()
                with pytest.raises(SinkError) as caught:
                    for n in range(100):
                        before = machine.session
                        machine.update(amount=n + 1, reason="r" * 4000)
                assert (caught.value.operation, caught.value.errno in FULL) == ("write", True)
                # The machine kept its old session; its trail and the file still agree.
                assert machine.session is before
                assert machine.history[-1].seq == caught.value.seq - 1
                assert records_in(path) == list(machine.history)
                assert bad_lines(path) == []
                disk.free()
                # With room again, the same move is made under the same seq.
                record = machine.update(amount=999)
                assert record.seq == caught.value.seq
            assert records_in(path) == list(machine.history)
            assert verify(read_jsonl(path)).ok

    def test_part_of_a_line_written_then_enospc(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A line the disk took in part is cut off again: the failed record leaves nothing."""
        history = trail(moves=3, reason_length=10)
        path = tmp_path / "trail.jsonl"
        sink = JsonlSink(path, fsync=False, checkpoint_every=None)
        sink.append(history[0])
        half_then_full(monkeypatch)
        with pytest.raises(SinkError) as caught:
            sink.append(history[1])
        monkeypatch.undo()
        assert facts(caught.value) == {
            "operation": "write",
            "path": str(path),
            "session_id": history[1].session_id,
            "seq": 1,
        }
        assert (caught.value.errno, caught.value.strerror) == (
            errno.ENOSPC,
            os.strerror(errno.ENOSPC),
        )
        # The half line was cut off again: the failed record left nothing behind.
        assert path.read_bytes() == encode_line(history[0])
        sink.append(history[1])
        sink.close()
        assert path.read_bytes() == encode_line(history[0]) + encode_line(history[1])
        assert verify(read_jsonl(path)).ok

    def test_half_a_line_followed_by_another_writer_stays_torn(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Bytes another writer appended after are never cut: the half line stays torn."""
        history = trail(moves=3, reason_length=10)
        path = tmp_path / "trail.jsonl"
        sink = JsonlSink(path, fsync=False, checkpoint_every=None)
        sink.append(history[0])

        def another_writer() -> None:
            with path.open("ab") as other:
                other.write(b"\n" + encode_line(history[2]))

        half_then_full(monkeypatch, meanwhile=another_writer)
        with pytest.raises(SinkError):
            sink.append(history[1])
        monkeypatch.undo()
        sink.close()
        assert [b.reason for b in bad_lines(path)] == ["torn_line"]
        assert records_in(path) == [history[0], history[2]]

    def test_nothing_written_adds_no_empty_line(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A write refused before its first byte leaves the file as it was: no blank line."""
        history = trail(moves=2, reason_length=10)
        path = tmp_path / "trail.jsonl"
        sink = JsonlSink(path, fsync=False, checkpoint_every=None)
        sink.append(history[0])

        def full(fd: int, data: bytes) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "write", full)
        with pytest.raises(SinkError):
            sink.append(history[1])
        monkeypatch.undo()
        sink.append(history[2])
        sink.close()
        assert path.read_bytes() == encode_line(history[0]) + encode_line(history[2])


class TestTruncated:
    def test_cut_to_nothing(self, tmp_path: Path) -> None:
        """A file emptied under the sink: the next append raises; verify finds the cut."""
        history = trail(moves=4, reason_length=10)
        path = tmp_path / "trail.jsonl"
        sink = JsonlSink(path, fsync=False, checkpoint_every=None)
        for record in history[:4]:
            sink.append(record)
        written = path.stat().st_size
        os.truncate(path, 0)
        with pytest.raises(SinkError) as caught:
            sink.append(history[4])
        assert facts(caught.value) == {
            "operation": "truncated",
            "path": str(path),
            "session_id": history[4].session_id,
            "seq": 4,
        }
        assert caught.value.detail == (
            f"the file is 0 bytes, {written} fewer than this sink had written: records "
            "were cut from it; this one was not written"
        )
        assert path.read_bytes() == b""
        sink.append(history[5])
        sink.close()
        assert records_in(path) == [history[5]]
        assert verify(read_jsonl(path)).problems == (
            AuditProblem(
                history[5].session_id,
                5,
                0,
                "sequence",
                "the trail begins at seq 5: record 0 is missing",
            ),
        )

    def test_cut_mid_line(self, tmp_path: Path) -> None:
        """A file cut inside a line: reported, and the next record starts a line of its own."""
        history = trail(moves=4, reason_length=10)
        path = tmp_path / "trail.jsonl"
        sink = JsonlSink(path, fsync=False, checkpoint_every=None)
        for record in history[:4]:
            sink.append(record)
        keep = len(encode_line(history[0])) + len(encode_line(history[1])) // 2
        os.truncate(path, keep)
        with pytest.raises(SinkError) as caught:
            sink.append(history[4])
        assert caught.value.operation == "truncated"
        sink.append(history[5])
        sink.close()
        items = list(read_jsonl(path))
        assert items[0] == history[0] and items[2] == history[5]
        assert isinstance(items[1], BadLine) and items[1].reason == "torn_line"
        assert [(p.session_id, p.seq, p.position, p.reason) for p in verify(items).problems] == [
            (None, None, 1, "torn_line"),
            (history[0].session_id, 5, 2, "sequence"),
        ]

    def test_other_writers_growing_the_file_are_not_a_cut(self, tmp_path: Path) -> None:
        """Two sinks appending to one file in turn raise nothing: the file only grows."""
        history = trail(moves=6, reason_length=10)
        path = tmp_path / "trail.jsonl"
        with (
            JsonlSink(path, fsync=False, checkpoint_every=None) as a,
            JsonlSink(path, fsync=False, checkpoint_every=None) as b,
        ):
            for n, record in enumerate(history):
                (a if n % 2 else b).append(record)
        assert records_in(path) == list(history)
        assert verify(read_jsonl(path)).ok


class TestFsync:
    def test_failed_fsync_is_a_sink_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An fsync that fails (EIO) raises SinkError naming fsync, with the errno."""
        history = trail(moves=1, reason_length=10)
        path = tmp_path / "trail.jsonl"
        sink = JsonlSink(path, fsync=True, checkpoint_every=None)

        def broken(fd: int) -> None:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        monkeypatch.setattr(os, "fsync", broken)
        with pytest.raises(SinkError) as caught:
            sink.append(history[0])
        assert facts(caught.value) == {
            "operation": "fsync",
            "path": str(path),
            "session_id": history[0].session_id,
            "seq": 0,
        }
        assert caught.value.errno == errno.EIO
        assert str(caught.value) == (
            f"audit sink {path} failed during fsync of {history[0].session_id!r} seq 0: "
            f"{os.strerror(errno.EIO)}"
        )
        # The line whose fsync failed is not kept: its move does not happen.
        assert path.read_bytes() == b""
        sink.close()

    def test_a_closed_sink_refuses_with_a_sink_error(self, tmp_path: Path) -> None:
        """A machine whose sink was closed keeps its session: the move does not happen."""
        path = tmp_path / "trail.jsonl"
        sink = JsonlSink(path, fsync=False, checkpoint_every=None)
        machine = machine_in(PaymentSessionStatus.PENDING, sink=sink)
        before = machine.session
        sink.close()
        with pytest.raises(SinkError) as caught:
            machine.cancel(reason="closed file")
        assert (caught.value.operation, caught.value.detail) == ("write", "the sink is closed")
        assert machine.session is before and machine.history[-1].seq == caught.value.seq - 1
        assert records_in(path) == list(machine.history)


class TestSinkError:
    def test_is_an_oserror_and_a_paysession_error(self) -> None:
        """Callers catching OSError (or PaySessionError) still catch it, errno included."""
        from paysession import PaySessionError

        error = SinkError(
            "write", "No space left on device", path="t", session_id="ps_1", seq=3, errno=28
        )
        assert isinstance(error, OSError) and isinstance(error, PaySessionError)
        assert (error.errno, error.strerror) == (28, "No space left on device")
        assert (
            str(error)
            == "audit sink t failed during write of 'ps_1' seq 3: No space left on device"
        )
