"""``paysession audit verify|heads|show|replay|export``: audit trails on the command line,
from a JSON Lines file (or stdin) or straight from a store."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from paysession._text import abbreviated
from paysession._wire import JsonRefused, format_datetime, read_json
from paysession.audit.anchors import Checkpoint, heads_from_wire
from paysession.audit.check import Heads, verify
from paysession.audit.sinks import BadLine, Item, decode_lines, encode_line
from paysession.audit.stored import check_trail, store_heads, trail_id
from paysession.audit.trail import AuditError, AuditReport, replay
from paysession.cli._input import TooLarge, bounded_lines, is_stdin, name_of, read_bounded
from paysession.cli._store import NoStore, db_name, open_read_only, sqlite_given_as_file
from paysession.cli._table import RECORD_HEADERS, format_table, printable, record_row
from paysession.codec import to_json
from paysession.errors import InvalidSessionData, PaySessionError, StoreError
from paysession.record import TransitionRecord
from paysession.service import PaymentSessions
from paysession.store import SessionStore
from paysession.store._rows import DECODE
from paysession.store.base import Snapshot, StoredTrail, Unreadable


class _UsageError(Exception):
    """A command line problem: reported on stderr with exit code 2."""


def _shown(text: str | None) -> str:
    if text is None:
        return "?"
    return printable(text) if len(text) <= 120 else printable(abbreviated(text))


def _read_key(path: Path | None) -> bytes | None:
    if path is None:
        return None
    key = _bytes_of(path, "key").strip()
    if not key:
        raise _UsageError(f"key file {_name(path)} is empty")
    return key


# The largest JSON file an option reads (data, cart, heads): far above any real one.
_LARGEST_FILE = 64 * 2**20


def _bytes_of(path: Path, what: str) -> bytes:
    """The bytes of an option's file, or of stdin for ``-``; at most _LARGEST_FILE."""
    try:
        return read_bounded(path, f"{what} file", _LARGEST_FILE)
    except TooLarge as error:
        raise _UsageError(str(error)) from None
    except OSError as error:
        raise _UsageError(f"cannot read {what} file {path}: {error.strerror or error}") from None


def _read_json_object(path: Path | None, what: str) -> Mapping[str, object] | None:
    if path is None:
        return None
    try:
        payload = read_json(_bytes_of(path, what))
    except JsonRefused as refused:
        raise _UsageError(f"{what} file {_name(path)} {refused.why}") from None
    if not isinstance(payload, dict):
        raise _UsageError(f"{what} file {_name(path)} must hold a JSON object")
    return payload


def _one_stdin(*paths: Path | None) -> None:
    """Refuse two inputs both read from stdin (``-``): there is only one."""
    if sum(path is not None and _is_stdin(path) for path in paths) > 1:
        raise _UsageError("only one input can be - (stdin)")


def _items(path: Path) -> Iterator[Item]:
    """The trail in ``path``, or on standard input for ``-``, each line and the whole
    read with a bound (``paysession/cli/_input.py``): past one, a _UsageError. A SQLite
    database there is a usage error too (``--db`` forgotten), not a trail of unreadable
    lines."""
    refused = sqlite_given_as_file(path)
    if refused is not None:
        raise _UsageError(refused)
    try:
        yield from decode_lines(bounded_lines(path))
    except TooLarge as error:
        raise _UsageError(str(error)) from None


_is_stdin = is_stdin
_name = name_of


def _where(path: Path, position: int | None) -> str:
    return _name(path) if position is None else f"{_name(path)}:{position + 1}"


def _who(session_id: str | None, seq: int | None) -> str:
    if session_id is None:
        return "unreadable line"
    return f"session {_shown(session_id)}" + ("" if seq is None else f" seq {seq}")


def _run_verify(args: argparse.Namespace) -> int:
    if args.db is not None:
        return _verify_store(args)
    path: Path = args.file
    try:
        _one_stdin(path, args.key_file, args.heads)
        heads = _read_heads(args.heads)
        report = verify(_items(path), key=_read_key(args.key_file), heads=heads)
    except _UsageError as error:
        return _usage(str(error))
    except OSError as error:
        return _usage(f"cannot read {_name(path)}: {error.strerror or error}")
    if not report.records:
        # A trail cut to nothing is the cut that removes every record: not a clean trail.
        print(f"FAILED: {_name(path)} holds no records; an empty trail proves nothing")
        return 1
    if report.ok:
        return _verified(report)
    for problem in report.problems:
        print(
            f"{_where(path, problem.position)}: {_who(problem.session_id, problem.seq)}: "
            f"{problem.reason}: {printable(problem.message)}"
        )
    bad_sessions = len({p.session_id for p in report.problems if p.session_id is not None})
    print(
        f"FAILED: {bad_sessions} of {_many(report.sessions, 'session')} bad, "
        f"{_many(len(report.problems), 'problem')} in {_many(report.records, 'record')}"
    )
    return 1


def _verify_store(args: argparse.Namespace) -> int:
    """Every session of a store against its row, a page at a time (constant memory)."""
    try:
        _one_stdin(args.key_file, args.heads)
        key = _read_key(args.key_file)
        heads = _read_heads(args.heads)
        store = _open_store(args.db)
    except _UsageError as error:
        return _usage(str(error))
    bar = _Progress() if sys.stderr.isatty() else None
    try:
        report = PaymentSessions(store, key=key).verify_all(heads=heads, progress=bar)
    except PaySessionError as error:
        return _usage(f"cannot read {db_name(args.db)}: {error}")
    finally:
        store.close()
        if bar is not None:
            bar.done()
    if not report.sessions and not report.problems:
        print(f"FAILED: {db_name(args.db)} holds no sessions; an empty store proves nothing")
        return 1
    if report.ok:
        return _verified(report)
    for problem in report.problems:
        who = _who(problem.session_id, problem.seq)
        print(f"{who}: {problem.reason}: {printable(problem.message)}")
    gone = sum(problem.reason == "vanished" for problem in report.problems)
    vanished = f", {gone} named by the heads gone" if gone else ""
    print(
        f"FAILED: {len(report.problems) - gone} of {_many(report.sessions, 'session')} bad"
        f"{vanished}, in {_many(report.records, 'record')}"
    )
    return 1


class _Progress:
    """A one-line count on a terminal's stderr while a store is verified."""

    def __init__(self) -> None:
        self._shown = False

    def __call__(self, sessions: int, records: int) -> None:
        sys.stderr.write(f"\rverifying: {_many(sessions, 'session')}, {_many(records, 'record')}")
        sys.stderr.flush()
        self._shown = True

    def done(self) -> None:
        if self._shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _run_export(args: argparse.Namespace) -> int:
    """Every session's trail from a store as JSON Lines, session by session (id order)."""
    try:
        store = _open_store(args.db)
    except _UsageError as error:
        return _usage(str(error))
    target: Path | None = None if args.output in (None, Path("-")) else args.output
    try:
        if target is None:
            _write_trails(store, sys.stdout.buffer)
        else:
            # Written beside the target and renamed over it: never half an export.
            partial = target.with_name(f".{target.name}.partial")
            try:
                with partial.open("wb") as out:
                    _write_trails(store, out)
                partial.replace(target)
            except OSError as error:
                return _usage(f"cannot write {target}: {error.strerror or error}")
            finally:
                partial.unlink(missing_ok=True)  # gone once renamed; left by no failure
    except PaySessionError as error:
        return _usage(f"cannot read {db_name(args.db)}: {error}")
    finally:
        store.close()
    return 0


def _write_trails(store: SessionStore, out: BinaryIO) -> None:
    after: str | None = None
    while page := store.trails(after=after, limit=_PAGE):
        for found in page:
            out.write(b"".join(encode_line(record) for record in _readable(found)[1]))
        after = trail_id(page[-1])
    out.flush()


_PAGE = 500


def _readable(found: StoredTrail) -> tuple[Snapshot, list[TransitionRecord]]:
    """A session's row and records; StoreError for one paysession never wrote."""
    if isinstance(found, Unreadable):
        raise StoreError(DECODE, found.why)
    return found


def _verified(report: AuditReport) -> int:
    print(f"ok: {_many(report.sessions, 'session')}, {_many(report.records, 'record')} verified")
    return 0


def _many(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _show_store(args: argparse.Namespace) -> int:
    """One session's trail from a store, checked against its row: a record that does not
    verify is never shown as if it did."""
    if args.session is None:
        return _usage("show --db needs --session ID: a store's trails are shown one at a time")
    try:
        key = _read_key(args.key_file)
        store = _open_store(args.db)
    except _UsageError as error:
        return _usage(str(error))
    try:
        found = store.trails(only=args.session)
    except PaySessionError as error:
        return _usage(f"cannot read {db_name(args.db)}: {error}")
    finally:
        store.close()
    if not found:
        return _usage(f"no session {_shown(args.session)} in {db_name(args.db)}")
    problem = check_trail(found[0], key)
    if not isinstance(found[0], Unreadable):
        trail = found[0][1]
        rows = [[*record_row(record), format_datetime(record.at)] for record in trail]
        print(format_table((*RECORD_HEADERS, "at"), rows))
    if problem is None:
        return 0
    keyless = key is None and problem.reason == "hash"
    hint = " (a keyed store needs --key-file)" if keyless else ""
    print(
        f"NOT VERIFIED from seq {problem.seq}: {problem.reason}: {printable(problem.message)}{hint}"
    )
    return 1


def _run_show(args: argparse.Namespace) -> int:
    if args.db is not None:
        return _show_store(args)
    path: Path = args.file
    wanted: str | None = args.session
    rows: list[list[object]] = []
    unreadable = 0
    try:
        for position, item in enumerate(_items(path)):
            if isinstance(item, Checkpoint):
                if wanted is None or wanted in item.heads:
                    what = "(closing checkpoint)" if item.final else "(checkpoint)"
                    names = _many(len(item.heads), "session")
                    rows.append([position + 1, "", "", what, "", "", names, ""])
                    unreadable += wanted is not None  # not a record of the session
                continue
            if wanted is not None and item.session_id not in (wanted, None):
                continue
            if isinstance(item, BadLine):
                unreadable += 1
                rows.append(
                    [position + 1, _shown(item.session_id), "", f"({item.reason})", "", "", "", ""]
                )
            else:
                rows.append([position + 1, *record_row(item), format_datetime(item.at)])
    except _UsageError as error:
        return _usage(str(error))
    except OSError as error:
        return _usage(f"cannot read {_name(path)}: {error.strerror or error}")
    if wanted is not None and len(rows) == unreadable:
        return _usage(f"no record of session {_shown(wanted)} in {_name(path)}")
    print(format_table(("line", *RECORD_HEADERS, "at"), rows))
    if unreadable:
        print(f"{_many(unreadable, 'unreadable line')}; run `paysession audit verify {path}`")
        return 1
    return 0


def _replay_store(args: argparse.Namespace) -> int:
    """One session rebuilt from its trail in a store, checked against its stored data
    and cart unless --data-json or --cart-json give others."""
    try:
        _one_stdin(args.key_file, args.data_json, args.cart_json)
        key = _read_key(args.key_file)
        data = _read_json_object(args.data_json, "data")
        cart = _read_json_object(args.cart_json, "cart")
        store = _open_store(args.db)
    except _UsageError as error:
        return _usage(str(error))
    try:
        snapshot = store.load(args.session)
        trail = store.history(args.session) if snapshot is not None else []
    except PaySessionError as error:
        return _usage(f"cannot read {db_name(args.db)}: {error}")
    finally:
        store.close()
    if snapshot is None:
        return _usage(f"no session {_shown(args.session)} in {db_name(args.db)}")
    stored = snapshot.session
    try:
        session = replay(
            trail,
            session_id=args.session,
            data=stored.data if data is None else data,
            cart=stored.cart if cart is None else cart,
            key=key,
        )
    except InvalidSessionData:
        return _usage("the data or cart given is not JSON data a session can hold")
    except AuditError as error:
        print(
            f"{db_name(args.db)}: {_who(error.session_id, error.seq)}: "
            f"{error.reason}: {error.message}",
            file=sys.stderr,
        )
        return 1
    print(to_json(session))
    return 0


def _run_replay(args: argparse.Namespace) -> int:
    if args.db is not None:
        return _replay_store(args)
    path: Path = args.file
    try:
        _one_stdin(path, args.key_file, args.data_json, args.cart_json)
        key = _read_key(args.key_file)
        data = _read_json_object(args.data_json, "data")
        cart = _read_json_object(args.cart_json, "cart")
        session = replay(_items(path), session_id=args.session, data=data, cart=cart, key=key)
    except _UsageError as error:
        return _usage(str(error))
    except OSError as error:
        return _usage(f"cannot read {_name(path)}: {error.strerror or error}")
    except InvalidSessionData:
        # Not even the paths: a data file's keys are the caller's, and may be secrets.
        return _usage("the data or cart given is not JSON data a session can hold")
    except AuditError as error:
        if error.reason == "unknown_session":
            return _usage(f"no record of session {_shown(args.session)} in {_name(path)}")
        if error.reason in _INPUT_PROBLEMS:
            what = error.reason.split("_")[0]
            if error.reason.endswith("needed"):
                return _usage(
                    f"the trail holds only a digest of session {_shown(args.session)}'s "
                    f"{what}: pass --{what}-json FILE"
                )
            return _usage(
                f"the {what} given does not match the trail's digest of session "
                f"{_shown(args.session)}'s {what}"
            )
        print(
            f"{_where(path, error.position)}: {_who(error.session_id, error.seq)}: "
            f"{error.reason}: {error.message}",
            file=sys.stderr,
        )
        return 1
    print(to_json(session))
    return 0


_INPUT_PROBLEMS = frozenset({"data_needed", "data_mismatch", "cart_needed", "cart_mismatch"})


def _read_heads(path: Path | None) -> Heads | None:
    """Heads from a file as ``paysession audit heads`` writes it: {id: [seq, hash]}."""
    found = _read_json_object(path, "heads")
    if found is None:
        return None
    heads = heads_from_wire(found)
    if heads is None:
        raise _UsageError(f"heads file {path}: each value must be [seq, hash]")
    return heads


def _open_store(place: str) -> SessionStore:
    try:
        return open_read_only(place)
    except NoStore as error:
        raise _UsageError(str(error)) from None


def _run_heads(args: argparse.Namespace) -> int:
    try:
        store = _open_store(args.db)
    except _UsageError as error:
        return _usage(str(error))
    try:
        heads = store_heads(store, _PAGE)
    except PaySessionError as error:
        return _usage(f"cannot read {db_name(args.db)}: {error}")
    finally:
        store.close()
    print(json.dumps(heads, sort_keys=True, separators=(",", ":")))
    return 0


def _run_holds(args: argparse.Namespace) -> int:
    """List the sessions whose provider holds money they cannot keep; exit 1 if any."""
    if type(args.limit) is not int or args.limit < 1:
        return _usage("--limit must be a whole number of at least 1")
    try:
        store = _open_store(args.db)
    except _UsageError as error:
        return _usage(str(error))
    try:
        held = store.unreleased_holds(args.limit)
    except PaySessionError as error:
        return _usage(f"cannot read {db_name(args.db)}: {error}")
    finally:
        store.close()
    for session in held:
        print(
            f"{_shown(session.id)}  {session.status.value}  provider {_shown(session.provider_id)}"
            f"  cart {_shown(session.cart_id)}  amount {session.amount}: hold not released"
        )
    if held:
        more = " (or more: raise --limit)" if len(held) == args.limit else ""
        print(f"FAILED: {_many(len(held), 'session')} with a hold not released{more}")
        return 1
    print(f"ok: every hold of {db_name(args.db)} is its session's or released")
    return 0


def _usage(message: str) -> int:
    print(f"paysession audit: {message}", file=sys.stderr)
    return 2


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``audit verify|show|replay`` to the ``paysession`` command's subcommands.

    Exit codes: 0 when the trail checks out, 1 when it does not (or, for ``show``, has
    unreadable lines), 2 for usage errors (a missing file, a bad key file, an unknown
    session, data that does not match the trail).
    """
    audit = commands.add_parser(
        "audit", help="verify, show, replay or export audit trails, from a file or a store"
    )
    actions = audit.add_subparsers(
        dest="audit_command", required=True, metavar="{verify,heads,holds,show,replay,export}"
    )
    db_help = "a SQLite file or a PostgreSQL DSN, instead of a file"

    check = actions.add_parser(
        "verify", help="check every session's hash chain, moves and changes; exit 1 if bad"
    )
    source = check.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "file", type=Path, nargs="?", help="the JSON Lines trail (one record per line; - for stdin)"
    )
    source.add_argument(
        "--db", metavar="PATH_OR_DSN", help=db_help + " (each trail against its row)"
    )
    check.add_argument(
        "--key-file", type=Path, help="the HMAC key the trail was written with (- for stdin)"
    )
    check.add_argument(
        "--heads",
        type=Path,
        metavar="FILE",
        help="heads each session's trail must reach (JSON, as `paysession audit heads` prints;"
        " - for stdin); with --db, each session must still hold the record named",
    )
    check.set_defaults(run=_run_verify)

    heads = actions.add_parser(
        "heads", help="print every session's last seq and hash from a store, as JSON"
    )
    heads.add_argument(
        "--db", required=True, metavar="PATH_OR_DSN", help="a SQLite file or a PostgreSQL DSN"
    )
    heads.set_defaults(run=_run_heads)

    holds = actions.add_parser(
        "holds",
        help="list the sessions whose provider still holds money they cannot keep; exit 1 if any",
    )
    holds.add_argument(
        "--db", required=True, metavar="PATH_OR_DSN", help="a SQLite file or a PostgreSQL DSN"
    )
    holds.add_argument(
        "--limit", type=int, default=1000, metavar="N", help="list at most N (default 1000)"
    )
    holds.set_defaults(run=_run_holds)

    show = actions.add_parser(
        "show",
        help="print the moves as a table (a file's are not verified; with --db, the trail is "
        "checked against its row and exit 1 says it does not verify)",
    )
    source = show.add_mutually_exclusive_group(required=True)
    source.add_argument("file", type=Path, nargs="?", help="the JSON Lines trail (- for stdin)")
    source.add_argument("--db", metavar="PATH_OR_DSN", help=db_help + " (with --session)")
    show.add_argument("--session", metavar="ID", help="only this session's moves")
    show.add_argument(
        "--key-file",
        type=Path,
        help="with --db: the HMAC key the store's trails were written with (- for stdin)",
    )
    show.set_defaults(run=_run_show)

    rebuild = actions.add_parser("replay", help="rebuild one session and print it as JSON")
    source = rebuild.add_mutually_exclusive_group(required=True)
    source.add_argument("file", type=Path, nargs="?", help="the JSON Lines trail (- for stdin)")
    source.add_argument(
        "--db",
        metavar="PATH_OR_DSN",
        help=db_help + " (checked against the stored data and cart)",
    )
    rebuild.add_argument("--session", metavar="ID", required=True, help="the session to rebuild")
    rebuild.add_argument(
        "--data-json",
        type=Path,
        metavar="FILE",
        help="the session's data (a JSON object; -: stdin)",
    )
    rebuild.add_argument(
        "--cart-json",
        type=Path,
        metavar="FILE",
        help="the session's cart (a JSON object; -: stdin)",
    )
    rebuild.add_argument(
        "--key-file", type=Path, help="the HMAC key the trail was written with (- for stdin)"
    )
    rebuild.set_defaults(run=_run_replay)

    export = actions.add_parser(
        "export", help="write a store's trails as JSON Lines, for verify, show, replay or archiving"
    )
    export.add_argument(
        "--db", required=True, metavar="PATH_OR_DSN", help="a SQLite file or a PostgreSQL DSN"
    )
    export.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="where to write (default: stdout)"
    )
    export.set_defaults(run=_run_export)


__all__ = ["add_command"]
