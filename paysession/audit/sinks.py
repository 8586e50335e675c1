"""Where trails are kept: in memory, or in a JSON Lines file; and the file's reader.

A JSON Lines trail holds one record a line, in its one canonical spelling (see
``paysession/audit/trail.py`` for why that matters to verification). The reader never
skips a line: a line that is not a record comes out as a :class:`BadLine`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import attrs

try:
    import fcntl
except ImportError:  # not on Windows: there, sinks opening one file at once are not locked
    fcntl = None  # type: ignore[assignment]

from paysession._wire import JsonRefused, read_json
from paysession.audit.anchors import (
    Checkpoint,
    checkpoint_from_wire,
    make_checkpoint,
    seal_holds,
)
from paysession.errors import InvalidSessionData, SinkError
from paysession.record import GENESIS, TransitionRecord


@attrs.frozen
class BadLine:
    """A line of a JSON Lines trail that is not a record; :func:`read_jsonl` yields it.

    ``line`` is 1-based; ``reason`` is ``torn_line``, ``malformed`` or ``encoding``;
    ``session_id`` is the session the line names when it can be read that far, else None.
    """

    line: int
    reason: str
    message: str
    session_id: str | None = None


class MemorySink:
    """An :class:`AuditSink` that keeps every record in memory, in arrival order."""

    def __init__(self) -> None:
        self._records: list[TransitionRecord] = []
        self._lock = threading.Lock()

    def append(self, record: TransitionRecord) -> None:
        with self._lock:
            self._records.append(record)

    @property
    def records(self) -> tuple[TransitionRecord, ...]:
        """Every record received so far."""
        with self._lock:
            return tuple(self._records)

    def __repr__(self) -> str:
        return f"<MemorySink {len(self._records)} records>"


def encode_line(record: TransitionRecord) -> bytes:
    """A record as one JSON Lines line: its canonical JSON and a newline, in ASCII."""
    return (record.canonical(with_hash=True) + "\n").encode("ascii")


DEFAULT_CHECKPOINT_EVERY = 1000
"""How many records a JsonlSink writes between checkpoints unless told otherwise."""


class JsonlSink:
    """An :class:`AuditSink` appending one canonical JSON line per record to one file.

    Any number of sessions share a file. Each record is one ``os.write`` of its whole line
    to a file opened for appending, followed by ``os.fsync`` when ``fsync`` is true (the
    record is then on disk when the move returns). A crash can only leave the last line
    incomplete; :func:`read_jsonl` reports it. If the file does not end with a newline
    when the sink opens it, the next record starts on a new line, so the torn bytes stay
    a line of their own and the records after them stay readable.

    ``append`` never fails silently: a disk that refuses the line (full, read-only) or
    the fsync raises :class:`SinkError`, and so does a closed sink or a file found
    shorter than what this sink wrote to it (truncated under it). The record is then
    not kept: what the failed append wrote of it is cut off again, unless another
    writer appended to the file after it (then those bytes stay a torn line of their
    own, like a crash's). Later appends go on from the file's end.

    With ``checkpoint_every=N`` the sink anchors the trail: when it opens the file, after
    every N records (in the same write as the Nth) and when it is closed, it appends a
    checkpoint naming the last record of each session it wrote since its previous one,
    sealed under ``key`` when given (the trail's key: see
    ``paysession/audit/anchors.py``). Only a closed sink's trail ends with its closing
    checkpoint, so close it. The opening checkpoint continues the file's last checkpoint,
    so runs appended to one file chain; a file whose last checkpoint does not verify
    (under ``key``) is refused with SinkError (``open``): its end cannot be vouched for.

    Close it with ``close()`` or use it as a context manager.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: bool = True,
        checkpoint_every: int | None = DEFAULT_CHECKPOINT_EVERY,
        key: bytes | None = None,
    ) -> None:
        if checkpoint_every is not None and (
            type(checkpoint_every) is not int or checkpoint_every < 1
        ):
            raise InvalidSessionData({"checkpoint_every": "must be an int >= 1 or None"})
        self.path = Path(path)
        self.fsync = fsync
        self.checkpoint_every = checkpoint_every
        self._key = key
        self._sink_id = uuid.uuid4().hex
        self._prev = GENESIS
        self._written = 0
        self._touched: dict[str, tuple[int, str]] = {}
        created = not self.path.exists()
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
        self._fd: int | None = os.open(self.path, flags, 0o644)
        self._lock = threading.Lock()
        try:
            size = os.fstat(self._fd).st_size
            # Where this sink's last line ended: the file can grow past it (other sinks
            # append too), never shrink below it unless someone cut it.
            self._end = size
            self._needs_newline = not _ends_a_line(self._fd, size)
            if checkpoint_every is not None:
                # The opening checkpoint: a file cut back to before any of this sink's
                # checkpoints would otherwise read as a trail that was never anchored. It
                # continues the file's last checkpoint, so that runs chain: a run removed,
                # moved or copied breaks the chain. Locked, so that two sinks opening the
                # file at once do not both start it.
                with _locked(self._fd):
                    size = os.fstat(self._fd).st_size
                    self._needs_newline = not _ends_a_line(self._fd, size)
                    self._prev = self._last_seal(self._fd, size)
                    self._write_checkpoint(self._fd, self._checkpoint({}, final=False, written=0))
            if created and fsync:
                _sync_directory(self.path.parent)
        except BaseException:
            self.close()
            raise

    def append(self, record: TransitionRecord) -> None:
        """Write ``record`` as one line, then flush it to disk if ``fsync``.

        Raises :class:`SinkError` when the line cannot be written or synced, or when the
        file was truncated since this sink last wrote to it.
        """
        line = encode_line(record)
        with self._lock:
            fd = self._fd
            if fd is None:
                raise self._error(record, "write", "the sink is closed")
            head = (record.seq, record.hash)
            checkpoint = None
            every = self.checkpoint_every
            if every is not None and (self._written + 1) % every == 0:
                # Copied only for a checkpoint: the sink's own heads change only once the
                # record is written.
                touched = {**self._touched, record.session_id: head}
                checkpoint = self._checkpoint(touched, final=False, written=self._written + 1)
                line += (checkpoint.line() + "\n").encode("ascii")
            operation = "write"
            start = self._end
            view = memoryview(b"\n" + line if self._needs_newline else line)
            try:
                size = os.fstat(fd).st_size
                if size < self._end:
                    lost, self._end = self._end - size, size
                    self._needs_newline = not _ends_a_line(fd, size)
                    raise self._error(
                        record,
                        "truncated",
                        f"the file is {size} bytes, {lost} fewer than this sink had "
                        "written: records were cut from it; this one was not written",
                    )
                while view:
                    # One write for the whole line; a regular file only writes less when
                    # the disk is full or a signal interrupts it, and then the rest follows.
                    written = os.write(fd, view)
                    if written:
                        # A line the disk took in part is a torn line: the next one must
                        # not continue it, or the record it holds would be torn too.
                        self._needs_newline = view[written - 1] != ord("\n")
                    view = view[written:]
                self._end = os.lseek(fd, 0, os.SEEK_CUR)
                if self.fsync:
                    operation = "fsync"
                    os.fsync(fd)
                self._written += 1
                if checkpoint is None:
                    self._touched[record.session_id] = head
                else:
                    self._touched, self._prev = {}, checkpoint.seal
            except OSError as error:
                if isinstance(error, SinkError):
                    raise
                self._undo(fd, start)
                raise self._error(
                    record, operation, error.strerror or str(error), error.errno
                ) from error

    def _undo(self, fd: int, start: int) -> None:
        """Cut off what a failed append wrote, when nothing was appended after it.

        A record whose append failed is not kept: the caller treats its move as not
        made, so a line of it left in the file would stand for a move that never was.
        Best effort: another writer's lines after it are never cut.
        """
        try:
            end = os.fstat(fd).st_size
            if end > start and end == os.lseek(fd, 0, os.SEEK_CUR):
                os.ftruncate(fd, start)
                self._end = start
                self._needs_newline = not _ends_a_line(fd, start)
        except OSError:
            pass  # the file stays as the failure left it; the reader reports a torn line

    def _error(
        self, record: TransitionRecord, operation: str, detail: str, errno: int | None = None
    ) -> SinkError:
        return SinkError(
            operation,
            detail,
            path=str(self.path),
            session_id=record.session_id,
            seq=record.seq,
            errno=errno,
        )

    @property
    def closed(self) -> bool:
        return self._fd is None

    def _last_seal(self, fd: int, size: int) -> str:
        """The seal of the file's last checkpoint (GENESIS if it has none), checked.

        Raises SinkError when that checkpoint is not one this sink can vouch for: not
        well-formed, or not sealed under the sink's key (edited, or another key's file).
        """
        for index, raw in enumerate(_lines_backwards(fd, size)):
            # A last line without its newline is torn (a crash): verify reports it.
            if (index == 0 and self._needs_newline) or not raw.startswith(b'{"checkpoint"'):
                continue
            found = decode_line(raw, 0)
            if isinstance(found, Checkpoint) and seal_holds(found, self._key):
                return found.seal
            keyed = "" if self._key is None else " under this sink's key"
            raise SinkError(
                "open",
                f"the file's last checkpoint does not verify{keyed}: its end cannot be "
                "vouched for, so no run is appended to it",
                path=str(self.path),
                session_id="",
                seq=0,
            )
        return GENESIS

    def _checkpoint(
        self, touched: dict[str, tuple[int, str]], *, final: bool, written: int
    ) -> Checkpoint:
        return make_checkpoint(self._sink_id, self._prev, written, final, touched, self._key)

    def _write_checkpoint(self, fd: int, checkpoint: Checkpoint) -> None:
        prefix = b"\n" if self._needs_newline else b""
        view = memoryview(prefix + (checkpoint.line() + "\n").encode("ascii"))
        while view:
            view = view[os.write(fd, view) :]
        self._needs_newline = False
        self._end = os.lseek(fd, 0, os.SEEK_END)
        self._prev = checkpoint.seal
        if self.fsync:
            os.fsync(fd)

    def close(self) -> None:
        """Write the closing checkpoint (when anchored), then close the file.

        Later appends raise SinkError. A closing checkpoint the disk refuses raises
        SinkError too; the file is closed all the same.
        """
        with self._lock:
            if self._fd is None:
                return
            fd, self._fd = self._fd, None
            try:
                if self.checkpoint_every is not None:
                    closing = self._checkpoint(self._touched, final=True, written=self._written)
                    self._write_checkpoint(fd, closing)
            except OSError as error:
                raise SinkError(
                    "checkpoint",
                    error.strerror or str(error),
                    path=str(self.path),
                    session_id="",
                    seq=self._written,
                    errno=error.errno,
                ) from error
            finally:
                os.close(fd)

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._fd is None else ("fsync" if self.fsync else "no fsync")
        return f"<JsonlSink {str(self.path)!r} {state}>"


def _ends_a_line(fd: int, size: int) -> bool:
    """Whether a file of ``size`` bytes is empty or ends with a newline."""
    if not size:
        return True
    os.lseek(fd, size - 1, os.SEEK_SET)
    return os.read(fd, 1) == b"\n"


def _lines_backwards(fd: int, size: int, block: int = 64 * 1024) -> Iterator[bytes]:
    """The file's whole lines (without their newlines), last first; reads only as far
    back as the caller iterates. A last line without its newline (torn) comes too."""
    end = size
    tail = b""
    while end > 0:
        start = max(0, end - block)
        os.lseek(fd, start, os.SEEK_SET)
        chunk = os.read(fd, end - start) + tail
        end = start
        parts = chunk.split(b"\n")
        # The first part may continue in the block before; keep it for the next round.
        tail = parts[0] if start > 0 else b""
        for part in reversed(parts if start == 0 else parts[1:]):
            if part:
                yield part
    os.lseek(fd, 0, os.SEEK_END)


@contextlib.contextmanager
def _locked(fd: int) -> Iterator[None]:
    """An exclusive lock on the file, where the platform has one (POSIX)."""
    if fcntl is None:
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _sync_directory(directory: Path) -> None:
    # A new file's name is durable only once its directory is; POSIX only.
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def decode_line(raw: bytes, line: int) -> Item:
    """One line's bytes (without its newline) as a record, or as the BadLine it is."""
    if not raw:
        return BadLine(line, "torn_line", "the line is empty")
    try:
        text = raw.decode("ascii")
        wire = read_json(text)
        if isinstance(wire, dict) and "checkpoint" in wire:
            return _checkpoint_line(wire, text, line)
    except JsonRefused as refused:
        if refused.key is not None:
            shown = refused.key if len(refused.key) <= 40 else refused.key[:37] + "..."
            return BadLine(line, "malformed", f"the line gives the key {shown!r} twice")
        return BadLine(line, "torn_line", "the line is not a JSON record (torn or corrupted)")
    except UnicodeDecodeError:
        return BadLine(line, "torn_line", "the line is not a JSON record (torn or corrupted)")
    if not isinstance(wire, dict):
        return BadLine(line, "malformed", "the line is JSON but not an object")
    named = wire.get("session_id")
    session_id = named if isinstance(named, str) else None
    try:
        record = TransitionRecord.from_dict(wire)
    except InvalidSessionData as error:
        return BadLine(
            line,
            "malformed",
            f"not a transition record (bad keys: {', '.join(error.fields)})",
            session_id,
        )
    if record.canonical(with_hash=True) != text:
        return BadLine(
            line,
            "encoding",
            "the line is not the canonical encoding of the record it holds",
            session_id,
        )
    return record


def _checkpoint_line(wire: dict[str, object], text: str, line: int) -> Checkpoint | BadLine:
    checkpoint = checkpoint_from_wire(wire)
    if checkpoint is None:
        return BadLine(line, "malformed", "the line is not a well-formed checkpoint")
    if checkpoint.line() != text:
        return BadLine(line, "encoding", "the checkpoint is not in its canonical encoding")
    return checkpoint


Item = TransitionRecord | BadLine | Checkpoint
"""What reading a JSON Lines trail yields, one a line."""


def read_jsonl(source: str | os.PathLike[str] | BinaryIO) -> Iterator[Item]:
    """Stream the records of a JSON Lines trail, one item per line, in file order.

    ``source`` is a path, or a binary stream already open (``sys.stdin.buffer``), which
    is read but not closed. A line that is not a record in its canonical encoding yields
    a :class:`BadLine` instead, never nothing; the item's index is its line number
    minus 1. The last line may lack its newline: it is a record if its bytes are one
    whole, else ``torn_line``. Raises OSError if the file cannot be read.
    """
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as stream:
            yield from read_jsonl(stream)
        return
    yield from decode_lines(source)


def decode_lines(lines: Iterable[bytes]) -> Iterator[Item]:
    """:func:`read_jsonl` over lines already read (each with its newline, but the last
    one's may be missing): for a reader that bounds its lines itself."""
    for number, raw in enumerate(lines, 1):
        yield decode_line(raw[:-1] if raw.endswith(b"\n") else raw, number)


__all__ = [
    "BadLine",
    "Item",
    "JsonlSink",
    "MemorySink",
    "SinkError",
    "decode_line",
    "decode_lines",
    "encode_line",
    "read_jsonl",
]
