"""Schemas migrate in place: nothing lost, every trail still verifying, no row ever dropped.

An older database is made by running today's store on a fresh file, then undoing what
later schema versions added (the published migrations never change, which the first
test pins), so the rows are exactly what the older code kept.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from paysession import PaymentSessions, PaymentSessionStatus
from paysession.errors import AuthorizationConflict, MigrationRefused, ReconciliationAnomaly
from paysession.store import MemoryStore, SessionStore, SqliteStore
from paysession.store import postgres as postgres_store
from paysession.store import sqlite as sqlite_store
from paysession.store._browse import SessionFilter
from paysession.store._postgres_mapper import placeholder as pg_placeholder
from paysession.store._sql import ANOMALY_KINDS, ANOMALY_KINDS_3, migrate_schema
from paysession.store._sqlite_mapper import placeholder as sqlite_placeholder
from paysession.store._tables import REFERENCES

from .conftest import PostgresServer
from .helpers import StepClock

S = PaymentSessionStatus

PUBLISHED = {
    ("sqlite", 1): "f507bf3158b4c71f",
    ("sqlite", 2): "d7c4604871333af7",
    ("postgres", 1): "81d51f8a75f5b9cb",
    ("postgres", 2): "3d063f3fc99f4f38",
}
"""The first 16 hex digits of the SHA-256 of each published migration's statements."""

# What schema version 3 added, undone: the database is then as version 2 left it.
TO_VERSION_2 = (
    "DROP INDEX paysession_one_authorized_per_cart",
    "DROP TABLE paysession_claims",
    "ALTER TABLE paysession_provider_events DROP COLUMN kind",
    "UPDATE paysession_schema SET version = 2",
)
TO_VERSION_1 = ("DROP TABLE paysession_provider_events", "UPDATE paysession_schema SET version = 1")


def without_browse_indexes(version: int, kind: str) -> tuple[str, ...]:
    """What the inspector's schema (SQLite 5, PostgreSQL 6) changed, undone: its trigger,
    indexes and anomaly count go; the schema is then at ``version``."""
    counter = (
        ("DROP TRIGGER paysession_count_anomaly",)
        if kind == "sqlite"
        else (
            "DROP TRIGGER paysession_count_anomaly ON paysession_provider_events",
            "DROP FUNCTION paysession_count_anomaly()",
        )
    )
    return (
        *counter,
        "DROP INDEX paysession_sessions_updated",
        "DROP INDEX paysession_sessions_provider",
        "DROP INDEX paysession_sessions_anomalous",
        "ALTER TABLE paysession_sessions DROP COLUMN anomalies",
        f"UPDATE paysession_schema SET version = {version}",
    )


def without_provider_calls(kind: str) -> tuple[str, ...]:
    """What the provider-call schema (SQLite 6, PostgreSQL 7) changed, undone: the calls
    table goes and anomalies lose the kind amount_mismatch (SQLite rebuilds the events
    table as version 4 built it, with the trigger version 5 added)."""
    if kind == "postgres":
        return (
            "DROP TABLE paysession_provider_calls",
            "ALTER TABLE paysession_provider_events "
            "DROP CONSTRAINT paysession_provider_events_kind_check",
            "ALTER TABLE paysession_provider_events ADD CONSTRAINT "
            f"paysession_provider_events_kind_check CHECK (kind IN {ANOMALY_KINDS})",
            "UPDATE paysession_schema SET version = 6",
        )
    return (
        "DROP TABLE paysession_provider_calls",
        *sqlite_store.MIGRATIONS[3],
        *[statement for statement in sqlite_store.MIGRATIONS[4] if "TRIGGER" in statement],
        "UPDATE paysession_schema SET version = 5",
    )


def without_provider_ref(kind: str) -> tuple[str, ...]:
    """What the provider-reference schema (SQLite 7, PostgreSQL 8) changed, undone: the
    computed column and its index go."""
    return (
        "DROP INDEX paysession_sessions_provider_ref",
        "ALTER TABLE paysession_sessions DROP COLUMN provider_ref",
        f"UPDATE paysession_schema SET version = {6 if kind == 'sqlite' else 7}",
    )


# What PostgreSQL's schema version 5 changed, undone: the feed keys and the record
# numbering go, and the single counter row comes back at the last position. Records are
# renumbered 1, 2, 3, ... in feed order, as the counter numbered them in commit order.
PG_TO_VERSION_4 = (
    "DROP INDEX paysession_records_feed",
    "ALTER TABLE paysession_records ALTER COLUMN position DROP IDENTITY",
    """
    UPDATE paysession_records AS r SET position = o.n FROM (
        SELECT session_id, seq, row_number() OVER (ORDER BY xact, position) AS n
        FROM paysession_records
    ) AS o WHERE (r.session_id, r.seq) = (o.session_id, o.seq)
    """,
    "ALTER TABLE paysession_records DROP COLUMN xact",
    "ALTER TABLE paysession_sessions DROP COLUMN xact",
    "ALTER TABLE paysession_records ADD CONSTRAINT paysession_records_position UNIQUE (position)",
    """
    CREATE TABLE paysession_position (
        only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
        last bigint NOT NULL CHECK (last >= 0)
    )
    """,
    "INSERT INTO paysession_position (last) SELECT coalesce(max(position), 0) "
    "FROM paysession_records",
    "UPDATE paysession_schema SET version = 4",
)
# What schema version 4 changed, undone on PostgreSQL: anomaly kinds as version 3 had them.
PG_TO_VERSION_3 = (
    "ALTER TABLE paysession_provider_events DROP CONSTRAINT paysession_provider_events_kind_check",
    "ALTER TABLE paysession_provider_events ADD CONSTRAINT "
    f"paysession_provider_events_kind_check CHECK (kind IN {ANOMALY_KINDS_3})",
    "UPDATE paysession_schema SET version = 3",
)
LATEST = {"sqlite": len(sqlite_store.MIGRATIONS), "postgres": len(postgres_store.MIGRATIONS)}


def test_published_migrations_never_change() -> None:
    """Each store's schema versions 1 and 2 are what the databases in the field ran."""
    for name, module in (("sqlite", sqlite_store), ("postgres", postgres_store)):
        for version in (1, 2):
            text = repr(module.MIGRATIONS[version - 1]).encode()
            assert hashlib.sha256(text).hexdigest()[:16] == PUBLISHED[(name, version)]


class Database:
    """A SQLite file or a PostgreSQL database: open a store on it, or run raw SQL."""

    def __init__(self, kind: str, place: str) -> None:
        self.kind = kind
        self.place = place

    def store(self) -> SessionStore:
        if self.kind == "sqlite":
            return SqliteStore(self.place)
        return postgres_store.PostgresStore(self.place)

    def run(self, *statements: str) -> None:
        if self.kind == "sqlite":
            with sqlite3.connect(self.place) as conn:
                for statement in statements:
                    conn.execute(statement)
            conn.close()
        else:
            with psycopg.connect(self.place) as pg:
                for statement in statements:
                    pg.execute(statement)

    def back_to(self, version: int) -> tuple[str, ...]:
        """The statements that turn today's schema back into ``version`` (2 or more)."""
        undo = {
            "sqlite": {
                6: without_provider_ref("sqlite"),
                5: without_provider_calls("sqlite"),
                4: without_browse_indexes(4, "sqlite"),
            },
            "postgres": {
                7: without_provider_ref("postgres"),
                6: without_provider_calls("postgres"),
                5: without_browse_indexes(5, "postgres"),
                4: PG_TO_VERSION_4,
                3: PG_TO_VERSION_3,
            },
        }[self.kind]
        statements: tuple[str, ...] = ()
        for step in range(LATEST[self.kind] - 1, version - 1, -1):
            statements += undo.get(step, ())
        return statements + (TO_VERSION_2 if version == 2 else ())

    def scalar(self, query: str) -> object:
        if self.kind == "sqlite":
            with sqlite3.connect(self.place) as conn:
                value = conn.execute(query).fetchone()[0]
            conn.close()
            return value
        with psycopg.connect(self.place) as pg:
            row = pg.execute(query).fetchone()
            assert row is not None
            return row[0]


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        return Database("sqlite", str(tmp_path / "old.db"))
    return Database("postgres", request.getfixturevalue("postgres_dsn"))


def fill(database: Database) -> dict[str, str]:
    """Sessions in every status across three carts, through today's store."""
    store = database.store()
    sessions = PaymentSessions(store, clock=StepClock())
    made: dict[str, str] = {}
    for name, cart, provider, moves in (
        ("authorized", "cart_1", "stripe", ("authorize",)),
        ("pending", "cart_1", "paypal", ()),
        ("canceled", "cart_2", "stripe", ("authorize", "cancel")),
        ("reauthorized", "cart_2", "paypal", ("authorize",)),
        ("error", "cart_3", "stripe", ("fail",)),
    ):
        session = sessions.create(cart_id=cart, provider_id=provider, amount=900)
        sessions.fire(session.id, "initiate", data={"id": f"pi_{name}"})
        for trigger in moves:
            sessions.fire(session.id, trigger)
        made[name] = session.id
    sessions.reconcile(made["error"], "requires_payment_method", event_id="evt_1")
    store.close()
    return made


def reopened(database: Database, check: Callable[[PaymentSessions], None]) -> None:
    store = database.store()
    try:
        check(PaymentSessions(store, clock=StepClock()))
    finally:
        store.close()


class TestMigrations:
    @pytest.mark.parametrize("version", [1, 2])
    def test_an_older_database_gains_the_rules(self, database: Database, version: int) -> None:
        """Versions 1 and 2 migrate to 3 in place; every session and trail is kept."""
        made = fill(database)
        database.run(*database.back_to(2))
        if version == 1:
            database.run(*TO_VERSION_1)
        counts = database.scalar("SELECT count(*) FROM paysession_records")

        def check(sessions: PaymentSessions) -> None:
            assert sessions.store.migrate() == LATEST[database.kind]
            found = {session.id: session.status for session in sessions.find()}
            assert found == {
                made["authorized"]: S.AUTHORIZED,
                made["pending"]: S.PENDING,
                made["canceled"]: S.CANCELED,
                made["reauthorized"]: S.AUTHORIZED,
                made["error"]: S.PENDING,
            }
            for session_id in made.values():
                assert sessions.verify(session_id).ok
            # The new rule holds at once.
            sessions.fire(made["pending"], "initiate", data={})
            with pytest.raises(AuthorizationConflict):
                sessions.fire(made["pending"], "authorize")
            sessions.select(made["error"])
            held = sessions.claim_cart("cart_3")
            assert held.claim is not None and held.claim.session_id == made["error"]

        reopened(database, check)
        assert database.scalar("SELECT count(*) FROM paysession_records") == counts + 2
        assert database.scalar("SELECT version FROM paysession_schema") == LATEST[database.kind]

    def test_refused_when_a_cart_is_authorized_twice(self, database: Database) -> None:
        """A version-2 database holding two authorized sessions of one cart is left as it is."""
        made = fill(database)
        database.run(*database.back_to(2))
        database.run(
            "UPDATE paysession_sessions SET status = 'authorized', "
            f"payment_authorized_at = updated_at WHERE id = '{made['pending']}'"
        )
        rows = database.scalar("SELECT count(*) FROM paysession_sessions")
        records = database.scalar("SELECT count(*) FROM paysession_records")
        store = database.store()
        with pytest.raises(MigrationRefused) as refused:
            store.migrate()
        store.close()
        assert refused.value.offenders == ("cart_1",)
        assert refused.value.operation == "migrate"
        assert "cart_1" in str(refused.value) and "Nothing was migrated" in str(refused.value)
        assert database.scalar("SELECT version FROM paysession_schema") == 2
        assert database.scalar("SELECT count(*) FROM paysession_sessions") == rows
        assert database.scalar("SELECT count(*) FROM paysession_records") == records
        # Settled by hand (the extra session canceled), the migration goes through.
        database.run(
            f"UPDATE paysession_sessions SET status = 'canceled' WHERE id = '{made['pending']}'"
        )
        store = database.store()
        assert store.migrate() == LATEST[database.kind]
        store.close()


class TestVersionFour:
    def test_a_version_3_database_keeps_its_events_and_takes_the_new_kind(
        self, database: Database, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Schema 4 widens the anomaly kinds; SQLite rebuilds the table, rows in order."""

        def fill_with_an_anomaly() -> tuple[dict[str, str], list[object]]:
            made = fill(database)
            store = database.store()
            sessions = PaymentSessions(store, clock=StepClock())
            with pytest.raises(ReconciliationAnomaly):
                sessions.reconcile(made["canceled"], "succeeded", event_id="evt_late")
            before = [(e.event_id, e.outcome, e.kind) for e in sessions.provider_events()]
            store.close()
            return made, before

        if database.kind == "sqlite":
            # SQLite's writes are those of version 3 but for the count of anomalies (5):
            # today's code makes the database with that column alone, which then goes.
            count_only = (
                "ALTER TABLE paysession_sessions ADD COLUMN anomalies INTEGER NOT NULL DEFAULT 0",
            )
            with monkeypatch.context() as patched:
                patched.setattr(
                    sqlite_store, "MIGRATIONS", (*sqlite_store.MIGRATIONS[:3], count_only)
                )
                made, before = fill_with_an_anomaly()
            database.run(
                "ALTER TABLE paysession_sessions DROP COLUMN anomalies",
                "UPDATE paysession_schema SET version = 3",
            )
        else:
            made, before = fill_with_an_anomaly()
            database.run(*database.back_to(3))
        assert database.scalar("SELECT version FROM paysession_schema") == 3

        def check(sessions: PaymentSessions) -> None:
            assert sessions.store.migrate() == LATEST[database.kind]
            after = [(e.event_id, e.outcome, e.kind) for e in sessions.provider_events()]
            assert after == before and len(after) >= 2
            far = datetime(2090, 1, 1, tzinfo=timezone.utc)
            with pytest.raises(ReconciliationAnomaly):
                sessions.reconcile(made["pending"], "PAYER_ACTION_REQUIRED", observed_at=far)
            assert sessions.anomalies(kind="future_report")[0].observed_at == far
            for session_id in made.values():
                assert sessions.verify(session_id).ok

        reopened(database, check)
        assert database.scalar("SELECT version FROM paysession_schema") == LATEST[database.kind]


def pg_schema(dsn: str) -> list[tuple[object, ...]]:
    """Every column, constraint and index of the paysession tables, as the catalog says."""
    with psycopg.connect(dsn) as pg:
        columns = pg.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default, "
            "is_identity FROM information_schema.columns WHERE table_schema = 'public' "
            "ORDER BY table_name, column_name"
        ).fetchall()
        constraints = pg.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"
        ).fetchall()
        indexes = pg.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = 'public' ORDER BY 1, 2"
        ).fetchall()
    return [*columns, *constraints, *indexes]


class TestVersionFive:
    def test_the_undone_schema_is_the_published_version_4(
        self, postgres_server: PostgresServer
    ) -> None:
        """The test's version-4 database has exactly the schema version 4 created."""
        published, undone = postgres_server.new_database(), postgres_server.new_database()
        with psycopg.connect(published, autocommit=True, row_factory=dict_row) as pg:
            migrate_schema(pg, postgres_store.MIGRATIONS[:4], pg_placeholder)
        fill(Database("postgres", undone))
        Database("postgres", undone).run(
            *without_provider_ref("postgres"),
            *without_provider_calls("postgres"),
            *without_browse_indexes(5, "postgres"),
            *PG_TO_VERSION_4,
        )
        assert pg_schema(undone) == pg_schema(published)
        assert "paysession_position" in str(pg_schema(undone))

    def test_a_version_4_database_keeps_its_feed_order_and_follows_on(
        self, database: Database
    ) -> None:
        """Every record is kept, in its old order, every trail verifies, and new records
        come after the old ones; on PostgreSQL the counter row is gone."""
        made = fill(database)
        database.run(*database.back_to(4))
        old = database.scalar(
            "SELECT string_agg(session_id || ':' || seq, ' ' ORDER BY position) "
            "FROM paysession_records"
            if database.kind == "postgres"
            else "SELECT group_concat(session_id || ':' || seq, ' ') FROM "
            "(SELECT session_id, seq FROM paysession_records ORDER BY position)"
        )
        assert isinstance(old, str) and len(old.split()) >= 15

        def check(sessions: PaymentSessions) -> None:
            assert sessions.store.migrate() == LATEST[database.kind]
            feed = sessions.records_since(None, 1000)
            assert " ".join(f"{e.record.session_id}:{e.record.seq}" for e in feed) == old
            for session_id in made.values():
                assert sessions.verify(session_id).ok
            sessions.fire(made["pending"], "initiate", data={"id": "pi_after"})
            newer = sessions.records_since(feed[-1].cursor, 10)
            assert [(e.record.session_id, e.record.trigger) for e in newer] == [
                (made["pending"], "initiate")
            ]
            followed = list(sessions.follow(feed[-3].cursor, idle=0))
            assert followed == [*feed[-2:], *newer]

        reopened(database, check)
        if database.kind == "postgres":
            assert database.scalar("SELECT to_regclass('paysession_position')") is None


def sqlite_schema(path: str) -> list[tuple[object, ...]]:
    """Every table and index of a SQLite file, as its catalog says."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
    conn.close()
    return rows


class TestBrowseIndexes:
    """SQLite 5 and PostgreSQL 6: the indexes of the inspector's pages, added in place."""

    def test_the_undone_schema_is_the_published_one_before(
        self, postgres_server: PostgresServer, tmp_path: Path
    ) -> None:
        published, undone = postgres_server.new_database(), postgres_server.new_database()
        with psycopg.connect(published, autocommit=True, row_factory=dict_row) as pg:
            migrate_schema(pg, postgres_store.MIGRATIONS[:5], pg_placeholder)
        fill(Database("postgres", undone))
        Database("postgres", undone).run(
            *without_provider_ref("postgres"),
            *without_provider_calls("postgres"),
            *without_browse_indexes(5, "postgres"),
        )
        assert pg_schema(undone) == pg_schema(published)
        before, after = str(tmp_path / "published.db"), str(tmp_path / "undone.db")
        with sqlite3.connect(before) as conn:
            conn.row_factory = sqlite3.Row
            migrate_schema(conn, sqlite_store.MIGRATIONS[:4], sqlite_placeholder)
        conn.close()
        fill(Database("sqlite", after))
        Database("sqlite", after).run(
            *without_provider_ref("sqlite"),
            *without_provider_calls("sqlite"),
            *without_browse_indexes(4, "sqlite"),
        )
        assert sqlite_schema(after) == sqlite_schema(before)

    def test_an_older_database_gains_the_indexes_and_keeps_everything(
        self, database: Database
    ) -> None:
        made = fill(database)
        reopened(database, _two_anomalies_for_the_pending_session(made["pending"]))
        database.run(*database.back_to(4 if database.kind == "sqlite" else 5))

        def check(sessions: PaymentSessions) -> None:
            assert sessions.store.migrate() == LATEST[database.kind]
            for session_id in made.values():
                assert sessions.verify(session_id).ok
            page, _ = sessions.store.sessions_page(SessionFilter(provider_id="paypal"))
            assert {s.id for s in page} == {made["pending"], made["reauthorized"]}
            # The anomalies recorded before the column existed are counted on their row.
            anomalous, _ = sessions.store.sessions_page(SessionFilter(has_anomalies=True))
            assert [s.id for s in anomalous] == [made["pending"]]

        reopened(database, check)
        indexes = (
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'paysession_sessions_updated'"
            if database.kind == "postgres"
            else "SELECT count(*) FROM sqlite_master WHERE name = 'paysession_sessions_updated'"
        )
        assert database.scalar(indexes) == 1


def _two_anomalies_for_the_pending_session(
    session_id: str,
) -> Callable[[PaymentSessions], None]:
    def record(sessions: PaymentSessions) -> None:
        for event_id in ("evt_a", "evt_b"):
            with pytest.raises(ReconciliationAnomaly):
                sessions.reconcile(session_id, "COMPLETED", event_id=event_id)

    return record


class TestProviderCalls:
    """SQLite 6 and PostgreSQL 7: the provider calls, and anomalies of another amount."""

    def test_the_undone_schema_is_the_published_one_before(
        self, postgres_server: PostgresServer, tmp_path: Path
    ) -> None:
        published, undone = postgres_server.new_database(), postgres_server.new_database()
        with psycopg.connect(published, autocommit=True, row_factory=dict_row) as pg:
            migrate_schema(pg, postgres_store.MIGRATIONS[:6], pg_placeholder)
        fill(Database("postgres", undone))
        Database("postgres", undone).run(
            *without_provider_ref("postgres"), *without_provider_calls("postgres")
        )
        assert pg_schema(undone) == pg_schema(published)
        before, after = str(tmp_path / "published.db"), str(tmp_path / "undone.db")
        with sqlite3.connect(before) as conn:
            conn.row_factory = sqlite3.Row
            migrate_schema(conn, sqlite_store.MIGRATIONS[:5], sqlite_placeholder)
        conn.close()
        fill(Database("sqlite", after))
        Database("sqlite", after).run(
            *without_provider_ref("sqlite"), *without_provider_calls("sqlite")
        )
        assert sqlite_schema(after) == sqlite_schema(before)

    def test_an_older_database_keeps_its_events_and_counts(self, database: Database) -> None:
        """Every event and the anomaly counts are kept; calls and the new kind then work."""
        made = fill(database)
        reopened(database, _two_anomalies_for_the_pending_session(made["pending"]))
        database.run(*database.back_to(LATEST[database.kind] - 2))
        events = database.scalar("SELECT count(*) FROM paysession_provider_events")

        def check(sessions: PaymentSessions) -> None:
            assert sessions.store.migrate() == LATEST[database.kind]
            assert len(sessions.provider_events()) == events
            anomalous, _ = sessions.store.sessions_page(SessionFilter(has_anomalies=True))
            assert [s.id for s in anomalous] == [made["pending"]]
            with pytest.raises(ReconciliationAnomaly) as caught:
                sessions.reconcile(made["error"], "succeeded", event_id="evt_x", amount=1)
            assert caught.value.kind == "amount_mismatch"
            assert sessions.store.provider_calls(made["error"]) == []
            for session_id in made.values():
                assert sessions.verify(session_id).ok

        reopened(database, check)
        assert (
            database.scalar(
                "SELECT anomalies FROM paysession_sessions WHERE id = '" + made["error"] + "'"
            )
            == 1
        )


class TestProviderRef:
    """SQLite 7 and PostgreSQL 8: the provider's own id of each session's payment, a
    column computed from the session's data and indexed."""

    def test_the_undone_schema_is_the_published_one_before(
        self, postgres_server: PostgresServer, tmp_path: Path
    ) -> None:
        published, undone = postgres_server.new_database(), postgres_server.new_database()
        with psycopg.connect(published, autocommit=True, row_factory=dict_row) as pg:
            migrate_schema(pg, postgres_store.MIGRATIONS[:7], pg_placeholder)
        fill(Database("postgres", undone))
        Database("postgres", undone).run(*without_provider_ref("postgres"))
        assert pg_schema(undone) == pg_schema(published)
        before, after = str(tmp_path / "published.db"), str(tmp_path / "undone.db")
        with sqlite3.connect(before) as conn:
            conn.row_factory = sqlite3.Row
            migrate_schema(conn, sqlite_store.MIGRATIONS[:6], sqlite_placeholder)
        conn.close()
        fill(Database("sqlite", after))
        Database("sqlite", after).run(*without_provider_ref("sqlite"))
        assert sqlite_schema(after) == sqlite_schema(before)

    def test_existing_rows_are_found_by_their_reference(self, database: Database) -> None:
        """Sessions written before the column existed are found by it once migrated."""
        made = fill(database)
        database.run(*database.back_to(LATEST[database.kind] - 1))

        def check(sessions: PaymentSessions) -> None:
            assert sessions.store.migrate() == LATEST[database.kind]
            for name, session_id in made.items():
                (found,) = sessions.find(provider_ref=f"pi_{name}")
                assert found.id == session_id
            assert sessions.find(provider_id="paypal", provider_ref="pi_authorized") == []
            for session_id in made.values():
                assert sessions.verify(session_id).ok

        reopened(database, check)

    def test_a_row_whose_data_is_not_json_migrates_without_a_reference(
        self, tmp_path: Path
    ) -> None:
        """SQLite keeps text as it is given: a row edited by hand is kept, and found by
        the audit, not refused by the migration."""
        database = Database("sqlite", str(tmp_path / "old.db"))
        made = fill(database)
        database.run(
            *database.back_to(LATEST["sqlite"] - 1),
            f"UPDATE paysession_sessions SET data = '{{bad' WHERE id = '{made['pending']}'",
        )

        def check(sessions: PaymentSessions) -> None:
            assert sessions.store.migrate() == LATEST["sqlite"]
            (found,) = sessions.find(provider_ref="pi_error")
            assert found.id == made["error"]

        reopened(database, check)
        row = f"SELECT provider_ref IS NULL FROM paysession_sessions WHERE id = '{made['pending']}'"
        assert database.scalar(row) == 1

    def test_the_reference_is_read_by_index(self, database: Database) -> None:
        fill(database)
        reopened(database, lambda sessions: None)
        query = (
            "SELECT id FROM paysession_sessions "
            "WHERE provider_ref = 'pi_error' AND provider_id = 'stripe'"
        )
        if database.kind == "sqlite":
            with sqlite3.connect(database.place) as conn:
                plan = repr(conn.execute("EXPLAIN QUERY PLAN " + query).fetchall())
            conn.close()
        else:
            with psycopg.connect(database.place) as pg:
                pg.execute("SET enable_seqscan = off")
                plan = repr(pg.execute("EXPLAIN " + query).fetchall())
        assert "paysession_sessions_provider_ref" in plan

    def test_only_a_string_of_the_providers_key_is_a_reference(self, database: Database) -> None:
        store = database.store()
        sessions = PaymentSessions(store, clock=StepClock())
        for provider, data in (
            ("stripe", {"id": 42}),
            ("stripe", {"id": ""}),
            ("stripe", {"pspReference": "ref_1"}),
            ("adyen", {"id": "ref_1"}),
            ("manual", {"id": "ref_1"}),
        ):
            session = sessions.create(cart_id=None, provider_id=provider, amount=1)
            sessions.fire(session.id, "initiate", data=data)
        assert sessions.find(provider_ref="ref_1") == []
        assert sessions.find(provider_ref="") == []
        adyen = sessions.create(cart_id=None, provider_id="adyen", amount=1)
        sessions.fire(adyen.id, "initiate", data={"pspReference": "ref_1"})
        assert [s.id for s in sessions.find(provider_ref="ref_1")] == [adyen.id]
        store.close()


def test_the_columns_rule_is_each_providers() -> None:
    """The keys the SQL column reads are those the memory store reads, provider by provider."""
    memory = PaymentSessions(MemoryStore(), clock=StepClock())
    for provider, key in REFERENCES:
        session = memory.create(cart_id=None, provider_id=provider, amount=1)
        memory.fire(session.id, "initiate", data={key: f"{provider}_ref"})
        assert [s.id for s in memory.find(provider_ref=f"{provider}_ref")] == [session.id]
    assert dict(REFERENCES)["stripe"] == "id"  # as Medusa keeps the PaymentIntent
