"""A local HTTP server for a test: each GET answered by a function of its path, every
request listed."""

from __future__ import annotations

import functools
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

Answer = tuple[int, dict[str, str], bytes]
"""An answer: status, headers, body."""


@functools.cache
def _tls() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def local_client() -> httpx.Client:
    """An ``httpx.Client`` for a provider talking to a test's server: as the one a
    provider makes for itself (a 10 second timeout, httpx's TLS defaults), but with one
    TLS context for all of them. Each client made with the defaults loads the CA bundle
    into a context of its own, 25 ms or more of CPU, and the tests make a hundred and
    fifty of them for servers that speak plain HTTP."""
    return httpx.Client(timeout=10.0, verify=_tls())


class Served:
    """What the server was asked: each request's path and headers, in order."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.requests: list[tuple[str, dict[str, str]]] = []

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


@contextmanager
def serving(answer: Callable[[str], Answer]) -> Iterator[Served]:
    """A server on 127.0.0.1 answering every GET with ``answer(path)``."""
    served = Served("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.requests.append((self.path, dict(self.headers.items())))
            status, headers, body = answer(self.path)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.base = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll: shutdown() waits for the loop's next look, half a second by default,
    # which every test using a server would pay at its end.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
