"""Checking a trail: ``verify`` and ``replay``.

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
  leaves a shorter trail that is still valid: the checkpoints of
  ``paysession/audit/anchors.py`` and heads kept outside the file catch that.
- **``data`` and ``cart`` are digests.** ``replay`` checks the ``data=`` and ``cart=`` it
  is given against the trail's last digests. Without ``data=`` it returns the session
  only if the trail's data is the digest of ``{}``, and otherwise raises ``AuditError``
  with reason ``data_needed``: a session with other data would not be the stored one
  (likewise ``cart``, which may also be None).

No message built here quotes a line's bytes or a ``data``/``cart`` value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NoReturn

import attrs

from paysession._frozen import FrozenDict
from paysession._text import abbreviated
from paysession._wire import digest, format_datetime, parse_datetime, same_digest
from paysession.audit.anchors import Checkpoint
from paysession.audit.sinks import BadLine
from paysession.errors import AuditError, InvalidSessionData
from paysession.lifecycle import CREATE, FINAL, GUARDS, MOVES
from paysession.planning import legal
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
    "anchor": "a checkpoint, or a head given from outside, that the trail does not match",
    "trail_cut": "a stored session's trail ends before its row's version (records removed)",
    "head": "a stored session's row names a head that is not its last record's hash",
    "row_mismatch": "a stored session's row differs from what its trail leads to",
    "past_version": "a stored record past its row's version (forged, or the row rolled back)",
    "unreadable": "a stored row or record paysession never wrote (it cannot be decoded)",
    "vanished": "a session named by outside heads that the store no longer holds",
}
"""Every ``reason`` this module reports, with what it means."""

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_KEYED_DIGEST = re.compile(r"hmac-sha256:[0-9a-f]{64}")
_TIMESTAMPS = frozenset({"payment_authorized_at", "created_at", "updated_at"})
_DIGESTED = frozenset({"data", "cart"})
_CREATE_FIELDS = frozenset(FIELDS) - {"id", "status"}
_PLACEHOLDER: Mapping[str, object] = FrozenDict()


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

    ``sessions`` counts the session ids seen, ``records`` the records and bad lines read
    (checkpoints are not records); ``problems`` holds the first bad record of each bad
    session, and every line that names no session, in input order.
    """

    ok: bool
    sessions: int
    records: int
    problems: tuple[AuditProblem, ...] = ()


# ---------------------------------------------------------------------------------------
# Checking one session's trail


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


def _is_digest(value: object, key: bytes | None) -> bool:
    """Whether ``value`` is a digest as the machine writes it: an HMAC under a key."""
    form = _DIGEST if key is None else _KEYED_DIGEST
    return isinstance(value, str) and form.fullmatch(value) is not None


def _digest_form(key: bytes | None) -> str:
    return "a sha256 digest" if key is None else "an hmac-sha256 digest under the key"


def _looks_keyed(record: TransitionRecord) -> bool:
    """Whether the record's digests are HMACs: a trail made with a key."""
    return any(
        isinstance(new, str) and _KEYED_DIGEST.fullmatch(new) is not None
        for name, (_, new) in record.changes.items()
        if name in _DIGESTED
    )


class SessionTrail:
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
    def open(cls, record: TransitionRecord, position: int, key: bytes | None) -> SessionTrail:
        """Check record 0 and build the session it describes."""

        def fail(reason: str, message: str) -> NoReturn:
            raise AuditError(
                reason, message, session_id=record.session_id, seq=record.seq, position=position
            )

        _check_hash(record, position, key)
        if record.seq != 0:
            fail("sequence", f"the trail begins at seq {record.seq}: record 0 is missing")
        if not same_digest(record.prev_hash, GENESIS):
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
                f"not fields {[abbreviated(name) for name in extra]})",
            )
        values: dict[str, Any] = {}
        for name, (old, new) in changes.items():
            if old is not None:
                fail("changes", f"record 0 gives {name} an old value")
            if name in _DIGESTED:
                if new is None and name == "cart":
                    values[name] = None
                elif _is_digest(new, key):
                    values[name] = _PLACEHOLDER
                else:
                    fail("changes", f"{name} must appear as {_digest_form(key)}")
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
        if not same_digest(record.prev_hash, self.hash):
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
            fail("illegal_move", f"{abbreviated(record.trigger)} is not a move of the table")
        if record.source is not status:
            shown = "none" if record.source is None else record.source.value
            fail(
                "illegal_move",
                f"source is {shown} but the previous record left the session {status.value}",
            )
        if not legal(move.trigger, status):
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
                fail("changes", f"{move.trigger} cannot change {abbreviated(name)}")
            current = data if name == "data" else _wire(session, name)
            if not _same(old, current):
                fail("changes", f"the old value of {name} is not its current value")
            if _same(old, new):
                fail("changes", f"the change to {name} changes nothing")
            if name in required:
                if not _same(new, required[name]):
                    fail(
                        "changes",
                        f"{move.trigger} must set {name} to {abbreviated(required[name])}",
                    )
                updates[name] = record.at if name in _TIMESTAMPS else new
            elif name == "amount":
                if not is_amount(new):
                    fail("changes", "amount must be an int from 0 up (minor units)")
                updates[name] = new
            elif name == "data":
                if not _is_digest(new, key):
                    fail("changes", f"data must appear as {_digest_form(key)}")
                data = str(new)
        for name, value in required.items():
            if name not in record.changes and not _same(_wire(session, name), value):
                fail("changes", f"{move.trigger} must set {name} to {abbreviated(value)}")
        self.session = evolve_trusted(session, updates)
        self.data = data
        self.seq = record.seq
        self.hash = record.hash
        self.at = record.at

    def finish(
        self,
        data: Mapping[str, object] | None,
        cart: Mapping[str, object] | None,
        key: bytes | None,
    ) -> PaymentSession:
        """The session with its real ``data`` and ``cart``, checked against the digests."""

        def fail(reason: str, message: str) -> NoReturn:
            raise AuditError(reason, message, session_id=self.session.id, seq=self.seq)

        # The digest of {} only when data or cart is missing: replay runs for every
        # session verify_all checks, and most are given theirs.
        if data is None:
            if not same_digest(self.data, digest({}, key)):
                fail("data_needed", "the trail holds only a digest of data: pass data=")
            data = {}
        if cart is None and self.cart is not None:
            if not same_digest(self.cart, digest({}, key)):
                fail("cart_needed", "the trail holds only a digest of cart: pass cart=")
            cart = {}
        session = attrs.evolve(self.session, data=data, cart=cart)
        if not same_digest(digest(session.data, key), self.data):
            fail("data_mismatch", "the data given does not match the trail's digest")
        if session.cart is not None:
            if self.cart is None:
                fail("cart_mismatch", "the trail's session has no cart")
            if not same_digest(digest(session.cart, key), self.cart):
                fail("cart_mismatch", "the cart given does not match the trail's digest")
        return session


def _wire(session: PaymentSession, name: str) -> object:
    value = getattr(session, name)
    return format_datetime(value) if isinstance(value, datetime) else value


def _check_hash(record: TransitionRecord, position: int, key: bytes | None) -> None:
    if not same_digest(seal(record.canonical(), key), record.hash):
        if key is None and _looks_keyed(record):
            why = (
                "the record's hash does not match its contents; the trail looks keyed (its "
                "digests are HMACs): verify it with its key"
            )
        else:
            why = "the record's hash does not match its contents" + (
                "" if key is None else " under the key"
            )
        raise AuditError(
            "hash",
            why,
            session_id=record.session_id,
            seq=record.seq,
            position=position,
        )


# ---------------------------------------------------------------------------------------
# verify and replay


def replay(
    records: Iterable[TransitionRecord | BadLine | Checkpoint],
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
    trail: SessionTrail | None = None
    target = session_id
    for position, item in enumerate(records):
        if isinstance(item, Checkpoint):
            continue  # anchors are verify's to check; replay rebuilds from the records
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
                f"a record of {abbreviated(item.session_id)} in the trail of {abbreviated(target)}",
                session_id=item.session_id,
                seq=item.seq,
                position=position,
            )
        if trail is None:
            trail = SessionTrail.open(item, position, key)
        else:
            trail.step(item, position, key)
    if trail is None:
        raise AuditError(
            "unknown_session",
            "no record of this session" if session_id is not None else "the trail is empty",
            session_id=session_id,
        )
    return trail.finish(data, cart, key)


__all__ = [
    "EMPTY_DIGEST",
    "REASONS",
    "AuditError",
    "AuditProblem",
    "AuditReport",
    "replay",
]
