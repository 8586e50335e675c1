"""The audit trail: sinks that keep it, a reader for JSON Lines, ``verify`` and ``replay``.

Every move leaves one :class:`~paysession.TransitionRecord`, chained to the one before it
by ``prev_hash`` and sealed by ``hash`` (SHA-256, or HMAC-SHA-256 with a key, over the
record's canonical JSON). This module checks such trails and rebuilds sessions from them.

Decisions worth knowing:

- **A trail is checked by replaying it.** ``verify`` and ``replay`` run the same steps:
  each record's hash, its link and seq, the move against the transition table (source,
  dest and guards, from the state the earlier records built), its time, and its
  ``changes`` against what that move can change. ``verify`` reports the first bad record
  of each session and goes on with the others; ``replay`` raises :class:`AuditError` at
  the first one.
- **A record belongs to the session it names.** A record whose ``session_id`` was altered
  is checked (and reported) as a record of the session it now names; its hash no longer
  matches, so it is reported there, at its own position. The session that lost the record
  is reported at its next record (a seq gap).
- **A line is a record only in its one canonical spelling.** :func:`read_jsonl` re-encodes
  each record it decodes and compares the bytes, so an altered byte either breaks the
  JSON, or changes a value (and then the hash), or is caught as a non-canonical line.
  Lines that are not records are never skipped: the reader yields a :class:`BadLine` in
  their place, which ``verify`` reports with its position (``torn_line`` for bytes that
  are not a JSON record, such as the incomplete last line a crash leaves, ``malformed``
  for JSON that is not a record, ``encoding`` for a record spelled non-canonically).
- **A hash chain cannot see its own tail cut off.** Deleting a session's last records
  leaves a shorter trail that is still valid; compare the last hash with the one your
  store holds to catch that.
- **``data`` and ``cart`` are digests.** ``replay`` checks the ``data=`` and ``cart=`` it
  is given against the trail's last digests. Without ``data=`` it returns the session
  only if the trail's data is the digest of ``{}``, and otherwise raises ``AuditError``
  with reason ``data_needed``: a session with other data would not be the stored one
  (likewise ``cart``, which may also be None).

No message built here quotes a line's bytes or a ``data``/``cart`` value.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, Protocol

import attrs

from paysession._frozen import FrozenDict
from paysession._wire import digest, format_datetime, parse_datetime
from paysession.errors import InvalidSessionData, PaySessionError
from paysession.lifecycle import CREATE, FINAL, GUARDS, MOVES
from paysession.record import GENESIS, TransitionRecord, seal
from paysession.session import FIELDS, PaymentSession, evolve_trusted, is_amount

EMPTY_DIGEST = digest({})
"""The digest of ``{}``: the one ``data`` (or ``cart``) replay can rebuild unaided."""

REASONS: Mapping[str, str] = {
    "hash": "the record's hash does not match its contents (or the key)",
    "link": "prev_hash is not the hash of the session's previous record",
    "sequence": "a seq that is not one more than the previous record's",
    "illegal_move": "a move the transition table (or one of its guards) forbids",
    "time": "a record stamped earlier than the session's previous record",
    "changes": "changes that the move cannot have made",
    "torn_line": "a line that is not a JSON record (torn by a crash, or corrupted)",
    "malformed": "a JSON line that is not a transition record",
    "encoding": "a record that is not written in its canonical encoding",
    "unknown_session": "no record of the session",
    "mixed_sessions": "records of more than one session where one was expected",
    "data_needed": "the session's data is a digest; replay needs the data",
    "data_mismatch": "the data given is not the data the trail's digest is of",
    "cart_needed": "the session's cart is a digest; replay needs the cart",
    "cart_mismatch": "the cart given is not the cart the trail's digest is of",
}
"""Every ``reason`` this module reports, with what it means."""

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_TIMESTAMPS = frozenset({"payment_authorized_at", "created_at", "updated_at"})
_DIGESTED = frozenset({"data", "cart"})
_CREATE_FIELDS = frozenset(FIELDS) - {"id", "status"}
_PLACEHOLDER: Mapping[str, object] = FrozenDict()


class AuditError(PaySessionError, ValueError):
    """A trail that cannot be replayed, or replay input that does not match it.

    ``reason`` is a short kind (a key of :data:`REASONS`), ``message`` says what is wrong;
    ``session_id`` and ``seq`` name the record (None where unknown); ``position`` is the
    record's index in the input (``position + 1`` is its line in a JSON Lines file).
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        session_id: str | None = None,
        seq: int | None = None,
        position: int | None = None,
    ) -> None:
        self.reason = reason
        self.message = message
        self.session_id = session_id
        self.seq = seq
        self.position = position
        super().__init__(reason, message, session_id, seq, position)

    def __str__(self) -> str:
        where = "audit trail"
        if self.session_id is not None:
            where += f" of {self.session_id!r}"
        if self.seq is not None:
            where += f" at seq {self.seq}"
        if self.position is not None:
            where += f" (input position {self.position})"
        return f"{where}: {self.reason}: {self.message}"


class SinkError(PaySessionError, OSError):
    """An audit sink could not keep a record, or found that its file lost records.

    ``operation`` is ``write`` or ``fsync`` (the disk refused: full, read-only, I/O
    error; the OSError is the ``__cause__`` and its ``errno`` is this error's) or
    ``truncated`` (the file is shorter than what the sink wrote to it: someone cut it).
    ``session_id`` and ``seq`` name the record being appended. After a ``write`` or
    ``truncated`` error the record is not in the file as a whole line; ``verify`` of the
    file reports the gap it leaves.
    """

    def __init__(
        self,
        operation: str,
        detail: str,
        *,
        path: str,
        session_id: str,
        seq: int,
        errno: int | None = None,
    ) -> None:
        super().__init__(errno, detail)
        self.operation = operation
        self.detail = detail
        self.path = path
        self.session_id = session_id
        self.seq = seq

    def __str__(self) -> str:
        return (
            f"audit sink {self.path} failed during {self.operation} of "
            f"{self.session_id!r} seq {self.seq}: {self.detail}"
        )


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


@attrs.frozen
class AuditProblem:
    """The first bad record of one session (or a line that belongs to no session)."""

    session_id: str | None
    seq: int | None
    position: int
    """Index in the input of ``verify``; for a JSON Lines file, the line number minus 1."""
    reason: str
    message: str


@attrs.frozen
class AuditReport:
    """What ``verify`` found: ``ok`` when every record of every session checks out.

    ``sessions`` counts the session ids seen, ``records`` the items read (bad lines
    included); ``problems`` holds the first bad record of each bad session, and every
    line that names no session, in input order.
    """

    ok: bool
    sessions: int
    records: int
    problems: tuple[AuditProblem, ...] = ()


# ---------------------------------------------------------------------------------------
# Checking one session's trail


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _same(a: object, b: object) -> bool:
    # JSON's false and 0 are different values; Python's == says they are equal.
    return type(a) is type(b) and a == b


def _timestamp(value: object) -> datetime | None:
    """The datetime a canonical wire timestamp stands for; None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return None
    return parsed if format_datetime(parsed) == value else None


def _is_digest(value: object) -> bool:
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


class _Trail:
    """One session's trail so far: the session it has built and the last record's facts.

    ``session`` holds placeholders for ``data`` and ``cart``, whose digests are kept
    apart: that is all the trail knows of them.
    """

    __slots__ = ("at", "cart", "data", "hash", "seq", "session")

    def __init__(self, session: PaymentSession, record: TransitionRecord, data: str) -> None:
        self.session = session
        self.data = data
        cart = record.changes["cart"][1]
        self.cart: str | None = cart if isinstance(cart, str) else None
        self.seq = record.seq
        self.hash = record.hash
        self.at = record.at

    @classmethod
    def open(cls, record: TransitionRecord, position: int, key: bytes | None) -> _Trail:
        """Check record 0 and build the session it describes."""

        def fail(reason: str, message: str) -> NoReturn:
            raise AuditError(
                reason, message, session_id=record.session_id, seq=record.seq, position=position
            )

        _check_hash(record, position, key)
        if record.seq != 0:
            fail("sequence", f"the trail begins at seq {record.seq}: record 0 is missing")
        if record.prev_hash != GENESIS:
            fail("link", "record 0 must link to the genesis hash")
        if record.trigger != CREATE or record.source is not None:
            fail("illegal_move", f"record 0 must be a {CREATE!r} with no source status")
        changes = record.changes
        if set(changes) != _CREATE_FIELDS:
            missing = sorted(_CREATE_FIELDS - set(changes))
            extra = sorted(set(changes) - _CREATE_FIELDS)
            fail(
                "changes",
                f"record 0 must give every field but id and status (missing {missing}, "
                f"not fields {[_short(name) for name in extra]})",
            )
        values: dict[str, Any] = {}
        for name, (old, new) in changes.items():
            if old is not None:
                fail("changes", f"record 0 gives {name} an old value")
            if name in _DIGESTED:
                if new is None and name == "cart":
                    values[name] = None
                elif _is_digest(new):
                    values[name] = _PLACEHOLDER
                else:
                    fail("changes", f"{name} must appear as a sha256 digest")
            elif name in _TIMESTAMPS and new is not None:
                stamp = _timestamp(new)
                if stamp is None:
                    fail("changes", f"{name} is not a canonical timestamp")
                values[name] = stamp
            else:
                values[name] = new
        try:
            session = PaymentSession(id=record.session_id, status=record.dest, **values)
        except InvalidSessionData as error:
            fail("changes", f"record 0 is not a valid session: {', '.join(error.fields)} wrong")
        if session.updated_at != record.at:
            fail("changes", "record 0's updated_at is not its time")
        return cls(session, record, str(changes["data"][1]))

    def step(self, record: TransitionRecord, position: int, key: bytes | None) -> None:
        """Check one move's record against the trail so far, then apply it."""

        def fail(reason: str, message: str) -> NoReturn:
            raise AuditError(
                reason, message, session_id=record.session_id, seq=record.seq, position=position
            )

        _check_hash(record, position, key)
        if record.seq != self.seq + 1:
            what = "a gap" if record.seq > self.seq + 1 else "a repeat or reordering"
            fail("sequence", f"expected seq {self.seq + 1}, got {record.seq} ({what})")
        if record.prev_hash != self.hash:
            fail("link", f"prev_hash is not the hash of seq {self.seq}")
        if record.at < self.at:
            fail(
                "time",
                f"stamped {format_datetime(record.at)}, before the previous record's "
                f"{format_datetime(self.at)}",
            )
        session = self.session
        status = session.status
        move = MOVES.get(record.trigger)
        if move is None:
            fail("illegal_move", f"{_short(record.trigger)} is not a move of the table")
        if record.source is not status:
            shown = "none" if record.source is None else record.source.value
            fail(
                "illegal_move",
                f"source is {shown} but the previous record left the session {status.value}",
            )
        if status not in move.sources:
            fail("illegal_move", f"{move.trigger} is not allowed from {status.value}")
        dest = move.dest_from(status)
        if record.dest is not dest:
            fail(
                "illegal_move",
                f"{move.trigger} from {status.value} goes to {dest.value}, not {record.dest.value}",
            )
        for name in move.guards:
            if not GUARDS[name].check(session):
                fail("illegal_move", f"{move.trigger} needs guard {name}, which did not hold")

        at = format_datetime(record.at)
        # What the move must leave in each field it sets, as the machine writes it.
        required: dict[str, object] = {"updated_at": at}
        for name in move.stamps:
            required[name] = at
        for name, constant in move.sets:
            required[name] = constant
        updates: dict[str, object] = {"status": dest}
        data = self.data
        for name, (old, new) in record.changes.items():
            if name not in required and name not in move.params:
                fail("changes", f"{move.trigger} cannot change {_short(name)}")
            current = data if name == "data" else _wire(session, name)
            if not _same(old, current):
                fail("changes", f"the old value of {name} is not its current value")
            if _same(old, new):
                fail("changes", f"the change to {name} changes nothing")
            if name in required:
                if not _same(new, required[name]):
                    fail("changes", f"{move.trigger} must set {name} to {_short(required[name])}")
                updates[name] = record.at if name in _TIMESTAMPS else new
            elif name == "amount":
                if not is_amount(new):
                    fail("changes", "amount must be an int from 0 up (minor units)")
                updates[name] = new
            elif name == "data":
                if not _is_digest(new):
                    fail("changes", "data must appear as a sha256 digest")
                data = str(new)
        for name, value in required.items():
            if name not in record.changes and not _same(_wire(session, name), value):
                fail("changes", f"{move.trigger} must set {name} to {_short(value)}")
        self.session = evolve_trusted(session, updates)
        self.data = data
        self.seq = record.seq
        self.hash = record.hash
        self.at = record.at

    def finish(
        self, data: Mapping[str, object] | None, cart: Mapping[str, object] | None
    ) -> PaymentSession:
        """The session with its real ``data`` and ``cart``, checked against the digests."""

        def fail(reason: str, message: str) -> NoReturn:
            raise AuditError(reason, message, session_id=self.session.id, seq=self.seq)

        if data is None:
            if self.data != EMPTY_DIGEST:
                fail("data_needed", "the trail holds only a digest of data: pass data=")
            data = {}
        if cart is None and self.cart is not None:
            if self.cart != EMPTY_DIGEST:
                fail("cart_needed", "the trail holds only a digest of cart: pass cart=")
            cart = {}
        session = attrs.evolve(self.session, data=data, cart=cart)
        if digest(session.data) != self.data:
            fail("data_mismatch", "the data given does not match the trail's digest")
        if self.cart is None and session.cart is not None:
            fail("cart_mismatch", "the trail's session has no cart")
        if session.cart is not None and digest(session.cart) != self.cart:
            fail("cart_mismatch", "the cart given does not match the trail's digest")
        return session


def _wire(session: PaymentSession, name: str) -> object:
    value = getattr(session, name)
    return format_datetime(value) if isinstance(value, datetime) else value


def _check_hash(record: TransitionRecord, position: int, key: bytes | None) -> None:
    if seal(record.canonical(), key) != record.hash:
        raise AuditError(
            "hash",
            "the record's hash does not match its contents"
            + ("" if key is None else " under the key"),
            session_id=record.session_id,
            seq=record.seq,
            position=position,
        )


# ---------------------------------------------------------------------------------------
# verify and replay


def verify(
    records: Iterable[TransitionRecord | BadLine], *, key: bytes | None = None
) -> AuditReport:
    """Check the trails of any number of sessions; report the first bad record of each.

    ``records`` may interleave sessions in any order but must keep each session's records
    in seq order; it is read once, holding one session's state per session. With ``key``
    every hash must be the HMAC-SHA-256 the machine made with that key. A
    :class:`BadLine` (from :func:`read_jsonl`) is a problem of the session it names, or
    one of its own when it names none.
    """
    trails: dict[str, _Trail] = {}
    bad: set[str] = set()
    problems: list[AuditProblem] = []
    count = 0
    for position, item in enumerate(records):
        count += 1
        if isinstance(item, BadLine):
            named = item.session_id
            if named is None or named not in bad:
                problems.append(AuditProblem(named, None, position, item.reason, item.message))
            if named is not None:
                trails.pop(named, None)
                bad.add(named)
            continue
        session_id = item.session_id
        if session_id in bad:
            continue
        trail = trails.get(session_id)
        try:
            if trail is None:
                trails[session_id] = _Trail.open(item, position, key)
            else:
                trail.step(item, position, key)
        except AuditError as error:
            problems.append(
                AuditProblem(session_id, item.seq, position, error.reason, error.message)
            )
            trails.pop(session_id, None)
            bad.add(session_id)
    return AuditReport(
        ok=not problems,
        sessions=len(trails) + len(bad),
        records=count,
        problems=tuple(problems),
    )


def replay(
    records: Iterable[TransitionRecord | BadLine],
    *,
    data: Mapping[str, object] | None = None,
    cart: Mapping[str, object] | None = None,
    session_id: str | None = None,
    key: bytes | None = None,
) -> PaymentSession:
    """Rebuild one session from its trail, through the transition table.

    Every record is checked as ``verify`` checks it (hashes with ``key``); the first one
    that fails raises :class:`AuditError`. ``data`` and ``cart`` are the session's current
    values, checked against the trail's digests (see the module notes for what happens
    without them). With ``session_id``, records of other sessions are skipped, so a whole
    JSON Lines file can be passed; a :class:`BadLine` that may be one of this session's
    records (it names the session, or names none and comes after its record 0 while
    the session can still move) raises.
    Without ``session_id``, every record must be of one session.
    """
    trail: _Trail | None = None
    target = session_id
    for position, item in enumerate(records):
        if isinstance(item, BadLine):
            if session_id is not None and (
                (item.session_id is None and (trail is None or trail.session.status in FINAL))
                or (item.session_id is not None and item.session_id != session_id)
            ):
                continue
            raise AuditError(
                item.reason, item.message, session_id=item.session_id, position=position
            )
        if target is None:
            target = item.session_id
        elif item.session_id != target:
            if session_id is not None:
                continue
            raise AuditError(
                "mixed_sessions",
                f"a record of {_short(item.session_id)} in the trail of {_short(target)}",
                session_id=item.session_id,
                seq=item.seq,
                position=position,
            )
        if trail is None:
            trail = _Trail.open(item, position, key)
        else:
            trail.step(item, position, key)
    if trail is None:
        raise AuditError(
            "unknown_session",
            "no record of this session" if session_id is not None else "the trail is empty",
            session_id=session_id,
        )
    return trail.finish(data, cart)


# ---------------------------------------------------------------------------------------
# Sinks and JSON Lines


class AuditSink(Protocol):
    """A protocol: where a machine sends each record once the move is final.

    A ``SessionMachine(..., sink=...)`` calls ``append`` exactly once per record, in seq
    order, record 0 first (when the machine first builds its trail), under the machine's
    lock. An exception from ``append`` reaches the caller of the move.
    """

    def append(self, record: TransitionRecord) -> None: ...


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


class JsonlSink:
    """An :class:`AuditSink` appending one canonical JSON line per record to one file.

    Any number of sessions share a file. Each record is one ``os.write`` of its whole line
    to a file opened for appending, followed by ``os.fsync`` when ``fsync`` is true (the
    record is then on disk when the move returns). A crash can only leave the last line
    incomplete; :func:`read_jsonl` reports it. If the file does not end with a newline
    when the sink opens it, the next record starts on a new line, so the torn bytes stay
    a line of their own and the records after them stay readable.

    ``append`` never fails silently: a disk that refuses the line (full, read-only) or
    the fsync raises :class:`SinkError`, and so does a file found shorter than what this
    sink wrote to it (truncated under it): then the record is not written, and later
    appends go on from the file's new end. The bytes of a line the disk took only in
    part stay a torn line of their own, like a crash's.

    Close it with ``close()`` or use it as a context manager.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
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
                raise ValueError(f"JsonlSink for {self.path} is closed")
            operation = "write"
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
            except OSError as error:
                if isinstance(error, SinkError):
                    raise
                raise self._error(
                    record, operation, error.strerror or str(error), error.errno
                ) from error

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

    def close(self) -> None:
        """Close the file; later appends raise ValueError."""
        with self._lock:
            if self._fd is not None:
                fd, self._fd = self._fd, None
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


def _sync_directory(directory: Path) -> None:
    # A new file's name is durable only once its directory is; POSIX only.
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def decode_line(raw: bytes, line: int) -> TransitionRecord | BadLine:
    """One line's bytes (without its newline) as a record, or as the BadLine it is."""
    if not raw:
        return BadLine(line, "torn_line", "the line is empty")
    try:
        text = raw.decode("ascii")
        wire = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
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


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[TransitionRecord | BadLine]:
    """Stream the records of a JSON Lines trail, one item per line, in file order.

    A line that is not a record in its canonical encoding yields a :class:`BadLine`
    instead, never nothing; the item's index is its line number minus 1. The last line
    may lack its newline: it is a record if its bytes are one whole, else ``torn_line``.
    Raises OSError if the file cannot be read.
    """
    with open(path, "rb") as stream:
        for number, raw in enumerate(stream, 1):
            yield decode_line(raw[:-1] if raw.endswith(b"\n") else raw, number)


# ---------------------------------------------------------------------------------------
# `paysession audit ...`


class _UsageError(Exception):
    """A command line problem: reported on stderr with exit code 2."""


def _shown(text: str | None) -> str:
    if text is None:
        return "?"
    return text if text.isprintable() and len(text) <= 120 else _short(text)


def _read_key(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        key = path.read_bytes().strip()
    except OSError as error:
        raise _UsageError(f"cannot read key file {path}: {error.strerror or error}") from None
    if not key:
        raise _UsageError(f"key file {path} is empty")
    return key


def _read_json_object(path: Path | None, what: str) -> Mapping[str, object] | None:
    if path is None:
        return None
    try:
        payload = json.loads(path.read_bytes(), parse_constant=_no_constant)
    except OSError as error:
        raise _UsageError(f"cannot read {what} file {path}: {error.strerror or error}") from None
    except (ValueError, RecursionError):
        raise _UsageError(f"{what} file {path} is not valid JSON") from None
    if not isinstance(payload, dict):
        raise _UsageError(f"{what} file {path} must hold a JSON object")
    return payload


def _where(path: Path, position: int | None) -> str:
    return str(path) if position is None else f"{path}:{position + 1}"


def _who(session_id: str | None, seq: int | None) -> str:
    if session_id is None:
        return "unreadable line"
    return f"session {_shown(session_id)}" + ("" if seq is None else f" seq {seq}")


def _run_verify(args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        report = verify(read_jsonl(path), key=_read_key(args.key_file))
    except _UsageError as error:
        return _usage(str(error))
    except OSError as error:
        return _usage(f"cannot read {path}: {error.strerror or error}")
    if report.ok:
        print(f"ok: {report.sessions} sessions, {report.records} records verified")
        return 0
    for problem in report.problems:
        print(
            f"{_where(path, problem.position)}: {_who(problem.session_id, problem.seq)}: "
            f"{problem.reason}: {problem.message}"
        )
    bad_sessions = len({p.session_id for p in report.problems if p.session_id is not None})
    print(
        f"FAILED: {bad_sessions} of {report.sessions} sessions bad, "
        f"{len(report.problems)} problems in {report.records} records"
    )
    return 1


def _run_show(args: argparse.Namespace) -> int:
    from paysession.cli import RECORD_HEADERS, format_table, record_row

    path: Path = args.file
    wanted: str | None = args.session
    rows: list[list[object]] = []
    unreadable = 0
    try:
        for position, item in enumerate(read_jsonl(path)):
            if wanted is not None and item.session_id not in (wanted, None):
                continue
            if isinstance(item, BadLine):
                unreadable += 1
                rows.append(
                    [position + 1, _shown(item.session_id), "", f"({item.reason})", "", "", "", ""]
                )
            else:
                rows.append([position + 1, *record_row(item), format_datetime(item.at)])
    except OSError as error:
        return _usage(f"cannot read {path}: {error.strerror or error}")
    if wanted is not None and len(rows) == unreadable:
        return _usage(f"no record of session {_shown(wanted)} in {path}")
    print(format_table(("line", *RECORD_HEADERS, "at"), rows))
    if unreadable:
        print(f"{unreadable} unreadable lines; run `paysession audit verify {path}`")
        return 1
    return 0


def _run_replay(args: argparse.Namespace) -> int:
    from paysession.codec import to_json

    path: Path = args.file
    try:
        key = _read_key(args.key_file)
        data = _read_json_object(args.data_json, "data")
        cart = _read_json_object(args.cart_json, "cart")
        session = replay(read_jsonl(path), session_id=args.session, data=data, cart=cart, key=key)
    except _UsageError as error:
        return _usage(str(error))
    except OSError as error:
        return _usage(f"cannot read {path}: {error.strerror or error}")
    except InvalidSessionData:
        # Not even the paths: a data file's keys are the caller's, and may be secrets.
        return _usage("the data or cart given is not JSON data a session can hold")
    except AuditError as error:
        if error.reason == "unknown_session":
            return _usage(f"no record of session {_shown(args.session)} in {path}")
        if error.reason in _INPUT_PROBLEMS:
            what = error.reason.split("_")[0]
            if error.reason.endswith("needed"):
                return _usage(
                    f"the trail holds only a digest of session {_shown(args.session)}'s "
                    f"{what}: pass --{what}-json FILE"
                )
            return _usage(
                f"the {what} given does not match the trail's digest of session "
                f"{_shown(args.session)}'s {what}"
            )
        print(
            f"{_where(path, error.position)}: {_who(error.session_id, error.seq)}: "
            f"{error.reason}: {error.message}",
            file=sys.stderr,
        )
        return 1
    print(to_json(session))
    return 0


_INPUT_PROBLEMS = frozenset({"data_needed", "data_mismatch", "cart_needed", "cart_mismatch"})


def _usage(message: str) -> int:
    print(f"paysession audit: {message}", file=sys.stderr)
    return 2


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``audit verify|show|replay`` to the ``paysession`` command's subcommands.

    Exit codes: 0 when the trail checks out, 1 when it does not (or, for ``show``, has
    unreadable lines), 2 for usage errors (a missing file, a bad key file, an unknown
    session, data that does not match the trail).
    """
    audit = commands.add_parser("audit", help="verify, show or replay a JSON Lines audit trail")
    actions = audit.add_subparsers(dest="audit_command", required=True)

    check = actions.add_parser(
        "verify", help="check every session's hash chain, moves and changes; exit 1 if bad"
    )
    check.add_argument("file", type=Path, help="the JSON Lines trail (one record per line)")
    check.add_argument("--key-file", type=Path, help="the HMAC key the trail was written with")
    check.set_defaults(run=_run_verify)

    show = actions.add_parser("show", help="print the moves as a table (does not verify)")
    show.add_argument("file", type=Path, help="the JSON Lines trail")
    show.add_argument("--session", metavar="ID", help="only this session's moves")
    show.set_defaults(run=_run_show)

    rebuild = actions.add_parser("replay", help="rebuild one session and print it as JSON")
    rebuild.add_argument("file", type=Path, help="the JSON Lines trail")
    rebuild.add_argument("--session", metavar="ID", required=True, help="the session to rebuild")
    rebuild.add_argument(
        "--data-json", type=Path, metavar="FILE", help="the session's data (a JSON object)"
    )
    rebuild.add_argument(
        "--cart-json", type=Path, metavar="FILE", help="the session's cart (a JSON object)"
    )
    rebuild.add_argument("--key-file", type=Path, help="the HMAC key the trail was written with")
    rebuild.set_defaults(run=_run_replay)


__all__ = [
    "EMPTY_DIGEST",
    "REASONS",
    "AuditError",
    "AuditProblem",
    "AuditReport",
    "AuditSink",
    "BadLine",
    "JsonlSink",
    "MemorySink",
    "SinkError",
    "add_command",
    "decode_line",
    "encode_line",
    "read_jsonl",
    "replay",
    "verify",
]
