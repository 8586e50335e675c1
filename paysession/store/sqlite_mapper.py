"""SQLite rows and objects: times as integer microseconds, ``?`` placeholders, the SQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, TypeVar

from paysession.record import TransitionRecord
from paysession.session import PaymentSession
from paysession.status import PaymentSessionStatus
from paysession.store._rows import record_wire
from paysession.store._sql import (
    EVENT_COLUMNS,
    SESSION_COLUMNS,
    Texts,
    event_row,
    load_json,
)
from paysession.store.base import (
    AnomalyKind,
    Claim,
    ClaimAction,
    EventOutcome,
    ProviderEvent,
)

Synchronous = Literal["FULL", "NORMAL"]
_T = TypeVar("_T")

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


_CLAIM_LIVE = "SELECT expires_at FROM paysession_claims WHERE cart_id = ? AND expires_at > ?"
_RELEASE = "DELETE FROM paysession_claims WHERE cart_id = ? AND token = ?"

_LOAD_PLAIN = f"SELECT {SESSION_COLUMNS} FROM paysession_sessions WHERE id = ?"
_LOAD = (
    f"SELECT {', '.join('s.' + c for c in SESSION_COLUMNS.split(', '))}, k.fingerprint, k.seq "
    "FROM paysession_sessions AS s LEFT JOIN paysession_keys AS k "
    "ON k.session_id = s.id AND k.key = ? WHERE s.id = ?"
)
_INSERT_SESSION = (
    f"INSERT INTO paysession_sessions ({SESSION_COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPDATE_SESSION = (
    "UPDATE paysession_sessions SET is_selected = ?, is_initiated = ?, status = ?, data = ?, "
    "idempotency_key = ?, amount = ?, payment_authorized_at = ?, updated_at = ?, cart = ?, "
    "version = ?, head = ? WHERE id = ? AND version = ?"
)
_LAST_POSITION = "SELECT coalesce(max(position), 0) FROM paysession_records"
_INSERT_RECORD = (
    "INSERT INTO paysession_records (session_id, seq, position, trigger, at, hash, wire) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_KEY = "INSERT INTO paysession_keys (session_id, key, fingerprint, seq) VALUES (?, ?, ?, ?)"
_INSERT_EVENT = (
    f"INSERT INTO paysession_provider_events ({EVENT_COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_NEWEST_OBSERVED = (
    "SELECT max(observed_at) FROM paysession_provider_events "
    "WHERE session_id = ? AND outcome IN ('applied', 'noop')"
)


def _micros(value: datetime) -> int:
    return (value - _EPOCH) // _MICROSECOND


def _instant(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _session_from_row(row: Sequence[Any]) -> PaymentSession:
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
        payment_authorized_at=None if row[9] is None else _instant(row[9]),
        created_at=_instant(row[10]),
        updated_at=_instant(row[11]),
        cart=load_json(row[12]),
    )


def _mutable_columns(session: PaymentSession, texts: Texts) -> tuple[object, ...]:
    authorized_at = session.payment_authorized_at
    return (
        int(session.is_selected),
        int(session.is_initiated),
        session.status.value,
        texts[0],
        session.idempotency_key,
        session.amount,
        None if authorized_at is None else _micros(authorized_at),
        _micros(session.updated_at),
        texts[1],
    )


def _new_row(session: PaymentSession, texts: Texts, record: TransitionRecord) -> tuple[object, ...]:
    """A new session's row in ``SESSION_COLUMNS`` order, at its record 0."""
    mutable = _mutable_columns(session, texts)  # ... payment_authorized_at, updated_at, cart
    return (
        *(session.id, session.cart_id, session.provider_id, *mutable[:7]),
        *(_micros(session.created_at), *mutable[7:], record.seq, record.hash),
    )


def _record_row(record: TransitionRecord, position: int) -> tuple[object, ...]:
    return (
        record.session_id,
        record.seq,
        position,
        record.trigger,
        _micros(record.at),
        record.hash,
        record_wire(record),
    )


def _event_row(event: ProviderEvent) -> tuple[object, ...]:
    return event_row(event, _micros)


def _claim_from_row(row: Sequence[Any]) -> Claim:
    return Claim(row[0], row[1], row[2], ClaimAction(row[3]), _instant(row[4]))


def _event_from_row(row: Sequence[Any]) -> ProviderEvent:
    return ProviderEvent(
        session_id=row[0],
        event_id=row[1],
        provider_status=row[2],
        status=PaymentSessionStatus(row[3]),
        session_status=PaymentSessionStatus(row[4]),
        outcome=EventOutcome(row[5]),
        observed_at=None if row[6] is None else _instant(row[6]),
        recorded_at=_instant(row[7]),
        version=row[8],
        guard=row[9],
        duplicates=row[10],
        kind=None if row[11] is None else AnomalyKind(row[11]),
    )


def _unique_columns(error: sqlite3.IntegrityError) -> frozenset[str]:
    # "UNIQUE constraint failed: t.a, t.b": Python 3.10's sqlite3 has no error codes
    # to go by, and the message is stable across SQLite versions.
    text = str(error)
    prefix = "UNIQUE constraint failed: "
    if not text.startswith(prefix):
        return frozenset()
    return frozenset(name.strip() for name in text[len(prefix) :].split(","))


__all__ = [
    "_CLAIM_LIVE",
    "_EPOCH",
    "_INSERT_EVENT",
    "_INSERT_KEY",
    "_INSERT_RECORD",
    "_INSERT_SESSION",
    "_LAST_POSITION",
    "_LOAD",
    "_LOAD_PLAIN",
    "_MICROSECOND",
    "_NEWEST_OBSERVED",
    "_RELEASE",
    "_T",
    "_UPDATE_SESSION",
    "Synchronous",
    "_claim_from_row",
    "_event_from_row",
    "_event_row",
    "_instant",
    "_micros",
    "_mutable_columns",
    "_new_row",
    "_record_row",
    "_session_from_row",
    "_unique_columns",
]
