"""Whether a hold was released, as the audit and the inspector show it.

A late authorization of a canceled session, recorded while no provider was at hand:
``paysession audit holds --db`` names it (exit 1), the inspector marks its anomaly
``held`` and the session's page says so; once voided (a redelivery with the provider),
the audit is clean (exit 0), the anomaly is ``voided`` and the void call is listed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette")

from starlette.testclient import TestClient

from paysession import PaymentSessions, ProviderReply, ReconciliationAnomaly
from paysession.inspector.app import create_app
from paysession.session import PaymentSession
from paysession.store import PostgresStore, SessionStore, SqliteStore

from .helpers import StepClock, cli

LOCAL = "http://127.0.0.1"


class Voiding:
    """A provider whose cancel voids the hold (all this test asks of it)."""

    id = "stripe"

    def __init__(self) -> None:
        self.keys: list[str] = []

    def cancel(self, session: PaymentSession, *, idempotency_key: str) -> ProviderReply:
        self.keys.append(idempotency_key)
        return ProviderReply("canceled", {"id": "pi_late"})


def paysession(*argv: str) -> subprocess.CompletedProcess[str]:
    done = cli(*argv)
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


@pytest.fixture(params=["sqlite", "postgres"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "shop.db")
    else:
        yield request.getfixturevalue("postgres_dsn")


def writer(place: str) -> SessionStore:
    return SqliteStore(place) if place.endswith(".db") else PostgresStore(place)


def reader(place: str) -> SessionStore:
    if place.endswith(".db"):
        return SqliteStore(place, read_only=True)
    return PostgresStore(place, read_only=True)


def late_authorization(sessions: PaymentSessions) -> str:
    """A session canceled here, then authorized there; recorded with no provider."""
    late = sessions.create(cart_id="cart_late", provider_id="stripe", amount=700)
    sessions.fire(late.id, "initiate", data={"id": "pi_late"})
    sessions.fire(late.id, "cancel", actor="storefront")
    with pytest.raises(ReconciliationAnomaly):
        sessions.reconcile(late.id, "requires_capture", event_id="evt_late")
    return late.id


def test_audit_holds_names_the_hold_until_it_is_voided(place: str) -> None:
    store = writer(place)
    sessions = PaymentSessions(store, clock=StepClock())
    paid = sessions.create(cart_id="cart_paid", provider_id="stripe", amount=500)
    sessions.fire(paid.id, "initiate", data={"id": "pi_paid"})
    sessions.reconcile(paid.id, "requires_capture", event_id="evt_paid")
    late = late_authorization(sessions)

    found = paysession("audit", "holds", "--db", place)
    assert found.returncode == 1, found.stderr
    (line, verdict) = found.stdout.splitlines()
    assert line.startswith(f"{late}  canceled  provider stripe  cart cart_late  amount 700")
    assert verdict == "FAILED: 1 session with a hold not released"

    provider = Voiding()
    again = sessions.reconcile(late, "requires_capture", event_id="evt_late", provider=provider)
    assert again.voided and provider.keys == [f"{sessions.get(late).idempotency_key}:void"]
    store.close()
    clean = paysession("audit", "holds", "--db", place)
    assert (clean.returncode, clean.stderr) == (0, "")
    assert clean.stdout.startswith("ok: every hold of ")


def test_audit_holds_usage_errors_are_one_line(tmp_path: Path) -> None:
    missing = paysession("audit", "holds", "--db", str(tmp_path / "none.db"))
    assert missing.returncode == 2 and len(missing.stderr.splitlines()) == 1
    assert not (tmp_path / "none.db").exists()
    bad = paysession("audit", "holds", "--db", str(tmp_path / "x.db"), "--limit", "0")
    assert bad.returncode == 2 and "--limit" in bad.stderr


def test_the_inspector_shows_what_became_of_each_hold(place: str) -> None:
    store = writer(place)
    sessions = PaymentSessions(store, clock=StepClock())
    late = late_authorization(sessions)
    shown = reader(place)
    with TestClient(create_app(shown), base_url=LOCAL) as client:
        (anomaly,) = client.get("/api/anomalies").json()["anomalies"]
        assert (anomaly["session_id"], anomaly["hold"]) == (late, "held")
        assert '<span class="hold held">held</span>' in client.get("/anomalies").text
        page = client.get(f"/sessions/{late}").text
        assert "cannot keep" in page and "No call that holds or releases money." in page

        sessions.reconcile(late, "requires_capture", event_id="evt_late", provider=Voiding())
        (anomaly,) = client.get("/api/anomalies").json()["anomalies"]
        assert anomaly["hold"] == "voided"
        api = client.get(f"/api/sessions/{late}").json()
        assert api["holds"] == {"asked": 1, "released": 1, "unreleased": False}
        (call,) = api["provider_calls"]
        assert (call["action"], call["provider_status"], call["status"]) == (
            "void",
            "canceled",
            "canceled",
        )
        assert '<span class="hold voided">voided</span>' in client.get(f"/sessions/{late}").text
    shown.close()
    store.close()
