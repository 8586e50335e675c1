"""SQLite rows and objects: times as integer microseconds, the SQL.

Rows are ``sqlite3.Row``, read by column name. Statements that shared code runs (the
loads, the reads of ``SqlReads``) or builds (the event and call inserts) name their
values (``:name``, see :func:`placeholder`); the write path's own statements take
theirs in order (``?``)."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

from paysession.record import TransitionRecord
from paysession.session import PaymentSession
from paysession.status import PaymentSessionStatus
from paysession.store import _sql
from paysession.store._rows import Row, record_wire
from paysession.store.base import (
    AnomalyKind,
    Claim,
    ClaimAction,
    EventOutcome,
    ProviderEvent,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def placeholder(name: str) -> str:
    """Where the value ``name`` goes in a statement: sqlite3's named style."""
    return f":{name}"


CLAIM_LIVE = "SELECT expires_at FROM paysession_claims WHERE cart_id = ? AND expires_at > ?"
RELEASE = "DELETE FROM paysession_claims WHERE cart_id = ? AND token = ?"

LOAD_PLAIN = f"SELECT {_sql.SESSION_COLUMNS} FROM paysession_sessions WHERE id = :id"
LOAD = (
    f"SELECT {_sql.prefixed(_sql.SESSION_COLUMNS, 's')}, {_sql.KEY_COLUMNS} "
    "FROM paysession_sessions AS s LEFT JOIN paysession_keys AS k "
    "ON k.session_id = s.id AND k.key = :key WHERE s.id = :id"
)
INSERT_SESSION = (
    f"INSERT INTO paysession_sessions ({_sql.SESSION_COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
UPDATE_SESSION = (
    "UPDATE paysession_sessions SET is_selected = ?, is_initiated = ?, status = ?, data = ?, "
    "idempotency_key = ?, amount = ?, payment_authorized_at = ?, updated_at = ?, cart = ?, "
    "version = ?, head = ? WHERE id = ? AND version = ?"
)
LAST_POSITION = "SELECT coalesce(max(position), 0) AS last FROM paysession_records"
INSERT_RECORD = (
    "INSERT INTO paysession_records (session_id, seq, position, trigger, at, hash, wire) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
INSERT_KEY = "INSERT INTO paysession_keys (session_id, key, fingerprint, seq) VALUES (?, ?, ?, ?)"
INSERT_EVENT = _sql.insert_row("paysession_provider_events", _sql.EVENT_COLUMNS, placeholder)
INSERT_CALL = _sql.insert_call(placeholder)
NEWEST_OBSERVED = (
    "SELECT max(observed_at) AS newest FROM paysession_provider_events "
    "WHERE session_id = ? AND outcome IN ('applied', 'noop')"
)


def to_micros(value: datetime) -> int:
    """An instant as SQLite's time columns keep it: integer microseconds since the epoch."""
    return (value - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    """The instant a time column holds (see :func:`to_micros`)."""
    return _EPOCH + timedelta(microseconds=value)


def session_from_row(row: Row) -> PaymentSession:
    """The session of a row selected as ``SESSION_COLUMNS``."""
    authorized_at = row["payment_authorized_at"]
    return PaymentSession(
        id=row["id"],
        cart_id=row["cart_id"],
        provider_id=row["provider_id"],
        is_selected=bool(row["is_selected"]),
        is_initiated=bool(row["is_initiated"]),
        status=row["status"],
        data=_sql.load_json(row["data"]),
        idempotency_key=row["idempotency_key"],
        amount=row["amount"],
        payment_authorized_at=None if authorized_at is None else from_micros(authorized_at),
        created_at=from_micros(row["created_at"]),
        updated_at=from_micros(row["updated_at"]),
        cart=_sql.load_json(row["cart"]),
    )


def mutable_columns(session: PaymentSession, texts: _sql.JsonTexts) -> tuple[object, ...]:
    authorized_at = session.payment_authorized_at
    return (
        int(session.is_selected),
        int(session.is_initiated),
        session.status.value,
        texts[0],
        session.idempotency_key,
        session.amount,
        None if authorized_at is None else to_micros(authorized_at),
        to_micros(session.updated_at),
        texts[1],
    )


def new_row(
    session: PaymentSession, texts: _sql.JsonTexts, record: TransitionRecord
) -> tuple[object, ...]:
    """A new session's row in ``SESSION_COLUMNS`` order, at its record 0."""
    mutable = mutable_columns(session, texts)  # ... payment_authorized_at, updated_at, cart
    return (
        *(session.id, session.cart_id, session.provider_id, *mutable[:7]),
        *(to_micros(session.created_at), *mutable[7:], record.seq, record.hash),
    )


def record_row(record: TransitionRecord, position: int) -> tuple[object, ...]:
    return (
        record.session_id,
        record.seq,
        position,
        record.trigger,
        to_micros(record.at),
        record.hash,
        record_wire(record),
    )


def claim_from_row(row: Row) -> Claim:
    """The claim of a row selected as ``CLAIM_COLUMNS``."""
    return Claim(
        cart_id=row["cart_id"],
        token=row["token"],
        session_id=row["session_id"],
        action=ClaimAction(row["action"]),
        expires_at=from_micros(row["expires_at"]),
    )


def event_from_row(row: Row) -> ProviderEvent:
    """The provider event of a row selected as ``_sql.EVENT_COLUMNS``."""
    observed_at, kind = row["observed_at"], row["kind"]
    return ProviderEvent(
        session_id=row["session_id"],
        event_id=row["event_id"],
        provider_status=row["provider_status"],
        status=PaymentSessionStatus(row["status"]),
        session_status=PaymentSessionStatus(row["session_status"]),
        outcome=EventOutcome(row["outcome"]),
        observed_at=None if observed_at is None else from_micros(observed_at),
        recorded_at=from_micros(row["recorded_at"]),
        version=row["version"],
        guard=row["guard"],
        duplicates=row["duplicates"],
        kind=None if kind is None else AnomalyKind(kind),
    )


def unique_columns(error: sqlite3.IntegrityError) -> frozenset[str]:
    # "UNIQUE constraint failed: t.a, t.b": Python 3.10's sqlite3 has no error codes
    # to go by, and the message is stable across SQLite versions.
    text = str(error)
    prefix = "UNIQUE constraint failed: "
    if not text.startswith(prefix):
        return frozenset()
    return frozenset(name.strip() for name in text[len(prefix) :].split(","))


__all__ = [
    "CLAIM_LIVE",
    "INSERT_CALL",
    "INSERT_EVENT",
    "INSERT_KEY",
    "INSERT_RECORD",
    "INSERT_SESSION",
    "LAST_POSITION",
    "LOAD",
    "LOAD_PLAIN",
    "NEWEST_OBSERVED",
    "RELEASE",
    "UPDATE_SESSION",
    "claim_from_row",
    "event_from_row",
    "from_micros",
    "mutable_columns",
    "new_row",
    "placeholder",
    "record_row",
    "session_from_row",
    "to_micros",
    "unique_columns",
]
