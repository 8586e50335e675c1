"""The inspector holds whatever a store holds: a session's trail and events come a page at
a time, a long value is cut short on a page (whole in the API), any id the list shows has
a page, a login is tried a few times per client, a slow body is cut off, and the server
closes a connection whose headers do not arrive. Pages and API on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import uvicorn
from starlette.testclient import TestClient

from paysession import PaymentSession, PaymentSessions
from paysession.errors import ReconciliationAnomaly
from paysession.inspector import app as web
from paysession.inspector import serve
from paysession.inspector.app import create_app
from paysession.planning import create_record
from paysession.store import SqliteStore

from .conftest import Filled
from .helpers import StepClock, initiated
from .test_inspector import LOCAL, _reader, _writer, kind  # noqa: F401

LONG = "r" * 4000  # a reason as long as the limits allow


def long_trails(place: str) -> dict[str, str]:
    """A trail of 250 records, one session with 55 provider events, an id with a line
    break: written to the database at ``place``; their ids."""
    writer = _writer(place)
    sessions = PaymentSessions(writer, clock=StepClock())
    ids = {"long": initiated(sessions, "cart_l", "stripe", amount=1)}
    for n in range(2, 250):
        sessions.fire(ids["long"], "update", amount=n, reason=f"{n} {LONG}")
    ids["events"] = initiated(sessions, "cart_e", "stripe", amount=1)
    sessions.fire(ids["events"], "cancel")
    for n in range(55):
        with pytest.raises(ReconciliationAnomaly):
            sessions.reconcile(ids["events"], "requires_capture", event_id=f"evt_{n:02d}")
    lined = attrs.evolve(
        PaymentSession.new(cart_id="cart_n", provider_id="stripe", amount=1), id="ps_line\nbreak"
    )
    writer.create(lined, create_record(lined, None))
    ids["lined"] = lined.id
    writer.close()
    return ids


@pytest.fixture
def long_site(
    kind: str,  # noqa: F811
    filled: Filled,
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The inspector over a copy of ``long_trails``' store."""
    place, ids = filled(kind, long_trails, "inspect.db")
    reader = _reader(place)
    with TestClient(create_app(reader), base_url=LOCAL) as client:
        yield client, ids
    reader.close()


def seqs_on(html: str) -> list[int]:
    trail = html.split('id="trail"', 1)[1].split("</table>", 1)[0]
    return [int(seq) for seq in re.findall(r'<td class="num">(\d+)</td>', trail)]


class TestPaging:
    def test_the_trail_is_paged_on_the_page(self, long_site: Any) -> None:
        client, ids = long_site
        first = client.get(f"/sessions/{ids['long']}").text
        assert "Trail verified: 250 records" in first
        assert seqs_on(first) == list(range(100))
        assert "Earlier records" not in first
        later = re.search(r'<a href="([^"]+)" rel="next">Later records', first)
        assert later is not None
        second = client.get(later.group(1).replace("&amp;", "&")).text
        assert seqs_on(second) == list(range(100, 200))
        last = client.get(f"/sessions/{ids['long']}?trail_from=200").text
        assert seqs_on(last) == list(range(200, 250))
        assert "Later records" not in last and 'rel="prev">Earlier records' in last

    def test_a_long_value_is_cut_short_on_the_page_and_whole_in_the_api(
        self, long_site: Any
    ) -> None:
        client, ids = long_site
        html = client.get(f"/sessions/{ids['long']}?trail_from=100").text
        assert LONG not in html and "characters; the API gives them all" in html
        api = client.get(f"/api/sessions/{ids['long']}/trail", params={"trail_from": 100})
        page = api.json()
        assert (page["total"], page["from"], page["previous"], page["next"]) == (250, 100, 0, 200)
        assert [r["seq"] for r in page["records"]] == list(range(100, 200))
        assert page["records"][0]["reason"] == f"100 {LONG}"
        tail = client.get(f"/api/sessions/{ids['long']}/trail?trail_from=200").json()
        assert (len(tail["records"]), tail["next"]) == (50, None)

    def test_events_are_paged(self, long_site: Any) -> None:
        client, ids = long_site
        first = client.get(f"/api/sessions/{ids['events']}").json()
        assert len(first["provider_events"]) == 50 and first["provider_events_next"] == 50
        rest = client.get(f"/api/sessions/{ids['events']}", params={"events_from": 50}).json()
        assert [e["event_id"] for e in rest["provider_events"]] == [
            f"evt_{n}" for n in range(50, 55)
        ]
        assert (rest["provider_events_previous"], rest["provider_events_next"]) == (0, None)
        html = client.get(f"/sessions/{ids['events']}").text
        assert 'rel="next">Later events' in html

    @pytest.mark.parametrize("value", ["-1", "x", "1" * 12])
    def test_a_bad_page_start_is_400_naming_it(self, long_site: Any, value: str) -> None:
        client, ids = long_site
        refused = client.get(f"/api/sessions/{ids['long']}/trail", params={"trail_from": value})
        assert refused.status_code == 400
        assert refused.json()["error"].startswith("trail_from: ")

    def test_an_id_holding_a_line_break_has_its_page(self, long_site: Any) -> None:
        client, _ = long_site
        listed = client.get("/api/sessions", params={"cart": "cart_n"}).json()
        assert [s["id"] for s in listed["sessions"]] == ["ps_line\nbreak"]
        html = client.get("/?cart=cart_n").text
        link = re.search(r'href="(/sessions/ps_line[^"]+)"', html)
        assert link is not None and link.group(1) == "/sessions/ps_line%0Abreak"
        page = client.get(link.group(1))
        assert page.status_code == 200 and "Trail verified: 1 records" in page.text
        api = client.get("/api/sessions/ps_line%0Abreak/trail").json()
        assert api["session_id"] == "ps_line\nbreak"


class TestLogins:
    def test_login_attempts_are_limited_per_client(self, tmp_path: Path) -> None:
        path = str(tmp_path / "s.db")
        SqliteStore(path).migrate()
        reader = SqliteStore(path, read_only=True)
        app = create_app(reader, token="the-right-token")
        with TestClient(app, base_url=LOCAL, follow_redirects=False) as client:
            tries = [
                client.post("/login", data={"token": f"guess{n}"}).status_code for n in range(6)
            ]
            assert tries == [401] * web.LOGIN_ATTEMPTS + [429]
            refused = client.post("/login", data={"token": "the-right-token"})
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        with TestClient(
            app, base_url=LOCAL, follow_redirects=False, client=("10.0.0.9", 1)
        ) as other:
            assert other.post("/login", data={"token": "the-right-token"}).status_code == 303
        reader.close()


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, int]]:
    """The inspector served for real by uvicorn, with short timeouts."""
    monkeypatch.setattr(serve, "HEADER_TIMEOUT", 0.5)
    monkeypatch.setattr(web, "BODY_TIMEOUT", 0.5)
    monkeypatch.setattr(serve, "CONNECTIONS", 3)
    path = str(tmp_path / "s.db")
    SqliteStore(path).migrate()
    reader = SqliteStore(path, read_only=True)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    config = serve.server_config(
        create_app(reader, token="t0ken"), log_level="critical", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield listener.getsockname()
    server.should_exit = True
    thread.join()
    listener.close()
    reader.close()


def closed_within(conn: socket.socket, seconds: float) -> bytes:
    """What the server sent before closing, waiting at most ``seconds``."""
    conn.settimeout(seconds)
    got = b""
    while chunk := conn.recv(4096):
        got += chunk
    return got


class TestServer:
    def test_a_half_sent_request_is_closed(self, served: tuple[str, int]) -> None:
        with socket.create_connection(served) as silent, socket.create_connection(served) as half:
            half.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            started = time.monotonic()
            assert closed_within(half, 5) == b""
            assert closed_within(silent, 5) == b""
            assert time.monotonic() - started < 4

    def test_a_slow_body_is_cut_off(self, served: tuple[str, int]) -> None:
        with socket.create_connection(served) as slow:
            slow.sendall(
                b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n\r\ntoken=t"
            )
            answer = closed_within(slow, 5)
        assert answer.startswith(b"HTTP/1.1 408 ")

    def test_a_whole_request_is_served(self, served: tuple[str, int]) -> None:
        with socket.create_connection(served) as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert closed_within(conn, 5).startswith(b"HTTP/1.1 200 ")

    def test_connections_past_the_cap_are_refused(self, served: tuple[str, int]) -> None:
        held = [socket.create_connection(served) for _ in range(3)]
        try:
            time.sleep(0.1)  # the server has taken them
            with socket.create_connection(served) as conn:
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert closed_within(conn, 5).startswith(b"HTTP/1.1 503 ")
        finally:
            for conn in held:
                conn.close()
