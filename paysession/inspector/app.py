"""The inspector's web app (Starlette, Jinja2): read-only pages and a JSON API over a store.

Pages: ``/`` (sessions), ``/sessions/{id}``, ``/anomalies``, ``/activity``,
``/lifecycle``; the API mirrors them under ``/api/``; ``/healthz`` says whether the
store answers. Each page and its API twin are rendered from one view
(``views.py``), so they cannot disagree.

Safety, in the order a request meets it:

- **Host.** Without a token, only a request whose ``Host`` names the inspector's own
  address is served (Starlette's ``TrustedHostMiddleware``; any other gets its plain
  400 "Invalid host header"): a page elsewhere that points its name at 127.0.0.1 (DNS
  rebinding) gets nothing.
- **Token.** With a token, every request but ``/healthz``, ``/login`` and ``/static``
  must carry it: ``Authorization: Bearer <token>``, or the cookie that the login form
  sets (a keyed digest of the token, never the token). Both are compared in constant
  time. A page asked for without it is sent to the login form; an API call gets 401.
- **Escaping.** Jinja2 escapes every value put into a page, and the ``shown`` filter
  first makes control and format characters visible (``\\x1b``), so an actor, a reason
  or a provider's event id from a webhook is shown as the text it is.
- **Policy.** Every response carries a Content-Security-Policy that allows the page's
  own stylesheet and script only (no inline script or style, nothing from elsewhere),
  and forbids framing; responses are not cached.
- **Errors.** A bad filter is 400 naming the parameter, an unknown session or path
  404, a store that cannot be read 503: a page (or JSON) of one line, no traceback.
- **Bounds.** At most ``BUSY`` (1) request reads the store at a time; the others wait for
  their turn without holding a thread, and ``/healthz`` never waits. A request body must
  arrive within ``BODY_TIMEOUT`` seconds (408). A client that fails ``LOGIN_ATTEMPTS``
  logins within ``LOGIN_WINDOW`` seconds is refused (429) until the window has passed.
  A page shows at most ``CELL`` characters of a value, and a session's trail and events
  a page at a time. (Header timeouts and the connection cap are the server's:
  ``serve.py``.)
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import anyio
import jinja2
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paysession import __version__
from paysession._text import printable
from paysession.errors import InvalidSessionData, PaySessionError, StoreError
from paysession.inspector import views
from paysession.inspector.drawing import status_bars
from paysession.status import PaymentSessionStatus
from paysession.store._browse import MAX_PAGE, BrowsableStore, PageKey
from paysession.store.base import AnomalyKind

_HERE = Path(__file__).parent
COOKIE = "paysession_inspect"

POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""The Content-Security-Policy of every response."""

COUNTS_TTL = 5.0
"""How long, in seconds, the counts per status are reused: counting a million sessions
takes tens of milliseconds, and the chart need not be exact to the second."""

LOOPBACK_NAMES: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")
"""The names a request may give as its Host when the inspector has no token."""

ACTIVITY = 50
"""How many of the newest moves the activity page starts with."""

BUSY = 1
"""Requests that read the store at once; more wait for their turn. Checking a trail is
Python work, which one interpreter runs one thread at a time: a second request at once
would finish no sooner, and would keep /healthz waiting longer (bench_inspect_load)."""

BODY_TIMEOUT = 10.0
"""Seconds a request's body has to arrive."""

LOGIN_ATTEMPTS = 5
LOGIN_WINDOW = 60.0
"""A client may fail ``LOGIN_ATTEMPTS`` logins in ``LOGIN_WINDOW`` seconds."""

_CLIENTS = 10_000  # clients whose failed logins are remembered; the oldest go first
_LONGEST_FORM = 4096
_Endpoint = Callable[[Request], Response]


CELL = 300
"""The most characters a page shows of one value; the API gives it whole, a page of
records at a time."""


def _visible(value: object) -> str:
    if value is None:
        return ""
    shown = printable(value)
    if len(shown) <= CELL:
        return shown
    return f"{shown[:CELL]}… ({len(shown)} characters; the API gives them all)"


def _path_part(value: object) -> str:
    return quote(str(value), safe="")


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["shown"] = _visible
    env.filters["path_part"] = _path_part
    env.globals["version"] = __version__
    return Jinja2Templates(env=env)


class _Counts:
    """The counts per status, reused for ``every`` seconds."""

    def __init__(self, store: BrowsableStore, every: float) -> None:
        self._store = store
        self._every = every
        self._lock = threading.Lock()
        self._taken = -math.inf
        self._counts: dict[PaymentSessionStatus, int] = {}

    def __call__(self) -> tuple[dict[PaymentSessionStatus, int], float]:
        with self._lock:
            now = time.monotonic()
            if now - self._taken >= self._every:
                self._counts = self._store.status_counts()
                self._taken = now
            return self._counts, now - self._taken


class _Attempts:
    """Failed logins per client address, for ``LOGIN_WINDOW`` seconds each."""

    def __init__(self) -> None:
        self._failed: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait(self, client: str) -> float:
        """Seconds until ``client`` may try again; 0 when it may now."""
        with self._lock:
            now = time.monotonic()
            times = [at for at in self._failed.get(client, ()) if now - at < LOGIN_WINDOW]
            if len(times) < LOGIN_ATTEMPTS:
                return 0.0
            return LOGIN_WINDOW - (now - times[-LOGIN_ATTEMPTS])

    def failed(self, client: str) -> None:
        with self._lock:
            now = time.monotonic()
            times = [at for at in self._failed.pop(client, ()) if now - at < LOGIN_WINDOW]
            self._failed[client] = [*times[-LOGIN_ATTEMPTS:], now]
            while len(self._failed) > _CLIENTS:
                self._failed.popitem(last=False)


class _SlowBody(Exception):
    """A request body that did not arrive within BODY_TIMEOUT."""


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/healthz"


class Inspector:
    """The endpoints, over one read-only store."""

    def __init__(
        self, store: BrowsableStore, key: bytes | None, token: str | None, counts_every: float
    ) -> None:
        self.store = store
        self.key = key
        self.token = token
        self.templates = _templates()
        self.counts = _Counts(store, counts_every)
        self.attempts = _Attempts()

    # -- pages

    def _render(
        self, request: Request, name: str, context: dict[str, Any], status: int = 200
    ) -> Response:
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    def sessions(self, request: Request) -> Response:
        query = views.SessionsQuery.parse(_params(request))
        view = views.sessions_view(self.store, query, self.key)
        counts, age = self.counts()
        if _wants_json(request):
            return JSONResponse(view.to_json() | {"counts": _by_value(counts)})
        links = {
            status.value: "/?" + urlencode(query.params() | {"status": status.value})
            for status in counts
        }
        return self._render(
            request,
            "sessions.html",
            {
                "view": view,
                "filters": query.params(),
                "statuses": [status.value for status in PaymentSessionStatus],
                "bars": status_bars(_by_value(counts), links),
                "counts_age": age,
                "next_link": _next_link("/", query.params(), view.next_key),
            },
        )

    def session(self, request: Request) -> Response:
        params = _params(request)
        view = self._session_view(request, params)
        if _wants_json(request):
            return JSONResponse(view.to_json())
        problem = view.verification.problem
        path = f"/sessions/{_path_part(view.session.id)}"
        here = {"trail_from": view.query.trail_from, "events_from": view.query.events_from}
        trail_previous, trail_next = view.trail_pages
        events_previous, events_next = view.events_pages
        return self._render(
            request,
            "session.html",
            {
                "view": view,
                "fields": view.fields(),
                "records": [views.record_json(record) for record in view.trail],
                "bad_seq": None if problem is None else problem.seq,
                "events": [views.event_json(event) for event in view.events],
                "trail_previous": _page_link(path, here, "trail_from", trail_previous),
                "trail_next": _page_link(path, here, "trail_from", trail_next),
                "events_previous": _page_link(path, here, "events_from", events_previous),
                "events_next": _page_link(path, here, "events_from", events_next),
                "last_trail_page": trail_next is None,
            },
        )

    def trail(self, request: Request) -> Response:
        view = self._session_view(request, _params(request))
        return JSONResponse(view.trail_json())

    def _session_view(self, request: Request, params: Mapping[str, str]) -> views.SessionView:
        session_id = request.path_params["session_id"]
        query = views.SessionQuery.parse(params)
        view = views.session_view(self.store, session_id, self.key, query)
        if view is None:
            raise HTTPException(404, f"no session {_short(session_id)} in this store")
        return view

    def anomalies(self, request: Request) -> Response:
        query = views.AnomaliesQuery.parse(_params(request))
        view = views.anomalies_view(self.store, query)
        if _wants_json(request):
            return JSONResponse(view.to_json())
        return self._render(
            request,
            "anomalies.html",
            {
                "view": view,
                "filters": query.params(),
                "kinds": [kind.value for kind in AnomalyKind],
                "next_link": _next_link("/anomalies", query.params(), view.next_key),
            },
        )

    def activity(self, request: Request) -> Response:
        after = _params(request).get("after")
        if after:
            try:
                logged = self.store.records_since(after, MAX_PAGE)
            except InvalidSessionData:
                raise InvalidSessionData({"after": "not a cursor of this store's feed"}) from None
        else:
            logged = self.store.latest_records(ACTIVITY)
        cursor = logged[-1].cursor if logged else after or ""
        if _wants_json(request):
            return JSONResponse(
                {"records": [views.logged_json(one) for one in logged], "cursor": cursor}
            )
        return self._render(
            request,
            "activity.html",
            {"records": [views.logged_json(one) for one in reversed(logged)], "cursor": cursor},
        )

    def lifecycle(self, request: Request) -> Response:
        rows = views.lifecycle_rows()
        if _wants_json(request):
            return JSONResponse({"transitions": rows})
        return self._render(
            request, "lifecycle.html", {"rows": rows, "diagram": views.lifecycle_diagram()}
        )

    def healthz(self, request: Request) -> Response:
        try:
            # Whether the store answers, decoding no row (a row edited by hand is a
            # page's 503, not the whole inspector's).
            self.store.records_since(None, 0)
        except StoreError:
            # No detail: this answers without the token, and a detail names files.
            return JSONResponse(
                {"ok": False, "error": "the store could not be read"}, status_code=503
            )
        return JSONResponse({"ok": True, "version": __version__})

    # -- the token

    def cookie_value(self) -> str:
        """What the login cookie holds: a digest keyed by the token, not the token."""
        assert self.token is not None
        return hmac.new(
            self.token.encode(), b"paysession inspect login", hashlib.sha256
        ).hexdigest()

    def allowed(self, request: Request) -> bool:
        if self.token is None:
            return True
        given = request.headers.get("authorization", "")
        scheme, _, credential = given.partition(" ")
        # Headers arrive decoded as latin-1: encoding back gives the bytes that were sent,
        # which for a UTF-8 token are its UTF-8 bytes.
        if scheme.lower() == "bearer" and hmac.compare_digest(
            credential.strip(" ").encode("latin-1", "replace"), self.token.encode()
        ):
            return True
        return hmac.compare_digest(
            request.cookies.get(COOKIE, "").encode(), self.cookie_value().encode()
        )

    async def login(self, request: Request) -> Response:
        target = _local_path(request.query_params.get("next", "/"))
        if request.method == "GET" or self.token is None:
            return self._render(request, "login.html", {"target": target, "failed": False})
        client = request.client.host if request.client is not None else "?"
        wait = self.attempts.wait(client)
        if wait:
            response = self.error_page(
                request, 429, f"too many failed logins: try again in {math.ceil(wait)} s"
            )
            response.headers["retry-after"] = str(math.ceil(wait))
            return response
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > _LONGEST_FORM:
                # Read no further: nobody signed in yet may make the server hold a body.
                return self.error_page(request, 413, "the form is too large")
        form = parse_qs(body.decode("utf-8", "replace"))
        given = (form.get("token") or [""])[0]
        target = _local_path((form.get("next") or [target])[0])
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            self.attempts.failed(client)
            return self._render(
                request, "login.html", {"target": target, "failed": True}, status=401
            )
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, self.cookie_value(), httponly=True, samesite="strict", path="/")
        return response

    # -- errors

    def error_page(self, request: Request, status: int, message: str) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": message}, status_code=status)
        return self._render(
            request, "error.html", {"status": status, "message": message}, status=status
        )


def _params(request: Request) -> dict[str, str]:
    """The query's values by name; a name given twice is refused, naming it."""
    params: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name in params:
            raise InvalidSessionData({name: "given more than once"})
        params[name] = value
    return params


def _next_link(path: str, params: Mapping[str, str], key: PageKey | None) -> str | None:
    """The address of the page after this one (same filters), or None on the last."""
    return None if key is None else f"{path}?{urlencode({**params, 'after': key.token()})}"


def _page_link(path: str, here: Mapping[str, int], field: str, start: int | None) -> str | None:
    """The address of another page of a session's trail or events (None: no such page)."""
    if start is None:
        return None
    return f"{path}?{urlencode({**here, field: start})}"


def _by_value(counts: Mapping[PaymentSessionStatus, int]) -> dict[str, int]:
    return {status.value: count for status, count in counts.items()}


def _short(text: str, longest: int = 120) -> str:
    shown = printable(text)
    return shown if len(shown) <= longest else shown[:longest] + "..."


def _host_patterns(hosts: Sequence[str]) -> list[str]:
    """``hosts`` as ``TrustedHostMiddleware`` matches them: an IPv6 address as a Host
    header writes it, in brackets (``::1`` is ``[::1]``); each one exactly, never as a
    wildcard."""
    patterns = []
    for name in hosts:
        name = name.strip().lower()
        if "*" in name:
            raise InvalidSessionData({"hosts": f"{name!r} is not a host name or address"})
        ipv6 = ":" in name and not name.startswith("[")
        patterns.append(f"[{name}]" if ipv6 else name)
    return patterns


def _local_path(target: str) -> str:
    """``target`` if it is a path of this app, else ``/``: the login form never sends
    anyone elsewhere (``//host`` and ``/\\host`` are other hosts to a browser)."""
    if target.startswith("/") and not target.startswith(("//", "/\\")) and target.isprintable():
        return target
    return "/"


class _Headers:
    """The outermost layer: the policy headers and the server time on every response,
    a refused one too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed = (time.perf_counter() - began) * 1000
                headers = list(message.get("headers", []))
                headers.extend(
                    (name.encode(), value.encode())
                    for name, value in (
                        ("content-security-policy", POLICY),
                        ("x-content-type-options", "nosniff"),
                        ("x-frame-options", "DENY"),
                        ("referrer-policy", "no-referrer"),
                        ("cache-control", "no-store"),
                        ("server-timing", f"app;dur={elapsed:.2f}"),
                    )
                )
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _Guard:
    """The token, the deadline of a request's body, and the store read by one request at
    a time; errors below it are turned into pages (nothing can show a traceback)."""

    def __init__(self, app: ASGIApp, inspector: Inspector) -> None:
        self.app = app
        self.inspector = inspector
        self.busy = anyio.Semaphore(BUSY)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        path = request.url.path
        if not (
            path in ("/healthz", "/login") or path.startswith("/static/")
        ) and not self.inspector.allowed(request):
            if _wants_json(request):
                response: Response = JSONResponse(
                    {"error": "a bearer token is required"},
                    status_code=401,
                    headers={"www-authenticate": "Bearer"},
                )
            else:
                target = path + (f"?{request.url.query}" if request.url.query else "")
                response = RedirectResponse(
                    "/login?" + urlencode({"next": target}), status_code=303
                )
            await response(scope, receive, send)
            return
        timed = _timed(receive)
        if path == "/healthz" or path.startswith("/static/") or path == "/login":
            await self.app(scope, timed, send)
            return
        # Waiting here holds no worker thread: a flood of page requests queues, and
        # each reads the store in turn, while /healthz still answers.
        async with self.busy:
            await self.app(scope, timed, send)


def _timed(receive: Receive) -> Receive:
    """``receive``, raising _SlowBody when the request body does not arrive in time."""
    whole = False

    async def timed() -> Message:
        nonlocal whole
        if whole:  # the body is in: what is left to wait for is the disconnect
            return await receive()
        try:
            with anyio.fail_after(BODY_TIMEOUT):
                message = await receive()
        except TimeoutError:
            raise _SlowBody from None
        whole = message["type"] != "http.request" or not message.get("more_body", False)
        return message

    return timed


class _AnyText(Convertor[str]):
    """A path part of any characters, line breaks too: an id holding ``\\n`` is a session
    like any other (Starlette's ``path`` stops at a line break)."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("any", _AnyText())


def _handlers(
    inspector: Inspector,
) -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    async def bad_input(request: Request, error: Exception) -> Response:
        assert isinstance(error, InvalidSessionData)
        field, why = next(iter(error.problems.items()))
        return inspector.error_page(request, 400, printable(f"{field}: {why}"))

    async def unreadable(request: Request, error: Exception) -> Response:
        return inspector.error_page(
            request, 503, printable(f"the store could not be read: {error}")
        )

    async def refused(request: Request, error: Exception) -> Response:
        return inspector.error_page(request, 400, printable(error))

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        message = (
            error.detail
            if error.status_code != 404 or error.detail != "Not Found"
            else ("no such page")
        )
        return inspector.error_page(request, error.status_code, message)

    async def slow(request: Request, error: Exception) -> Response:
        response = inspector.error_page(request, 408, "the request body did not arrive in time")
        # The rest of the body may still come: the connection ends with this answer.
        response.headers["connection"] = "close"
        return response

    async def failed(request: Request, error: Exception) -> Response:
        return inspector.error_page(request, 500, "the inspector failed on this request")

    return {
        InvalidSessionData: bad_input,
        StoreError: unreadable,
        PaySessionError: refused,
        HTTPException: http_error,
        _SlowBody: slow,
        Exception: failed,
    }


def create_app(
    store: BrowsableStore,
    *,
    key: bytes | None = None,
    token: str | None = None,
    counts_every: float = COUNTS_TTL,
    hosts: Sequence[str] = LOOPBACK_NAMES,
) -> ASGIApp:
    """The inspector over ``store`` (open it read-only), as an ASGI app.

    ``key`` verifies keyed trails; ``token``, when given, is required of every request
    (see the module notes); the counts per status are taken again at most every
    ``counts_every`` seconds. Without a token, only requests whose Host header names one
    of ``hosts`` (with any port) are served; a name with ``*`` is refused
    (InvalidSessionData), as each is matched exactly.
    """
    if token is not None and not (token and token.isprintable() and token == token.strip()):
        raise InvalidSessionData(
            {"token": "must be printable text, not empty, without spaces at either end"}
        )
    inspector = Inspector(store, key, token, counts_every)
    routes = [
        Route("/", inspector.sessions),
        Route("/sessions/{session_id:any}", inspector.session),
        Route("/anomalies", inspector.anomalies),
        Route("/activity", inspector.activity),
        Route("/lifecycle", inspector.lifecycle),
        Route("/api/sessions", inspector.sessions),
        Route("/api/sessions/{session_id:any}/trail", inspector.trail),
        Route("/api/sessions/{session_id:any}", inspector.session),
        Route("/api/anomalies", inspector.anomalies),
        Route("/api/activity", inspector.activity),
        Route("/api/lifecycle", inspector.lifecycle),
        Route("/healthz", inspector.healthz),
        Route("/login", inspector.login, methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers=_handlers(inspector))
    guarded: ASGIApp = _Guard(app, inspector)
    if token is None:
        guarded = TrustedHostMiddleware(
            guarded, allowed_hosts=_host_patterns(hosts), www_redirect=False
        )
    return _Headers(guarded)


__all__ = ["COOKIE", "LOOPBACK_NAMES", "POLICY", "create_app"]
