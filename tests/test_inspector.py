"""The inspector's routes, through Starlette's test client, over real SQLite and PostgreSQL
stores opened read-only: every page and API route, filters, keyset pages, bad input,
the token, the policy headers, hostile strings in every field shown, and that nothing
it serves changes the store."""

from __future__ import annotations

import base64
import hashlib
import re
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")

from starlette.testclient import TestClient

from paysession.errors import InvalidSessionData, ReconciliationAnomaly, StoreError
from paysession.inspector.app import COOKIE, POLICY, create_app
from paysession.lifecycle import TRANSITIONS
from paysession.service import PaymentSessions
from paysession.store import SqliteStore
from paysession.store._browse import PageKey

from .conftest import Filled
from .helpers import StepClock, initiated

LOCAL = "http://127.0.0.1"  # without a token, the inspector answers only to its own name
SECRET = "pi_secret_do_not_show"
T_TOKEN = datetime(2026, 11, 1, tzinfo=timezone.utc)

HOSTILE = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "' autofocus onfocus='alert(3)",
    "javascript:alert(4)",
    "ctl\x1b[31m\r\nline\u202egnp.exe",
)


class Seeded:
    """What ``seed`` made: the ids a test looks for."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}


def seed(sessions: PaymentSessions) -> Seeded:
    """A small store with a session in every status, two carts, anomalies and hostile
    strings in every field a webhook or a caller controls."""
    made = Seeded()
    made.ids["authorized"] = initiated(sessions, "cart_a", "stripe", amount=4999)
    sessions.fire(made.ids["authorized"], "authorize", actor="provider:stripe", reason="ok")
    switched = initiated(sessions, "cart_a", "paypal", amount=4999)
    sessions.fire(switched, "cancel", actor="storefront", reason="switched method")
    made.ids["canceled"] = switched
    made.ids["pending"] = initiated(sessions, "cart_b", "stripe")
    made.ids["error"] = initiated(sessions, "cart_c", "paypal")
    sessions.fire(made.ids["error"], "fail", actor="provider:paypal", reason="declined")
    made.ids["requires_more"] = initiated(sessions, "cart_d", "stripe")
    sessions.fire(made.ids["requires_more"], "require_more")
    # data with a secret: shown as keys and a digest, never the value
    secret = sessions.create(cart_id="cart_s", provider_id="stripe", amount=100)
    sessions.fire(secret.id, "initiate", data={"id": "pi_s", "client_secret": SECRET})
    made.ids["secret"] = secret.id
    # an anomaly: an authorization reported for a session never initiated
    fresh = sessions.create(cart_id="cart_x", provider_id="stripe", amount=100)
    with pytest.raises(ReconciliationAnomaly):
        sessions.reconcile(fresh.id, "requires_capture", event_id="evt_guard")
    made.ids["anomaly"] = fresh.id
    # hostile strings: in actor, reason, idempotency key, event id, cart and provider
    for number, payload in enumerate(HOSTILE):
        victim = sessions.create(cart_id=f"cart_h{number}", provider_id="stripe", amount=1)
        sessions.fire(
            victim.id,
            "initiate",
            data={"id": payload},
            actor=payload,
            reason=payload,
            idempotency_key=f"k{number}{payload}",
        )
        sessions.fire(victim.id, "cancel", actor=payload, reason=payload)
        # An authorization reported for a canceled session: an anomaly, its id hostile.
        with pytest.raises(ReconciliationAnomaly):
            sessions.reconcile(victim.id, "requires_capture", event_id=payload)
        made.ids[f"hostile{number}"] = victim.id
        sessions.create(cart_id=payload, provider_id=payload, amount=1)
    return made


def seeded_file(path: str | Path) -> Seeded:
    """A SQLite file made by ``seed``, its writer closed: ready to be opened read-only."""
    writer = SqliteStore(path)
    try:
        return seed(PaymentSessions(writer, clock=StepClock()))
    finally:
        writer.close()


@pytest.fixture(params=["sqlite", "postgres"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        dsn: str = request.getfixturevalue("postgres_dsn")
        return dsn
    return str(tmp_path / "inspect.db")


def _writer(place: str) -> Any:
    if "=" in place or place.startswith("postgres"):
        from paysession.store.postgres import PostgresStore

        return PostgresStore(place)
    return SqliteStore(place)


def _reader(place: str) -> Any:
    if "=" in place or place.startswith("postgres"):
        from paysession.store.postgres import PostgresStore

        return PostgresStore(place, read_only=True)
    return SqliteStore(place, read_only=True)


def seeded(place: str) -> tuple[Seeded, datetime]:
    """``seed`` run on the database at ``place``: what it made, and its clock's time."""
    clock = StepClock()
    writer = _writer(place)
    try:
        return seed(PaymentSessions(writer, clock=clock)), clock.now
    finally:
        writer.close()


@pytest.fixture(params=["sqlite", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def site(kind: str, filled: Filled) -> Iterator[tuple[TestClient, Seeded, PaymentSessions]]:
    """The inspector over a copy of a seeded store, and the service that seeded it: its
    clock goes on from where the seeding left it."""
    place, (made, now) = filled(kind, seeded, "inspect.db")
    writer = _writer(place)
    sessions = PaymentSessions(writer, clock=StepClock(start=now))
    reader = _reader(place)
    with TestClient(create_app(reader), base_url=LOCAL) as client:
        yield client, made, sessions
    reader.close()
    writer.close()


def _ids(page: dict[str, Any]) -> list[str]:
    return [session["id"] for session in page["sessions"]]


class TestPages:
    def test_every_page_and_api_route_answers(self, site: Any) -> None:
        client, made, _ = site
        session_id = made.ids["authorized"]
        for url in (
            "/",
            f"/sessions/{session_id}",
            "/anomalies",
            "/activity",
            "/lifecycle",
            "/api/sessions",
            f"/api/sessions/{session_id}",
            f"/api/sessions/{session_id}/trail",
            "/api/anomalies",
            "/api/activity",
            "/api/lifecycle",
            "/healthz",
            "/static/inspector.css",
            "/static/activity.js",
        ):
            response = client.get(url)
            assert response.status_code == 200, url
            assert response.headers["content-security-policy"] == POLICY, url
            assert re.fullmatch(r"app;dur=[0-9.]+", response.headers["server-timing"]), url
        assert client.get("/healthz").json()["ok"] is True

    def test_sessions_newest_first_with_counts(self, site: Any) -> None:
        client, _, sessions = site
        page = client.get("/api/sessions?limit=500").json()
        listed = _ids(page)
        every = [s for cart in ("cart_a", "cart_b") for s in sessions.find(cart_id=cart)]
        assert set(s.id for s in every) <= set(listed)
        times = [s["updated_at"] for s in page["sessions"]]
        assert times == sorted(times, reverse=True)
        assert page["counts"]["authorized"] == 1
        assert sum(page["counts"].values()) == len(listed)
        html = client.get("/").text
        assert 'aria-label="Sessions per status"' in html
        assert 'href="/?status=authorized"' in html

    @pytest.mark.parametrize(
        ("query", "check"),
        [
            ("status=error", lambda s: s["status"] == "error"),
            ("provider=paypal", lambda s: s["provider_id"] == "paypal"),
            ("cart=cart_a", lambda s: s["cart_id"] == "cart_a"),
        ],
    )
    def test_filters_keep_only_what_matches(self, site: Any, query: str, check: Any) -> None:
        client, _, _ = site
        everything = client.get("/api/sessions?limit=500").json()["sessions"]
        kept = client.get(f"/api/sessions?{query}&limit=500").json()["sessions"]
        assert kept, query
        assert [s for s in everything if check(s)] == kept

    def test_the_anomalies_filter(self, site: Any) -> None:
        client, made, _ = site
        kept = _ids(client.get("/api/sessions?anomalies=1&limit=500").json())
        assert made.ids["anomaly"] in kept
        assert made.ids["hostile0"] in kept
        assert made.ids["authorized"] not in kept

    def test_the_updated_range(self, site: Any) -> None:
        client, _, _ = site
        everything = client.get("/api/sessions?limit=500").json()["sessions"]
        middle = everything[len(everything) // 2]["updated_at"]
        later = client.get(f"/api/sessions?from={middle}&limit=500").json()["sessions"]
        earlier = client.get(f"/api/sessions?to={middle}&limit=500").json()["sessions"]
        assert later and earlier
        assert all(s["updated_at"] >= middle for s in later)
        assert all(s["updated_at"] < middle for s in earlier)
        assert len(later) + len(earlier) == len(everything)

    def test_keyset_pages_walk_every_session_once(self, site: Any) -> None:
        client, _, _ = site
        everything = _ids(client.get("/api/sessions?limit=500").json())
        walked: list[str] = []
        url = "/api/sessions?limit=3"
        while True:
            page = client.get(url).json()
            walked += _ids(page)
            if page["next"] is None:
                break
            url = f"/api/sessions?limit=3&after={page['next']}"
        assert walked == everything
        html = client.get("/?limit=3").text
        assert 'rel="next"' in html

    def test_anomalies_page_and_its_filters(self, site: Any) -> None:
        client, made, _ = site
        found = client.get("/api/anomalies").json()["anomalies"]
        assert {a["session_id"] for a in found} >= {made.ids["anomaly"], made.ids["hostile1"]}
        assert all(a["outcome"] == "anomaly" for a in found)
        guard = client.get("/api/anomalies?kind=guard_refused").json()["anomalies"]
        assert guard and all(a["kind"] == "guard_refused" for a in guard)
        assert client.get("/api/anomalies?provider=paypal").json()["anomalies"] == []
        recorded = [a["recorded_at"] for a in found]
        assert recorded == sorted(recorded, reverse=True)
        walked: list[str] = []
        url = "/api/anomalies?limit=2"
        while url:
            page = client.get(url).json()
            walked += [a["event_id"] for a in page["anomalies"]]
            url = page["next"] and f"/api/anomalies?limit=2&after={page['next']}"
        assert walked == [a["event_id"] for a in found]

    def test_lifecycle_lists_the_table(self, site: Any) -> None:
        client, _, _ = site
        rows = client.get("/api/lifecycle").json()["transitions"]
        assert [row["trigger"] for row in rows] == [move.trigger for move in TRANSITIONS]
        html = client.get("/lifecycle").text
        assert "amount_positive" in html
        assert '<svg class="chart"' in html

    def test_activity_follows_the_feed(self, site: Any) -> None:
        client, made, sessions = site
        page = client.get("/api/activity").json()
        assert page["records"]
        cursor = page["cursor"]
        assert client.get(f"/api/activity?after={cursor}").json()["records"] == []
        sessions.fire(made.ids["pending"], "cancel", actor="ops", reason="test")
        fresh = client.get(f"/api/activity?after={cursor}").json()
        assert [(r["session_id"], r["trigger"]) for r in fresh["records"]] == [
            (made.ids["pending"], "cancel")
        ]
        assert fresh["cursor"] != cursor
        assert 'data-cursor="' in client.get("/activity").text


class TestOneSession:
    def test_fields_trail_diagram_and_verification(self, site: Any) -> None:
        client, made, sessions = site
        session_id = made.ids["authorized"]
        html = client.get(f"/sessions/{session_id}").text
        assert 'id="verification"' in html
        assert "Trail verified: 3 records" in html
        assert '<g class="status current" data-status="authorized">' in html
        # initiate (record 1) loops on pending; authorize (record 2) leaves it
        assert html.count('<path class="move taken"') == 2
        assert ">(1) initiate</tspan>" in html
        assert ">(2) authorize [is_initiated, amount_positive]</tspan>" in html
        api = client.get(f"/api/sessions/{session_id}").json()
        assert api["verification"] == {"ok": True}
        assert api["session"]["status"] == "authorized"
        assert api["cart_sessions"] and api["authorized_in_cart"] == 1
        trail = client.get(f"/api/sessions/{session_id}/trail").json()["records"]
        assert [r["seq"] for r in trail] == [0, 1, 2]
        assert [r["trigger"] for r in trail] == [r.trigger for r in sessions.history(session_id)]

    def test_data_is_shown_as_keys_and_a_digest_only(self, site: Any) -> None:
        client, made, _ = site
        session_id = made.ids["secret"]
        for url in (f"/sessions/{session_id}", f"/api/sessions/{session_id}"):
            text = client.get(url).text
            assert SECRET not in text
            assert "pi_s" not in text
        data = client.get(f"/api/sessions/{session_id}").json()["session"]["data"]
        assert data["keys"] == 2 and data["bytes"] > 0
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", data["digest"])  # what the trail holds


class TestKeyedDigests:
    """A keyed store's data and cart are never shown as a plain SHA-256: a 3-digit CVC
    would fall to a thousand guesses."""

    CVC_KEY = b"inspector-digest-key"

    @pytest.fixture
    def keyed(self, place: str) -> tuple[str, str]:
        writer = _writer(place)
        sessions = PaymentSessions(writer, key=self.CVC_KEY, clock=StepClock())
        made = sessions.create(
            cart_id="cart_k", provider_id="stripe", amount=100, data={"cvc": "123"}
        )
        sessions.fire(made.id, "initiate", data={"cvc": "123", "id": "pi_k"})
        writer.close()
        return place, made.id

    @pytest.mark.parametrize("with_key", [False, True])
    def test_no_plain_hash_of_data_or_cart(self, keyed: tuple[str, str], with_key: bool) -> None:
        place, session_id = keyed
        reader = _reader(place)
        app = create_app(reader, key=self.CVC_KEY if with_key else None)
        with TestClient(app, base_url=LOCAL) as client:
            pages = [
                client.get(url).text
                for url in (
                    "/",
                    "/api/sessions",
                    f"/sessions/{session_id}",
                    f"/api/sessions/{session_id}",
                )
            ]
            data = client.get(f"/api/sessions/{session_id}").json()["session"]["data"]
        reader.close()
        plain = hashlib.sha256(b'{"cvc":"123","id":"pi_k"}').hexdigest()
        for text in pages:
            assert plain not in text and "sha256:" not in text.replace("hmac-sha256:", "")
        assert (data["keys"], data["bytes"]) == (2, len('{"cvc":"123","id":"pi_k"}'))
        if with_key:
            assert re.fullmatch(r"hmac-sha256:[0-9a-f]{64}", data["digest"])
        else:
            assert "digest" not in data

    def test_a_session_with_an_anomaly_lists_its_event(self, site: Any) -> None:
        client, made, _ = site
        api = client.get(f"/api/sessions/{made.ids['anomaly']}").json()
        assert api["anomalies"] == 1
        assert api["provider_events"][0]["event_id"] == "evt_guard"
        assert api["provider_events"][0]["guard"] == "is_initiated"

    def test_unknown_session_is_404(self, site: Any) -> None:
        client, _, _ = site
        for url in ("/sessions/ps_nope", "/api/sessions/ps_nope", "/api/sessions/x/trail"):
            response = client.get(url)
            assert response.status_code == 404, url
            assert "Traceback" not in response.text
        assert "no session ps_nope" in client.get("/sessions/ps_nope").text
        assert client.get("/api/sessions/ps_nope").json() == {
            "error": "no session ps_nope in this store"
        }
        long = client.get("/sessions/" + "x" * 5000)
        assert long.status_code == 404
        assert len(_Elements.text_of(long.text)) < 1000


class TestTampering:
    """Direct edits of a SQLite file, as an attacker with the file would make them."""

    @pytest.fixture
    def sqlite_site(self, tmp_path: Path) -> Iterator[tuple[TestClient, Seeded, str]]:
        path = str(tmp_path / "tampered.db")
        made = seeded_file(path)
        reader = SqliteStore(path, read_only=True)
        with TestClient(create_app(reader), base_url=LOCAL) as client:
            yield client, made, path
        reader.close()

    def test_an_edited_record_is_marked_on_its_row(self, sqlite_site: Any) -> None:
        client, made, path = sqlite_site
        session_id = made.ids["authorized"]
        with sqlite3.connect(path) as conn:
            conn.execute(
                "UPDATE paysession_records SET wire = replace(wire, '\"ok\"', '\"fine\"') "
                "WHERE session_id = ? AND seq = 2",
                (session_id,),
            )
        conn.close()
        html = client.get(f"/sessions/{session_id}").text
        assert "Trail does not verify at seq 2" in html
        assert re.search(r'<tr class="bad" id="bad">\s*<td class="num">2</td>', html)
        api = client.get(f"/api/sessions/{session_id}").json()["verification"]
        assert api["ok"] is False and api["seq"] == 2

    def test_a_record_past_the_version_is_never_shown_as_verified(self, sqlite_site: Any) -> None:
        """A row put back one move, its last record left: that record is not vouched for."""
        client, made, path = sqlite_site
        session_id = made.ids["authorized"]
        with sqlite3.connect(path) as conn:
            conn.execute(
                "UPDATE paysession_sessions SET version = 1, status = 'pending', "
                "payment_authorized_at = NULL, updated_at = (SELECT at FROM paysession_records "
                "WHERE session_id = ?1 AND seq = 1), head = (SELECT hash FROM "
                "paysession_records WHERE session_id = ?1 AND seq = 1) WHERE id = ?1",
                (session_id,),
            )
        conn.close()
        html = client.get(f"/sessions/{session_id}").text
        assert "Trail verified" not in html
        assert "Trail does not verify at seq 2: past_version" in html
        assert re.search(r'<tr class="bad" id="bad">\s*<td class="num">2</td>', html)
        api = client.get(f"/api/sessions/{session_id}").json()["verification"]
        assert (api["ok"], api["seq"], api["reason"]) == (False, 2, "past_version")

    def test_a_cut_tail_is_marked_as_missing(self, sqlite_site: Any) -> None:
        client, made, path = sqlite_site
        session_id = made.ids["authorized"]
        with sqlite3.connect(path) as conn:
            conn.execute(
                "DELETE FROM paysession_records WHERE session_id = ? AND seq = 2", (session_id,)
            )
        conn.close()
        html = client.get(f"/sessions/{session_id}").text
        assert "Trail does not verify at seq 2: trail_cut" in html
        assert "missing: the trail ends before the row" in html
        # the trail no longer leads to the row's status: the diagram still shows the status
        assert '<g class="status current" data-status="authorized">' in html
        assert '<path class="move taken"' not in html

    @pytest.mark.parametrize(
        "wire",
        [
            "garbage",
            '{"actor": 12345}',
            "[" * 100_000 + "]" * 100_000,
        ],
        ids=["not-json", "a-number-for-actor", "nested-too-deep"],
    )
    def test_a_record_that_is_not_ours_is_503_naming_its_session(
        self, sqlite_site: Any, wire: str
    ) -> None:
        client, made, path = sqlite_site
        session_id = made.ids["authorized"]
        with sqlite3.connect(path) as conn:
            conn.execute(
                "UPDATE paysession_records SET wire = ? WHERE session_id = ? AND seq = 2",
                (wire, session_id),
            )
        conn.close()
        for url in (f"/sessions/{session_id}", f"/api/sessions/{session_id}"):
            response = client.get(url)
            assert response.status_code == 503, url
            shown = _Elements.text_of(response.text) if "api" not in url else response.text
            assert f"record 2 of session {session_id!r} cannot be read" in shown
            assert "Traceback" not in response.text
        # The store's other sessions are still shown, and the store answers.
        assert client.get(f"/sessions/{made.ids['pending']}").status_code == 200
        assert client.get("/healthz").json()["ok"] is True

    def test_a_session_row_that_is_not_ours_is_503_naming_it(self, sqlite_site: Any) -> None:
        client, made, path = sqlite_site
        session_id = made.ids["pending"]
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE paysession_sessions SET data = '{bad' WHERE id = ?", (session_id,))
        conn.close()
        response = client.get("/")
        assert response.status_code == 503
        assert f"the row of session {session_id!r} cannot be read" in _Elements.text_of(
            response.text
        )
        assert client.get("/api/sessions?cart=cart_a").status_code == 200

    def test_two_authorized_sessions_of_a_cart_are_warned_of(self, sqlite_site: Any) -> None:
        client, made, path = sqlite_site
        with sqlite3.connect(path) as conn:
            conn.execute("DROP INDEX paysession_one_authorized_per_cart")
            conn.execute(
                "UPDATE paysession_sessions SET status = 'authorized', "
                "payment_authorized_at = updated_at WHERE id = ?",
                (made.ids["canceled"],),
            )
        conn.close()
        html = client.get(f"/sessions/{made.ids['authorized']}").text
        assert 'id="double"' in html
        assert "This cart has 2 authorized sessions." in html


class TestBadInput:
    @pytest.mark.parametrize(
        ("page", "query", "field"),
        [
            ("", "status=paid", "status"),
            ("", "anomalies=maybe", "anomalies"),
            ("", "from=yesterday", "from"),
            ("", "to=2026-13-01", "to"),
            ("", "from=2026-11-02&to=2026-11-01", "to"),
            ("", "limit=0", "limit"),
            ("", "limit=99999999999999999999", "limit"),
            ("", "after=zz", "after"),
            # a token of the right form for anomalies, not for sessions
            ("", "after=" + PageKey(T_TOKEN, ("a", "b")).token(), "after"),
            ("", "status=error&status=pending", "status"),
            ("", "cart=" + "c" * 300, "cart"),
            ("anomalies", "kind=strange", "kind"),
            ("anomalies", "after=e30", "after"),
            ("activity", "after=x", "after"),
            # a lone surrogate is valid JSON, but no database can be asked about it
            ("", "after=" + base64.urlsafe_b64encode(b'[0,"\\ud800"]').decode(), "after"),
            (
                "anomalies",
                "after=" + base64.urlsafe_b64encode(b'[0,"\\ud800","x"]').decode(),
                "after",
            ),
        ],
    )
    def test_a_bad_value_is_400_naming_it(
        self, site: Any, page: str, query: str, field: str
    ) -> None:
        client, _, _ = site
        shown = client.get(f"/{page}?{query}")
        assert shown.status_code == 400, query
        assert f'<p class="error" id="error">{field}: ' in shown.text
        assert "Traceback" not in shown.text
        api = client.get(f"/api/{page or 'sessions'}?{query}")
        assert api.status_code == 400
        assert api.json()["error"].startswith(f"{field}: ")

    @pytest.mark.parametrize(
        "when",
        [
            "2026-11-02",
            "2026-11-02T10:30",
            "2026-11-02T10:30:05.5",
            "2026-11-02T10:30Z",
            "2026-11-02T10:30+02:00",
            "2026-11-02T10:30:05-05:00",
        ],
    )
    def test_dates_in_every_form_are_taken(self, site: Any, when: str) -> None:
        client, _, _ = site
        response = client.get("/api/sessions", params={"from": when})
        assert response.status_code == 200, response.text

    def test_filter_values_are_taken_as_given(self, site: Any) -> None:
        client, _, _ = site
        assert client.get("/api/sessions?cart=cart_a").json()["sessions"]
        assert client.get("/api/sessions?cart=%20cart_a").json()["sessions"] == []

    def test_a_token_of_another_page_is_refused(self, site: Any) -> None:
        client, _, _ = site
        page = client.get("/api/sessions?limit=1").json()
        assert client.get(f"/api/anomalies?after={page['next']}").status_code == 400

    def test_an_unknown_path_is_404(self, site: Any) -> None:
        client, _, _ = site
        response = client.get("/admin")
        assert response.status_code == 404
        assert "no such page" in response.text
        assert client.get("/static/../app.py").status_code == 404

    def test_a_store_that_cannot_be_read_is_503(self, tmp_path: Path) -> None:
        path = tmp_path / "gone.db"
        SqliteStore(path).migrate()
        reader = SqliteStore(path, read_only=True)
        with TestClient(create_app(reader), base_url=LOCAL) as client:
            assert client.get("/healthz").status_code == 200
            reader.close()
            assert client.get("/healthz").status_code == 503
            response = client.get("/")
            assert response.status_code == 503
            assert "the store could not be read" in response.text


class TestHostileStrings:
    """Every string a webhook or a caller controls comes out as text, never as markup."""

    def _pages(self, client: TestClient, made: Seeded) -> dict[str, str]:
        pages = {url: client.get(url).text for url in ("/", "/anomalies", "/activity")}
        for number in range(len(HOSTILE)):
            url = f"/sessions/{made.ids[f'hostile{number}']}"
            pages[url] = client.get(url).text
        return pages

    def test_no_payload_becomes_markup(self, site: Any) -> None:
        client, made, _ = site
        for url, html in self._pages(client, made).items():
            parser = _Elements()
            parser.feed(html)
            assert parser.scripts <= {"/static/activity.js"}, url
            assert not parser.handlers, url
            assert not parser.javascript_links, url
            for payload in HOSTILE[:3]:
                assert payload not in html, url

    def test_each_payload_is_shown_as_text(self, site: Any) -> None:
        client, made, _ = site
        pages = self._pages(client, made)
        for number, payload in enumerate(HOSTILE):
            page = pages[f"/sessions/{made.ids[f'hostile{number}']}"]
            text = _Elements.text_of(page)
            shown = payload.replace("\x1b", "\\x1b").replace("\r", "\\x0d").replace("\n", "\\x0a")
            shown = shown.replace("\u202e", "\\u202e")
            assert text.count(shown) >= 3, (payload, "actor, reason and event id")
            assert "\x1b" not in page and "\u202e" not in page

    def test_ids_in_links_are_one_path_segment(self, site: Any) -> None:
        client, _, _ = site
        html = client.get("/?limit=500").text
        links = re.findall(r'href="(/sessions/[^"]*)"', html)
        assert links
        assert all("/" not in link[len("/sessions/") :] for link in links)
        carts = re.findall(r'href="/\?cart=([^"]*)"', html)
        assert all("<" not in cart and '"' not in cart for cart in carts)


class _Elements(HTMLParser):
    """What a browser would run: scripts, event handlers and javascript: links."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: set[str] = set()
        self.handlers: list[tuple[str, str]] = []
        self.javascript_links: list[str] = []
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name.startswith("on"):
                self.handlers.append((tag, name))
            if name in ("href", "src", "action") and (value or "").strip().lower().startswith(
                "javascript:"
            ):
                self.javascript_links.append(value or "")
        if tag == "script":
            self.scripts.add(dict(attrs).get("src") or "<inline>")

    def handle_data(self, data: str) -> None:
        self.texts.append(data)

    @classmethod
    def text_of(cls, html: str) -> str:
        parser = cls()
        parser.feed(html)
        return "".join(parser.texts)


class TestHostNames:
    """Without a token, only requests to the inspector's own name are served: a page
    elsewhere that points its name at 127.0.0.1 (DNS rebinding) reads nothing."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SqliteStore]:
        path = tmp_path / "named.db"
        writer = SqliteStore(path)
        initiated(PaymentSessions(writer, clock=StepClock()))
        writer.close()
        reader = SqliteStore(path, read_only=True)
        yield reader
        reader.close()

    @pytest.mark.parametrize("host", ["127.0.0.1:8765", "localhost", "LOCALHOST:80", "[::1]:8765"])
    def test_its_own_names_are_served(self, store: SqliteStore, host: str) -> None:
        with TestClient(create_app(store), base_url=f"http://{host}") as client:
            assert client.get("/api/sessions").status_code == 200

    @pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8765", "127.0.0.2"])
    def test_another_name_is_refused(self, store: SqliteStore, host: str) -> None:
        with TestClient(create_app(store), base_url=f"http://{host}") as client:
            for url in ("/", "/api/sessions", "/healthz"):
                response = client.get(url)
                assert response.status_code == 400, url
                # Starlette's TrustedHostMiddleware refuses, with its own words.
                assert response.text == "Invalid host header"
                assert response.headers["content-security-policy"] == POLICY

    @pytest.mark.parametrize(
        "host", ["::1", "[::1", "localhost:80:80", "localhost/x", "local host", ""]
    )
    def test_a_host_header_that_is_not_one_is_refused(self, store: SqliteStore, host: str) -> None:
        with TestClient(create_app(store), base_url="http://localhost") as client:
            response = client.get("/api/sessions", headers={"host": host})
            assert response.status_code == 400
            assert response.text == "Invalid host header"

    def test_the_names_it_answers_to_can_be_given(self, store: SqliteStore) -> None:
        app = create_app(store, hosts=("127.0.0.2", "FE80::1"))
        with TestClient(app, base_url="http://127.0.0.2:9000") as client:
            assert client.get("/api/sessions").status_code == 200
        with TestClient(app, base_url="http://[fe80::1]:9000") as client:
            assert client.get("/api/sessions").status_code == 200
        with TestClient(app, base_url="http://localhost") as client:
            assert client.get("/api/sessions").status_code == 400

    @pytest.mark.parametrize("name", ["*", "*.example", "a*b"])
    def test_a_name_is_never_a_wildcard(self, store: SqliteStore, name: str) -> None:
        with pytest.raises(InvalidSessionData) as refused:
            create_app(store, hosts=("localhost", name))
        assert "hosts" in refused.value.problems

    def test_with_a_token_any_name_is_served_to_the_token(self, store: SqliteStore) -> None:
        app = create_app(store, token="s3cret")
        with TestClient(app, base_url="http://inspect.internal") as client:
            assert client.get("/api/sessions").status_code == 401
            bearer = {"authorization": "Bearer s3cret"}
            assert client.get("/api/sessions", headers=bearer).status_code == 200


class TestToken:
    TOKEN = "s3cret-token"

    @pytest.fixture
    def guarded(self, tmp_path: Path) -> Iterator[TestClient]:
        path = tmp_path / "guarded.db"
        seeded_file(path)
        reader = SqliteStore(path, read_only=True)
        with TestClient(create_app(reader, token=self.TOKEN), base_url=LOCAL) as client:
            yield client
        reader.close()

    def test_pages_send_to_the_login_form_and_the_api_says_401(self, guarded: TestClient) -> None:
        page = guarded.get("/anomalies?kind=guard_refused", follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Fanomalies%3Fkind%3Dguard_refused"
        api = guarded.get("/api/sessions")
        assert api.status_code == 401
        assert api.headers["www-authenticate"] == "Bearer"
        assert guarded.get("/healthz").status_code == 200
        assert guarded.get("/login").status_code == 200

    def test_a_bearer_token_opens_every_route(self, guarded: TestClient) -> None:
        right = {"authorization": f"Bearer {self.TOKEN}"}
        wrong = {"authorization": f"Bearer {self.TOKEN}x"}
        assert guarded.get("/api/sessions", headers=right).status_code == 200
        assert guarded.get("/", headers=right).status_code == 200
        assert guarded.get("/api/sessions", headers=wrong).status_code == 401
        assert (
            guarded.get("/api/sessions", headers={"authorization": self.TOKEN}).status_code == 401
        )

    def test_the_login_form_sets_a_cookie_that_is_not_the_token(self, guarded: TestClient) -> None:
        refused = guarded.post("/login", data={"token": "guess", "next": "/anomalies"})
        assert refused.status_code == 401
        assert "That is not the token." in refused.text
        assert COOKIE not in guarded.cookies
        done = guarded.post(
            "/login", data={"token": self.TOKEN, "next": "/anomalies"}, follow_redirects=False
        )
        assert done.status_code == 303
        assert done.headers["location"] == "/anomalies"
        cookie = done.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert self.TOKEN not in cookie
        assert guarded.get("/api/sessions").status_code == 200

    @pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil"])
    def test_the_login_form_never_sends_anyone_elsewhere(
        self, guarded: TestClient, target: str
    ) -> None:
        done = guarded.post(
            "/login", data={"token": self.TOKEN, "next": target}, follow_redirects=False
        )
        assert done.headers["location"] == "/"

    @pytest.mark.parametrize("token", ["", " padded ", "line\n", "tab\there"])
    def test_a_token_that_cannot_be_typed_back_is_refused(self, tmp_path: Path, token: str) -> None:
        with pytest.raises(InvalidSessionData) as refused:
            create_app(SqliteStore(tmp_path / "x.db"), token=token)
        assert refused.value.fields == ("token",)

    def test_a_token_beyond_ascii_works_by_bearer(self, tmp_path: Path) -> None:
        path = tmp_path / "utf8.db"
        SqliteStore(path).migrate()
        reader = SqliteStore(path, read_only=True)
        with TestClient(create_app(reader, token="pässwörd"), base_url=LOCAL) as client:
            right = {"authorization": "Bearer pässwörd".encode()}
            assert client.get("/api/sessions", headers=right).status_code == 200
        reader.close()

    def test_the_login_form_reads_no_large_body(self, guarded: TestClient) -> None:
        response = guarded.post("/login", content=b"token=" + b"x" * 100_000)
        assert response.status_code == 413
        assert "the form is too large" in response.text


class TestReadOnly:
    def test_serving_every_page_leaves_the_file_as_it_was(self, tmp_path: Path) -> None:
        path = tmp_path / "still.db"
        made = seeded_file(path)
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        reader = SqliteStore(path, read_only=True)
        with TestClient(create_app(reader), base_url=LOCAL) as client:
            for session_id in made.ids.values():
                assert client.get(f"/sessions/{session_id}").status_code == 200
            for session_id in made.ids.values():
                assert client.get(f"/api/sessions/{session_id}/trail").status_code == 200
            for url in (
                "/",
                "/anomalies",
                "/activity",
                "/lifecycle",
                "/api/sessions",
                "/api/anomalies",
                "/api/activity",
                "/api/lifecycle",
                "/healthz",
            ):
                assert client.get(url).status_code == 200
            assert client.post("/").status_code == 405
        reader.close()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before

    def test_the_store_it_reads_refuses_writes(self, place: str) -> None:
        writer = _writer(place)
        sessions = PaymentSessions(writer, clock=StepClock())
        session_id = initiated(sessions)
        reader = _reader(place)
        try:
            snapshot = reader.load(session_id)
            assert snapshot is not None
            with pytest.raises(StoreError, match=r"read-only|readonly"):
                PaymentSessions(reader).fire(session_id, "cancel")
            assert writer.load(session_id).version == snapshot.version
            assert len(writer.history(session_id)) == snapshot.version + 1
        finally:
            reader.close()
            writer.close()


def test_counts_are_reused_for_a_few_seconds(tmp_path: Path) -> None:
    """The chart's counts are taken at most every COUNTS_TTL seconds (said on the page)."""
    path = tmp_path / "counts.db"
    writer = SqliteStore(path)
    sessions = PaymentSessions(writer, clock=StepClock(step=timedelta(seconds=1)))
    initiated(sessions, "cart_1")
    reader = SqliteStore(path, read_only=True)
    with TestClient(create_app(reader), base_url=LOCAL) as client:
        assert client.get("/api/sessions").json()["counts"]["pending"] == 1
        initiated(sessions, "cart_2")
        assert client.get("/api/sessions").json()["counts"]["pending"] == 1
        assert len(client.get("/api/sessions").json()["sessions"]) == 2
    reader.close()
    writer.close()
