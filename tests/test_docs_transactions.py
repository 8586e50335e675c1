"""docs/transactions.md's examples (the FastAPI + SQLAlchemy checkout, the Django view,
the Alembic revision) against PostgreSQL: tests/test_readme.py runs them on SQLite.

Slow: it runs the page again, on the other backend, in an interpreter of its own (the
page's imports alone, FastAPI, SQLAlchemy, Alembic and Django, are 1.3 s of CPU). What
the examples do on PostgreSQL is in the quick loop too: tests/test_within_sqlalchemy.py,
tests/test_within_django.py and tests/test_framework_migrations.py on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from .helpers import run_doc_page

pytestmark = pytest.mark.slow

PAGE = Path(__file__).resolve().parent.parent / "docs" / "transactions.md"


def test_the_examples_run_on_postgresql(postgres_dsn: str, tmp_path: Path) -> None:
    done = run_doc_page(PAGE, tmp_path, {"SHOP_POSTGRES_DSN": postgres_dsn})
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.splitlines()[-1]) >= 4
    with psycopg.connect(postgres_dsn) as conn:
        placed = conn.execute("SELECT cart_id FROM shop_orders ORDER BY cart_id").fetchall()
        version = conn.execute("SELECT version FROM paysession_schema").fetchone()
        applied = conn.execute(
            "SELECT name FROM django_migrations WHERE app = 'paysession'"
        ).fetchall()
    assert placed == [("cart_88",), ("cart_89",)]
    assert version is not None and version[0] >= 8
    assert applied == [("0001_initial",)]
