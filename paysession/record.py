"""The audit record of one move, and the hash that chains it to the one before."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from datetime import datetime
from json.encoder import encode_basestring_ascii
from typing import Any, NamedTuple, Protocol

import attrs

from paysession._compiled import slot_filler
from paysession._frozen import FrozenDict
from paysession._wire import canonical_json, format_datetime, json_scalar, parse_datetime
from paysession.errors import InvalidSessionData
from paysession.limits import check_counter
from paysession.session import FIELDS
from paysession.status import PaymentSessionStatus

GENESIS = "0" * 64
"""The ``prev_hash`` of every trail's first record (seq 0)."""

Change = tuple[object, object]


@attrs.frozen(slots=True)
class TransitionRecord:
    """One move of one session, immutable, hash-chained to the record before it.

    ``changes`` maps each field the move changed, besides ``status``, to its old and new
    wire values (timestamps as ISO 8601 text); ``data`` and ``cart`` appear only as
    ``sha256:`` digests, never in clear. Record 0 (trigger ``create``, no ``source``)
    holds the session's values as its trail began.
    """

    session_id: str
    seq: int
    trigger: str
    source: PaymentSessionStatus | None
    dest: PaymentSessionStatus
    at: datetime
    actor: str | None
    reason: str | None
    idempotency_key: str | None
    changes: Mapping[str, Change]
    prev_hash: str
    hash: str
    # The canonical line (with the hash) as make_record wrote it, so that a store or a
    # sink writing the record does not spell it out a second time.
    _line: str | None = attrs.field(default=None, init=False, eq=False, repr=False, hash=False)

    def body(self) -> dict[str, Any]:
        """The record's wire form without its own hash: what the hash covers."""
        return {
            "session_id": self.session_id,
            "seq": self.seq,
            "trigger": self.trigger,
            "source": None if self.source is None else self.source.value,
            "dest": self.dest.value,
            "at": format_datetime(self.at),
            "actor": self.actor,
            "reason": self.reason,
            "idempotency_key": self.idempotency_key,
            "changes": {name: list(pair) for name, pair in self.changes.items()},
            "prev_hash": self.prev_hash,
        }

    def canonical(self, *, with_hash: bool = False) -> str:
        """The canonical JSON the hash covers; ``with_hash=True``: the record's line."""
        if with_hash and self._line is not None:
            return self._line
        head, tail = _canonical_halves(self)
        return f'{head}"hash":{_text(self.hash)},{tail}' if with_hash else head + tail

    def to_dict(self) -> dict[str, Any]:
        """The record's wire form: its body and its hash."""
        out = self.body()
        out["hash"] = self.hash
        return out

    @classmethod
    def from_dict(cls, wire: Mapping[str, Any]) -> TransitionRecord:
        """A record from its wire form (as ``to_dict`` writes it); the hash is not checked.

        Raises InvalidSessionData naming each malformed key.
        """
        problems: dict[str, str] = {}
        if not isinstance(wire, Mapping):
            raise InvalidSessionData({"$": "a record must be a JSON object"})
        unknown = set(wire) - _RECORD_KEYS
        for name in sorted(map(str, unknown)):
            problems[name[:80]] = "is not a field of a transition record"
        for name in sorted(_RECORD_KEYS - set(wire)):
            problems[name] = "is required"

        def text(name: str, nullable: bool = True) -> Any:
            value = wire.get(name)
            if value is None and nullable:
                return None
            if not isinstance(value, str):
                problems.setdefault(name, "must be a string")
            return value

        def status(name: str, nullable: bool) -> Any:
            value = wire.get(name)
            if value is None and nullable:
                return None
            try:
                return PaymentSessionStatus(value)
            except ValueError:
                problems.setdefault(name, "must be a payment session status")
                return None

        seq: Any = wire.get("seq")
        check_counter(seq, "seq", problems)
        at: Any = None
        try:
            at = parse_datetime(wire.get("at"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            problems.setdefault("at", "must be an ISO 8601 timestamp with an offset")
        changes = wire.get("changes")
        pairs: dict[str, Change] = {}
        if isinstance(changes, Mapping):
            for name, pair in changes.items():
                if not (
                    isinstance(name, str) and isinstance(pair, list | tuple) and len(pair) == 2
                ):
                    problems.setdefault("changes", "must map field names to [old, new] pairs")
                    break
                pairs[name] = (pair[0], pair[1])
        else:
            problems.setdefault("changes", "must be an object")
        fields = {
            "session_id": text("session_id", nullable=False),
            "trigger": text("trigger", nullable=False),
            "source": status("source", nullable=True),
            "dest": status("dest", nullable=False),
            "actor": text("actor"),
            "reason": text("reason"),
            "idempotency_key": text("idempotency_key"),
            "prev_hash": text("prev_hash", nullable=False),
            "hash": text("hash", nullable=False),
        }
        if problems:
            raise InvalidSessionData(problems)
        return cls(seq=seq, at=at, changes=FrozenDict(pairs), **fields)


_RECORD_KEYS = frozenset(
    {
        "session_id",
        "seq",
        "trigger",
        "source",
        "dest",
        "at",
        "actor",
        "reason",
        "idempotency_key",
        "changes",
        "prev_hash",
        "hash",
    }
)


def compute_hash(body: Mapping[str, Any], key: bytes | None = None) -> str:
    """SHA-256 (or HMAC-SHA-256 with ``key``) over the canonical JSON of ``body``."""
    return seal(canonical_json(body), key)


_STATUS_TEXT: dict[PaymentSessionStatus | None, str] = {
    None: "null",
    **{status: f'"{status.value}"' for status in PaymentSessionStatus},
}


# The names a move's changes use (the session's fields), already as JSON text.
_NAME_TEXT = {name: f'"{name}"' for name in FIELDS}


def _text(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)


def seal(canonical: str, key: bytes | None = None) -> str:
    """SHA-256 (or HMAC-SHA-256 with ``key``) of canonical text, as hex."""
    payload = canonical.encode()
    if key is None:
        return hashlib.sha256(payload).hexdigest()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def _canonical_halves(record: TransitionRecord) -> tuple[str, str]:
    """The canonical JSON of a record's wire form, split where "hash" sorts in (after
    "dest"), so that the hashed text and the line with the hash share both pieces.
    """
    return _halves(
        record.session_id,
        record.seq,
        record.trigger,
        record.source,
        record.dest,
        format_datetime(record.at),
        record.actor,
        record.reason,
        record.idempotency_key,
        record.changes,
        record.prev_hash,
    )


def _halves(
    session_id: str,
    seq: int,
    trigger: str,
    source: PaymentSessionStatus | None,
    dest: PaymentSessionStatus,
    at: str,
    actor: str | None,
    reason: str | None,
    idempotency_key: str | None,
    changes: Mapping[str, Change],
    prev_hash: str,
) -> tuple[str, str]:
    # Spelled out rather than canonical_json(record.body()): it runs on every move and for
    # every record verify reads, and is byte for byte the same text (property tests hold
    # the two together). Takes the values, not a record, so that make_record can seal a
    # record before building it.
    enc = encode_basestring_ascii
    pairs = ""  # most moves change one field: no list to join
    for name in sorted(changes) if len(changes) > 1 else changes:
        old, new = changes[name]
        pairs += (
            f"{',' if pairs else ''}{_NAME_TEXT.get(name) or json_scalar(name)}:"
            f"[{enc(old) if type(old) is str else json_scalar(old)},"
            f"{enc(new) if type(new) is str else json_scalar(new)}]"
        )
    head = (
        f'{{"actor":{"null" if actor is None else enc(actor)},"at":"{at}",'
        f'"changes":{{{pairs}}},"dest":{_STATUS_TEXT[dest]},'
    )
    tail = (
        f'"idempotency_key":{"null" if idempotency_key is None else enc(idempotency_key)},'
        f'"prev_hash":{enc(prev_hash)},"reason":{"null" if reason is None else enc(reason)},'
        f'"seq":{seq:d},"session_id":{enc(session_id)},'
        f'"source":{_STATUS_TEXT[source]},"trigger":{enc(trigger)}}}'
    )
    return head, tail


class RecordFields(NamedTuple):
    """What a record says, before it is sealed: its place in the trail, the move, when,
    who and why, and the fields the move changed."""

    # Its place: the session, its seq, and the hash of the record before it.
    session_id: str
    seq: int
    prev_hash: str
    # The move, from the status it left to the one it reached.
    trigger: str
    source: PaymentSessionStatus | None
    dest: PaymentSessionStatus
    # When, who, why, under which key.
    at: datetime
    actor: str | None
    reason: str | None
    idempotency_key: str | None
    changes: Mapping[str, Change]


def make_record(fields: RecordFields, key: bytes | None = None) -> TransitionRecord:
    """Build a record of ``fields`` and seal it with its hash (an HMAC under ``key``)."""
    session_id, seq, prev, trigger, source, dest, at, actor, reason, idem, changes = fields
    # The text is spelled out from the values, then the record is filled in once, hash
    # and line included, through its slot descriptors.
    head, tail = _halves(
        session_id,
        seq,
        trigger,
        source,
        dest,
        format_datetime(at),
        actor,
        reason,
        idem,
        changes,
        prev,
    )
    # seal(), written out: one call fewer on every move.
    payload = (head + tail).encode()
    if key is None:
        sealed = hashlib.sha256(payload).hexdigest()
    else:
        sealed = hmac.new(key, payload, hashlib.sha256).hexdigest()
    return _sealed_record(
        session_id,
        seq,
        trigger,
        source,
        dest,
        at,
        actor,
        reason,
        idem,
        FrozenDict(changes),
        prev,
        sealed,
        f'{head}"hash":"{sealed}",{tail}',
    )


# make_record's fields are built and checked by the machine: filling the slots straight
# through their descriptors spares a move attrs' generic frozen __init__.
_sealed_record: Callable[..., TransitionRecord] = slot_filler(
    TransitionRecord, [field.name for field in attrs.fields(TransitionRecord)], "sealed_record"
)


class AuditSink(Protocol):
    """A protocol: where a machine sends each record once the move is final.

    A ``SessionMachine(..., sink=...)`` calls ``append`` exactly once per record, in seq
    order, record 0 first (when the machine first builds its trail), under the machine's
    lock. An exception from ``append`` means the record was not kept: the move does not
    happen, and its caller gets a :class:`~paysession.errors.SinkError` (with the
    sink's own exception as its cause, when it raised another).
    """

    def append(self, record: TransitionRecord) -> None: ...


__all__ = [
    "GENESIS",
    "AuditSink",
    "Change",
    "RecordFields",
    "TransitionRecord",
    "compute_hash",
    "make_record",
    "seal",
]
