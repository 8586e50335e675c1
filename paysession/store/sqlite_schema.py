"""The SQLite schema, one migration per version: published versions never change."""

from __future__ import annotations

from paysession.store._sql import ANOMALY_KINDS, ANOMALY_KINDS_3, ANOMALY_KINDS_NOW
from paysession.store._tables import (
    SQLITE,
    browse_schema,
    provider_calls_table,
    provider_events_table,
    provider_ref_schema,
    sessions_table,
)

# Each anomaly recorded adds one to its session's count (schema 5).
_COUNT_ANOMALIES = (
    """
        CREATE TRIGGER paysession_count_anomaly AFTER INSERT ON paysession_provider_events
            WHEN NEW.outcome = 'anomaly'
        BEGIN
            UPDATE paysession_sessions SET anomalies = anomalies + 1 WHERE id = NEW.session_id;
        END
        """,
)

# Each entry is one schema version: the statements that lead to it from the one before.
# Published versions never change; a change of schema is a new entry.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        sessions_table(SQLITE),
        """
        CREATE UNIQUE INDEX paysession_one_selected_per_cart
            ON paysession_sessions (cart_id) WHERE is_selected
        """,
        "CREATE INDEX paysession_sessions_status ON paysession_sessions (status)",
        """
        CREATE TABLE paysession_records (
            session_id TEXT NOT NULL REFERENCES paysession_sessions (id),
            seq INTEGER NOT NULL CHECK (seq >= 0),
            position INTEGER NOT NULL UNIQUE CHECK (position > 0),
            trigger TEXT NOT NULL,
            at INTEGER NOT NULL,
            hash TEXT NOT NULL,
            wire TEXT NOT NULL,
            PRIMARY KEY (session_id, seq)
        )
        """,
        """
        CREATE TABLE paysession_keys (
            session_id TEXT NOT NULL,
            key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (session_id, key),
            FOREIGN KEY (session_id, seq) REFERENCES paysession_records (session_id, seq)
        )
        """,
    ),
    # 2: provider events, for reconciliation (one row per report; duplicates counted).
    (
        provider_events_table(SQLITE),
        """
        CREATE INDEX paysession_provider_events_outcome
            ON paysession_provider_events (outcome, recorded_at)
        """,
    ),
    # 3: one authorized session per cart (checked before: see _PRECHECKS), the claims
    # that hold a cart while a provider call is in flight, and the kind of an anomaly.
    (
        # (cart_id, status) rather than cart_id alone: SQLite names an index's columns
        # in its error, and this must not read like the one-selected-per-cart index.
        """
        CREATE UNIQUE INDEX paysession_one_authorized_per_cart
            ON paysession_sessions (cart_id, status) WHERE status = 'authorized'
        """,
        """
        CREATE TABLE paysession_claims (
            cart_id TEXT PRIMARY KEY,
            token TEXT NOT NULL,
            session_id TEXT NOT NULL REFERENCES paysession_sessions (id),
            action TEXT NOT NULL CHECK (action IN ('authorize', 'cancel')),
            expires_at INTEGER NOT NULL
        )
        """,
        f"ALTER TABLE paysession_provider_events ADD COLUMN kind TEXT "
        f"CHECK (kind IN {ANOMALY_KINDS_3})",
    ),
    # 4: a report observed too far ahead of its recording is an anomaly of its own kind.
    # SQLite cannot change a CHECK in place: the table is rebuilt, its rows copied in the
    # order they were recorded (the order provider_events reads them back in).
    (
        provider_events_table(SQLITE, "paysession_provider_events_4"),
        f"ALTER TABLE paysession_provider_events_4 ADD COLUMN kind TEXT "
        f"CHECK (kind IN {ANOMALY_KINDS})",
        "INSERT INTO paysession_provider_events_4 "
        "SELECT * FROM paysession_provider_events ORDER BY rowid",
        "DROP TABLE paysession_provider_events",
        "ALTER TABLE paysession_provider_events_4 RENAME TO paysession_provider_events",
        """
        CREATE INDEX paysession_provider_events_outcome
            ON paysession_provider_events (outcome, recorded_at)
        """,
    ),
    # 5: what the inspector's pages read by: each session's count of anomalies, and the
    # indexes of newest first, by status, by provider and of the sessions with anomalies.
    browse_schema(SQLITE, _COUNT_ANOMALIES),
    # 6: an authorization for another amount is an anomaly of its own kind (the table is
    # rebuilt as in 4, which drops its index and its trigger: both are made again), and
    # every provider call that holds or releases money is kept, with its answer.
    (
        provider_events_table(SQLITE, "paysession_provider_events_6"),
        f"ALTER TABLE paysession_provider_events_6 ADD COLUMN kind TEXT "
        f"CHECK (kind IN {ANOMALY_KINDS_NOW})",
        "INSERT INTO paysession_provider_events_6 "
        "SELECT * FROM paysession_provider_events ORDER BY rowid",
        "DROP TABLE paysession_provider_events",
        "ALTER TABLE paysession_provider_events_6 RENAME TO paysession_provider_events",
        """
        CREATE INDEX paysession_provider_events_outcome
            ON paysession_provider_events (outcome, recorded_at)
        """,
        *_COUNT_ANOMALIES,
        provider_calls_table(SQLITE),
    ),
    # 7: the provider's own id of each session's payment (Stripe's PaymentIntent id),
    # computed from its data, so that a report naming only that id finds its session.
    provider_ref_schema(SQLITE),
)

__all__ = ["MIGRATIONS"]
