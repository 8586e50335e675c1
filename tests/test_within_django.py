"""``PaymentSessions.within`` on Django's connection, and paysession's Django app.

Django's settings and app registry are the process's: each scenario runs in a fresh
interpreter (``tests/django_shop.py``), so no Django state is left in the test
process, and this test reads the database itself afterwards. On SQLite and PostgreSQL
(psycopg 3): commit keeps the order and the move and runs the hooks through
``transaction.on_commit``; a rollback leaves neither and runs none; a lost race raises
at once; a process killed before its commit leaves nothing; ``manage.py migrate``
makes the stores' own schema, and applies nothing twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from paysession import PaymentSessions, PaymentSessionStatus

from .conftest import StoreFactory
from .helpers import run_without
from .test_framework_migrations import (
    CURRENT,
    connect,
    migrated,
    not_migrating,
    schema,
)
from .test_framework_migrations import other_place as other_place  # the fixture
from .test_within import ORDERS, initiated, orders
from .test_within import shop as shop  # the fixture: the store's database and the shop's orders

S = PaymentSessionStatus
ROOT = Path(__file__).resolve().parent.parent


def django_shop(
    scenario: str,
    factory: StoreFactory,
    *args: str,
    stderr: str = "none",
    isolation: str | None = None,
) -> dict[str, Any]:
    """Run ``scenario`` of tests/django_shop.py in a fresh interpreter on the store's
    database; what it printed (with what it logged, under ``stderr``, when it may log)."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.django_shop", scenario, factory.kind, factory.place, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "DJANGO_SHOP_ISOLATION": isolation or ""},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    if stderr == "none":
        assert done.stderr == ""
    else:
        found["stderr"] = done.stderr
    return found


class TestWithinDjango:
    store_kinds = ("sqlite", "postgres")

    def test_commit_keeps_the_order_and_the_move(self, shop: StoreFactory) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_1")
        seen = django_shop("commit", shop, session_id)
        assert seen["status_inside"] == "authorized"
        assert seen["inside"] == []  # on_commit waits for the block's commit
        assert seen["after"] == ["authorize"]
        assert sessions.get(session_id).status is S.AUTHORIZED
        assert orders(shop) == [("cart_1", session_id)]
        assert sessions.verify(session_id).ok

    def test_rollback_leaves_nothing_and_no_hook_runs(self, shop: StoreFactory) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_2")
        before = sessions.history(session_id)
        seen = django_shop("rollback", shop, session_id)
        assert seen["after"] == []
        assert sessions.history(session_id) == before
        assert sessions.provider_events(session_id=session_id) == []
        assert orders(shop) == []
        record = sessions.fire(session_id, "authorize", idempotency_key="auth-2")
        assert record.seq == before[-1].seq + 1

    def test_a_lost_race_raises_when_the_move_is_made(self, shop: StoreFactory) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_4")
        seen_version = sessions.version(session_id)
        winner = sessions.fire(session_id, "require_more", actor="webhook")
        seen = django_shop("lost_race", shop, session_id, str(seen_version))
        assert seen == {"raised": "ConcurrentUpdate", "after": []}
        assert sessions.history(session_id)[-1] == winner
        assert orders(shop) == []

    def test_a_nested_block_rolled_back_takes_its_move_and_its_hook(
        self, shop: StoreFactory
    ) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_sp")
        seen = django_shop("savepoint", shop, session_id)
        assert seen["after"] == ["require_more"]
        assert sessions.get(session_id).status is S.REQUIRES_MORE
        assert sessions.get(session_id).amount == 1500
        assert orders(shop) == [("cart_sp", session_id)]

    def test_a_failing_hook_is_logged_and_the_others_run(self, shop: StoreFactory) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_h")
        seen = django_shop("failing_hook", shop, session_id, stderr="logged")
        assert seen["after"] == ["require_more", "authorize"]
        logged = seen["stderr"]
        assert logged.count("Error calling paysession's after-hooks in on_commit()") == 1
        assert "HookError: 1 hook(s) failed after 'require_more'" in logged
        assert sessions.get(session_id).status is S.AUTHORIZED

    def test_what_the_view_refuses(self, shop: StoreFactory) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_r")
        seen = django_shop("refusals", shop, session_id)
        assert "atomic()" in seen["outside"]["connection"]
        assert "atomic block ends" in seen["commit"]["commit"]
        assert seen["after"] == ["require_more"]

    def test_killed_before_the_commit_leaves_neither(self, shop: StoreFactory) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_7")
        before = sessions.history(session_id)
        command = ["-m", "tests.django_shop", "killed", shop.kind, shop.place, session_id]
        child = subprocess.Popen(
            [sys.executable, *command],
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == b"moved"
            child.send_signal(signal.SIGKILL)
        finally:
            child.wait(timeout=60)
        assert child.returncode == -signal.SIGKILL
        assert sessions.history(session_id) == before
        assert orders(shop) == []
        assert sessions.fire(session_id, "authorize").seq == before[-1].seq + 1


class TestDjangoPostgresIsolation:
    """Django's OPTIONS isolation_level: the levels psycopg's connection supports."""

    store_kinds = ("postgres",)

    @pytest.mark.parametrize("level", ["READ_COMMITTED", "REPEATABLE_READ", "SERIALIZABLE"])
    def test_each_level_commits_the_order_and_the_move(
        self, shop: StoreFactory, level: str
    ) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_1")
        seen = django_shop("commit", shop, session_id, isolation=level)
        assert seen["after"] == ["authorize"]
        assert sessions.get(session_id).status is S.AUTHORIZED
        assert orders(shop) == [("cart_1", session_id)]

    @pytest.mark.parametrize("level", ["REPEATABLE_READ", "SERIALIZABLE"])
    def test_a_snapshot_level_loses_its_race_at_once(self, shop: StoreFactory, level: str) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_snap")
        seen = django_shop("snapshot_race", shop, session_id, isolation=level)
        assert seen == {
            "before": "pending",
            "raised": "ConcurrentUpdate",
            "after": ["require_more"],
        }
        assert sessions.get(session_id).status is S.REQUIRES_MORE


class TestDjangoMigrations:
    """``manage.py migrate`` with paysession's app: the stores' own schema, applied once."""

    def test_a_database_migrated_by_django_is_current_for_the_store(
        self, empty: StoreFactory, other_place: str
    ) -> None:
        kind, place = empty.kind, empty.place
        assert django_shop("migrate", empty) == {"applied": ["0001_initial"]}
        migrated(kind, other_place)
        assert schema(kind, place) == schema(kind, other_place)
        sessions = PaymentSessions(not_migrating(kind, place))
        session = sessions.create(cart_id="cart_dj", provider_id="stripe", amount=100)
        assert sessions.get(session.id).cart_id == "cart_dj"

    def test_a_database_the_store_migrated_is_left_as_it_is(self, empty: StoreFactory) -> None:
        kind, place = empty.kind, empty.place
        sessions = PaymentSessions(empty())
        session = sessions.create(cart_id="cart_kept", provider_id="stripe", amount=100)
        conn = connect(kind, place)
        conn.execute(ORDERS)
        conn.commit()
        conn.close()
        before = schema(kind, place)
        assert django_shop("migrate", empty) == {"applied": ["0001_initial"]}
        assert schema(kind, place) == before
        assert sessions.get(session.id).cart_id == "cart_kept"

    def test_the_newest_migration_brings_the_current_schema(self) -> None:
        """A new schema version of a store needs a Django migration bringing it."""
        migrations = sorted((ROOT / "paysession/contrib/django/migrations").glob("0*.py"))
        newest = migrations[-1].read_text()
        assert f"sqlite={CURRENT['sqlite']}" in newest
        assert f"postgresql={CURRENT['postgres']}" in newest


class TestDjangoRefusals:
    def test_not_a_django_connection_nor_one_of_its_backends(self) -> None:
        """An object that is no Django connection, and a connection of a backend
        paysession does not write through (here Django's dummy one, with no database)."""
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "import django\n"
                "from django.conf import settings\n"
                "settings.configure()\n"
                "django.setup()\n"
                "from django.db import connection\n"
                "from paysession import InvalidSessionData\n"
                "from paysession.contrib.django import joined\n"
                "for given in (object(), connection):\n"
                "    try:\n"
                "        joined(given)\n"
                "    except InvalidSessionData as error:\n"
                "        print(error.problems['connection'])\n",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
        assert (done.returncode, done.stderr) == (0, "")
        other, dummy = done.stdout.splitlines()
        assert other.startswith("must be a Django connection")
        assert "backend is not one paysession writes through" in dummy

    def test_a_missing_extra_is_named(self) -> None:
        done = run_without(
            "django",
            "from paysession.errors import MissingExtra\n"
            "try:\n"
            "    import paysession.contrib.django\n"
            "except MissingExtra as missing:\n"
            "    print(missing)\n",
        )
        assert (done.returncode, done.stderr) == (0, "")
        assert done.stdout.strip() == (
            "paysession.contrib.django needs the django extra: pip install 'paysession[django]'"
        )
