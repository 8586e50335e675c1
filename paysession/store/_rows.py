"""A stored row as a value, and back: the text a store keeps for a record, and the
decoding of record and session rows, where a row paysession never wrote (edited by
hand, say) becomes a StoreError naming it rather than a decoder's exception."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from paysession._text import printable
from paysession.errors import StoreError
from paysession.record import TransitionRecord
from paysession.session import PaymentSession
from paysession.store.base import LoggedRecord


class Row(Protocol):
    """A row as the SQL stores fetch it, its columns read by name: a ``sqlite3.Row``
    (SQLite) or a ``dict`` (psycopg's ``dict_row``). The name of a column is its own, or
    its ``AS`` name where a query gives one."""

    def __getitem__(self, name: str, /) -> Any: ...


def record_wire(record: TransitionRecord) -> str:
    """The text a store keeps for a record: the canonical JSON of its wire form."""
    return record.canonical(with_hash=True)


# What decoding a row edited by hand can raise: bad JSON or values (ValueError, among
# them InvalidSessionData), a number where text belongs (TypeError), a missing field,
# JSON nested past the interpreter's depth.
_UNREADABLE = (ValueError, TypeError, KeyError, IndexError, RecursionError, OverflowError)


DECODE = "decode"
"""The ``operation`` of the StoreError raised for a stored row that cannot be decoded:
the database holds what paysession never wrote (an audit reports it as tampering)."""


def unreadable(what: str, error: BaseException) -> StoreError:
    """The StoreError of a row the store cannot decode: nothing paysession writes, so the
    database was changed by something else."""
    why = "nested too deep" if isinstance(error, RecursionError) else printable(error)[:160]
    return StoreError(DECODE, f"{what} cannot be read ({why}): it was not written by paysession")


def record_from_wire(text: str, what: str = "a stored record") -> TransitionRecord:
    """A record from the text :func:`record_wire` wrote; StoreError naming ``what`` for a
    text that is not one."""
    try:
        return TransitionRecord.from_dict(json.loads(text))
    except _UNREADABLE as error:
        raise unreadable(what, error) from None


def logged_record(position: int, wire: str, cursor: str) -> LoggedRecord:
    """A record of the feed, read from its stored text (see :func:`record_from_wire`)."""
    return LoggedRecord(
        position, record_from_wire(wire, f"the record at position {position}"), cursor
    )


def session_from_row(build: Callable[[Row], PaymentSession], row: Row) -> PaymentSession:
    """``build(row)``: a stored session row as a session; StoreError naming the session
    for a row that is not one."""
    try:
        return build(row)
    except _UNREADABLE as error:
        raise unreadable(f"the row of session {printable(row['id'])!r}", error) from None


__all__ = [
    "DECODE",
    "Row",
    "logged_record",
    "record_from_wire",
    "record_wire",
    "session_from_row",
    "unreadable",
]
