"""What an operator meets: database errors that name their cause, the wrong input told
apart from tampering, the sessions of a store listed, a session replayed from a store."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from paysession import PaymentSessions, StoreError
from paysession.store import PostgresStore, SqliteStore, postgres_schema, sqlite_schema

from .conftest import PostgresServer
from .test_audit_cli_store import fill, paysession


def _one_line(done: subprocess.CompletedProcess[bytes]) -> str:
    assert done.stderr.count(b"\n") == 1, done.stderr
    assert b"Traceback" not in done.stderr and b"^" not in done.stderr
    return done.stderr.decode()


def _elsewhere(server: PostgresServer, **parts: str) -> str:
    return psycopg.conninfo.make_conninfo(server.admin_dsn, **parts)


class TestPostgresSaysWhy:
    def test_the_library_store_fails_at_once_with_the_servers_reason(
        self, postgres_server: PostgresServer
    ) -> None:
        """A wrong database name: the first operation raises StoreError with the
        server's own message (not a pool timeout after 30 s with the reason in a log)."""
        store = PostgresStore(_elsewhere(postgres_server, dbname="nosuchdb"))
        with pytest.raises(StoreError) as raised:
            PaymentSessions(store).create(cart_id="c", provider_id="p", amount=1)
        assert 'database "nosuchdb" does not exist' in raised.value.detail
        assert "\n" not in raised.value.detail
        store.close()

    def test_a_wrong_user_is_named(self, postgres_server: PostgresServer) -> None:
        store = PostgresStore(_elsewhere(postgres_server, user="nosuchuser"))
        with pytest.raises(StoreError) as raised:
            store.migrate()
        assert 'role "nosuchuser" does not exist' in raised.value.detail
        store.close()

    def test_the_cli_shows_the_reason_and_the_dsn_without_its_password(
        self, postgres_server: PostgresServer
    ) -> None:
        dsn = _elsewhere(postgres_server, dbname="nosuchdb", password="s3cret-pw")
        for argv in (
            ["audit", "verify", "--db", dsn],
            ["audit", "export", "--db", dsn],
            ["sessions", "--db", dsn],
        ):
            done = paysession(*argv)
            said = _one_line(done)
            assert done.returncode == 2, argv
            assert 'database "nosuchdb" does not exist' in said and "dbname=nosuchdb" in said
            assert "s3cret-pw" not in said

    def test_a_refused_connection_says_so(self) -> None:
        done = paysession("audit", "verify", "--db", "host=127.0.0.1 port=1 dbname=x password=pw")
        said = _one_line(done)
        assert done.returncode == 2 and "Connection refused" in said and "pw" not in said

    def test_an_empty_postgres_database_is_one_line(self, postgres_dsn: str) -> None:
        done = paysession("audit", "verify", "--db", postgres_dsn)
        said = _one_line(done)
        assert done.returncode == 2 and "not a paysession database" in said
        assert "LINE 1" not in said


class TestTheWrongInput:
    def test_a_sqlite_file_given_as_a_trail_says_to_use_db(self, tmp_path: Path) -> None:
        """`audit verify shop.db`, --db forgotten: a usage error, not 2,000 torn lines."""
        db = tmp_path / "shop.db"
        fill(SqliteStore(db))
        for argv in (
            ["audit", "verify", str(db)],
            ["audit", "show", str(db)],
            ["audit", "replay", str(db), "--session", "ps_x"],
        ):
            done = paysession(*argv)
            assert (done.returncode, done.stdout) == (2, b""), argv
            assert _one_line(done) == (
                f"paysession audit: {db} is a SQLite database, not a JSON Lines trail: "
                f"use --db {db}\n"
            )

    def test_an_empty_file_given_to_db_is_one_clear_line(self, tmp_path: Path) -> None:
        empty = tmp_path / "empty.db"
        empty.write_bytes(b"")
        done = paysession("audit", "verify", "--db", str(empty))
        assert done.returncode == 2
        assert _one_line(done) == (
            f"paysession audit: {empty} is an empty file, not a paysession database\n"
        )

    def test_a_sqlite_database_without_paysession_is_one_line(self, tmp_path: Path) -> None:
        other = tmp_path / "other.db"
        with sqlite3.connect(other) as conn:
            conn.execute("CREATE TABLE t (x)")
        conn.close()
        done = paysession("audit", "verify", "--db", str(other))
        assert done.returncode == 2
        said = _one_line(done)
        assert "not a paysession database" in said and "no such table" not in said

    def test_a_file_that_is_not_sqlite_given_to_db(self, tmp_path: Path) -> None:
        trail = tmp_path / "trail.jsonl"
        trail.write_text('{"not": "a database"}\n')
        done = paysession("audit", "heads", "--db", str(trail))
        assert done.returncode == 2
        assert _one_line(done) == (
            f"paysession audit: {trail} is not a SQLite database (nor a PostgreSQL DSN)\n"
        )

    def test_a_store_in_a_missing_directory_names_the_path(self, tmp_path: Path) -> None:
        place = tmp_path / "nonexistent" / "x.db"
        store = SqliteStore(place)
        with pytest.raises(StoreError) as raised:
            store.migrate()
        assert str(place) in raised.value.detail
        assert "unable to open database file" in raised.value.detail
        store.close()


class TestSessionsCommand:
    def test_newest_move_first_with_status_cart_and_last_move(self, tmp_path: Path) -> None:
        db = str(tmp_path / "shop.db")
        ids = fill(SqliteStore(db))  # cart_0 canceled, cart_1 and cart_2 authorized
        done = paysession("sessions", "--db", db)
        assert done.returncode == 0 and done.stderr == b""
        lines = done.stdout.decode().splitlines()
        assert lines[0].split() == [
            "session",
            "status",
            "cart",
            "provider",
            "last",
            "move",
            "updated",
        ]
        rows = [line.split() for line in lines[2:]]
        assert [row[0] for row in rows] == ids[::-1]
        assert [row[1:5] for row in rows] == [
            ["authorized", "cart_2", "stripe", "authorize"],
            ["authorized", "cart_1", "stripe", "authorize"],
            ["canceled", "cart_0", "stripe", "cancel"],
        ]

    def test_filters_and_json(self, db: str) -> None:
        ids = fill(SqliteStore(db) if db.endswith(".db") else PostgresStore(db))
        done = paysession("sessions", "--db", db, "--status", "authorized", "--json")
        assert done.returncode == 0
        listed = json.loads(done.stdout)
        assert [row["id"] for row in listed] == [ids[2], ids[1]]
        assert set(listed[0]) == {
            "id",
            "status",
            "cart_id",
            "provider_id",
            "last_move",
            "updated_at",
        }
        by_cart = json.loads(
            paysession("sessions", "--db", db, "--cart", "cart_0", "--json").stdout
        )
        assert [(row["id"], row["last_move"]) for row in by_cart] == [(ids[0], "cancel")]

    def test_a_missing_store_is_a_usage_error(self, tmp_path: Path) -> None:
        done = paysession("sessions", "--db", str(tmp_path / "typo.db"))
        assert done.returncode == 2
        assert _one_line(done) == f"paysession sessions: no database file {tmp_path / 'typo.db'}\n"


class TestReplayFromAStore:
    def test_replay_db_rebuilds_a_session_from_its_stored_trail(self, db: str) -> None:
        ids = fill(SqliteStore(db) if db.endswith(".db") else PostgresStore(db))
        done = paysession("audit", "replay", "--db", db, "--session", ids[1])
        assert done.returncode == 0, done.stderr
        rebuilt = json.loads(done.stdout)
        assert (rebuilt["id"], rebuilt["status"]) == (ids[1], "authorized")

    def test_an_unknown_session_is_a_usage_error(self, tmp_path: Path) -> None:
        db = str(tmp_path / "shop.db")
        fill(SqliteStore(db))
        done = paysession("audit", "replay", "--db", db, "--session", "ps_nope")
        assert done.returncode == 2
        assert _one_line(done) == f"paysession audit: no session ps_nope in {db}\n"

    def test_a_file_and_db_together_are_refused(self, tmp_path: Path) -> None:
        done = paysession("audit", "replay", "x.jsonl", "--db", "y.db", "--session", "ps_1")
        assert done.returncode == 2 and b"not allowed with" in done.stderr


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "shop.db")
    dsn: str = request.getfixturevalue("postgres_dsn")
    return dsn


def test_the_demo_uses_the_one_dsn_rule() -> None:
    """The demo reads --db with the audit's rule (cli/_store.is_dsn), not a copy."""
    source = (Path(__file__).resolve().parent.parent / "paysession" / "cli" / "demo.py").read_text()
    assert "is_dsn(place)" in source and "dbname=" not in source
    assert sys.modules  # the module imports (above) ran


BROWSE_INDEXES = (
    "paysession_sessions_updated",
    "paysession_sessions_provider",
    "paysession_sessions_anomalous",
)
INDEX_STATE = """
    SELECT c.relname, i.indisvalid FROM pg_class AS c JOIN pg_index AS i ON i.indexrelid = c.oid
    WHERE c.relname = ANY(%s)
"""


def _indexes(dsn: str) -> dict[str, bool]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return dict(conn.execute(INDEX_STATE, (list(BROWSE_INDEXES),)).fetchall())


class TestPostgresIndexBuilds:
    def test_the_browse_indexes_are_built_concurrently_outside_the_transaction(self) -> None:
        """Schema 6's indexes (and schema 8's index of provider references) are
        CONCURRENTLY builds, left out of the transaction (where PostgreSQL would refuse
        them); the SQLite schema builds the same indexes plainly."""
        built = postgres_schema.built_concurrently(postgres_schema.MIGRATIONS)
        assert [name for name, _ in built] == [*BROWSE_INDEXES, "paysession_sessions_provider_ref"]
        inside = postgres_schema.in_transaction(postgres_schema.MIGRATIONS)
        assert not any("CONCURRENTLY" in s for version in inside for s in version)
        assert not any("CONCURRENTLY" in s for v in sqlite_schema.MIGRATIONS for s in v)

    def test_an_index_build_cut_short_is_resumed(self, postgres_dsn: str) -> None:
        """A migration whose index build is canceled half-way (a writer held the table;
        an operator, a timeout or a deploy stopped it) leaves an INVALID index; the next
        migration drops it and builds it again."""
        store = PostgresStore(postgres_dsn)
        fill(store)
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            for name in BROWSE_INDEXES:
                conn.execute(f"DROP INDEX {name}")  # as if cut before any build
        blocker = psycopg.connect(postgres_dsn)
        blocker.execute("UPDATE paysession_sessions SET amount = amount")  # a writer, open
        failed: list[BaseException] = []

        def migrate() -> None:
            try:
                PostgresStore(postgres_dsn).migrate()
            except StoreError as error:
                failed.append(error)

        worker = threading.Thread(target=migrate)
        worker.start()
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            for _ in range(600):
                row = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE query LIKE '%%INDEX CONCURRENTLY%%'"
                    " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                ).fetchone()
                if row is not None:
                    break
                time.sleep(0.05)
            assert row is not None, "the build never waited on the open writer"
            admin.execute("SELECT pg_cancel_backend(%s)", (row[0],))
        worker.join(60)
        blocker.rollback()
        blocker.close()
        assert len(failed) == 1 and "canceling statement" in str(failed[0])
        assert _indexes(postgres_dsn) == {"paysession_sessions_updated": False}
        assert PostgresStore(postgres_dsn).migrate() == len(postgres_schema.MIGRATIONS)
        assert _indexes(postgres_dsn) == dict.fromkeys(BROWSE_INDEXES, True)
        with PostgresStore(postgres_dsn, read_only=True) as reader:
            assert len(reader.find()) == 3

    def test_a_valid_index_is_kept(self, postgres_dsn: str) -> None:
        PostgresStore(postgres_dsn).migrate()
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            before = conn.execute(
                "SELECT oid FROM pg_class WHERE relname = 'paysession_sessions_provider'"
            ).fetchone()
        PostgresStore(postgres_dsn).migrate()
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            after = conn.execute(
                "SELECT oid FROM pg_class WHERE relname = 'paysession_sessions_provider'"
            ).fetchone()
        assert before == after is not None


class TestMigrateCommand:
    def test_dry_run_says_what_and_changes_nothing_then_migrate_does_it(
        self, db: str, tmp_path: Path
    ) -> None:
        if db.endswith(".db"):
            exists = Path(db).exists
        else:

            def exists() -> bool:
                with psycopg.connect(db, autocommit=True) as conn:
                    return conn.execute("SELECT to_regclass('paysession_schema')").fetchone() != (
                        None,
                    )

        dry = paysession("migrate", "--db", db, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        out = dry.stdout.decode()
        assert "(dry run: nothing changed)" in out and "version 1:" in out
        assert "CREATE TABLE paysession_sessions" in out
        assert not exists()
        done = paysession("migrate", "--db", db)
        assert done.returncode == 0, done.stderr
        assert (
            done.stdout.decode().endswith(
                "migrated from schema version 0 to "
                + (f"{len(postgres_schema.MIGRATIONS)}\n" if not db.endswith(".db") else "")
            )
            or b"migrated from schema version 0 to" in done.stdout
        )
        assert exists()
        again = paysession("migrate", "--db", db, "--dry-run")
        assert again.returncode == 0 and b"current; nothing to do" in again.stdout


def _sweep(kind: str) -> str:
    page = (Path(__file__).resolve().parent.parent / "docs" / "operations.md").read_text()
    (sql,) = re.findall(rf"```sql {kind}-sweep\n(.*?)```", page, flags=re.S)
    return sql


class TestClaimSweep:
    def test_the_documented_sweep_deletes_only_finished_claims_expired_a_day_ago(
        self, db: str
    ) -> None:
        store = SqliteStore(db) if db.endswith(".db") else PostgresStore(db)
        sessions = PaymentSessions(store)
        statuses = {}
        for cart, last in (
            ("done", "authorize"),
            ("recent", "authorize"),
            ("unfinished", None),
            ("canceled", "cancel"),
            ("live", "authorize"),
        ):
            made = sessions.create(cart_id=cart, provider_id="stripe", amount=100)
            sessions.fire(made.id, "initiate", data={"id": f"pi_{cart}"})
            if last is not None:
                sessions.fire(made.id, last)
            statuses[cart] = made.id
        store.close()
        now = datetime.now(timezone.utc)
        claims = [
            ("done", "authorize", now - timedelta(days=2)),
            ("recent", "authorize", now - timedelta(hours=1)),
            ("unfinished", "authorize", now - timedelta(days=2)),
            ("canceled", "cancel", now - timedelta(days=2)),
            ("live", "authorize", now + timedelta(minutes=5)),
        ]
        insert = "INSERT INTO paysession_claims VALUES ({0}, {0}, {0}, {0}, {0})"
        if db.endswith(".db"):
            with sqlite3.connect(db) as conn:
                for cart, action, expires in claims:
                    micros = int(expires.timestamp() * 1_000_000)
                    row = (cart, f"t_{cart}", statuses[cart], action, micros)
                    conn.execute(insert.format("?"), row)
                conn.execute(_sweep("sqlite"))
                left = {cart for (cart,) in conn.execute("SELECT cart_id FROM paysession_claims")}
            conn.close()
        else:
            with psycopg.connect(db, autocommit=True) as pg:
                for cart, action, expires in claims:
                    row = (cart, f"t_{cart}", statuses[cart], action, expires)
                    pg.execute(insert.format("%s"), row)
                pg.execute(_sweep("postgres"))
                left = {cart for (cart,) in pg.execute("SELECT cart_id FROM paysession_claims")}
        assert left == {"recent", "unfinished", "live"}
