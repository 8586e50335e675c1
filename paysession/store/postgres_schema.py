"""The PostgreSQL schema, one migration per version: published versions never change."""

from __future__ import annotations

from paysession.store._sql import ANOMALY_KINDS

# Each entry is one schema version: the statements that lead to it from the one before.
# Published versions never change; a change of schema is a new entry.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE paysession_sessions (
            id text PRIMARY KEY,
            cart_id text,
            provider_id text NOT NULL,
            is_selected boolean NOT NULL,
            is_initiated boolean NOT NULL,
            status text NOT NULL CHECK (
                status IN ('authorized', 'pending', 'requires_more', 'error', 'canceled')
            ),
            data json NOT NULL,
            idempotency_key text,
            amount bigint CHECK (amount >= 0),
            payment_authorized_at timestamptz,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL CHECK (updated_at >= created_at),
            cart json,
            version integer NOT NULL CHECK (version >= 0),
            head text NOT NULL,
            CONSTRAINT paysession_cart_provider UNIQUE (cart_id, provider_id),
            CONSTRAINT paysession_authorized_stamped
                CHECK (status <> 'authorized' OR payment_authorized_at IS NOT NULL)
        )
        """,
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
        """
        CREATE TABLE paysession_provider_events (
            session_id text NOT NULL REFERENCES paysession_sessions (id),
            event_id text NOT NULL,
            provider_status text NOT NULL,
            status text NOT NULL CHECK (
                status IN ('authorized', 'pending', 'requires_more', 'error', 'canceled')
            ),
            session_status text NOT NULL CHECK (
                session_status IN ('authorized', 'pending', 'requires_more', 'error', 'canceled')
            ),
            outcome text NOT NULL CHECK (
                outcome IN ('applied', 'noop', 'stale', 'duplicate', 'anomaly')
            ),
            observed_at timestamptz,
            recorded_at timestamptz NOT NULL,
            version integer NOT NULL CHECK (version >= 0),
            guard text,
            duplicates integer NOT NULL DEFAULT 0 CHECK (duplicates >= 0),
            recorded bigint GENERATED ALWAYS AS IDENTITY,
            CONSTRAINT paysession_provider_events_pkey PRIMARY KEY (session_id, event_id)
        )
        """,
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
        f"CHECK (kind IN {ANOMALY_KINDS})",
    ),
)

__all__ = ["MIGRATIONS"]
