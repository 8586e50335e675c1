"""A local HTTP server that answers PayPal's REST API as PayPal does, as far as
``PayPalProvider`` asks it: the OAuth2 token, Orders v2 (create, get, patch, authorize)
and the void of an authorization (Payments v2).

Its orders are built from PayPal sandbox answers recorded by django-oscar-paypal's tests
(kept in ``tests/data/providers/paypal``): a created order, the order once the buyer
approved it, and the order once authorized. PayPal's idempotency: a request repeated
under a ``PayPal-Request-Id`` already used is answered with the first answer, and changes
nothing. The test approves an order as the buyer would (or has every order approved at
once), makes the next authorization declined or fail (HTTP 503), lets the token lapse, or
makes the next answer to an authorization get lost on the way back. Every request is
kept with its request id; credentials are checked, never kept.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

DATA = Path(__file__).parent / "data/providers/paypal"
CLIENT_ID = "AZ_local_client"
CLIENT_SECRET = "EL_local_secret"
"""The only REST app credentials the server accepts."""


def _recorded(name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        (DATA / f"order_{name}.django-oscar-paypal.json").read_text()
    )
    return found


def _error(name: str, issue: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "details": [{"issue": issue, "description": description}],
        "message": "The requested action could not be performed, semantically incorrect, "
        "or failed business validation.",
        "debug_id": "f1e2d3c4b5a69",
    }


class PayPalApi:
    """The state of the fake API: orders and authorizations by id, answers by request id."""

    def __init__(self) -> None:
        self.created = _recorded("created")
        self.approved = _recorded("approved")
        self.authorized = _recorded("authorized")
        self.orders: dict[str, dict[str, Any]] = {}
        self.answers: dict[str, tuple[int, dict[str, Any] | None]] = {}
        self.requests: list[tuple[str, str, str | None, Any]] = []
        self.tokens: list[str] = []
        self.authorizations = 0
        self.decline_next = False
        self.drop_next_answer = False
        self.approve_at_once = False
        self.fail_next = False
        self.wrong_credentials = 0
        self.lock = threading.Lock()

    def keys(self, action: str) -> list[str | None]:
        """The PayPal-Request-Ids sent with each request whose path ends with ``action``."""
        return [key for _, path, key, _ in self.requests if path.endswith(action)]

    def bodies(self, action: str) -> list[Any]:
        return [body for _, path, _, body in self.requests if path.endswith(action)]

    def approve(self, order_id: str) -> None:
        """The buyer approved the order in PayPal's window."""
        with self.lock:
            order = self.orders[order_id]
            order["status"] = "APPROVED"
            order["payer"] = copy.deepcopy(self.approved["payer"])

    def lapse_tokens(self) -> None:
        """Every token given so far lapses: the next call with one is refused (401)."""
        with self.lock:
            self.tokens.clear()

    def token(self, authorization: str | None, form: dict[str, str]) -> tuple[int, Any]:
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        with self.lock:
            if authorization != f"Basic {expected}" or form.get("grant_type") != (
                "client_credentials"
            ):
                self.wrong_credentials += 1
                failed = "Client Authentication failed"
                return 401, {"error": "invalid_client", "error_description": failed}
            token = f"A21AA_local_{len(self.tokens) + 1}"
            self.tokens.append(token)
            return 200, {
                "scope": "https://uri.paypal.com/services/payments/payment",
                "access_token": token,
                "token_type": "Bearer",
                "app_id": "APP-80W284485P519543T",
                "expires_in": 32400,
            }

    def handle(
        self, method: str, path: str, body: Any, key: str | None, authorization: str | None
    ) -> tuple[int, Any] | None:
        """(status, body) for one API request, or None when its answer is to be lost."""
        with self.lock:
            if authorization is None or authorization.removeprefix("Bearer ") not in self.tokens:
                lapsed = "Token signature verification failed"
                return 401, {"error": "invalid_token", "error_description": lapsed}
            self.requests.append((method, path, key, body))
            if self.fail_next and path.endswith("/authorize"):  # fails before it acts
                self.fail_next = False
                return 503, _error("SERVICE_UNAVAILABLE", "SERVICE_UNAVAILABLE", "try again")
            if method == "POST" and key is not None and key in self.answers:
                return self.answers[key]  # PayPal replays the first answer
            answer = self._answer(method, path, body)
            if method == "POST" and key is not None:
                self.answers[key] = answer
            if path.endswith("/authorize") and self.drop_next_answer:
                self.drop_next_answer = False
                return None
            return answer

    def _answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if parts[:3] == ["v2", "checkout", "orders"]:
            if len(parts) == 3 and method == "POST":
                return self._create(body)
            order = self.orders.get(parts[3]) if len(parts) > 3 else None
            if order is None:
                return 404, _error("RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", "no such order")
            if len(parts) == 4 and method == "GET":
                return 200, copy.deepcopy(order)
            if len(parts) == 4 and method == "PATCH":
                for change in body:
                    if change["op"] == "replace" and change["path"].endswith("/amount"):
                        order["purchase_units"][0]["amount"] = change["value"]
                return 204, None
            if parts[4:] == ["authorize"] and method == "POST":
                return self._authorize(order)
        if parts[:3] == ["v2", "payments", "authorizations"] and parts[4:] == ["void"]:
            return self._void(parts[3])
        return 404, _error("RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", "no such resource")

    def _create(self, body: dict[str, Any]) -> tuple[int, Any]:
        order = copy.deepcopy(self.created)
        order_id = f"5O19{len(self.orders) + 1:04d}TN364715T"
        (unit,) = body["purchase_units"]
        template = order["purchase_units"][0]
        template.pop("items", None)
        template["amount"] = unit["amount"]
        template["custom_id"] = unit["custom_id"]
        template["reference_id"] = unit.get("reference_id", "default")
        order.update(id=order_id, intent=body["intent"], status="CREATED")
        if self.approve_at_once:  # the buyer approves as soon as the order is shown
            order.update(status="APPROVED", payer=copy.deepcopy(self.approved["payer"]))
        for link in order["links"]:
            link["href"] = link["href"].replace(self.created["id"], order_id)
        self.orders[order_id] = order
        return 201, copy.deepcopy(order)

    def _authorize(self, order: dict[str, Any]) -> tuple[int, Any]:
        if order["status"] != "APPROVED":
            return 422, _error(
                "UNPROCESSABLE_ENTITY", "ORDER_NOT_APPROVED", "Payer has not yet approved the Order"
            )
        if self.decline_next:
            self.decline_next = False
            return 422, _error(
                "UNPROCESSABLE_ENTITY",
                "INSTRUMENT_DECLINED",
                "The instrument presented was either declined by the processor or bank.",
            )
        self.authorizations += 1
        authorization = copy.deepcopy(
            self.authorized["purchase_units"][0]["payments"]["authorizations"][0]
        )
        authorization_id = f"3PW01203{self.authorizations:04d}6941H"
        authorization.update(
            id=authorization_id,
            amount=order["purchase_units"][0]["amount"],
            custom_id=order["purchase_units"][0]["custom_id"],
            status="CREATED",
        )
        order["purchase_units"][0]["payments"] = {"authorizations": [authorization]}
        order["status"] = "COMPLETED"
        return 201, copy.deepcopy(order)

    def _void(self, authorization_id: str) -> tuple[int, Any]:
        for order in self.orders.values():
            payments = order["purchase_units"][0].get("payments", {})
            for authorization in payments.get("authorizations", []):
                if authorization["id"] == authorization_id:
                    if authorization["status"] == "VOIDED":
                        return 422, _error(
                            "UNPROCESSABLE_ENTITY",
                            "AUTHORIZATION_ALREADY_VOIDED",
                            "Authorization has been previously voided.",
                        )
                    authorization["status"] = "VOIDED"
                    return 204, None
        return 404, _error("RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", "no such authorization")


def _handler(api: PayPalApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.path == "/v1/oauth2/token":
                form = {name: values[-1] for name, values in parse_qs(raw.decode()).items()}
                answer: tuple[int, Any] | None = api.token(self.headers.get("Authorization"), form)
            else:
                body = json.loads(raw) if raw else None
                answer = api.handle(
                    method,
                    self.path,
                    body,
                    self.headers.get("PayPal-Request-Id"),
                    self.headers.get("Authorization"),
                )
            if answer is None:
                self.close_connection = True
                self.connection.close()  # the answer is lost on the way back
                return
            status, sent = answer
            data = b"" if sent is None else json.dumps(sent).encode()
            self.send_response(status)
            if sent is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Paypal-Debug-Id", "f1e2d3c4b5a69")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PATCH(self) -> None:
            self._serve("PATCH")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def paypal_api() -> Iterator[tuple[PayPalApi, str]]:
    """A running fake REST API and its base URL, shut down at the end."""
    api = PayPalApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    # A short poll: shutdown() waits for the loop's next look, half a second by default.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield api, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
