"""PostgreSQL rows and objects: timestamptz, the statements.

Rows are dicts (psycopg's ``dict_row``), read by column name. Statements that shared
code runs (the loads, the reads of ``SqlReads``) or builds (the event and call
inserts) name their values (``%(name)s``, see :func:`placeholder`); the write path's own
statements take theirs in order (``%s``)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime

import psycopg
from psycopg.rows import DictRow

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
    Write,
)

Connection = psycopg.Connection[DictRow]
"""A connection of the store: its rows are dicts (``row_factory=dict_row``)."""


def placeholder(name: str) -> str:
    """Where the value ``name`` goes in a statement: psycopg's named style."""
    return f"%({name})s"


# The pg_advisory_xact_lock key migrate() takes: an arbitrary constant, the same everywhere.
MIGRATION_LOCK = 0x2B5F8E7C3A1D4E60


# Whoever changes which session of a cart is selected, or claims the cart, first locks
# every session row of the cart, in id order: a claim and a select of one cart then
# take turns (never deadlock), and each reads what the other committed. See claim().
CART_ROWS_LOCK = " FOR NO KEY UPDATE"
LOCK_CART = f"SELECT id FROM paysession_sessions WHERE cart_id = %s ORDER BY id{CART_ROWS_LOCK}"
CLAIM_LIVE = "SELECT expires_at FROM paysession_claims WHERE cart_id = %s AND expires_at > %s"
RELEASE = "DELETE FROM paysession_claims WHERE cart_id = %s AND token = %s"

LOAD_PLAIN = f"SELECT {_sql.SESSION_COLUMNS} FROM paysession_sessions WHERE id = %(id)s"
LOAD = (
    f"SELECT {_sql.prefixed(_sql.SESSION_COLUMNS, 's')}, {_sql.KEY_COLUMNS} "
    "FROM paysession_sessions AS s LEFT JOIN paysession_keys AS k "
    "ON k.session_id = s.id AND k.key = %(key)s WHERE s.id = %(id)s"
)
# Every write stamps the session row with the feed key its records get: the writing
# transaction's id, or the key of the session's previous record if that is higher (why:
# the docstring of paysession/store/postgres_feed.py).
INSERT_SESSION = (
    f"INSERT INTO paysession_sessions ({_sql.SESSION_COLUMNS}, xact) VALUES "
    "(%s, %s, %s, %s, %s, %s, %s::json, %s, %s, %s, %s, %s, %s::json, %s, %s, pg_current_xact_id())"
)
UPDATE_SESSION = (
    "UPDATE paysession_sessions SET is_selected = %s, is_initiated = %s, status = %s, "
    "data = %s::json, idempotency_key = %s, amount = %s, payment_authorized_at = %s, "
    "updated_at = %s, cart = %s::json, version = %s, head = %s, "
    "xact = greatest(xact, pg_current_xact_id()) WHERE id = %s AND version = %s"
)
INSERT_KEY = (
    "INSERT INTO paysession_keys (session_id, key, fingerprint, seq) VALUES (%s, %s, %s, %s)"
)


INSERT_EVENT = _sql.insert_row("paysession_provider_events", _sql.EVENT_COLUMNS, placeholder)
INSERT_CALL = _sql.insert_call(placeholder)
NEWEST_OBSERVED = (
    "SELECT max(observed_at) AS newest FROM paysession_provider_events "
    "WHERE session_id = %s AND outcome IN ('applied', 'noop')"
)


def event_from_row(row: Row) -> ProviderEvent:
    """The provider event of a row selected as ``_sql.EVENT_COLUMNS``."""
    kind = row["kind"]
    return ProviderEvent(
        session_id=row["session_id"],
        event_id=row["event_id"],
        provider_status=row["provider_status"],
        status=PaymentSessionStatus(row["status"]),
        session_status=PaymentSessionStatus(row["session_status"]),
        outcome=EventOutcome(row["outcome"]),
        observed_at=row["observed_at"],
        recorded_at=row["recorded_at"],
        version=row["version"],
        guard=row["guard"],
        duplicates=row["duplicates"],
        kind=None if kind is None else AnomalyKind(kind),
    )


def claim_from_row(row: Row) -> Claim:
    """The claim of a row selected as ``CLAIM_COLUMNS``."""
    return Claim(
        cart_id=row["cart_id"],
        token=row["token"],
        session_id=row["session_id"],
        action=ClaimAction(row["action"]),
        expires_at=row["expires_at"],
    )


def instant_as_is(value: datetime) -> datetime:
    """An instant as a timestamptz column takes and gives it: psycopg converts aware
    datetimes both ways, so there is nothing to do."""
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
def commit_one_statement(count: int, keyed: bool) -> str:
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
    return f"WITH moved AS ({UPDATE_SESSION} RETURNING id, xact){key} " + _records_from(
        "moved", count
    )


@functools.lru_cache(maxsize=16)
def insert_records_statement(count: int) -> str:
    """INSERT of ``count`` records of sessions already updated in this transaction.

    Each record takes the feed key its session's row was just stamped with.
    """
    return (
        "INSERT INTO paysession_records (session_id, seq, xact, trigger, at, hash, wire) "
        "SELECT r.session_id, r.seq, s.xact, r.trigger, r.at, r.hash, r.wire "
        f"FROM (VALUES {_record_values(count)}) AS r {_RECORD_COLUMNS} "
        "JOIN paysession_sessions AS s ON s.id = r.session_id ORDER BY r.n"
    )


CREATE_SESSION = f"WITH created AS ({INSERT_SESSION} RETURNING id, xact) " + _records_from(
    "created", 1
)


def session_from_row(row: Row) -> PaymentSession:
    """The session of a row selected as ``SESSION_COLUMNS``."""
    return PaymentSession(
        id=row["id"],
        cart_id=row["cart_id"],
        provider_id=row["provider_id"],
        is_selected=row["is_selected"],
        is_initiated=row["is_initiated"],
        status=row["status"],
        data=_sql.load_json(row["data"]),
        idempotency_key=row["idempotency_key"],
        amount=row["amount"],
        payment_authorized_at=row["payment_authorized_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        cart=_sql.load_json(row["cart"]),
    )


def records_params(records: Sequence[TransitionRecord]) -> list[object]:
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


def update_params(write: Write, texts: _sql.JsonTexts) -> list[object]:
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
    "CART_ROWS_LOCK",
    "CLAIM_LIVE",
    "CREATE_SESSION",
    "INSERT_CALL",
    "INSERT_EVENT",
    "INSERT_KEY",
    "INSERT_SESSION",
    "LOAD",
    "LOAD_PLAIN",
    "LOCK_CART",
    "MIGRATION_LOCK",
    "NEWEST_OBSERVED",
    "RELEASE",
    "UPDATE_SESSION",
    "Connection",
    "claim_from_row",
    "commit_one_statement",
    "event_from_row",
    "insert_records_statement",
    "instant_as_is",
    "placeholder",
    "records_params",
    "session_from_row",
    "update_params",
]
