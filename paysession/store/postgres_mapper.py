"""PostgreSQL rows and objects: timestamptz, ``%s`` placeholders, the statements."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

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
    Write,
)

Connection = psycopg.Connection[tuple[Any, ...]]

# The pg_advisory_xact_lock key migrate() takes: an arbitrary constant, the same everywhere.
MIGRATION_LOCK = 0x2B5F8E7C3A1D4E60


# Whoever changes which session of a cart is selected, or claims the cart, first locks
# every session row of the cart, in id order: a claim and a select of one cart then
# take turns (never deadlock), and each reads what the other committed. See claim().
_CART_ROWS_LOCK = " FOR NO KEY UPDATE"
_LOCK_CART = f"SELECT id FROM paysession_sessions WHERE cart_id = %s ORDER BY id{_CART_ROWS_LOCK}"
_CLAIM_LIVE = "SELECT expires_at FROM paysession_claims WHERE cart_id = %s AND expires_at > %s"
_RELEASE = "DELETE FROM paysession_claims WHERE cart_id = %s AND token = %s"

_LOAD_PLAIN = f"SELECT {SESSION_COLUMNS} FROM paysession_sessions WHERE id = %s"
_LOAD = (
    f"SELECT {', '.join('s.' + c for c in SESSION_COLUMNS.split(', '))}, k.fingerprint, k.seq "
    "FROM paysession_sessions AS s LEFT JOIN paysession_keys AS k "
    "ON k.session_id = s.id AND k.key = %s WHERE s.id = %s"
)
# Every write stamps the session row with the feed key its records get: the writing
# transaction's id, or the key of the session's previous record if that is higher (why:
# the docstring of paysession/store/postgres_feed.py).
_INSERT_SESSION = (
    f"INSERT INTO paysession_sessions ({SESSION_COLUMNS}, xact) VALUES "
    "(%s, %s, %s, %s, %s, %s, %s::json, %s, %s, %s, %s, %s, %s::json, %s, %s, pg_current_xact_id())"
)
_UPDATE_SESSION = (
    "UPDATE paysession_sessions SET is_selected = %s, is_initiated = %s, status = %s, "
    "data = %s::json, idempotency_key = %s, amount = %s, payment_authorized_at = %s, "
    "updated_at = %s, cart = %s::json, version = %s, head = %s, "
    "xact = greatest(xact, pg_current_xact_id()) WHERE id = %s AND version = %s"
)
_INSERT_KEY = (
    "INSERT INTO paysession_keys (session_id, key, fingerprint, seq) VALUES (%s, %s, %s, %s)"
)


_INSERT_EVENT = (
    f"INSERT INTO paysession_provider_events ({EVENT_COLUMNS}) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_NEWEST_OBSERVED = (
    "SELECT max(observed_at) FROM paysession_provider_events "
    "WHERE session_id = %s AND outcome IN ('applied', 'noop')"
)


def _event_from_row(row: Sequence[Any]) -> ProviderEvent:
    return ProviderEvent(
        session_id=row[0],
        event_id=row[1],
        provider_status=row[2],
        status=PaymentSessionStatus(row[3]),
        session_status=PaymentSessionStatus(row[4]),
        outcome=EventOutcome(row[5]),
        observed_at=row[6],
        recorded_at=row[7],
        version=row[8],
        guard=row[9],
        duplicates=row[10],
        kind=None if row[11] is None else AnomalyKind(row[11]),
    )


def _claim_from_row(row: Sequence[Any]) -> Claim:
    return Claim(row[0], row[1], row[2], ClaimAction(row[3]), row[4])


def _same(value: datetime) -> datetime:
    return value


def _record_values(count: int) -> str:
    """A VALUES list of ``count`` records, numbered in the order they are to be inserted."""
    return ", ".join(
        f"({n}, %s::text, %s::integer, %s::text, %s::timestamptz, %s::text, %s::text)"
        for n in range(1, count + 1)
    )


_RECORD_COLUMNS = "(n, session_id, seq, trigger, at, hash, wire)"


def _records_from(source: str, count: int) -> str:
    """INSERT of ``count`` records of the one session that the CTE ``source`` returns.

    ``source`` returns the session's id and feed key. The records are inserted in order,
    so that their positions (from the column's sequence) grow with their seq.
    """
    return (
        "INSERT INTO paysession_records (session_id, seq, xact, trigger, at, hash, wire) "
        f"SELECT r.session_id, r.seq, {source}.xact, r.trigger, r.at, r.hash, r.wire "
        f"FROM {source}, (VALUES {_record_values(count)}) AS r {_RECORD_COLUMNS} ORDER BY r.n"
    )


@functools.lru_cache(maxsize=32)
def _commit_one(count: int, keyed: bool) -> str:
    """A commit of one session's write as a single statement, so one implicit transaction.

    Only the compare-and-set (``moved``) looks at the session; the key and the records
    are written from its output. When the version has moved, the statement changes
    nothing and inserts no record; a constraint it breaks fails it whole. One round trip
    instead of BEGIN, three statements and COMMIT.
    """
    key = (
        ", bound AS (INSERT INTO paysession_keys (session_id, key, fingerprint, seq) "
        "SELECT moved.id, %s::text, %s::text, %s::integer FROM moved)"
        if keyed
        else ""
    )
    return f"WITH moved AS ({_UPDATE_SESSION} RETURNING id, xact){key} " + _records_from(
        "moved", count
    )


@functools.lru_cache(maxsize=16)
def _insert_records(count: int) -> str:
    """INSERT of ``count`` records of sessions already updated in this transaction.

    Each record takes the feed key its session's row was just stamped with.
    """
    return (
        "INSERT INTO paysession_records (session_id, seq, xact, trigger, at, hash, wire) "
        "SELECT r.session_id, r.seq, s.xact, r.trigger, r.at, r.hash, r.wire "
        f"FROM (VALUES {_record_values(count)}) AS r {_RECORD_COLUMNS} "
        "JOIN paysession_sessions AS s ON s.id = r.session_id ORDER BY r.n"
    )


_CREATE = f"WITH created AS ({_INSERT_SESSION} RETURNING id, xact) " + _records_from("created", 1)


def _session_from_row(row: Sequence[Any]) -> PaymentSession:
    return PaymentSession(
        id=row[0],
        cart_id=row[1],
        provider_id=row[2],
        is_selected=row[3],
        is_initiated=row[4],
        status=row[5],
        data=load_json(row[6]),
        idempotency_key=row[7],
        amount=row[8],
        payment_authorized_at=row[9],
        created_at=row[10],
        updated_at=row[11],
        cart=load_json(row[12]),
    )


def _records_params(records: Sequence[TransitionRecord]) -> list[object]:
    params: list[object] = []
    for record in records:
        params += (
            record.session_id,
            record.seq,
            record.trigger,
            record.at,
            record.hash,
            record_wire(record),
        )
    return params


def _update_params(write: Write, texts: Texts) -> list[object]:
    session = write.session
    return [
        session.is_selected,
        session.is_initiated,
        session.status.value,
        texts[0],
        session.idempotency_key,
        session.amount,
        session.payment_authorized_at,
        session.updated_at,
        texts[1],
        write.version,
        write.head,
        session.id,
        write.expected_version,
    ]


__all__ = [
    "MIGRATION_LOCK",
    "_CART_ROWS_LOCK",
    "_CLAIM_LIVE",
    "_CREATE",
    "_INSERT_EVENT",
    "_INSERT_KEY",
    "_INSERT_SESSION",
    "_LOAD",
    "_LOAD_PLAIN",
    "_LOCK_CART",
    "_NEWEST_OBSERVED",
    "_RELEASE",
    "_UPDATE_SESSION",
    "Connection",
    "_claim_from_row",
    "_commit_one",
    "_event_from_row",
    "_insert_records",
    "_records_from",
    "_records_params",
    "_same",
    "_session_from_row",
    "_update_params",
]
