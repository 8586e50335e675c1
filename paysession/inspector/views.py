"""What each inspector page shows, read from a store: plain values, no web framework.

The web app (``app.py``) turns a request's query into a filter here, asks for a view,
and renders it as HTML or as JSON; both come from the same view, so the API mirrors
the pages. A query value that cannot be a filter is an InvalidSessionData naming the
parameter, which the app answers with 400.

What a view never carries: the values of a session's ``data`` and ``cart``. They may
hold a provider's client secret or a customer's address; a page shows how many keys
they have, their size, and the digest the trail holds of them, enough to tell two apart or
match them with a trail. For a keyed store that is the keyed digest (HMAC-SHA-256 under
the inspector's key), never a plain SHA-256, which anyone could match against guesses (a
3-digit CVC takes a thousand): without the key, a keyed session shows no digest at all,
and neither does the sessions list, which does not read the trails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from paysession._text import printable
from paysession._wire import canonical_json, digest, format_datetime, parse_datetime
from paysession.audit.stored import check_stored
from paysession.audit.trail import AuditProblem
from paysession.diagrams import chart
from paysession.errors import DiagramError, InvalidSessionData
from paysession.holds import Holds, holds_of
from paysession.inspector.drawing import chart_svg
from paysession.lifecycle import TRANSITIONS
from paysession.limits import current as current_limits
from paysession.record import TransitionRecord
from paysession.session import PaymentSession
from paysession.status import PaymentSessionStatus
from paysession.store._browse import (
    MAX_PAGE,
    Anomaly,
    AnomalyFilter,
    BrowsableStore,
    PageKey,
    SessionFilter,
)
from paysession.store.base import (
    AnomalyKind,
    LoggedRecord,
    ProviderCall,
    ProviderEvent,
    Snapshot,
)

PAGE = 50
"""Rows per page unless a query asks for another number (at most ``MAX_PAGE``)."""

# A date, then optionally a time (seconds optional), then optionally a zone.
_INSTANT = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})(?P<time>T\d{2}:\d{2})?(?P<seconds>:\d{2}(\.\d{1,6})?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?"
)
_YES = {"1", "on", "true", "yes"}
_NO = {"", "0", "off", "false", "no"}


def _instant(text: str, field: str) -> datetime:
    """A date, or a date and time with or without seconds, in UTC unless an offset is
    given (a browser's date and time fields send neither seconds nor offset)."""
    found = _INSTANT.fullmatch(text)
    refused = InvalidSessionData(
        {field: "must be a date or a date and time: YYYY-MM-DD[THH:MM[:SS]][Z|+HH:MM], UTC"}
    )
    if found is None:
        raise refused
    parts = found.groupdict()
    if parts["seconds"] and not parts["time"]:
        raise refused
    whole = (
        f"{parts['date']}{parts['time'] or 'T00:00'}{parts['seconds'] or ':00'}"
        f"{parts['zone'] or 'Z'}"
    )
    try:
        return parse_datetime(whole)
    except ValueError:
        raise refused from None


def _id(params: Mapping[str, str], field: str) -> str | None:
    # Taken as given: " cart_a" is another cart than "cart_a".
    value = params.get(field, "")
    if not value:
        return None
    if len(value) > current_limits().id_length:
        raise InvalidSessionData({field: f"longer than {current_limits().id_length} characters"})
    return value


def _limit(params: Mapping[str, str]) -> int:
    text = params.get("limit", "")
    if not text:
        return PAGE
    if not (text.isascii() and text.isdigit() and len(text) <= 4 and 1 <= int(text) <= MAX_PAGE):
        raise InvalidSessionData({"limit": f"must be a whole number from 1 to {MAX_PAGE}"})
    return int(text)


def _after(params: Mapping[str, str], ids: int) -> PageKey | None:
    token = params.get("after", "")
    return PageKey.from_token(token, ids) if token else None


def _choice(params: Mapping[str, str], field: str, choices: Sequence[str]) -> str | None:
    value = params.get(field, "")
    if not value:
        return None
    if value not in choices:
        raise InvalidSessionData({field: f"must be one of {', '.join(choices)}"})
    return value


@attrs.frozen
class SessionsQuery:
    """A sessions page as asked for: its filter, where it starts, how many rows."""

    where: SessionFilter
    after: PageKey | None
    limit: int

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> SessionsQuery:
        """The query of ``params`` (``status``, ``provider``, ``cart``, ``anomalies``,
        ``from``, ``to``, ``after``, ``limit``); InvalidSessionData naming the first bad one."""
        status = _choice(params, "status", [status.value for status in PaymentSessionStatus])
        flag = params.get("anomalies", "").lower()
        if flag not in _YES | _NO:
            raise InvalidSessionData({"anomalies": "must be 1 or 0"})
        start = _instant(params["from"], "from") if params.get("from") else None
        end = _instant(params["to"], "to") if params.get("to") else None
        if start is not None and end is not None and end <= start:
            raise InvalidSessionData({"to": "must be later than from"})
        where = SessionFilter(
            status=None if status is None else PaymentSessionStatus(status),
            provider_id=_id(params, "provider"),
            cart_id=_id(params, "cart"),
            has_anomalies=flag in _YES,
            updated_from=start,
            updated_to=end,
        )
        return cls(where, _after(params, 1), _limit(params))

    def params(self) -> dict[str, str]:
        """The query string's values that give this filter (no page key)."""
        where = self.where
        found = {
            "status": None if where.status is None else where.status.value,
            "provider": where.provider_id,
            "cart": where.cart_id,
            "anomalies": "1" if where.has_anomalies else None,
            "from": None if where.updated_from is None else format_datetime(where.updated_from),
            "to": None if where.updated_to is None else format_datetime(where.updated_to),
            "limit": None if self.limit == PAGE else str(self.limit),
        }
        return {name: value for name, value in found.items() if value is not None}


@attrs.frozen
class AnomaliesQuery:
    """An anomalies page as asked for (``kind``, ``provider``, ``after``, ``limit``)."""

    where: AnomalyFilter
    after: PageKey | None
    limit: int

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> AnomaliesQuery:
        kind = _choice(params, "kind", [kind.value for kind in AnomalyKind])
        where = AnomalyFilter(
            kind=None if kind is None else AnomalyKind(kind),
            provider_id=_id(params, "provider"),
        )
        return cls(where, _after(params, 2), _limit(params))

    def params(self) -> dict[str, str]:
        found = {
            "kind": None if self.where.kind is None else self.where.kind.value,
            "provider": self.where.provider_id,
            "limit": None if self.limit == PAGE else str(self.limit),
        }
        return {name: value for name, value in found.items() if value is not None}


def _when(value: datetime | None) -> str | None:
    return None if value is None else format_datetime(value)


def summary(
    value: Mapping[str, Any] | None, key: bytes | None = None, *, plain: bool = False
) -> dict[str, object] | None:
    """How many keys ``value`` has and its size in bytes, never the values themselves;
    with ``key`` its keyed digest, else with ``plain`` (the trail holds plain digests)
    its SHA-256 digest."""
    if value is None:
        return None
    shown: dict[str, object] = {"keys": len(value), "bytes": len(canonical_json(value))}
    if key is not None:
        shown["digest"] = digest(value, key)
    elif plain:
        shown["digest"] = digest(value)
    return shown


def session_json(
    session: PaymentSession,
    version: int | None = None,
    *,
    key: bytes | None = None,
    plain: bool = False,
) -> dict[str, object]:
    """A session as a page and the API show it: ``data`` and ``cart`` as summaries (see
    :func:`summary`)."""
    shown: dict[str, object] = {
        "id": session.id,
        "cart_id": session.cart_id,
        "provider_id": session.provider_id,
        "status": session.status.value,
        "amount": session.amount,
        "is_selected": session.is_selected,
        "is_initiated": session.is_initiated,
        "idempotency_key": session.idempotency_key,
        "payment_authorized_at": _when(session.payment_authorized_at),
        "created_at": _when(session.created_at),
        "updated_at": _when(session.updated_at),
        "data": summary(session.data, key, plain=plain),
        "cart": summary(session.cart, key, plain=plain),
    }
    if version is not None:
        shown["version"] = version
    return shown


def plain_digests(first: TransitionRecord | None) -> bool:
    """Whether a trail's digests are plain SHA-256 (an unkeyed store): its record 0
    always holds the digest of the session's data."""
    if first is None:
        return False
    change = first.changes.get("data")
    return isinstance(change, tuple | list) and str(change[-1]).startswith("sha256:")


def record_json(record: TransitionRecord) -> dict[str, object]:
    """One record of a trail, as the trail table shows it."""
    return {
        "seq": record.seq,
        "at": format_datetime(record.at),
        "trigger": record.trigger,
        "source": None if record.source is None else record.source.value,
        "dest": record.dest.value,
        "actor": record.actor,
        "reason": record.reason,
        "idempotency_key": record.idempotency_key,
        "hash": record.hash,
    }


def event_json(event: ProviderEvent, provider_id: str | None = None) -> dict[str, object]:
    """One provider report as reconciliation recorded it."""
    shown: dict[str, object] = {
        "session_id": event.session_id,
        "event_id": event.event_id,
        "provider_status": event.provider_status,
        "status": event.status.value,
        "session_status": event.session_status.value,
        "outcome": event.outcome.value,
        "kind": None if event.kind is None else event.kind.value,
        "guard": event.guard,
        "observed_at": _when(event.observed_at),
        "recorded_at": _when(event.recorded_at),
        "duplicates": event.duplicates,
    }
    if provider_id is not None:
        shown["provider_id"] = provider_id
    return shown


def call_json(call: ProviderCall) -> dict[str, object]:
    """One request made of a provider that holds or releases money, with its answer."""
    return {
        "action": call.action.value,
        "idempotency_key": call.idempotency_key,
        "provider_status": call.provider_status,
        "status": call.status.value,
        "amount": call.amount,
        "currency": call.currency,
        "asked_at": _when(call.asked_at),
        "answered_at": _when(call.answered_at),
    }


def logged_json(logged: LoggedRecord) -> dict[str, object]:
    """A record of the feed: the record, and the cursor that reads on after it."""
    return {"cursor": logged.cursor, "session_id": logged.record.session_id} | record_json(
        logged.record
    )


@attrs.frozen
class SessionsView:
    """The sessions page: one page of sessions and the next page's key (the counts per
    status are the app's, which reuses them for a few seconds)."""

    query: SessionsQuery
    sessions: list[PaymentSession]
    next_key: PageKey | None
    key: bytes | None = attrs.field(default=None, repr=False)

    def to_json(self) -> dict[str, object]:
        return {
            "sessions": [session_json(session, key=self.key) for session in self.sessions],
            "next": None if self.next_key is None else self.next_key.token(),
        }


def sessions_view(
    store: BrowsableStore, query: SessionsQuery, key: bytes | None = None
) -> SessionsView:
    sessions, next_key = store.sessions_page(query.where, query.after, query.limit)
    return SessionsView(query, sessions, next_key, key)


@attrs.frozen
class Verification:
    """What checking a session's trail against its row found: ok, or its first problem."""

    problem: AuditProblem | None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_json(self) -> dict[str, object]:
        if self.problem is None:
            return {"ok": True}
        return {
            "ok": False,
            "seq": self.problem.seq,
            "reason": self.problem.reason,
            "message": self.problem.message,
        }


TRAIL_PAGE = 100
"""Records per page of a session's trail (its page and ``/api/sessions/{id}/trail``)."""

EVENTS_PAGE = 50
"""Provider events per page of a session."""

_LARGEST_START = 10**9


def _start(params: Mapping[str, str], field: str) -> int:
    text = params.get(field, "")
    if not text:
        return 0
    if not (text.isascii() and text.isdigit() and int(text) < _LARGEST_START):
        raise InvalidSessionData({field: "must be a whole number from 0"})
    return int(text)


@attrs.frozen
class SessionQuery:
    """Which page of a session's trail and of its events to show: each starts at a
    record's or an event's index, from 0."""

    trail_from: int = 0
    events_from: int = 0

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> SessionQuery:
        return cls(_start(params, "trail_from"), _start(params, "events_from"))


@attrs.frozen
class SessionView:
    """One session's page: the session, its trail checked (one page of it shown), a page
    of its reports and its cart."""

    snapshot: Snapshot
    trail: list[TransitionRecord]
    """The records of this page: ``query.trail_from`` on, at most TRAIL_PAGE."""
    records: int
    """How many records the session has in all."""
    verification: Verification
    events: list[ProviderEvent]
    more_events: bool
    cart_sessions: list[PaymentSession]
    diagram: str
    holds: Holds
    calls: list[ProviderCall]
    query: SessionQuery = SessionQuery()
    key: bytes | None = attrs.field(default=None, repr=False)
    plain: bool = False
    """Whether the trail's digests are plain SHA-256 (see :func:`plain_digests`)."""

    @property
    def session(self) -> PaymentSession:
        return self.snapshot.session

    def fields(self) -> dict[str, object]:
        return session_json(self.session, self.snapshot.version, key=self.key, plain=self.plain)

    @property
    def trail_pages(self) -> tuple[int | None, int | None]:
        """Where the previous and the next page of the trail start (None: no such page)."""
        start = self.query.trail_from
        previous = max(0, start - TRAIL_PAGE) if start > 0 else None
        following = start + TRAIL_PAGE if start + TRAIL_PAGE < self.records else None
        return previous, following

    @property
    def events_pages(self) -> tuple[int | None, int | None]:
        start = self.query.events_from
        previous = max(0, start - EVENTS_PAGE) if start > 0 else None
        return previous, start + EVENTS_PAGE if self.more_events else None

    @property
    def authorized_in_cart(self) -> int:
        """How many sessions of the cart (this one included) are authorized."""
        return sum(s.status is PaymentSessionStatus.AUTHORIZED for s in self.cart_sessions)

    def to_json(self) -> dict[str, object]:
        events_previous, events_next = self.events_pages
        return {
            "session": self.fields(),
            "verification": self.verification.to_json(),
            "records": self.records,
            "provider_events": [event_json(event) for event in self.events],
            "provider_events_from": self.query.events_from,
            "provider_events_previous": events_previous,
            "provider_events_next": events_next,
            "anomalies": sum(event.outcome.value == "anomaly" for event in self.events),
            "cart_sessions": [
                {"id": s.id, "provider_id": s.provider_id, "status": s.status.value}
                for s in self.cart_sessions
            ],
            "authorized_in_cart": self.authorized_in_cart,
            "provider_calls": [call_json(call) for call in self.calls],
            "holds": {
                "asked": len(self.holds.asked),
                "released": len(self.holds.released),
                "unreleased": self.holds.unreleased,
            },
        }

    def trail_json(self) -> dict[str, object]:
        """A page of the trail, every value whole (the page shows them cut short)."""
        previous, following = self.trail_pages
        return {
            "session_id": self.session.id,
            "verification": self.verification.to_json(),
            "records": [record_json(record) for record in self.trail],
            "total": self.records,
            "from": self.query.trail_from,
            "previous": previous,
            "next": following,
        }


class _Walk:
    """A session's records as the check reads them: it keeps the page shown, the moves
    (without their strings) for the diagram, and the count; nothing else stays."""

    def __init__(self, records: Iterator[TransitionRecord], version: int, start: int) -> None:
        self.records = records
        self.version = version
        self.start = start
        self.count = 0
        self.page: list[TransitionRecord] = []
        self.moves: list[TransitionRecord] = []
        self.plain = False

    def __iter__(self) -> Iterator[TransitionRecord]:
        for record in self.records:
            if self.count == 0:
                self.plain = plain_digests(record)
            if self.start <= self.count < self.start + TRAIL_PAGE:
                self.page.append(record)
            if record.seq <= self.version:
                self.moves.append(
                    attrs.evolve(record, actor=None, reason=None, idempotency_key=None, changes={})
                )
            self.count += 1
            yield record

    def check(self, snapshot: Snapshot, key: bytes | None) -> AuditProblem | None:
        problem = check_stored(snapshot, self, key)
        for _ in self:  # the records the check left unread still count, and may be shown
            pass
        return problem


def session_view(
    store: BrowsableStore,
    session_id: str,
    key: bytes | None = None,
    query: SessionQuery = SessionQuery(),
) -> SessionView | None:
    """The view of one session, None when the store has no such session.

    The trail is read in one snapshot with the row and checked a chunk at a time: the
    memory a page takes does not grow with the trail.
    """
    if len(session_id) > current_limits().id_length:
        return None

    def walk(
        snapshot: Snapshot, records: Iterator[TransitionRecord]
    ) -> tuple[Snapshot, _Walk, AuditProblem | None]:
        walked = _Walk(records, snapshot.version, query.trail_from)
        return snapshot, walked, walked.check(snapshot, key)

    found = store.read_trail(session_id, walk)
    if found is None:
        return None
    snapshot, walked, problem = found
    session = snapshot.session
    try:
        drawn = chart(with_internal=True, session=session, history=walked.moves)
    except DiagramError:
        # A trail the table cannot draw is already the verification's finding: draw the
        # table with the session's status, and let the trail table show the rest.
        drawn = chart(with_internal=True, session=session)
    cart = [] if session.cart_id is None else store.find(cart_id=session.cart_id)
    events, more_events = store.events_page(session.id, query.events_from, EVENTS_PAGE)
    calls = store.provider_calls(session.id)
    # Whether a hold was let go depends on every report, not the page shown.
    every_event = store.provider_events(session_id=session.id)
    return SessionView(
        snapshot=snapshot,
        trail=walked.page,
        records=walked.count,
        verification=Verification(problem),
        events=events,
        more_events=more_events,
        cart_sessions=cart,
        diagram=chart_svg(drawn, label=f"The path of session {printable(session.id)}"),
        holds=holds_of(session, calls, every_event),
        calls=calls,
        query=query,
        key=key,
        plain=walked.plain,
    )


@attrs.frozen
class AnomaliesView:
    query: AnomaliesQuery
    anomalies: list[Anomaly]
    next_key: PageKey | None

    def to_json(self) -> dict[str, object]:
        return {
            "anomalies": [
                event_json(a.event, a.provider_id) | {"hold": a.hold} for a in self.anomalies
            ],
            "next": None if self.next_key is None else self.next_key.token(),
        }


def anomalies_view(store: BrowsableStore, query: AnomaliesQuery) -> AnomaliesView:
    found, next_key = store.anomalies_page(query.where, query.after, query.limit)
    return AnomaliesView(query, found, next_key)


def lifecycle_rows() -> list[dict[str, object]]:
    """The transition table: trigger, sources, destination, guards, description."""
    return [
        {
            "trigger": move.trigger,
            "sources": [source.value for source in move.sources],
            "dest": "(stays)" if move.internal else move.dest_from(move.sources[0]).value,
            "guards": list(move.guards),
            "description": move.description,
        }
        for move in TRANSITIONS
    ]


def lifecycle_diagram() -> str:
    return chart_svg(chart(with_internal=True), label="The lifecycle of a payment session")


__all__ = [
    "EVENTS_PAGE",
    "PAGE",
    "TRAIL_PAGE",
    "AnomaliesQuery",
    "AnomaliesView",
    "SessionQuery",
    "SessionView",
    "SessionsQuery",
    "SessionsView",
    "Verification",
    "anomalies_view",
    "event_json",
    "lifecycle_diagram",
    "lifecycle_rows",
    "logged_json",
    "plain_digests",
    "record_json",
    "session_json",
    "session_view",
    "sessions_view",
    "summary",
]
