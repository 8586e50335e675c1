"""A Django shop, run in a process of its own by tests/test_within_django.py.

Django's settings and app registry belong to the process, so nothing of Django's is
configured in the test process. ``python -m tests.django_shop serve KIND`` configures
Django once for databases of KIND and then runs scenarios one after another, each asked
for by a line of JSON on stdin (``{"scenario", "place", "args", "isolation"}``) and
answered by one on stdout: what it saw, and what it wrote to stderr. Between two
scenarios the default connection is closed and pointed at the next one's database, as
Django's own test runner points it at the test database it makes; each scenario has a
store, hooks and a warnings registry of its own. ``python -m tests.django_shop SCENARIO
KIND PLACE ARGS...`` runs one scenario in a fresh interpreter instead (a process killed
in the middle of its block). The test reads the database for the rest.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import django
from django.conf import settings
from django.db import connection, transaction

from paysession import ConcurrentUpdate, Hooks, InvalidSessionData, PaymentSessions, TransitionEvent
from paysession.store import SessionStore, SqliteStore

ORDER = "INSERT INTO shop_orders VALUES (%s, %s)"


def database(kind: str, place: str, isolation: str | None = None) -> dict[str, Any]:
    """Django's DATABASES entry for the store's database: a SQLite file, or a DSN (at
    psycopg's isolation level named ``isolation``, when one is)."""
    if kind == "sqlite":
        # IMMEDIATE: each atomic block takes the write lock first, as paysession's
        # own transactions do, so no race is lost inside it after its first read.
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": place,
            "OPTIONS": {"transaction_mode": "IMMEDIATE"},
        }
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(place)
    found: dict[str, Any] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": info["dbname"],
        "USER": info.get("user", ""),
        "HOST": info.get("host", ""),
        "PORT": str(info.get("port", "")),
        "OPTIONS": {},
    }
    if isolation:
        from psycopg import IsolationLevel

        found["OPTIONS"] = {"isolation_level": IsolationLevel[isolation]}
    return found


def configure(kind: str, place: str, isolation: str | None = None) -> None:
    settings.configure(
        DATABASES={"default": database(kind, place, isolation)},
        INSTALLED_APPS=["paysession.contrib.django"],
        USE_TZ=True,
    )
    django.setup()


def point_at(kind: str, place: str, isolation: str | None = None) -> None:
    """The default connection closed, and its settings changed in place to the next
    database's: the backends read them when they next connect."""
    connection.close()
    connection.settings_dict.update(database(kind, place, isolation))


def store(kind: str, place: str) -> SessionStore:
    if kind == "sqlite":
        return SqliteStore(place)
    from paysession.store.postgres import PostgresStore

    return PostgresStore(place)


class Seen:
    """The after-hooks run, by trigger."""

    def __init__(self) -> None:
        self.triggers: list[str] = []
        self.hooks = Hooks()

        @self.hooks.after()
        def seen(event: TransitionEvent) -> None:
            self.triggers.append(event.trigger)


def commit(sessions: PaymentSessions, seen: Seen, session_id: str) -> dict[str, Any]:
    with transaction.atomic():
        view = sessions.within(connection)
        view.fire(session_id, "authorize", actor="checkout", idempotency_key="auth-1")
        with connection.cursor() as cursor:
            cursor.execute(ORDER, ["cart_1", session_id])
        inside = list(seen.triggers)
        status = view.get(session_id).status.value
    return {"inside": inside, "status_inside": status, "after": seen.triggers}


def rollback(sessions: PaymentSessions, seen: Seen, session_id: str) -> dict[str, Any]:
    """Rolled back twice: by an exception leaving the block, then by the view's
    rollback(), which marks the block to roll back."""
    try:
        with transaction.atomic():
            view = sessions.within(connection)
            view.fire(session_id, "authorize", idempotency_key="auth-2")
            view.reconcile(session_id, "requires_capture", event_id="evt_2")
            with connection.cursor() as cursor:
                cursor.execute(ORDER, ["cart_2", session_id])
            raise LookupError("out of stock")
    except LookupError:
        pass
    with transaction.atomic():
        view = sessions.within(connection)
        view.fire(session_id, "authorize", idempotency_key="auth-2")
        with connection.cursor() as cursor:
            cursor.execute(ORDER, ["cart_2", session_id])
        view.rollback()
    return {"after": seen.triggers}


def lost_race(
    sessions: PaymentSessions, seen: Seen, session_id: str, version: str
) -> dict[str, Any]:
    raised = None
    with transaction.atomic():
        view = sessions.within(connection)
        with connection.cursor() as cursor:
            cursor.execute(ORDER, ["cart_4", session_id])
        try:
            view.fire(session_id, "authorize", expected_version=int(version))
        except ConcurrentUpdate as error:
            raised = type(error).__name__
        view.rollback()
    return {"raised": raised, "after": seen.triggers}


def snapshot_race(sessions: PaymentSessions, seen: Seen, session_id: str) -> dict[str, Any]:
    """The block reads the session (its snapshot, at repeatable read or serializable);
    another writer moves it and commits; the block's move raises ConcurrentUpdate."""
    raised = None
    with transaction.atomic():
        view = sessions.within(connection)
        before = view.get(session_id).status.value
        sessions.fire(session_id, "require_more", actor="webhook")  # its own transaction
        try:
            view.fire(session_id, "authorize")
        except ConcurrentUpdate as error:
            raised = type(error).__name__
        view.rollback()
    return {"before": before, "raised": raised, "after": seen.triggers}


def savepoint(sessions: PaymentSessions, seen: Seen, session_id: str) -> dict[str, Any]:
    """A nested block rolled back takes its move, and Django drops its hook."""
    with transaction.atomic():
        view = sessions.within(connection)
        with transaction.atomic():
            view.fire(session_id, "require_more")
        try:
            with transaction.atomic():
                view.fire(session_id, "update", amount=1600)
                raise LookupError("changed their mind")
        except LookupError:
            pass
        with connection.cursor() as cursor:
            cursor.execute(ORDER, ["cart_sp", session_id])
    return {"after": seen.triggers}


def failing_hook(sessions: PaymentSessions, seen: Seen, session_id: str) -> dict[str, Any]:
    """A hook that fails after the commit is logged; the next move's hooks still run,
    and the block ends as committed, without an error."""

    @seen.hooks.after("require_more")
    def fails(event: TransitionEvent) -> None:
        raise RuntimeError("mail server down")

    # Django's log of the failing callback, on stderr as logging.basicConfig would show
    # it; for this scenario only.
    shown = logging.StreamHandler(sys.stderr)
    shown.setLevel(logging.ERROR)
    shown.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
    logging.getLogger().addHandler(shown)
    try:
        with transaction.atomic():
            view = sessions.within(connection)
            view.fire(session_id, "require_more")
            view.fire(session_id, "authorize")
    finally:
        logging.getLogger().removeHandler(shown)
    return {"after": seen.triggers}


def killed(sessions: PaymentSessions, seen: Seen, session_id: str) -> dict[str, Any]:
    with transaction.atomic():
        view = sessions.within(connection)
        view.fire(session_id, "authorize", actor="checkout")
        with connection.cursor() as cursor:
            cursor.execute(ORDER, ["cart_7", session_id])
        print("moved", flush=True)
        time.sleep(120)
    return {}


def refusals(sessions: PaymentSessions, seen: Seen, session_id: str) -> dict[str, Any]:
    """What the view refuses: a connection outside an atomic block, and a commit
    inside one."""
    found: dict[str, Any] = {}
    try:
        sessions.within(connection)
    except InvalidSessionData as error:
        found["outside"] = error.problems
    with transaction.atomic():
        view = sessions.within(connection)
        try:
            view.commit()
        except InvalidSessionData as error:
            found["commit"] = error.problems
        view.fire(session_id, "require_more")
    found["after"] = seen.triggers
    return found


def migrate() -> dict[str, Any]:
    """``manage.py migrate``, twice: the second finds nothing to do."""
    from django.core.management import call_command
    from django.db.migrations.recorder import MigrationRecorder

    call_command("migrate", verbosity=0)
    call_command("migrate", verbosity=0)
    applied = MigrationRecorder(connection).applied_migrations()
    return {"applied": sorted(name for app, name in applied if app == "paysession")}


SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {
    "commit": commit,
    "rollback": rollback,
    "lost_race": lost_race,
    "snapshot_race": snapshot_race,
    "savepoint": savepoint,
    "failing_hook": failing_hook,
    "killed": killed,
    "refusals": refusals,
}


def run(scenario: str, kind: str, place: str, *args: str) -> dict[str, Any]:
    """``scenario`` on the database Django's default connection is configured for."""
    if scenario == "migrate":
        return migrate()
    seen = Seen()
    opened = store(kind, place)
    try:
        return SCENARIOS[scenario](PaymentSessions(opened, hooks=seen.hooks), seen, *args)
    finally:
        opened.close()


SCENARIO_SECONDS = 120
"""How long a scenario may take before the server stops (SIGALRM), so that the test
waiting for its answer sees it gone instead of waiting for ever."""


def serve(kind: str) -> None:
    """Scenarios asked for on stdin, one line of JSON each, answered on stdout."""
    configured = False
    answers = sys.stdout
    for line in sys.stdin:
        asked = json.loads(line)
        place, isolation = asked["place"], asked.get("isolation")
        if configured:
            point_at(kind, place, isolation)
        else:
            configure(kind, place, isolation)
            configured = True
        said = io.StringIO()
        answer: dict[str, Any] = {}
        signal.alarm(SCENARIO_SECONDS)
        try:
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(said),
                warnings.catch_warnings(),  # and so each scenario warns as a fresh process
            ):
                answer["found"] = run(asked["scenario"], kind, place, *asked["args"])
        except Exception:
            answer["error"] = traceback.format_exc()
        finally:
            signal.alarm(0)
            connection.close()
        answer["stderr"] = said.getvalue()
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


def main(argv: list[str]) -> None:
    if argv[0] == "serve":
        serve(argv[1])
        return
    scenario, kind, place, *rest = argv
    configure(kind, place)
    print(json.dumps(run(scenario, kind, place, *rest)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
