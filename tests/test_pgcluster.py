"""The tests' own PostgreSQL helpers: a test's copy of a database is used again by the
next test only once it holds what the original held, and never when it differs from the
original in more than the rows written to its empty tables."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from paysession import PaymentSessions
from paysession.store import PostgresStore

from . import pgcluster
from .conftest import PostgresServer, migrated


@pytest.fixture(scope="module")
def original(postgres_server: PostgresServer) -> Iterator[str]:
    """A migrated database, made once for the module: the tests copy it and read it,
    and write only to their copies (a test that must change an original makes its
    own)."""
    dsn = postgres_server.kept_database()
    migrated(dsn)
    yield dsn
    postgres_server.drop(dsn)


@pytest.fixture
def copy(postgres_server: PostgresServer, original: str) -> Iterator[str]:
    dsn = postgres_server.kept_database(like=original)
    yield dsn
    postgres_server.drop(dsn)


def write_some(dsn: str) -> str:
    """A session with two records and a provider event; its id."""
    with PostgresStore(dsn) as store:
        sessions = PaymentSessions(store)
        made = sessions.create(cart_id="cart_1", provider_id="stripe", amount=100)
        sessions.fire(made.id, "initiate", data={"id": "pi_1"})
        sessions.reconcile(made.id, "requires_capture", event_id="evt_1")
        return made.id


def run(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement)


def test_a_copy_written_to_is_emptied_back_to_the_original(original: str, copy: str) -> None:
    before = pgcluster.contents(original)
    assert before.rows.keys() == {"paysession_schema"} and "paysession_records" in before.empty
    write_some(copy)
    after = pgcluster.contents(copy)
    assert after != before and "paysession_records" in after.rows
    assert after.sequences != before.sequences  # the records' positions were taken
    assert pgcluster.reset(copy, before)
    assert pgcluster.contents(copy) == before
    write_some(copy)  # and it serves as a fresh copy would: positions from the start
    with psycopg.connect(copy) as conn:
        assert conn.execute("SELECT min(position) FROM paysession_records").fetchone() == (1,)


def test_the_connections_left_open_are_ended(original: str, copy: str) -> None:
    write_some(copy)
    left = psycopg.connect(copy)
    left.execute("UPDATE paysession_sessions SET amount = 1")  # a transaction left open
    pid = left.info.backend_pid
    assert pgcluster.reset(copy, pgcluster.contents(original))
    with psycopg.connect(copy) as conn:  # gone from the server, not only told to go
        # (by its process id: reset's own connection, closed as it returned, may not
        # have left the server yet)
        found = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid = %s",
            (pid,),
        ).fetchone()
    assert found == (0,)
    with pytest.raises(psycopg.OperationalError):
        left.execute("SELECT 1")
    left.close()


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE paysession_schema SET version = 99",
        "ALTER TABLE paysession_sessions ADD COLUMN extra text",
        "ALTER TABLE paysession_sessions ALTER COLUMN cart_id SET DEFAULT 'cart'",
        "ALTER TABLE paysession_provider_events DISABLE TRIGGER paysession_count_anomaly",
        "DROP TRIGGER paysession_count_anomaly ON paysession_provider_events",
        "DROP INDEX paysession_sessions_status",
        "ALTER TABLE paysession_claims DROP CONSTRAINT paysession_claims_action_check",
        "CREATE TABLE elsewhere (x int)",
        "CREATE SCHEMA elsewhere",
        "CREATE FUNCTION nothing() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "ALTER SEQUENCE paysession_records_position_seq INCREMENT BY 2",
        "ALTER TABLE paysession_claims SET (fillfactor = 50)",
        "CREATE TYPE mood AS ENUM ('sad')",
    ],
)
def test_a_copy_changed_otherwise_is_not_used_again(original: str, copy: str, change: str) -> None:
    write_some(copy)
    run(copy, change)
    before = pgcluster.contents(copy)
    assert not pgcluster.reset(copy, pgcluster.contents(original))
    assert pgcluster.contents(copy) == before  # left as it was, to be dropped


def test_a_row_of_the_original_changed_is_not_used_again(
    postgres_server: PostgresServer,
) -> None:
    """An original with rows of its own (a filled store): a copy whose rows of those
    tables changed cannot be emptied back to it."""
    original = postgres_server.kept_database()
    session_id = write_some(original)
    copy = postgres_server.kept_database(like=original)
    try:
        run(copy, f"UPDATE paysession_sessions SET amount = 7 WHERE id = '{session_id}'")
        assert not pgcluster.reset(copy, pgcluster.contents(original))
    finally:
        postgres_server.drop(copy)
        postgres_server.drop(original)
