"""``PaymentSessions.within`` on Django's connection, and paysession's Django app.

Django's settings and app registry are the process's: the scenarios run in a Django
process of their own (``tests/django_shop.py``), one for each kind of database, so no
Django state is left in the test process, and this test reads the database itself
afterwards. On SQLite and PostgreSQL (psycopg 3): commit keeps the order and the move
and runs the hooks through ``transaction.on_commit``; a rollback leaves neither and
runs none; a lost race raises at once; a process killed before its commit leaves
nothing; ``manage.py migrate`` makes the stores' own schema, and applies nothing twice.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from paysession import PaymentSessions, PaymentSessionStatus

from .conftest import StoreFactory
from .helpers import kill_once_moved, run_without
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
from .test_within import store_fill as store_fill  # the fixture: their orders table made once

S = PaymentSessionStatus
ROOT = Path(__file__).resolve().parent.parent


class DjangoShop:
    """``python -m tests.django_shop serve KIND``: a Django process configured once for
    databases of one kind, running the scenarios it is sent one after another."""

    def __init__(self, kind: str, log: Path) -> None:
        self.kind = kind
        self._log_path = log
        self._log: IO[bytes] = log.open("wb")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.django_shop", "serve", kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=ROOT,
        )

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """The answer to one scenario; the process's stderr in the error if it died."""
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(request) + "\n")
        process.stdin.flush()
        line = process.stdout.readline()
        assert line, f"the Django shop ended: {self._log_path.read_text()}"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stop(self) -> None:
        process = self._process
        if process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        self._log.close()


class DjangoShops:
    """A Django shop for each kind of database, started when first asked for."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._running: dict[str, DjangoShop] = {}
        self._started = 0

    def ask(self, kind: str, request: dict[str, Any]) -> dict[str, Any]:
        shop = self._running.get(kind)
        if shop is None:
            self._started += 1
            shop = DjangoShop(kind, self._folder / f"django-shop-{kind}-{self._started}.log")
            self._running[kind] = shop
        try:
            answer = shop.ask(request)
        except BaseException:
            del self._running[kind]  # it died: the next scenario gets a fresh one
            shop.stop()
            raise
        if "error" in answer:
            # A scenario that raised may have left Django's state half done: the next one
            # gets a fresh process.
            del self._running[kind]
            shop.stop()
        return answer

    def stop(self) -> None:
        while self._running:
            self._running.popitem()[1].stop()


@pytest.fixture(scope="session")
def django_shops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DjangoShops]:
    shops = DjangoShops(tmp_path_factory.mktemp("django-shops"))
    try:
        yield shops
    finally:
        shops.stop()


def django_shop(
    shops: DjangoShops,
    scenario: str,
    factory: StoreFactory,
    *args: str,
    stderr: str = "none",
    isolation: str | None = None,
) -> dict[str, Any]:
    """Run ``scenario`` of tests/django_shop.py in the Django shop for the store's kind,
    on the store's database; what it returned (with what it logged, under ``stderr``,
    when it may log)."""
    answer = shops.ask(
        factory.kind,
        {"scenario": scenario, "place": factory.place, "args": args, "isolation": isolation},
    )
    assert "error" not in answer, answer["error"] + answer["stderr"]
    found: dict[str, Any] = answer["found"]
    if stderr == "none":
        assert answer["stderr"] == ""
    else:
        found["stderr"] = answer["stderr"]
    return found


class TestWithinDjango:
    store_kinds = ("sqlite", "postgres")

    def test_commit_keeps_the_order_and_the_move(
        self, shop: StoreFactory, django_shops: DjangoShops
    ) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_1")
        seen = django_shop(django_shops, "commit", shop, session_id)
        assert seen["status_inside"] == "authorized"
        assert seen["inside"] == []  # on_commit waits for the block's commit
        assert seen["after"] == ["authorize"]
        assert sessions.get(session_id).status is S.AUTHORIZED
        assert orders(shop) == [("cart_1", session_id)]
        assert sessions.verify(session_id).ok

    def test_rollback_leaves_nothing_and_no_hook_runs(
        self, shop: StoreFactory, django_shops: DjangoShops
    ) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_2")
        before = sessions.history(session_id)
        seen = django_shop(django_shops, "rollback", shop, session_id)
        assert seen["after"] == []
        assert sessions.history(session_id) == before
        assert sessions.provider_events(session_id=session_id) == []
        assert orders(shop) == []
        record = sessions.fire(session_id, "authorize", idempotency_key="auth-2")
        assert record.seq == before[-1].seq + 1

    def test_a_lost_race_raises_when_the_move_is_made(
        self, shop: StoreFactory, django_shops: DjangoShops
    ) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_4")
        seen_version = sessions.version(session_id)
        winner = sessions.fire(session_id, "require_more", actor="webhook")
        seen = django_shop(django_shops, "lost_race", shop, session_id, str(seen_version))
        assert seen == {"raised": "ConcurrentUpdate", "after": []}
        assert sessions.history(session_id)[-1] == winner
        assert orders(shop) == []

    def test_a_nested_block_rolled_back_takes_its_move_and_its_hook(
        self, shop: StoreFactory, django_shops: DjangoShops
    ) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_sp")
        seen = django_shop(django_shops, "savepoint", shop, session_id)
        assert seen["after"] == ["require_more"]
        assert sessions.get(session_id).status is S.REQUIRES_MORE
        assert sessions.get(session_id).amount == 1500
        assert orders(shop) == [("cart_sp", session_id)]

    def test_a_failing_hook_is_logged_and_the_others_run(
        self, shop: StoreFactory, django_shops: DjangoShops
    ) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_h")
        seen = django_shop(django_shops, "failing_hook", shop, session_id, stderr="logged")
        assert seen["after"] == ["require_more", "authorize"]
        logged = seen["stderr"]
        assert logged.count("Error calling paysession's after-hooks in on_commit()") == 1
        assert "HookError: 1 hook(s) failed after 'require_more'" in logged
        assert sessions.get(session_id).status is S.AUTHORIZED

    def test_what_the_view_refuses(self, shop: StoreFactory, django_shops: DjangoShops) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_r")
        seen = django_shop(django_shops, "refusals", shop, session_id)
        assert "atomic()" in seen["outside"]["connection"]
        assert "atomic block ends" in seen["commit"]["commit"]
        assert seen["after"] == ["require_more"]

    def test_killed_before_the_commit_leaves_neither(self, shop: StoreFactory) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_7")
        before = sessions.history(session_id)
        kill_once_moved(["-m", "tests.django_shop", "killed", shop.kind, shop.place, session_id])
        assert sessions.history(session_id) == before
        assert orders(shop) == []
        assert sessions.fire(session_id, "authorize").seq == before[-1].seq + 1


class TestDjangoPostgresIsolation:
    """Django's OPTIONS isolation_level: the levels psycopg's connection supports."""

    store_kinds = ("postgres",)

    @pytest.mark.parametrize("level", ["READ_COMMITTED", "REPEATABLE_READ", "SERIALIZABLE"])
    def test_each_level_commits_the_order_and_the_move(
        self, shop: StoreFactory, level: str, django_shops: DjangoShops
    ) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_1")
        seen = django_shop(django_shops, "commit", shop, session_id, isolation=level)
        assert seen["after"] == ["authorize"]
        assert sessions.get(session_id).status is S.AUTHORIZED
        assert orders(shop) == [("cart_1", session_id)]

    @pytest.mark.parametrize("level", ["REPEATABLE_READ", "SERIALIZABLE"])
    def test_a_snapshot_level_loses_its_race_at_once(
        self, shop: StoreFactory, level: str, django_shops: DjangoShops
    ) -> None:
        sessions = PaymentSessions(shop())
        session_id = initiated(sessions, "cart_snap")
        seen = django_shop(django_shops, "snapshot_race", shop, session_id, isolation=level)
        assert seen == {
            "before": "pending",
            "raised": "ConcurrentUpdate",
            "after": ["require_more"],
        }
        assert sessions.get(session_id).status is S.REQUIRES_MORE


class TestDjangoMigrations:
    """``manage.py migrate`` with paysession's app: the stores' own schema, applied once."""

    def test_a_database_migrated_by_django_is_current_for_the_store(
        self, empty: StoreFactory, other_place: str, django_shops: DjangoShops
    ) -> None:
        kind, place = empty.kind, empty.place
        assert django_shop(django_shops, "migrate", empty) == {"applied": ["0001_initial"]}
        migrated(kind, other_place)
        assert schema(kind, place) == schema(kind, other_place)
        sessions = PaymentSessions(not_migrating(kind, place))
        session = sessions.create(cart_id="cart_dj", provider_id="stripe", amount=100)
        assert sessions.get(session.id).cart_id == "cart_dj"

    def test_a_database_the_store_migrated_is_left_as_it_is(
        self, empty: StoreFactory, django_shops: DjangoShops
    ) -> None:
        kind, place = empty.kind, empty.place
        sessions = PaymentSessions(empty())
        session = sessions.create(cart_id="cart_kept", provider_id="stripe", amount=100)
        conn = connect(kind, place)
        conn.execute(ORDERS)
        conn.commit()
        conn.close()
        before = schema(kind, place)
        assert django_shop(django_shops, "migrate", empty) == {"applied": ["0001_initial"]}
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
