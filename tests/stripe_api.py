"""A local HTTP server that answers the PaymentIntent endpoints as Stripe's API does.

Its PaymentIntents are built from Stripe's own OpenAPI fixture (kept in
``tests/data/providers``), with Stripe's idempotency: a POST repeated under an
``Idempotency-Key`` already used is answered with the first answer, and changes nothing.
The test moves an intent as the storefront would (``attach``: the customer gave a card)
and can make the next confirmation decline or lose its answer on the way back.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

FIXTURE = (
    Path(__file__).parent
    / "data/providers/stripe/payment_intent_requires_payment_method_last_payment_error"
    ".stripe-openapi.json"
)


class StripeApi:
    """The state of the fake API: intents by id, answers by idempotency key, requests."""

    def __init__(self) -> None:
        self.template: dict[str, Any] = json.loads(FIXTURE.read_text())
        self.intents: dict[str, dict[str, Any]] = {}
        self.answers: dict[str, tuple[int, dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.confirmations = 0
        self.decline_next = False
        self.drop_next_answer = False
        self.lock = threading.Lock()

    def attach(self, intent_id: str) -> None:
        """The customer gave a payment method: the intent waits for confirmation."""
        self.intents[intent_id]["status"] = "requires_confirmation"

    def keys(self, action: str) -> list[str | None]:
        """The idempotency keys sent with each request whose path ends with ``action``."""
        return [key for method, path, key in self.requests if path.endswith(action)]

    def handle(self, method: str, path: str, form: dict[str, str], key: str | None) -> Any:
        """(status, body) for one request, or None when its answer is to be lost."""
        with self.lock:
            self.requests.append((method, path, key))
            if method == "POST" and key is not None and key in self.answers:
                return self.answers[key]  # Stripe replays the first answer
            answer = self._answer(method, path, form)
            if method == "POST" and key is not None:
                self.answers[key] = answer
            if path.endswith("/confirm") and self.drop_next_answer:
                self.drop_next_answer = False
                return None
            return answer

    def _answer(self, method: str, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")  # v1, payment_intents, [id, [action]]
        if parts[:2] != ["v1", "payment_intents"]:
            return 404, _error("invalid_request_error", "resource_missing")
        if len(parts) == 2 and method == "POST":
            return 200, self._create(form)
        intent = self.intents.get(parts[2]) if len(parts) > 2 else None
        if intent is None:
            return 404, _error("invalid_request_error", "resource_missing")
        action = parts[3] if len(parts) > 3 else None
        if method == "GET":
            return 200, copy.deepcopy(intent)
        if action is None:
            if "amount" in form:
                intent["amount"] = int(form["amount"])
            return 200, copy.deepcopy(intent)
        if action == "confirm":
            if form.get("payment_method") and intent["status"] == "requires_payment_method":
                intent["status"] = "requires_confirmation"  # the payment method given
            return self._confirm(intent)
        if action == "cancel":
            if intent["status"] in ("succeeded", "canceled"):
                return 400, _error("invalid_request_error", "payment_intent_unexpected_state")
            intent["status"] = "canceled"
            return 200, copy.deepcopy(intent)
        return 404, _error("invalid_request_error", "resource_missing")

    def _create(self, form: dict[str, str]) -> dict[str, Any]:
        intent = copy.deepcopy(self.template)
        intent_id = f"pi_local{len(self.intents) + 1:04d}"
        intent.update(
            id=intent_id,
            amount=int(form["amount"]),
            currency=form["currency"],
            capture_method=form.get("capture_method", "automatic"),
            metadata={
                name[len("metadata[") : -1]: value
                for name, value in form.items()
                if name.startswith("metadata[")
            },
            client_secret=f"{intent_id}_secret_local",
            last_payment_error=None,
            next_action=None,
            status="requires_payment_method",
        )
        self.intents[intent_id] = intent
        return copy.deepcopy(intent)

    def _confirm(self, intent: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if intent["status"] != "requires_confirmation":
            return 400, _error("invalid_request_error", "payment_intent_unexpected_state")
        self.confirmations += 1
        if self.decline_next:
            self.decline_next = False
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "insufficient_funds",
            }
            body = _error("card_error", "card_declined")
            body["error"]["payment_intent"] = copy.deepcopy(intent)
            return 402, body
        manual = intent["capture_method"] == "manual"
        intent["status"] = "requires_capture" if manual else "succeeded"
        if manual:
            intent["amount_capturable"] = intent["amount"]
        return 200, copy.deepcopy(intent)


def _error(kind: str, code: str) -> dict[str, Any]:
    return {"error": {"type": kind, "code": code, "message": f"{kind}: {code}"}}


def _handler(api: StripeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            form = {name: values[-1] for name, values in parse_qs(raw).items()}
            answer = api.handle(method, self.path, form, self.headers.get("Idempotency-Key"))
            if answer is None:
                self.close_connection = True
                self.connection.close()  # the answer is lost on the way back
                return
            status, body = answer
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", f"req_{len(api.requests)}")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def stripe_api() -> Iterator[tuple[StripeApi, str]]:
    """A running fake API and its base URL, shut down at the end."""
    api = StripeApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    # A short poll: shutdown() waits for the loop's next look, half a second by default,
    # which every test using a server would pay at its end.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield api, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
