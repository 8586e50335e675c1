"""``paysession inspect``: serve the read-only inspector over a store (the ``inspect`` extra).

Loopback only unless a token is given: the pages show every session of the store, so
binding another address without one is refused. The token comes from ``--token`` or,
kept out of the process list, from ``PAYSESSION_INSPECT_TOKEN``.
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import os
import signal
import socket
import sys
from pathlib import Path
from types import ModuleType

from paysession._text import printable
from paysession.cli._input import TooLarge, read_bounded
from paysession.cli._store import NoStore, db_name, is_dsn, open_read_only
from paysession.errors import StoreError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
TOKEN_VARIABLE = "PAYSESSION_INSPECT_TOKEN"
INSTALL = "pip install 'paysession[inspect]'"
_LARGEST_KEY = 64 * 2**10  # a key is tens of bytes
_CONNECTIONS = 4  # the web server's worker threads share them


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "inspect",
        help="serve a read-only web page of a store's sessions, trails and anomalies",
        description=(
            "Serve the inspector: every session of a SQLite file or PostgreSQL database, its "
            "path on the state diagram, its trail and whether it verifies, anomalies and the "
            "latest moves. It opens the store read-only. It binds to loopback unless given a "
            f"token (--token or ${TOKEN_VARIABLE}); Ctrl-C stops it."
        ),
    )
    parser.add_argument("--db", required=True, help="SQLite file or PostgreSQL URL/DSN")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"default: {DEFAULT_HOST}")
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"default: {DEFAULT_PORT}; 0 picks one"
    )
    parser.add_argument(
        "--token", default=None, help=f"required of every request (or ${TOKEN_VARIABLE})"
    )
    parser.add_argument(
        "--key-file", type=Path, default=None, help="key of keyed trails, to verify them"
    )
    parser.set_defaults(run=run)


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 5 and int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"must be a port from 0 to 65535, got {text[:40]!r}")
    return int(text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _fail(message: str) -> int:
    sys.stderr.write(f"paysession inspect: {message}\n")
    return 2


def _web() -> tuple[ModuleType, ModuleType]:
    """The app module and its server's (uvicorn's, bounded), imported on use: only this
    command needs the extra."""
    return (
        importlib.import_module("paysession.inspector.app"),
        importlib.import_module("paysession.inspector.serve"),
    )


def run(args: argparse.Namespace) -> int:
    token = args.token if args.token is not None else os.environ.get(TOKEN_VARIABLE)
    if token is not None and not (token and token.isprintable() and token == token.strip()):
        return _fail("the token must be printable text, not empty, without spaces at either end")
    if token is None and not is_loopback(args.host):
        return _fail(
            f"binding {printable(args.host)} shows every session to the network: "
            f"give --token (or ${TOKEN_VARIABLE}), or bind a loopback address"
        )
    key = None
    if args.key_file is not None:
        try:
            key = read_bounded(args.key_file, "key file", _LARGEST_KEY).strip()
        except TooLarge as error:
            return _fail(printable(error))
        except OSError as error:
            return _fail(f"cannot read key file {printable(args.key_file)}: {error.strerror}")
        if not key:
            return _fail(f"key file {printable(args.key_file)} is empty")
    try:
        web, serve = _web()
    except ImportError as error:
        missing = (error.name or "?").split(".")[0]
        return _fail(f"the inspector needs the inspect extra ({missing}): {INSTALL}")
    try:
        store = open_read_only(args.db, connections=_CONNECTIONS)
    except NoStore as error:
        return _fail(str(error))
    try:
        # One read before serving: a database that cannot be read is said now, not on
        # the first page. It decodes no row: one edited by hand is a page's business.
        store.records_since(None, 0)
    except StoreError as error:
        store.close()
        return _fail(f"cannot read {db_name(args.db)}: {error.detail}")
    try:
        listener = _listen(args.host, args.port)
    except OSError as error:
        store.close()
        return _fail(f"cannot listen on {printable(args.host)}:{args.port}: {error.strerror}")
    host, port = listener.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    where = "PostgreSQL" if is_dsn(args.db) else "SQLite"
    print(
        f"paysession inspect: {db_name(args.db)} ({where}, read-only) at "
        f"http://{shown}:{port}/{' (token required)' if token else ''}; Ctrl-C stops it",
        flush=True,
    )
    own_names = (*web.LOOPBACK_NAMES, args.host.strip("[]").lower())
    config = serve.server_config(
        web.create_app(store, key=key, token=token, hosts=own_names),
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    # Ctrl-C must stop the server even when SIGINT was inherited as ignored (a job
    # started in the background): the web server restores this handler when it stops
    # and raises the signal again, which ends the command with 130.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Pages are checked in worker threads; a thread waiting for the interpreter (the one
    # answering /healthz, the event loop) gets it within 1 ms rather than 5.
    sys.setswitchinterval(0.001)
    try:
        serve.run(config, [listener])
    finally:
        listener.close()
        store.close()
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port``, bound here so that a port in use is one
    clear line rather than the web server's log."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host.strip("[]"), port))
        listener.listen(128)
    except OSError:
        listener.close()
        raise
    listener.set_inheritable(True)
    return listener


__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "TOKEN_VARIABLE", "add_command", "is_loopback", "run"]
