"""A local HTTP server that answers Adyen's Checkout API (v72) as Adyen does, as far as
``AdyenProvider`` asks it: ``/payments``, ``/payments/details`` and the two cancels.

Its answers are built from Adyen's own OpenAPI examples (kept in
``tests/data/providers/adyen``), with Adyen's idempotency: a request repeated under an
``Idempotency-Key`` already used is answered with the first answer, and changes nothing.
The test decides what the next payment answers (authorised, partially authorised,
refused, or sent to the shopper for 3-D Secure), can make the next request fail (HTTP
500) and the next answer to ``/payments`` get lost on the way back. Every request is
kept with its idempotency key; an API key is checked, never kept.
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

DATA = Path(__file__).parent / "data/providers/adyen"
VERSION = "v72"
API_KEY = "AQE_local_test_key"
"""The only API key the server accepts (sent as ``x-api-key``)."""


def _example(name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((DATA / f"{name}.adyen-openapi.json").read_text())
    return found


class AdyenApi:
    """The state of the fake API: payments by pspReference, answers by idempotency key."""

    def __init__(self) -> None:
        self.authorised = _example("checkout_payments_authorised")
        self.redirect = _example("checkout_payments_redirect_shopper")
        self.details = _example("checkout_payments_details_authorised")
        self.cancel_by_psp = _example("checkout_payment_cancels_received")
        self.cancel_by_reference = _example("checkout_cancels_received")
        self.payments: dict[str, dict[str, Any]] = {}
        self.answers: dict[str, tuple[int, dict[str, Any]]] = {}
        self.requests: list[tuple[str, str | None, dict[str, Any]]] = []
        self.next_result = "Authorised"
        self.drop_next_answer = False
        self.fail_next = False
        self.wrong_keys = 0
        self.lock = threading.Lock()

    def keys(self, action: str) -> list[str | None]:
        """The idempotency keys sent with each request whose path ends with ``action``."""
        return [key for path, key, _ in self.requests if path.endswith(action)]

    def bodies(self, action: str) -> list[dict[str, Any]]:
        """The bodies sent with each request whose path ends with ``action``."""
        return [body for path, _, body in self.requests if path.endswith(action)]

    def redirect_result(self, psp: str) -> str:
        """What Adyen hands the shopper's browser back after the redirect (``redirectResult``)."""
        return f"redirect:{psp}"

    def handle(
        self, path: str, body: dict[str, Any], key: str | None, api_key: str | None
    ) -> tuple[int, dict[str, Any]] | None:
        """(status, body) for one POST, or None when its answer is to be lost."""
        with self.lock:
            if api_key != API_KEY:
                self.wrong_keys += 1
                return 401, _error(401, "000", "HTTP Status Response - Unauthorized", "security")
            self.requests.append((path, key, body))
            if self.fail_next:  # Adyen fails before it acts: nothing is kept for the key
                self.fail_next = False
                return 500, _error(500, "000", "An internal error occurred", "internal")
            if key is not None and key in self.answers:
                return self.answers[key]  # Adyen replays the first answer
            answer = self._answer(path, body)
            if key is not None:
                self.answers[key] = answer
            if path.endswith("/payments") and self.drop_next_answer:
                self.drop_next_answer = False
                return None
            return answer

    def _answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")  # v72, payments | cancels, [psp, cancels]
        if parts[:1] != [VERSION]:
            return 404, _error(404, "000", "Not found", "validation")
        if parts[1:] == ["payments"]:
            return self._pay(body)
        if parts[1:] == ["payments", "details"]:
            return self._details(body)
        if len(parts) == 4 and parts[1] == "payments" and parts[3] == "cancels":
            return self._cancel(body, [self.payments.get(parts[2])], psp=parts[2])
        if parts[1:] == ["cancels"]:
            reference = body.get("paymentReference")
            found = [p for p in self.payments.values() if p["reference"] == reference]
            return self._cancel(body, found, reference=reference)
        return 404, _error(404, "000", "Not found", "validation")

    def _pay(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        for field in ("merchantAccount", "amount", "reference", "paymentMethod", "returnUrl"):
            if field not in body:
                return 422, _error(422, "130", f"Required field '{field}' is not provided.")
        psp = f"99361789{len(self.payments) + 1:07d}L"
        result = self.next_result
        self.next_result = "Authorised"
        payment = {
            "psp": psp,
            "reference": body["reference"],
            "amount": body["amount"],
            "result": result,
            "canceled": False,
        }
        self.payments[psp] = payment
        if result == "RedirectShopper":
            answer = copy.deepcopy(self.redirect)
            answer["action"]["url"] += f"?redirect={psp}"
        else:
            answer = copy.deepcopy(self.authorised)
            answer["amount"] = dict(body["amount"])
        answer.update(pspReference=psp, resultCode=result, merchantReference=body["reference"])
        if result == "PartiallyAuthorised":  # the card held only half of it
            answer["amount"]["value"] = body["amount"]["value"] // 2
        if result == "Refused":
            answer.update(refusalReason="Refused", refusalReasonCode="2")
            del answer["additionalData"]["authCode"]
            answer["additionalData"]["refusalReasonRaw"] = "DECLINED"
        return 200, answer

    def _details(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        given = body.get("details")
        token = given.get("redirectResult") if isinstance(given, dict) else None
        payment = (
            self.payments.get(token.removeprefix("redirect:")) if isinstance(token, str) else None
        )
        if payment is None or payment["result"] != "RedirectShopper":
            return 422, _error(422, "101", "Invalid payment details")
        payment["result"] = "Authorised"
        answer = copy.deepcopy(self.details)
        answer.update(pspReference=payment["psp"], amount=payment["amount"])
        return 200, answer

    def _cancel(
        self,
        body: dict[str, Any],
        found: list[dict[str, Any] | None],
        *,
        psp: str | None = None,
        reference: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        if "merchantAccount" not in body:
            return 422, _error(422, "130", "Required field 'merchantAccount' is not provided.")
        if psp is not None and found == [None]:
            return 422, _error(422, "167", "Original pspReference required for this operation")
        for payment in found:
            if payment is not None:
                payment["canceled"] = True
        number = f"99361789{len(self.answers) + 1:07d}C"
        if psp is not None:
            answer = copy.deepcopy(self.cancel_by_psp)
            answer.update(paymentPspReference=psp)
        else:
            answer = copy.deepcopy(self.cancel_by_reference)
            answer.update(paymentReference=reference)
        answer.update(merchantAccount=body["merchantAccount"], pspReference=number)
        if "reference" not in body:
            answer.pop("reference", None)
        return 201, answer


def _error(status: int, code: str, message: str, kind: str = "validation") -> dict[str, Any]:
    return {"status": status, "errorCode": code, "message": message, "errorType": kind}


def _handler(api: AdyenApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            body = json.loads(raw)
            answer = api.handle(
                self.path, body, self.headers.get("Idempotency-Key"), self.headers.get("x-api-key")
            )
            if answer is None:
                self.close_connection = True
                self.connection.close()  # the answer is lost on the way back
                return
            status, sent = answer
            data = json.dumps(sent).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def adyen_api() -> Iterator[tuple[AdyenApi, str]]:
    """A running fake Checkout API and its base URL (with the version), shut down at the end."""
    api = AdyenApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    # A short poll: shutdown() waits for the loop's next look, half a second by default.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield api, f"http://127.0.0.1:{server.server_address[1]}/{VERSION}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
