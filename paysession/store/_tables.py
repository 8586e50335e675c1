"""The text of the tables both SQL stores create, written once for the two dialects.

Each template names the column types that differ between SQLite and PostgreSQL; a
dialect fills them in. The published migrations are built from these templates, and
``tests/test_migrations.py`` pins the exact text of each one, so a change here that
would alter a published schema fails there. A new schema version does not edit a
template: it adds statements of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

STATUSES = "('authorized', 'pending', 'requires_more', 'error', 'canceled')"
"""The statuses a status column may hold, as SQL."""

_SESSIONS = """
        CREATE TABLE paysession_sessions (
            id {text} PRIMARY KEY,
            cart_id {text},
            provider_id {text} NOT NULL,
            is_selected {is_selected},
            is_initiated {is_initiated},
            status {text} NOT NULL CHECK (
                status IN {statuses}
            ),
            data {json} NOT NULL,
            idempotency_key {text},
            amount {bigint} CHECK (amount >= 0),
            payment_authorized_at {time},
            created_at {time} NOT NULL,
            updated_at {time} NOT NULL CHECK (updated_at >= created_at),
            cart {json},
            version {integer} NOT NULL CHECK (version >= 0),
            head {text} NOT NULL,
            CONSTRAINT paysession_cart_provider UNIQUE (cart_id, provider_id),
            {authorized_stamped}
        )
        """

_PROVIDER_EVENTS = """
        CREATE TABLE {events_table} (
            session_id {text} NOT NULL REFERENCES paysession_sessions (id),
            event_id {text} NOT NULL,
            provider_status {text} NOT NULL,
            status {text} NOT NULL CHECK (
                status IN {statuses}
            ),
            session_status {text} NOT NULL CHECK (
                session_status IN {statuses}
            ),
            outcome {text} NOT NULL CHECK (
                outcome IN ('applied', 'noop', 'stale', 'duplicate', 'anomaly')
            ),
            observed_at {time},
            recorded_at {time} NOT NULL,
            version {integer} NOT NULL CHECK (version >= 0),
            guard {text},
            duplicates {integer} NOT NULL DEFAULT 0 CHECK (duplicates >= 0),
            {events_key}
        )
        """

_AUTHORIZED_STAMPED = "CHECK (status <> 'authorized' OR payment_authorized_at IS NOT NULL)"

SQLITE: Mapping[str, str] = {
    "text": "TEXT",
    "integer": "INTEGER",
    "bigint": "INTEGER",
    "json": "TEXT",
    "time": "INTEGER",  # microseconds since the epoch, UTC
    "is_selected": "INTEGER NOT NULL CHECK (is_selected IN (0, 1))",
    "is_initiated": "INTEGER NOT NULL CHECK (is_initiated IN (0, 1))",
    "authorized_stamped": _AUTHORIZED_STAMPED,
    "events_key": "PRIMARY KEY (session_id, event_id)",
    "calls_key": "PRIMARY KEY (session_id, action, idempotency_key)",
    "statuses": STATUSES,
    "concurrently": "",
}
"""SQLite's words for the templates' slots."""

POSTGRES: Mapping[str, str] = {
    "text": "text",
    "integer": "integer",
    "bigint": "bigint",
    "json": "json",
    "time": "timestamptz",
    "is_selected": "boolean NOT NULL",
    "is_initiated": "boolean NOT NULL",
    "authorized_stamped": (
        f"CONSTRAINT paysession_authorized_stamped\n                {_AUTHORIZED_STAMPED}"
    ),
    "events_key": (
        "recorded bigint GENERATED ALWAYS AS IDENTITY,\n"
        "            CONSTRAINT paysession_provider_events_pkey PRIMARY KEY (session_id, event_id)"
    ),
    "calls_key": (
        "recorded bigint GENERATED ALWAYS AS IDENTITY,\n"
        "            CONSTRAINT paysession_provider_calls_pkey\n"
        "                PRIMARY KEY (session_id, action, idempotency_key)"
    ),
    "statuses": STATUSES,
    # An index on a table a fleet is writing is built without blocking its writes,
    # outside the migration's transaction (see postgres_schema).
    "concurrently": "CONCURRENTLY ",
}
"""PostgreSQL's words for the templates' slots."""


def browse_schema(dialect: Mapping[str, str], counter: Sequence[str]) -> tuple[str, ...]:
    """What the inspector's pages read by, in ``dialect``: the count of a session's
    anomalies, kept on its row by the trigger ``counter`` creates, and the indexes the
    pages walk.

    A trigger rather than the stores' code: during a rolling upgrade, processes still
    running the code before it go on recording anomalies, and each must be counted.
    """
    count = (
        "ALTER TABLE paysession_sessions ADD COLUMN anomalies {integer} NOT NULL DEFAULT 0 "
        "CHECK (anomalies >= 0)"
    ).format_map(dialect)
    indexes = (index.format_map(dialect) for index in _BROWSE_INDEXES)
    return (count, _BACKFILL_ANOMALIES, *counter, *indexes)


# Every anomaly recorded before the column existed, counted once.
_BACKFILL_ANOMALIES = """
        UPDATE paysession_sessions SET anomalies = (
            SELECT count(*) FROM paysession_provider_events AS e
            WHERE e.session_id = paysession_sessions.id AND e.outcome = 'anomaly'
        ) WHERE id IN (
            SELECT session_id FROM paysession_provider_events WHERE outcome = 'anomaly'
        )
        """

_BROWSE_INDEXES: tuple[str, ...] = (
    # Newest first, whole or filtered by status or provider: one index walk from the
    # newest row, which keyset pagination resumes without scanning what it skipped. Status
    # and provider ride in the index, so a filter on them reads no row it then drops.
    # One index, not one per filter: every move changes updated_at, and so rewrites the
    # entry of each index that holds it (a cost every writer pays; see docs/inspector.md).
    """
        CREATE INDEX {concurrently}paysession_sessions_updated
            ON paysession_sessions (updated_at, id, status, provider_id)
        """,
    # Which sessions have a provider, for a provider few sessions have (see
    # store/_browse.py). A provider never changes: moves never touch this index.
    "CREATE INDEX {concurrently}paysession_sessions_provider ON paysession_sessions (provider_id)",
    # The sessions with an anomaly, newest first: an index of those rows alone, so the
    # filter costs the same however few or many they are, and wherever they lie in time.
    """
        CREATE INDEX {concurrently}paysession_sessions_anomalous
            ON paysession_sessions (updated_at, id) WHERE anomalies > 0
        """,
)


def sessions_table(dialect: Mapping[str, str]) -> str:
    """CREATE TABLE paysession_sessions, in ``dialect`` (:data:`SQLITE` or :data:`POSTGRES`)."""
    return _SESSIONS.format_map(dialect)


def provider_events_table(
    dialect: Mapping[str, str], name: str = "paysession_provider_events"
) -> str:
    """CREATE TABLE paysession_provider_events (or ``name``), in ``dialect``."""
    return _PROVIDER_EVENTS.format_map({**dialect, "events_table": name})


_PROVIDER_CALLS = """
        CREATE TABLE paysession_provider_calls (
            session_id {text} NOT NULL REFERENCES paysession_sessions (id),
            action {text} NOT NULL CHECK (action IN ('authorize', 'cancel', 'void')),
            idempotency_key {text} NOT NULL,
            provider_status {text} NOT NULL,
            status {text} NOT NULL CHECK (
                status IN {statuses}
            ),
            amount {bigint} CHECK (amount >= 0),
            currency {text},
            asked_at {time} NOT NULL,
            answered_at {time} NOT NULL,
            {calls_key}
        )
        """


def provider_calls_table(dialect: Mapping[str, str]) -> str:
    """CREATE TABLE paysession_provider_calls, in ``dialect``."""
    return _PROVIDER_CALLS.format_map(dialect)


REFERENCES: tuple[tuple[str, str], ...] = (
    ("stripe", "id"),
    ("paypal", "id"),
    ("adyen", "pspReference"),
    ("klarna", "order_id"),
)
"""The key of a session's ``data`` that holds each known provider's own id of the payment
(Stripe's PaymentIntent id, as Medusa stores it), as the provider-reference column reads it."""


def provider_ref(provider_id: str, data: Mapping[str, object]) -> str | None:
    """The provider's own id of a session's payment, read from its ``data`` by
    :data:`REFERENCES` as the SQL stores' column reads it; None when there is none."""
    for provider, key in REFERENCES:
        if provider == provider_id:
            found = data.get(key)
            return found if isinstance(found, str) and found else None
    return None


def provider_ref_schema(dialect: Mapping[str, str]) -> tuple[str, ...]:
    """The provider's own id of each session's payment, as a column computed by the
    database from the row's ``data`` (so rows written before it, and by processes still
    running code that knows nothing of it, carry it too), and its index.

    The key each provider's id is read from is :data:`REFERENCES`; only a non-empty
    string counts. SQLite computes the column when read (its index stores it);
    PostgreSQL stores it, filling every existing row when the column is added.
    """
    if dialect is SQLITE:
        path = "CASE provider_id " + " ".join(
            f"WHEN '{provider}' THEN '$.{key}'" for provider, key in REFERENCES
        )
        value = f"json_extract(data, {path} END)"
        # A row whose data is not JSON (edited by hand) has no reference, and is kept:
        # the audit and the inspector name it, as they do without this column.
        test = f"CASE WHEN json_valid(data) THEN json_type(data, {path} END) END = 'text'"
        kind = "VIRTUAL"
    else:
        path = "CASE provider_id " + " ".join(
            f"WHEN '{provider}' THEN '{key}'" for provider, key in REFERENCES
        )
        value = f"(data ->> ({path} END))"
        test = f"json_typeof(data -> ({path} END)) = 'string'"
        kind = "STORED"
    column = (
        f"ALTER TABLE paysession_sessions ADD COLUMN provider_ref {dialect['text']} "
        f"GENERATED ALWAYS AS (CASE WHEN {test} THEN NULLIF({value}, '') END) {kind}"
    )
    index = (
        f"CREATE INDEX {dialect['concurrently']}paysession_sessions_provider_ref "
        "ON paysession_sessions (provider_ref, provider_id) WHERE provider_ref IS NOT NULL"
    )
    return (column, index)


def schema_behind(conn: Any, target: int, has_schema_table: str) -> str | None:
    """Why a store opened not to migrate cannot use this database: it is not a paysession
    database at all, or its schema version is not ``target`` (None when it is). ``conn``
    is a store's connection, whose rows are read by column name.
    ``has_schema_table`` is the dialect's query for whether paysession_schema exists (a
    row when it does): asked first, so that a database without it is said in one line,
    not with the driver's error about a missing table."""
    if conn.execute(has_schema_table).fetchone() is None:
        return NOT_PAYSESSION
    row = conn.execute("SELECT version FROM paysession_schema").fetchone()
    found = 0 if row is None else int(row["version"])
    if found == target:
        return None
    return (
        f"the database is at schema version {found} and this paysession uses {target}; "
        "it was opened not to migrate (an application's store migrates it on first use)"
    )


NOT_PAYSESSION = (
    "not a paysession database: it has no paysession_schema table "
    "(an application's store creates it on first use, or run `paysession migrate --db`)"
)

HAS_SCHEMA_TABLE_SQLITE = (
    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'paysession_schema'"
)
HAS_SCHEMA_TABLE_POSTGRES = "SELECT 1 WHERE to_regclass('paysession_schema') IS NOT NULL"

__all__ = [
    "HAS_SCHEMA_TABLE_POSTGRES",
    "HAS_SCHEMA_TABLE_SQLITE",
    "NOT_PAYSESSION",
    "POSTGRES",
    "REFERENCES",
    "SQLITE",
    "STATUSES",
    "browse_schema",
    "provider_calls_table",
    "provider_events_table",
    "provider_ref",
    "provider_ref_schema",
    "schema_behind",
    "sessions_table",
]
