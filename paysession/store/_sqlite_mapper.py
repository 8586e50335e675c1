"""SQLite rows and objects: times as integer microseconds, ``?`` placeholders, the SQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from paysession.record import TransitionRecord
from paysession.session import PaymentSession
from paysession.status import PaymentSessionStatus
from paysession.store._rows import record_wire
from paysession.store._sql import (
    EVENT_COLUMNS,
    SESSION_COLUMNS,
    Texts,
    load_json,
)
from paysession.store.base import (
    AnomalyKind,
    Claim,
    ClaimAction,
    EventOutcome,
    ProviderEvent,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


CLAIM_LIVE = "SELECT expires_at FROM paysession_claims WHERE cart_id = ? AND expires_at > ?"
RELEASE = "DELETE FROM paysession_claims WHERE cart_id = ? AND token = ?"

LOAD_PLAIN = f"SELECT {SESSION_COLUMNS} FROM paysession_sessions WHERE id = ?"
LOAD = (
    f"SELECT {', '.join('s.' + c for c in SESSION_COLUMNS.split(', '))}, k.fingerprint, k.seq "
    "FROM paysession_sessions AS s LEFT JOIN paysession_keys AS k "
    "ON k.session_id = s.id AND k.key = ? WHERE s.id = ?"
)
INSERT_SESSION = (
    f"INSERT INTO paysession_sessions ({SESSION_COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
UPDATE_SESSION = (
    "UPDATE paysession_sessions SET is_selected = ?, is_initiated = ?, status = ?, data = ?, "
    "idempotency_key = ?, amount = ?, payment_authorized_at = ?, updated_at = ?, cart = ?, "
    "version = ?, head = ? WHERE id = ? AND version = ?"
)
LAST_POSITION = "SELECT coalesce(max(position), 0) FROM paysession_records"
INSERT_RECORD = (
    "INSERT INTO paysession_records (session_id, seq, position, trigger, at, hash, wire) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
INSERT_KEY = "INSERT INTO paysession_keys (session_id, key, fingerprint, seq) VALUES (?, ?, ?, ?)"
INSERT_EVENT = (
    f"INSERT INTO paysession_provider_events ({EVENT_COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
NEWEST_OBSERVED = (
    "SELECT max(observed_at) FROM paysession_provider_events "
    "WHERE session_id = ? AND outcome IN ('applied', 'noop')"
)


def to_micros(value: datetime) -> int:
    """An instant as SQLite's time columns keep it: integer microseconds since the epoch."""
    return (value - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    """The instant a time column holds (see :func:`to_micros`)."""
    return _EPOCH + timedelta(microseconds=value)


def session_from_row(row: Sequence[Any]) -> PaymentSession:
    return PaymentSession(
        id=row[0],
        cart_id=row[1],
        provider_id=row[2],
        is_selected=bool(row[3]),
        is_initiated=bool(row[4]),
        status=row[5],
        data=load_json(row[6]),
        idempotency_key=row[7],
        amount=row[8],
        payment_authorized_at=None if row[9] is None else from_micros(row[9]),
        created_at=from_micros(row[10]),
        updated_at=from_micros(row[11]),
        cart=load_json(row[12]),
    )


def mutable_columns(session: PaymentSession, texts: Texts) -> tuple[object, ...]:
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


def new_row(session: PaymentSession, texts: Texts, record: TransitionRecord) -> tuple[object, ...]:
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


def claim_from_row(row: Sequence[Any]) -> Claim:
    return Claim(row[0], row[1], row[2], ClaimAction(row[3]), from_micros(row[4]))


def event_from_row(row: Sequence[Any]) -> ProviderEvent:
    return ProviderEvent(
        session_id=row[0],
        event_id=row[1],
        provider_status=row[2],
        status=PaymentSessionStatus(row[3]),
        session_status=PaymentSessionStatus(row[4]),
        outcome=EventOutcome(row[5]),
        observed_at=None if row[6] is None else from_micros(row[6]),
        recorded_at=from_micros(row[7]),
        version=row[8],
        guard=row[9],
        duplicates=row[10],
        kind=None if row[11] is None else AnomalyKind(row[11]),
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
    "record_row",
    "session_from_row",
    "to_micros",
    "unique_columns",
]
