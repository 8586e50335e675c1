"""``paysession diagram``: draw the state diagram, or check the committed ones."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from paysession.codec import from_json
from paysession.diagrams import (
    FILES,
    FORMATS,
    DiagramError,
    check_files,
    read_history,
    render,
    write_files,
)
from paysession.errors import InvalidSessionData, PaySessionError

# The largest file an option reads: a history of many sessions fits; a runaway does not.
_LARGEST_FILE = 64 * 2**20


class _InputError(Exception):
    """A file option that cannot be read as UTF-8 JSON: a usage error, exit 2."""


def _read_text(name: str, option: str) -> str:
    if name == "-":
        raw = sys.stdin.buffer.read(_LARGEST_FILE + 1)
    else:
        try:
            with Path(name).open("rb") as stream:
                raw = stream.read(_LARGEST_FILE + 1)
        except OSError as error:
            raise _InputError(f"{option}: cannot read {name}: {error.strerror or error}") from None
    if len(raw) > _LARGEST_FILE:
        raise _InputError(f"{option}: {name} is larger than {_LARGEST_FILE // 2**20} MiB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _InputError(
            f"{option}: {name} is not UTF-8 text (byte {error.start + 1} is not)"
        ) from None


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``paysession diagram`` to the CLI's subcommands."""
    parser = commands.add_parser(
        "diagram",
        help="draw the state diagram of the transition table, or check the committed files",
        description="Draw the state diagram of the transition table (stdout by default), "
        "or write or check the files of diagrams/.",
    )
    parser.add_argument("--format", choices=FORMATS, help="mermaid (the default), dot or svg")
    parser.add_argument("--output", "-o", metavar="FILE", help="write to FILE, not stdout")
    parser.add_argument(
        "--with-internal",
        action="store_true",
        help="add the moves inside a status (initiate, update, select, deselect)",
    )
    parser.add_argument(
        "--session-json",
        metavar="FILE",
        help="highlight this session's status (wire JSON; - reads stdin)",
    )
    parser.add_argument(
        "--history-json",
        metavar="FILE",
        help="with --session-json, highlight the moves this session's records took "
        "(a JSON array or JSON lines of records, as the audit sinks write them)",
    )
    files = parser.add_mutually_exclusive_group()
    files.add_argument(
        "--check", metavar="DIR", help="exit 1 naming each file of DIR that is stale or missing"
    )
    files.add_argument("--write", metavar="DIR", help="render every diagram file into DIR")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """``paysession diagram``: the exit code; errors are one line on stderr, no traceback.

    1 only for ``--check`` finding a stale or missing file; anything that keeps the
    command from doing what it was asked (an option, a file it reads or writes, a
    missing extra) is 2, as for every command (docs/cli.md).
    """
    try:
        return _run(args, sys.stdout, sys.stderr)
    except (_InputError, PaySessionError) as error:
        sys.stderr.write(f"paysession diagram: {error}\n")
    except OSError as error:
        where = "" if error.filename is None else f"{error.filename}: "
        sys.stderr.write(f"paysession diagram: {where}{error.strerror or error}\n")
    return 2


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    directory = args.check or args.write
    if directory is not None:
        extras = [args.format, args.output, args.session_json, args.history_json]
        if args.with_internal or any(value is not None for value in extras):
            err.write("paysession diagram: --check and --write take no other option\n")
            return 2
        if args.write is not None:
            for path in write_files(Path(directory)):
                out.write(f"wrote {path}\n")
            return 0
        problems = check_files(Path(directory))
        for path, problem in problems.items():
            err.write(f"{problem}: {path}\n")
        if problems:
            err.write(f"run: paysession diagram --write {directory}\n")
            return 1
        out.write(f"{len(FILES)} diagram files in {directory} are current\n")
        return 0
    session = None
    if args.session_json is not None:
        if args.session_json == "-" and args.history_json == "-":
            raise _InputError("--session-json and --history-json cannot both be - (stdin)")
        text = _read_text(args.session_json, "--session-json")
        try:
            session = from_json(text)
        except InvalidSessionData as error:
            raise _InputError(f"--session-json: {args.session_json}: {error}") from None
    history = None
    if args.history_json is not None:
        text = _read_text(args.history_json, "--history-json")
        try:
            history = read_history(text)
        except (DiagramError, InvalidSessionData) as error:
            raise _InputError(f"--history-json: {args.history_json}: {error}") from None
    if history is not None and session is None:
        raise _InputError("--history-json needs --session-json: the session whose moves to draw")
    if session is not None and history is not None:
        # A JSON Lines trail is often shared by many sessions: draw this one's records.
        history = [record for record in history if record.session_id == session.id]
        if not history:
            raise DiagramError(f"{args.history_json} holds no record of session {session.id}")
    text = render(
        args.format or "mermaid",
        with_internal=args.with_internal,
        session=session,
        history=history,
    )
    if args.output is None:
        out.write(text)
    else:
        Path(args.output).write_bytes(text.encode("utf-8"))
    return 0


__all__ = ["add_command", "run"]
