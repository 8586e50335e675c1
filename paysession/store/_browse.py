"""The reads of the inspector's pages, over both SQL stores: pages of sessions and of
anomalies, newest first, counts by status, and the newest records of the feed.

Pages are keyset-paginated: a page ends with a :class:`PageKey`, the sort key of its
last row, and the next page starts below it. Each page is then one index walk from
where the last one stopped (see ``browse_schema`` in ``store/_tables.py``), however
deep it is; an OFFSET would scan every row it skips. A key travels in links as an opaque token
(:meth:`PageKey.token`); a token that does not parse is an InvalidSessionData naming
the field it came in.
"""

from __future__ import annotations

import abc
import base64
import binascii
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import ClassVar, Protocol, TypeVar

import attrs

from paysession.errors import InvalidSessionData
from paysession.record import TransitionRecord
from paysession.session import PaymentSession
from paysession.status import PaymentSessionStatus
from paysession.store._rows import record_from_wire, session_from_row, unreadable
from paysession.store._sql import EVENT_COLUMNS, SESSION_COLUMNS, SqlReads, prefixed
from paysession.store.base import (
    AnomalyKind,
    LoggedRecord,
    ProviderEvent,
    SessionStore,
    Snapshot,
    has_nul,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
# A token is small: a time and at most two ids, which the stores keep short.
_LONGEST_TOKEN = 4096

MAX_PAGE = 500
"""The most rows one page holds."""

INDEX_SORT_LIMIT = 2000
"""Below this many sessions, a status or provider filter reads its own index and sorts
what it finds; at or above it, a page walks the newest-first index, where one in
``INDEX_SORT_LIMIT / N`` of the entries matches (N the sessions of the store)."""


@attrs.frozen
class PageKey:
    """Where a page ended: the sort key of its last row (its time, then its ids)."""

    at: datetime
    ids: tuple[str, ...]

    def token(self) -> str:
        """The key as an opaque, URL-safe token."""
        micros = (self.at - _EPOCH) // _MICROSECOND
        text = json.dumps([micros, *self.ids], separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")

    @classmethod
    def from_token(cls, token: str, ids: int, field: str = "after") -> PageKey:
        """The key of ``token``, which holds ``ids`` ids; InvalidSessionData naming
        ``field`` for anything :meth:`token` did not make."""
        refused = InvalidSessionData({field: "not a page token of this store"})
        if not isinstance(token, str) or len(token) > _LONGEST_TOKEN:
            raise refused
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            value = json.loads(text.decode("utf-8"))
        except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
            raise refused from None
        if not (
            isinstance(value, list)
            and len(value) == 1 + ids
            and type(value[0]) is int
            and all(isinstance(part, str) and _storable(part) for part in value[1:])
        ):
            raise refused
        try:
            at = _EPOCH + value[0] * _MICROSECOND
        except OverflowError:
            raise refused from None
        return cls(at, tuple(value[1:]))


def _storable(text: str) -> bool:
    """Whether ``text`` could be an id of a store: no NUL, and valid UTF-8 (JSON can
    carry a lone surrogate, which no database can be asked about)."""
    if has_nul(text):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@attrs.frozen
class SessionFilter:
    """Which sessions a page lists; every field left at its default matches all.

    ``updated_from`` is inclusive, ``updated_to`` exclusive. ``has_anomalies`` keeps the
    sessions with at least one provider report recorded as an anomaly.
    """

    status: PaymentSessionStatus | None = None
    provider_id: str | None = None
    cart_id: str | None = None
    has_anomalies: bool = False
    updated_from: datetime | None = None
    updated_to: datetime | None = None


@attrs.frozen
class AnomalyFilter:
    """Which anomalies a page lists: of one kind, of one provider's sessions, or all."""

    kind: AnomalyKind | None = None
    provider_id: str | None = None


@attrs.frozen
class Anomaly:
    """A provider report recorded as an anomaly, with the provider of its session.

    ``hold`` says, for a report of an authorization, what became of the money:
    ``voided`` (the provider said it let go), ``held`` (it never did, and the session
    is not authorized: money the cart cannot keep) or ``kept`` (the session is
    authorized: its order's money); None for any other report.
    """

    event: ProviderEvent
    provider_id: str
    hold: str | None = None


# Whether the provider ever said it let go of a session's money: a cancel or void
# answered canceled, or a cancellation reported.
_RELEASED = """(
    EXISTS (SELECT 1 FROM paysession_provider_calls AS c
            WHERE c.session_id = e.session_id AND c.status = 'canceled')
    OR EXISTS (SELECT 1 FROM paysession_provider_events AS x
               WHERE x.session_id = e.session_id AND x.status = 'canceled')
)"""


def _hold(event: ProviderEvent, session_status: str, released: object) -> str | None:
    if event.status is not PaymentSessionStatus.AUTHORIZED:
        return None
    if released:
        return "voided"
    return "kept" if session_status == PaymentSessionStatus.AUTHORIZED.value else "held"


LONGEST_RECORD = 1024 * 1024
"""The longest stored record text the inspector reads: paysession's records are a few
KiB (their strings are bounded by the limits); a longer one was not written by it."""

_T = TypeVar("_T")
Visit = Callable[[Snapshot, Iterator[TransitionRecord]], _T]
"""What :meth:`SqlBrowse.read_trail` calls with a session's row and its records."""

_SessionsPage = tuple[list[PaymentSession], PageKey | None]
_AnomaliesPage = tuple[list[Anomaly], PageKey | None]


class SqlBrowse(SqlReads):
    """The inspector's reads; each store adds :meth:`latest_records` in its dialect."""

    _UNINDEXED: ClassVar[str] = ""
    """What keeps the planner from using a column's index in a comparison: SQLite's
    unary ``+``. PostgreSQL's planner chooses by its statistics, and needs nothing."""

    def sessions_page(
        self, where: SessionFilter, after: PageKey | None = None, limit: int = 50
    ) -> _SessionsPage:
        """Up to ``limit`` sessions matching ``where``, newest update first, after the
        key ``after``; and the key to pass for the next page (None on the last)."""
        limit = _page_size(limit)
        if any(has_nul(text) for text in (where.provider_id, where.cart_id)) or (
            after is not None and len(after.ids) != 1
        ):
            return [], None
        p = self._placeholder
        clauses: list[str] = []
        params: dict[str, object] = {}
        equal = [
            (column, value)
            for column, value in (
                ("status", None if where.status is None else where.status.value),
                ("provider_id", where.provider_id),
                ("cart_id", where.cart_id),
            )
            if value is not None
        ]
        # Which index: a status or provider that few sessions have is read through its
        # own index (then sorted); one that many have is kept out of the planner's way,
        # so that the newest-first index is walked and its entries checked as they come.
        # A cart has few sessions: its index serves, whatever else is asked. The planner
        # is told, as statistics of a store's whole provider column would mislead it for
        # a provider that has few sessions or none.
        sort = ""
        for column, value in equal:
            many = where.cart_id is None and not self._few(column, value)
            clauses.append(f"{self._UNINDEXED if many else ''}{column} = {p(column)}")
            params[column] = value
            if where.cart_id is None and not many:
                sort = self._UNINDEXED
        if where.updated_from is not None:
            clauses.append(f"updated_at >= {p('updated_from')}")
            params["updated_from"] = self._time(where.updated_from)
        if where.updated_to is not None:
            clauses.append(f"updated_at < {p('updated_to')}")
            params["updated_to"] = self._time(where.updated_to)
        if where.has_anomalies:
            # The row's own count (kept by a trigger as anomalies are recorded), which the
            # partial index paysession_sessions_anomalous is made of.
            clauses.append("anomalies > 0")
        if after is not None:
            clauses.append(f"(updated_at, id) < ({p('after_at')}, {p('after_id')})")
            params.update(after_at=self._time(after.at), after_id=after.ids[0])
        rows = self._rows(
            "sessions_page",
            f"SELECT {SESSION_COLUMNS} FROM paysession_sessions "
            f"WHERE {' AND '.join(clauses) or '1 = 1'} "
            f"ORDER BY {sort}updated_at DESC, {sort}id DESC LIMIT {p('limit')}",
            {**params, "limit": limit + 1},
        )
        sessions = [self._cache.snapshot(row, self._session_from_row).session for row in rows]
        if len(sessions) <= limit:
            return sessions, None
        last = sessions[limit - 1]
        return sessions[:limit], PageKey(last.updated_at, (last.id,))

    def status_counts(self) -> dict[PaymentSessionStatus, int]:
        """How many sessions the store holds in each status (every status, zeros too)."""
        # One count per status, each a walk of its own range of the status index: about a
        # fifth faster on SQLite than one GROUP BY, which aggregates row by row.
        # Each count is named after its status, and so is the value it counts.
        names = [status.value for status in PaymentSessionStatus]
        counts = ", ".join(
            f"(SELECT count(*) FROM paysession_sessions WHERE status = {self._placeholder(name)}) "
            f'AS "{name}"'
            for name in names
        )
        (row,) = self._rows("status_counts", f"SELECT {counts}", {name: name for name in names})
        return {PaymentSessionStatus(name): int(row[name]) for name in names}

    def anomalies_page(
        self, where: AnomalyFilter, after: PageKey | None = None, limit: int = 50
    ) -> _AnomaliesPage:
        """Up to ``limit`` anomalies matching ``where``, newest recorded first."""
        limit = _page_size(limit)
        if has_nul(where.provider_id) or (after is not None and len(after.ids) != 2):
            return [], None
        p = self._placeholder
        clauses = ["e.outcome = 'anomaly'"]
        params: dict[str, object] = {"limit": limit + 1}
        if where.kind is not None:
            clauses.append(f"e.kind = {p('kind')}")
            params["kind"] = where.kind.value
        if where.provider_id is not None:
            clauses.append(f"s.provider_id = {p('provider_id')}")
            params["provider_id"] = where.provider_id
        if after is not None:
            clauses.append(
                "(e.recorded_at, e.session_id, e.event_id) < "
                f"({p('after_at')}, {p('after_session')}, {p('after_event')})"
            )
            params.update(
                after_at=self._time(after.at), after_session=after.ids[0], after_event=after.ids[1]
            )
        rows = self._rows(
            "anomalies_page",
            f"SELECT {prefixed(EVENT_COLUMNS, 'e')}, s.provider_id AS provider_id, "
            f"s.status AS status_now, {_RELEASED} AS released "
            "FROM paysession_provider_events AS e "
            "JOIN paysession_sessions AS s ON s.id = e.session_id "
            f"WHERE {' AND '.join(clauses)} "
            f"ORDER BY e.recorded_at DESC, e.session_id DESC, e.event_id DESC LIMIT {p('limit')}",
            params,
        )
        found = []
        for row in rows:
            event = self._event_from_row(row)
            hold = _hold(event, row["status_now"], row["released"])
            found.append(Anomaly(event, row["provider_id"], hold))
        if len(found) <= limit:
            return found, None
        last = found[limit - 1].event
        return found[:limit], PageKey(last.recorded_at, (last.session_id, last.event_id))

    def _few(self, column: str, value: object) -> bool:
        """Whether fewer than :data:`INDEX_SORT_LIMIT` sessions have ``value`` in
        ``column`` (status or provider_id, each indexed): counted up to that many, never
        further."""
        (row,) = self._rows(
            "sessions_page",
            f"SELECT count(*) AS found FROM (SELECT 1 FROM paysession_sessions "
            f"WHERE {column} = {self._placeholder('value')} LIMIT {INDEX_SORT_LIMIT}) AS matching",
            {"value": value},
        )
        return int(row["found"]) < INDEX_SORT_LIMIT

    @abc.abstractmethod
    def latest_records(self, limit: int) -> list[LoggedRecord]:
        """The newest ``limit`` records of the feed, oldest first, each with its cursor
        (to follow on from with ``records_since``)."""

    def read_trail(self, session_id: str, visit: Visit[_T], *, chunk: int = 200) -> _T | None:
        """``visit(snapshot, records)`` over the session's row and its records, read in
        one snapshot; None, visiting nothing, when there is no such session.

        ``records`` yields the records in seq order, read ``chunk`` at a time, so a
        visit that keeps only what it needs reads a trail of any length in constant
        memory. A record longer than :data:`LONGEST_RECORD` is not even fetched: like a
        row or record that does not decode, it raises the StoreError (``decode``)
        naming it.
        """
        if has_nul(session_id):
            return None
        p = self._placeholder
        with self._snapshot("read_trail") as read:
            rows = read(
                f"SELECT {SESSION_COLUMNS} FROM paysession_sessions WHERE id = {p('id')}",
                {"id": session_id},
            )
            if not rows:
                return None
            row = rows[0]
            version, head = row["version"], row["head"]
            if type(version) is not int or not isinstance(head, str):
                raise unreadable(
                    f"the row of session {session_id!r}", ValueError("no version or head")
                )
            session = session_from_row(self._session_from_row, row)

            def records() -> Iterator[TransitionRecord]:
                after = -1
                while True:
                    found = read(
                        f"SELECT seq, CASE WHEN length(wire) > {p('longest')} THEN NULL "
                        "ELSE wire END AS wire FROM paysession_records "
                        f"WHERE session_id = {p('session_id')} AND seq > {p('after')} "
                        f"ORDER BY seq LIMIT {p('chunk')}",
                        {
                            "longest": LONGEST_RECORD,
                            "session_id": session_id,
                            "after": after,
                            "chunk": chunk,
                        },
                    )
                    for stored in found:
                        what = f"record {stored['seq']} of session {session_id!r}"
                        if stored["wire"] is None:
                            raise unreadable(what, ValueError("longer than any record"))
                        yield record_from_wire(stored["wire"], what)
                    if len(found) < chunk:
                        return
                    after = found[-1]["seq"]

            return visit(Snapshot(session, version, head), records())

    def events_page(
        self, session_id: str, start: int = 0, limit: int = 50
    ) -> tuple[list[ProviderEvent], bool]:
        """The session's provider events ``start`` to ``start + limit``, in the order
        they were recorded, and whether more follow."""
        if has_nul(session_id):
            return [], False
        p = self._placeholder
        rows = self._rows(
            "events_page",
            f"SELECT {EVENT_COLUMNS} FROM paysession_provider_events "
            f"WHERE session_id = {p('session_id')} "
            f"ORDER BY {self._EVENTS_IN_RECORDED_ORDER} LIMIT {p('limit')} OFFSET {p('start')}",
            {"session_id": session_id, "limit": _page_size(limit) + 1, "start": max(int(start), 0)},
        )
        events = [self._event_from_row(row) for row in rows[: _page_size(limit)]]
        return events, len(rows) > _page_size(limit)


class BrowsableStore(SessionStore, Protocol):
    """A store the inspector can read: the protocol's reads, and the pages above
    (:class:`~paysession.store.SqliteStore` and ``PostgresStore``)."""

    def sessions_page(
        self, where: SessionFilter, after: PageKey | None = None, limit: int = 50
    ) -> _SessionsPage: ...

    def status_counts(self) -> dict[PaymentSessionStatus, int]: ...

    def anomalies_page(
        self, where: AnomalyFilter, after: PageKey | None = None, limit: int = 50
    ) -> _AnomaliesPage: ...

    def latest_records(self, limit: int) -> list[LoggedRecord]: ...

    def read_trail(self, session_id: str, visit: Visit[_T], *, chunk: int = 200) -> _T | None: ...

    def events_page(
        self, session_id: str, start: int = 0, limit: int = 50
    ) -> tuple[list[ProviderEvent], bool]: ...


def _page_size(limit: int) -> int:
    return min(max(int(limit), 1), MAX_PAGE)


__all__ = [
    "LONGEST_RECORD",
    "MAX_PAGE",
    "Anomaly",
    "AnomalyFilter",
    "BrowsableStore",
    "PageKey",
    "SessionFilter",
    "SqlBrowse",
    "Visit",
]
