"""The PostgreSQL schema, one migration per version: published versions never change.

To change the schema, append one more entry to :data:`MIGRATIONS` (a tuple of
statements); nothing else needs to change. ``PostgresStore.migrate`` runs, under an
advisory lock:

1. every pending version's statements, in order, in one transaction, with the
   version number, except
2. the index builds written ``CREATE [UNIQUE] INDEX CONCURRENTLY name ...``: these run
   after that transaction commits, one by one, outside any transaction (PostgreSQL
   refuses CONCURRENTLY inside one), so that a fleet's writers go on while a large
   table is indexed. A later version's statements must not need such an index.

A migration interrupted half-way resumes: the transaction is all or nothing, and an
index build cut short leaves no index or an INVALID one, which the next ``migrate``
(of any process) finds in the catalog, drops and builds again; a valid one is kept.
"""

from __future__ import annotations

import re

from paysession.store._sql import ANOMALY_KINDS, ANOMALY_KINDS_3, ANOMALY_KINDS_NOW
from paysession.store._tables import (
    POSTGRES,
    browse_schema,
    provider_calls_table,
    provider_events_table,
    provider_ref_schema,
    sessions_table,
)

# Each anomaly recorded adds one to its session's count (schema 6).
_COUNT_ANOMALIES = (
    """
        CREATE FUNCTION paysession_count_anomaly() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE paysession_sessions SET anomalies = anomalies + 1 WHERE id = NEW.session_id;
            RETURN NULL;
        END
        $$
        """,
    """
        CREATE TRIGGER paysession_count_anomaly AFTER INSERT ON paysession_provider_events
            FOR EACH ROW WHEN (NEW.outcome = 'anomaly')
            EXECUTE FUNCTION paysession_count_anomaly()
        """,
)

# Each entry is one schema version: the statements that lead to it from the one before.
# Published versions never change; a change of schema is a new entry.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        sessions_table(POSTGRES),
        """
        CREATE UNIQUE INDEX paysession_one_selected_per_cart
            ON paysession_sessions (cart_id) WHERE is_selected
        """,
        "CREATE INDEX paysession_sessions_status ON paysession_sessions (status)",
        """
        CREATE TABLE paysession_records (
            session_id text NOT NULL REFERENCES paysession_sessions (id),
            seq integer NOT NULL CHECK (seq >= 0),
            position bigint NOT NULL CHECK (position > 0),
            trigger text NOT NULL,
            at timestamptz NOT NULL,
            hash text NOT NULL,
            wire text NOT NULL,
            CONSTRAINT paysession_records_pkey PRIMARY KEY (session_id, seq),
            CONSTRAINT paysession_records_position UNIQUE (position)
        )
        """,
        # The key is inserted before its record, so that a key taken by another process
        # fails the transaction before it queues for the position counter: the foreign
        # key is checked at commit.
        """
        CREATE TABLE paysession_keys (
            session_id text NOT NULL,
            key text NOT NULL,
            fingerprint text NOT NULL,
            seq integer NOT NULL,
            CONSTRAINT paysession_keys_pkey PRIMARY KEY (session_id, key),
            CONSTRAINT paysession_keys_record FOREIGN KEY (session_id, seq)
                REFERENCES paysession_records (session_id, seq)
                DEFERRABLE INITIALLY DEFERRED
        )
        """,
        """
        CREATE TABLE paysession_position (
            only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
            last bigint NOT NULL CHECK (last >= 0)
        )
        """,
        "INSERT INTO paysession_position (last) VALUES (0)",
    ),
    # 2: provider events, for reconciliation (one row per report; duplicates counted).
    (
        provider_events_table(POSTGRES),
        """
        CREATE INDEX paysession_provider_events_outcome
            ON paysession_provider_events (outcome, recorded)
        """,
    ),
    # 3: one authorized session per cart (checked before: see migrate), the claims that
    # hold a cart while a provider call is in flight, and the kind of an anomaly.
    (
        """
        CREATE UNIQUE INDEX paysession_one_authorized_per_cart
            ON paysession_sessions (cart_id) WHERE status = 'authorized'
        """,
        """
        CREATE TABLE paysession_claims (
            cart_id text PRIMARY KEY,
            token text NOT NULL,
            session_id text NOT NULL REFERENCES paysession_sessions (id),
            action text NOT NULL CHECK (action IN ('authorize', 'cancel')),
            expires_at timestamptz NOT NULL
        )
        """,
        f"ALTER TABLE paysession_provider_events ADD COLUMN kind text "
        f"CHECK (kind IN {ANOMALY_KINDS_3})",
    ),
    # 4: a report observed too far ahead of its recording is an anomaly of its own kind.
    (
        "ALTER TABLE paysession_provider_events "
        "DROP CONSTRAINT paysession_provider_events_kind_check",
        "ALTER TABLE paysession_provider_events ADD CONSTRAINT "
        f"paysession_provider_events_kind_check CHECK (kind IN {ANOMALY_KINDS})",
    ),
    # 5: the feed without a global counter. Each record carries the id of a transaction
    # (its feed key: see PostgresStore's docstring) and takes its number from a
    # sequence; readers order by (xact, position). Every record already there gets the
    # id of this migration's transaction, so they keep their order, ahead of every
    # record written after it.
    (
        "ALTER TABLE paysession_records ADD COLUMN xact xid8",
        "UPDATE paysession_records SET xact = pg_current_xact_id()",
        "ALTER TABLE paysession_records ALTER COLUMN xact SET NOT NULL",
        "ALTER TABLE paysession_records DROP CONSTRAINT paysession_records_position",
        "ALTER TABLE paysession_records ALTER COLUMN position ADD GENERATED ALWAYS AS IDENTITY",
        """
        SELECT setval(
            pg_get_serial_sequence('paysession_records', 'position'),
            (SELECT coalesce(max(position), 0) + 1 FROM paysession_records),
            false
        )
        """,
        "CREATE INDEX paysession_records_feed ON paysession_records (xact, position)",
        # The feed key of the session's last record: the next record's key is never below it.
        "ALTER TABLE paysession_sessions ADD COLUMN xact xid8",
        "DROP TABLE paysession_position",
    ),
    # 6: what the inspector's pages read by: each session's count of anomalies, and the
    # indexes of newest first, by status, by provider and of the sessions with anomalies.
    browse_schema(POSTGRES, _COUNT_ANOMALIES),
    # 7: an authorization for another amount is an anomaly of its own kind, and every
    # provider call that holds or releases money is kept, with its answer.
    (
        "ALTER TABLE paysession_provider_events "
        "DROP CONSTRAINT paysession_provider_events_kind_check",
        "ALTER TABLE paysession_provider_events ADD CONSTRAINT "
        f"paysession_provider_events_kind_check CHECK (kind IN {ANOMALY_KINDS_NOW})",
        provider_calls_table(POSTGRES),
    ),
    # 8: the provider's own id of each session's payment (Stripe's PaymentIntent id),
    # computed from its data, so that a report naming only that id finds its session.
    provider_ref_schema(POSTGRES),
)

_CONCURRENT = re.compile(r"\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(\w+)", re.I)


def concurrent_index(statement: str) -> str | None:
    """The name of the index ``statement`` builds CONCURRENTLY (None: another statement)."""
    found = _CONCURRENT.match(statement)
    return None if found is None else found.group(1)


def in_transaction(
    migrations: tuple[tuple[str, ...], ...],
) -> tuple[tuple[str, ...], ...]:
    """Each version's statements that run inside the migration's transaction."""
    return tuple(
        tuple(statement for statement in version if concurrent_index(statement) is None)
        for version in migrations
    )


def in_one_transaction(
    migrations: tuple[tuple[str, ...], ...],
) -> tuple[tuple[str, ...], ...]:
    """Each version's statements, all run inside one transaction: the index builds
    written CONCURRENTLY become plain ones, at their place in their version (they lock
    the table's writes while they run, and build the same index)."""
    return tuple(
        tuple(
            statement if concurrent_index(statement) is None else _plain_index(statement)
            for statement in version
        )
        for version in migrations
    )


def _plain_index(statement: str) -> str:
    return re.sub(r"\bINDEX\s+CONCURRENTLY\s+", "INDEX ", statement, count=1, flags=re.I)


def built_concurrently(migrations: tuple[tuple[str, ...], ...]) -> list[tuple[str, str]]:
    """Every version's index builds that run outside it: (index name, statement)."""
    return [
        (name, statement)
        for version in migrations
        for statement in version
        if (name := concurrent_index(statement)) is not None
    ]


__all__ = [
    "MIGRATIONS",
    "built_concurrently",
    "concurrent_index",
    "in_one_transaction",
    "in_transaction",
]
