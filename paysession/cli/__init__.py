"""The ``paysession`` command: ``main(argv)`` returns the exit code.

The top floor of the package (see ``docs/layers.md``): one module per command
(``audit``, ``diagram``, ``demo``, ``inspect``, ``sessions``, ``migrate``) and the table
formatting they share. Nothing in the library imports from here.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TextIO

import paysession
from paysession.cli._table import RECORD_HEADERS, format_table, printable, record_row
from paysession.cli.audit import add_command as add_audit_command
from paysession.cli.demo import DEFAULT_CARTS, DEFAULT_DB, DEFAULT_WORKERS
from paysession.cli.demo import run as run_demo
from paysession.cli.diagram import add_command as add_diagram_command
from paysession.cli.inspect import add_command as add_inspect_command
from paysession.cli.migrate import add_command as add_migrate_command
from paysession.cli.sessions import add_command as add_sessions_command
from paysession.errors import PaySessionError
from paysession.machine import SessionMachine
from paysession.session import PaymentSession

_Step = Callable[[SessionMachine], object]

_SCENARIOS: tuple[tuple[str, str, int, tuple[_Step, ...]], ...] = (
    (
        "authorized at once",
        "stripe",
        4999,
        (
            lambda m: m.initiate({"id": "pi_demo_1"}, actor="storefront"),
            lambda m: m.select(actor="storefront"),
            lambda m: m.authorize(actor="provider:stripe", reason="requires_capture"),
        ),
    ),
    (
        "3-D Secure, then authorized",
        "stripe",
        12000,
        (
            lambda m: m.initiate({"id": "pi_demo_2"}, actor="storefront"),
            lambda m: m.require_more(actor="provider:stripe", reason="requires_action"),
            lambda m: m.authorize(actor="provider:stripe", reason="requires_capture"),
        ),
    ),
    (
        "declined, retried, authorized, canceled",
        "paypal",
        2500,
        (
            lambda m: m.initiate({"id": "ORDER-3"}, actor="storefront"),
            lambda m: m.fail(actor="provider:paypal", reason="card declined"),
            lambda m: m.retry(actor="storefront", reason="new card"),
            lambda m: m.authorize(actor="provider:paypal", reason="COMPLETED"),
            lambda m: m.cancel(actor="admin:ops", reason="customer canceled the order"),
        ),
    ),
    (
        "refused moves change nothing",
        "manual",
        0,
        (
            lambda m: m.authorize(actor="storefront"),
            lambda m: m.cancel(actor="storefront", reason="cart abandoned"),
            lambda m: m.retry(actor="storefront"),
        ),
    ),
)


def walkthrough(out: TextIO) -> int:
    """Drive a few in-memory sessions through every status and print each move."""
    rows: list[list[object]] = []
    refusals: list[list[object]] = []
    for title, provider, amount, steps in _SCENARIOS:
        machine = SessionMachine(
            PaymentSession.new(cart_id="cart_demo", provider_id=provider, amount=amount)
        )
        for step in steps:
            try:
                step(machine)
            except PaySessionError as error:
                refusals.append([machine.session.id, type(error).__name__, str(error)])
        for record in machine.history:
            rows.append([*record_row(record)])
        out.write(f"{title}: {machine.session.id} ends {machine.session.status.value}\n")
    out.write("\n" + format_table(RECORD_HEADERS, rows) + "\n")
    out.write("\nRefused (nothing changed):\n")
    out.write(format_table(("session", "error", "why"), refusals) + "\n")
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text[:40]!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


MAX_WORKERS = 64
"""The most storefront processes the demo starts: more only queue on the SQLite lock."""


def _run_demo(args: argparse.Namespace) -> int:
    if args.walkthrough:
        if args.db != DEFAULT_DB or args.carts != DEFAULT_CARTS or args.workers != DEFAULT_WORKERS:
            sys.stderr.write("paysession demo: --walkthrough takes no --db, --carts or --workers\n")
            return 2
        return walkthrough(sys.stdout)
    if args.workers > MAX_WORKERS:
        sys.stderr.write(f"paysession demo: --workers must be at most {MAX_WORKERS}\n")
        return 2
    # More storefronts than carts would start processes with nothing to do.
    workers = min(args.workers, args.carts)
    return run_demo(args.db, carts=args.carts, workers=workers, seed=args.seed, out=sys.stdout)


def build_parser() -> argparse.ArgumentParser:
    """The parser; each subcommand sets ``run``, a function of the parsed args."""
    parser = argparse.ArgumentParser(
        prog="paysession",
        description="Payment session lifecycle: demo, audit, diagrams and the inspector.",
    )
    parser.add_argument(
        "--version", action="version", version=f"paysession {paysession.__version__}"
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an unexpected error"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser(
        "demo",
        help="simulate checkouts on SQLite: storefronts and webhooks racing, trails verified",
        description=(
            "Run carts through a simulated Stripe-like provider with concurrent storefront "
            "processes and a webhook process delivering notices late, twice and out of "
            "order, all on one SQLite file; print a summary and verify every trail (exit 1 "
            "if one fails). The database starts fresh each run: an earlier demo database "
            "at the path is replaced, any other file is left alone (exit 2)."
        ),
    )
    demo_parser.add_argument(
        "--db", default=DEFAULT_DB, help=f"SQLite file to use (default: ./{DEFAULT_DB})"
    )
    demo_parser.add_argument(
        "--carts", type=_positive, default=DEFAULT_CARTS, help="carts to check out (default: 200)"
    )
    demo_parser.add_argument(
        "--workers",
        type=_positive,
        default=DEFAULT_WORKERS,
        help="storefront processes (default: 2)",
    )
    demo_parser.add_argument("--seed", type=int, default=0, help="what the simulation plays")
    demo_parser.add_argument(
        "--walkthrough",
        action="store_true",
        help="instead, drive a few in-memory sessions through every status and print the moves",
    )
    demo_parser.set_defaults(run=_run_demo)
    add_diagram_command(commands)
    add_audit_command(commands)
    add_inspect_command(commands)
    add_sessions_command(commands)
    add_migrate_command(commands)
    _commands_say_their_usage(parser)
    return parser


def _commands_say_their_usage(parser: argparse.ArgumentParser) -> None:
    """Every (sub)command reports its errors with its own usage (``usage``), and one given
    no subcommand names the choices in plain words."""
    parser.set_defaults(usage=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            action.required = False  # a missing choice is said below, in plain words
            names = ", ".join(action.choices)
            parser.set_defaults(run=functools.partial(_choose, parser, names))
            for command in action.choices.values():
                _commands_say_their_usage(command)


def _choose(parser: argparse.ArgumentParser, names: str, args: argparse.Namespace) -> int:
    parser.error(f"choose a command: {names}")


class _Stopped(BaseException):
    """SIGTERM or SIGHUP: raised in the main thread, so that a command cleans up (the
    demo stops its processes) on the way out, as it does for Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stopped(signum: int, frame: object) -> None:
    raise _Stopped(signum)


_STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code.

    0 ok, 1 problems found, 2 usage or input errors, 130 when interrupted (SIGINT),
    128 + the signal's number when stopped by SIGTERM (143) or SIGHUP (129). An output
    closed early (``| head``) ends the command quietly, with 0; an unexpected error is
    one line on stderr (``--debug`` shows its traceback). See docs/cli.md.
    """
    if threading.current_thread() is not threading.main_thread():
        return _main(argv)  # signal handlers belong to the main thread
    previous = {signum: signal.signal(signum, _stopped) for signum in _STOPPING_SIGNALS}
    try:
        return _main(argv)
    except _Stopped as stopped:
        # Raised while a command's own cleanup ran: the exit code is the same.
        return _report_stop(stopped)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _report_stop(stopped: _Stopped) -> int:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"paysession: stopped by {signal.Signals(stopped.signum).name}\n")
    return 128 + stopped.signum


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # Reported by the command they were given to, with its own usage.
        command: argparse.ArgumentParser = args.usage
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    run: Callable[[argparse.Namespace], int] = args.run
    if not args.debug:
        # A command reports its own errors, one line each. Without a handler, the
        # libraries' warnings (psycopg's pool retrying a connection, say) would reach
        # stderr as extra lines; --debug lets them through.
        logging.getLogger().addHandler(logging.NullHandler())
    try:
        return run(args)
    except KeyboardInterrupt:
        sys.stderr.write("paysession: interrupted\n")
        return 130
    except _Stopped as stopped:
        return _report_stop(stopped)
    except BrokenPipeError:
        # The reader has gone: nothing more can be shown. Point stdout at nothing so that
        # the interpreter's final flush does not report the same closed pipe again.
        _silence_stdout()
        return 0
    except Exception as error:
        if args.debug:
            raise
        what = printable(str(error))[:200]
        sys.stderr.write(
            f"paysession: unexpected error: {type(error).__name__}: {what} "
            "(run with --debug for the traceback)\n"
        )
        return 1


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # stdout is not a real file (a test's capture): nothing will flush to a pipe
    finally:
        os.close(devnull)


__all__ = ["RECORD_HEADERS", "build_parser", "format_table", "main", "record_row"]
