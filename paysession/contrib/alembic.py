"""paysession's schema from an Alembic revision (the ``alembic`` extra:
``pip install 'paysession[alembic]'``).

A revision of the project's own calls :func:`upgrade_schema` with Alembic's ``op``; the
stores' own migrations then create or upgrade paysession's tables (``paysession_*``)
through the migration's connection, in Alembic's transaction: on the pysqlite and
psycopg dialects. A database so migrated is one the store finds current, and one the
store migrated first is left as it is. When a later paysession brings a new schema
version, a new revision calls it again. See ``docs/transactions.md``.
"""

from __future__ import annotations

from paysession.errors import InvalidSessionData, MissingExtra
from paysession.store import migrate_within

try:
    from alembic.operations import Operations
except ImportError as missing:  # the optional extra is not installed
    raise MissingExtra("paysession.contrib.alembic", "alembic") from missing


def upgrade_schema(op: Operations, *, up_to: int | None = None) -> int:
    """Bring paysession's tables to the current schema (or to version ``up_to``) inside
    the transaction of the revision that calls it; returns the version in force.

    InvalidSessionData for a migration run offline (``alembic upgrade --sql``: the
    version in force can only be read from the database) or on a dialect paysession
    does not write through; StoreError and MigrationRefused as the store raises them.
    """
    if op.get_context().as_sql:
        raise InvalidSessionData(
            {
                "op": "paysession's schema is migrated online only: its version in force "
                "is read from the database (run `alembic upgrade` without --sql)"
            }
        )
    connection = op.get_bind()
    if not connection.in_transaction():
        connection.begin()  # so that Alembic's commit is the one that keeps the schema
    driver = connection.connection.driver_connection
    try:
        return migrate_within(driver, up_to=up_to)
    except InvalidSessionData as refused:
        if "connection" not in refused.problems:
            raise
        dialect = connection.dialect
        raise InvalidSessionData(
            {
                "op": f"the {dialect.name}+{dialect.driver} dialect is not one paysession "
                "migrates through: use sqlite+pysqlite or postgresql+psycopg"
            }
        ) from refused


__all__ = ["upgrade_schema"]
