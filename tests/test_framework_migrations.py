"""paysession's schema from a framework's migration: ``migrate_within`` (the stores' own
migrations, inside the caller's transaction), an Alembic revision and Django's app.

Each way leaves a database the store finds current, with the very schema the store's
own ``migrate()`` makes, and none of them applies anything twice: a database the store
migrated first is left as it is, and the store finds nothing to do after them.
"""

from __future__ import annotations

import io
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from paysession import InvalidSessionData, PaymentSessions
from paysession.store import SessionStore, SqliteStore, migrate_within
from paysession.store.postgres_schema import MIGRATIONS as POSTGRES_MIGRATIONS
from paysession.store.sqlite_schema import MIGRATIONS as SQLITE_MIGRATIONS

from .conftest import StoreFactory, open_store
from .helpers import run_without

CURRENT = {"sqlite": len(SQLITE_MIGRATIONS), "postgres": len(POSTGRES_MIGRATIONS)}


def connect(kind: str, place: str) -> Any:
    if kind == "sqlite":
        return sqlite3.connect(place)
    import psycopg

    return psycopg.connect(place)


def schema(kind: str, place: str) -> dict[str, list[tuple[Any, ...]]]:
    """paysession's tables, columns, indexes, constraints and triggers, as the database's
    catalog has them, and the schema version it records."""
    conn = connect(kind, place)
    try:
        if kind == "sqlite":
            queries = {
                "objects": "SELECT type, name, tbl_name, sql FROM sqlite_master "
                "WHERE name LIKE 'paysession%' ORDER BY type, name",
            }
        else:
            queries = {
                "columns": "SELECT table_name, column_name, data_type, is_nullable, "
                "column_default, is_generated, generation_expression "
                "FROM information_schema.columns WHERE table_schema = 'public' "
                "AND table_name LIKE 'paysession%' ORDER BY 1, 2",
                "indexes": "SELECT i.indexname, i.indexdef, x.indisvalid FROM pg_indexes AS i "
                "JOIN pg_class AS c ON c.relname = i.indexname "
                "JOIN pg_index AS x ON x.indexrelid = c.oid "
                "WHERE i.schemaname = 'public' AND i.tablename LIKE 'paysession%' ORDER BY 1",
                "constraints": "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE connamespace = 'public'::regnamespace "
                "AND conrelid::regclass::text LIKE 'paysession%' ORDER BY 1",
                "triggers": "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
                "WHERE NOT tgisinternal AND tgrelid::regclass::text LIKE 'paysession%' ORDER BY 1",
                "functions": "SELECT proname, prosrc FROM pg_proc "
                "WHERE proname LIKE 'paysession%' ORDER BY 1",
            }
        found = {
            name: [tuple(row) for row in conn.execute(q).fetchall()] for name, q in queries.items()
        }
        has_version = (
            "SELECT 1 FROM sqlite_master WHERE name = 'paysession_schema'"
            if kind == "sqlite"
            else "SELECT 1 WHERE to_regclass('paysession_schema') IS NOT NULL"
        )
        found["version"] = (
            [tuple(row) for row in conn.execute("SELECT version FROM paysession_schema")]
            if conn.execute(has_version).fetchone()
            else []
        )
        return found
    finally:
        conn.close()


def migrated(kind: str, place: str) -> None:
    """The store's own migrate() run on ``place``."""
    store = open_store(kind, place)
    store.migrate()
    store.close()


def not_migrating(kind: str, place: str) -> SessionStore:
    """A store opened not to migrate: it refuses a database whose schema is not current."""
    if kind == "sqlite":
        return SqliteStore(place, migrate=False)
    from paysession.store.postgres import PostgresStore

    return PostgresStore(place, migrate=False)


def store_made_schema(factory: StoreFactory, place: str) -> dict[str, list[tuple[Any, ...]]]:
    """The schema the store's own migrate() makes, on a database of its own."""
    migrated(factory.kind, place)
    return schema(factory.kind, place)


@pytest.fixture
def other_place(empty: StoreFactory, tmp_path: Any, request: pytest.FixtureRequest) -> str:
    """A second, empty database of the same kind, for the store's own schema."""
    if empty.kind == "sqlite":
        return str(tmp_path / "by-the-store.db")
    server = request.getfixturevalue("postgres_server")
    dsn: str = server.new_database()
    return dsn


class TestMigrateWithin:
    def test_the_schema_is_the_stores_and_commits_with_the_caller(
        self, empty: StoreFactory, other_place: str
    ) -> None:
        kind, place = empty.kind, empty.place
        conn = connect(kind, place)
        conn.execute("CREATE TABLE shop_orders (cart_id TEXT PRIMARY KEY)")
        assert migrate_within(conn) == CURRENT[kind]
        assert schema(kind, place)["version"] == []  # nothing committed yet
        conn.commit()
        conn.close()
        assert schema(kind, place) == store_made_schema(empty, other_place)
        sessions = PaymentSessions(not_migrating(kind, place))
        session = sessions.create(cart_id="cart_1", provider_id="stripe", amount=100)
        assert sessions.get(session.id).cart_id == "cart_1"

    def test_a_rollback_leaves_no_table(self, empty: StoreFactory) -> None:
        kind, place = empty.kind, empty.place
        conn = connect(kind, place)
        migrate_within(conn)
        conn.rollback()
        conn.close()
        assert schema(kind, place) == {key: [] for key in schema(kind, place)}

    def test_a_current_database_is_left_as_it_is(self, empty: StoreFactory) -> None:
        kind, place = empty.kind, empty.place
        sessions = PaymentSessions(empty())
        session = sessions.create(cart_id="cart_2", provider_id="stripe", amount=100)
        before = schema(kind, place)
        conn = connect(kind, place)
        assert migrate_within(conn) == CURRENT[kind]
        conn.commit()
        conn.close()
        assert schema(kind, place) == before
        assert sessions.get(session.id).cart_id == "cart_2"

    def test_up_to_stops_at_a_version_and_the_store_goes_on_from_there(
        self, empty: StoreFactory, other_place: str
    ) -> None:
        kind, place = empty.kind, empty.place
        conn = connect(kind, place)
        assert migrate_within(conn, up_to=3) == 3
        assert migrate_within(conn, up_to=2) == 3  # already past it: left as it is
        conn.commit()
        conn.close()
        assert schema(kind, place)["version"] == [(3,)]
        migrated(kind, place)
        assert schema(kind, place) == store_made_schema(empty, other_place)

    @pytest.mark.parametrize("up_to", [0, -1, 99, True, "3"])
    def test_a_version_that_is_not_one_is_refused(self, empty: StoreFactory, up_to: Any) -> None:
        conn = connect(empty.kind, empty.place)
        with pytest.raises(InvalidSessionData) as refused:
            migrate_within(conn, up_to=up_to)
        conn.close()
        assert "up_to" in refused.value.problems

    def test_not_a_connection(self) -> None:
        with pytest.raises(InvalidSessionData) as refused:
            migrate_within(object())
        assert "connection" in refused.value.problems


DOCS = Path(__file__).resolve().parent.parent / "docs" / "transactions.md"

ENV_PY = """
from alembic import context
from sqlalchemy import create_engine

url = context.config.get_main_option("sqlalchemy.url")
if context.is_offline_mode():
    context.configure(url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
"""


def documented_revision() -> str:
    """The Alembic revision docs/transactions.md shows."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    (revision,) = [block for block in blocks if "upgrade_schema(op)" in block]
    return revision


def alembic_config(factory: StoreFactory, folder: Path, revision: str) -> Config:
    """A real Alembic environment in ``folder`` whose one revision is ``revision``, on the
    store's database (pysqlite or psycopg)."""
    (folder / "versions").mkdir(parents=True)
    (folder / "env.py").write_text(ENV_PY)
    (folder / "versions" / "0001_orders_and_payments.py").write_text(revision)
    if factory.kind == "sqlite":
        url = sa.URL.create("sqlite+pysqlite", database=factory.place)
    else:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(factory.place)
        url = sa.URL.create(
            "postgresql+psycopg",
            username=str(info["user"]),
            host=str(info["host"]),
            port=int(info["port"]),
            database=str(info["dbname"]),
        )
    config = Config(stdout=io.StringIO())
    config.set_main_option("script_location", str(folder))
    config.set_main_option("sqlalchemy.url", url.render_as_string(hide_password=False))
    return config


def alembic_version(kind: str, place: str) -> list[tuple[Any, ...]]:
    conn = connect(kind, place)
    try:
        return [tuple(row) for row in conn.execute("SELECT version_num FROM alembic_version")]
    finally:
        conn.close()


class TestAlembic:
    """``upgrade_schema(op)`` in a revision, run by Alembic itself."""

    def test_a_database_upgraded_by_alembic_is_current_for_the_store(
        self, empty: StoreFactory, other_place: str, tmp_path: Path
    ) -> None:
        kind, place = empty.kind, empty.place
        command.upgrade(alembic_config(empty, tmp_path / "alembic", documented_revision()), "head")
        assert alembic_version(kind, place) == [("0001_orders_and_payments",)]
        assert schema(kind, place) == store_made_schema(empty, other_place)
        sessions = PaymentSessions(not_migrating(kind, place))
        session = sessions.create(cart_id="cart_al", provider_id="stripe", amount=100)
        conn = connect(kind, place)
        mark = "?" if kind == "sqlite" else "%s"
        conn.execute(f"INSERT INTO orders VALUES ({mark}, {mark})", ("cart_al", session.id))
        conn.commit()
        conn.close()

    def test_a_database_the_store_migrated_is_left_as_it_is(
        self, empty: StoreFactory, tmp_path: Path
    ) -> None:
        kind, place = empty.kind, empty.place
        sessions = PaymentSessions(empty())
        session = sessions.create(cart_id="cart_kept", provider_id="stripe", amount=100)
        before = schema(kind, place)
        command.upgrade(alembic_config(empty, tmp_path / "alembic", documented_revision()), "head")
        assert schema(kind, place) == before
        assert alembic_version(kind, place) == [("0001_orders_and_payments",)]
        assert sessions.get(session.id).cart_id == "cart_kept"

    def test_a_revision_that_fails_leaves_no_table_of_paysessions(
        self, empty: StoreFactory, tmp_path: Path
    ) -> None:
        """The schema is made in Alembic's transaction: a failure later in the revision
        rolls it back with the revision, which is not recorded as applied."""
        kind, place = empty.kind, empty.place
        failing = documented_revision().replace(
            "    upgrade_schema(op)",
            '    upgrade_schema(op)\n    raise RuntimeError("the next step failed")',
        )
        assert failing != documented_revision()
        with pytest.raises(RuntimeError):
            command.upgrade(alembic_config(empty, tmp_path / "alembic", failing), "head")
        found = schema(kind, place)
        assert found == {key: [] for key in found}
        conn = connect(kind, place)
        has_version_table = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'"
            if kind == "sqlite"
            else "SELECT 1 WHERE to_regclass('alembic_version') IS NOT NULL"
        ).fetchone()
        conn.close()
        assert has_version_table is None or alembic_version(kind, place) == []

    def test_offline_is_refused(self, empty: StoreFactory, tmp_path: Path) -> None:
        config = alembic_config(empty, tmp_path / "alembic", documented_revision())
        with pytest.raises(InvalidSessionData) as refused:
            command.upgrade(config, "head", sql=True)
        assert "--sql" in refused.value.problems["op"]
        found = schema(empty.kind, empty.place)
        assert found == {key: [] for key in found}

    def test_a_missing_extra_is_named(self) -> None:
        done = run_without(
            "alembic",
            "from paysession.errors import MissingExtra\n"
            "try:\n"
            "    import paysession.contrib.alembic\n"
            "except MissingExtra as missing:\n"
            "    print(missing)\n",
        )
        assert (done.returncode, done.stderr) == (0, "")
        assert done.stdout.strip() == (
            "paysession.contrib.alembic needs the alembic extra: pip install 'paysession[alembic]'"
        )
