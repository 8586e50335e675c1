"""``paysession sessions --db``: a store's sessions, newest move first, with their last move.

What an operator looks at to find the id that ``audit show --session``, ``audit replay``
or the inspector's session page want. Read-only, like every command that reads a store.
"""

from __future__ import annotations

import argparse
import json
import sys

from paysession._wire import format_datetime
from paysession.cli._store import NoStore, db_name, open_read_only
from paysession.cli._table import format_table, printable
from paysession.errors import PaySessionError
from paysession.status import PaymentSessionStatus
from paysession.store._browse import MAX_PAGE, SessionFilter

DEFAULT_LIMIT = 50
"""How many sessions are listed unless --limit says otherwise."""

HEADERS = ("session", "status", "cart", "provider", "last move", "updated")


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text[:40]!r}") from None
    if not 1 <= value <= MAX_PAGE:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_PAGE}, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    """List the sessions; 0 (even when none match), 2 when the store cannot be read."""
    try:
        store = open_read_only(args.db)
    except NoStore as error:
        return _fail(str(error))
    where = SessionFilter(
        status=None if args.status is None else PaymentSessionStatus(args.status),
        cart_id=args.cart,
    )
    rows: list[dict[str, object]] = []
    try:
        found, _ = store.sessions_page(where, limit=args.limit)
        for session in found:
            snapshot = store.load(session.id)
            last = None if snapshot is None else store.record(session.id, snapshot.version)
            rows.append(
                {
                    "id": session.id,
                    "status": session.status.value,
                    "cart_id": session.cart_id,
                    "provider_id": session.provider_id,
                    "last_move": None if last is None else last.trigger,
                    "updated_at": format_datetime(session.updated_at),
                }
            )
    except PaySessionError as error:
        return _fail(f"cannot read {db_name(args.db)}: {error}")
    finally:
        store.close()
    if args.json:
        print(json.dumps(rows, indent=None, separators=(",", ":")))
        return 0
    table = [
        [printable("" if value is None else str(value)) for value in row.values()] for row in rows
    ]
    print(format_table(HEADERS, table))
    return 0


def _fail(message: str) -> int:
    print(f"paysession sessions: {message}", file=sys.stderr)
    return 2


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``paysession sessions`` to the CLI's subcommands."""
    parser = commands.add_parser(
        "sessions",
        help="list a store's sessions (id, status, cart, last move), newest first",
        description="List the sessions of a store, the most recently moved first, with "
        "their status, cart, provider and last move (read-only).",
    )
    parser.add_argument(
        "--db", required=True, metavar="PATH_OR_DSN", help="a SQLite file or a PostgreSQL DSN"
    )
    parser.add_argument(
        "--status", choices=[status.value for status in PaymentSessionStatus], help="only these"
    )
    parser.add_argument("--cart", metavar="ID", help="only this cart's sessions")
    parser.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        help=f"at most this many (default {DEFAULT_LIMIT}, at most {MAX_PAGE})",
    )
    parser.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    parser.set_defaults(run=run)


__all__ = ["add_command", "run"]
