"""What both SQL stores share, written once: the reads, the claim, the snapshot cache.

The two schemas have the same tables and columns; the stores differ in how a row's
values become a session or an event (SQLite keeps times as integer microseconds,
PostgreSQL as timestamptz), in how they lend a connection, and in how their driver
marks a named value in a statement (``:name`` for sqlite3, ``%(name)s`` for psycopg).

Every value a query here takes is named, and passed in a dict under that name; the
query puts each store's :data:`Placeholder` for the name where the value goes. Rows
are read by column name: each store's connections fetch rows that are (see
:class:`~paysession.store._rows.Row`).
"""

from __future__ import annotations

import abc
import functools
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any, ClassVar

import attrs

from paysession._wire import same_digest
from paysession.errors import (
    AuthorizationConflict,
    CartBusy,
    ConcurrentUpdate,
    DuplicateSession,
    InvalidSessionData,
    MigrationRefused,
    PaySessionError,
    SelectionConflict,
    StoreError,
)
from paysession.record import TransitionRecord
from paysession.session import PaymentSession
from paysession.status import PaymentSessionStatus
from paysession.store._rows import Row, record_from_wire, session_from_row
from paysession.store.base import (
    STALE_STATUSES,
    Binding,
    CallAction,
    Claim,
    EventOutcome,
    ProviderCall,
    ProviderEvent,
    Snapshot,
    Write,
    has_nul,
)

Placeholder = Callable[[str], str]
"""Where the value of that name goes in a statement, in a driver's named style."""

Params = Mapping[str, object]
"""A statement's values, by the names its placeholders give them."""

Reader = Callable[[str, Params], list[Row]]
"""Runs one query inside a snapshot (see ``SqlReads._snapshot``) and returns its rows."""

JsonTexts = tuple[str | None, str | None]
"""A session's ``data`` and ``cart`` as :func:`dump_json` writes them."""


class SnapshotCache:
    """The sessions a store has recently built or committed, by id, with their version.

    A committed version of a session never changes, so a row read back at the version
    (and head) a snapshot was cached at is that snapshot: the store can hand it out
    instead of decoding and validating the row again. A committed session also keeps
    the JSON text of its ``data`` and ``cart``, which the next move usually leaves as
    they were. Bounded; oldest entries go first.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._entries: dict[str, tuple[int, str, PaymentSession, JsonTexts | None]] = {}
        self._lock = threading.Lock()

    def get(self, session_id: str, version: int, head: str) -> PaymentSession | None:
        entry = self._entries.get(session_id)
        if entry is None or entry[0] != version or not same_digest(entry[1], head):
            return None
        return entry[2]

    def put(
        self, session: PaymentSession, version: int, head: str, texts: JsonTexts | None = None
    ) -> None:
        with self._lock:
            entries = self._entries
            entries.pop(session.id, None)
            if len(entries) >= self._size:
                del entries[next(iter(entries))]
            entries[session.id] = (version, head, session, texts)

    def texts(self, session: PaymentSession) -> JsonTexts:
        """``session``'s data and cart as JSON text, to store and then :meth:`put`.

        Frozen data cannot change, so where the cached snapshot of the same session
        holds the very same object, its text is the text; only new data is encoded.
        """
        data, cart = session.data, session.cart
        entry = self._entries.get(session.id)
        if entry is None or entry[3] is None:
            return dump_json(data), dump_json(cart)
        known, (data_text, cart_text) = entry[2], entry[3]
        return (
            data_text if known.data is data else dump_json(data),
            cart_text if known.cart is cart else dump_json(cart),
        )

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def snapshot(
        self, row: Row, build: Callable[[Row], PaymentSession], key: str | None = None
    ) -> Snapshot:
        """The snapshot of a row selected as :data:`SESSION_COLUMNS`; with ``key``, also
        :data:`KEY_COLUMNS` (NULL when the key is not bound)."""
        session_id, version, head = row["id"], row["version"], row["head"]
        session = self.get(session_id, version, head)
        if session is None:
            session = session_from_row(build, row)
            self.put(session, version, head)
        binding = None
        if key is not None and row["key_fingerprint"] is not None:
            binding = Binding(session_id, key, row["key_fingerprint"], row["key_seq"])
        return Snapshot(session, version, head, binding)


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def insert_row(table: str, columns: str, placeholder: Placeholder) -> str:
    """INSERT of one row of ``table``, each of ``columns`` (as :data:`EVENT_COLUMNS`)
    taking the value named after it."""
    names = [column.strip() for column in columns.split(",")]
    values = ", ".join(placeholder(name) for name in names)
    return f"INSERT INTO {table} ({columns}) VALUES ({values})"


def event_row(event: ProviderEvent, time: Callable[[datetime], object]) -> dict[str, object]:
    """A provider event's row, by the names of ``EVENT_COLUMNS``; ``time`` encodes an
    instant as the store's time columns keep it."""
    observed = event.observed_at
    return {
        "session_id": event.session_id,
        "event_id": event.event_id,
        "provider_status": event.provider_status,
        "status": event.status.value,
        "session_status": event.session_status.value,
        "outcome": event.outcome.value,
        "observed_at": None if observed is None else time(observed),
        "recorded_at": time(event.recorded_at),
        "version": event.version,
        "guard": event.guard,
        "duplicates": event.duplicates,
        "kind": None if event.kind is None else event.kind.value,
    }


def dump_json(value: Mapping[str, object] | None) -> str | None:
    """A session's ``data`` or ``cart`` as compact JSON text, key order kept."""
    return None if value is None else _encode(value)


def load_json(value: Any) -> Any:
    """JSON text (SQLite) or an already decoded value (psycopg's json) as a value."""
    if value is None or not isinstance(value, str | bytes):
        return value
    return json.loads(value)


SESSION_COLUMNS = (
    "id, cart_id, provider_id, is_selected, is_initiated, status, data, idempotency_key, "
    "amount, payment_authorized_at, created_at, updated_at, cart, version, head"
)
"""The session row as every SQL query selects it: the session's fields, then the
version and head (which :meth:`SnapshotCache.snapshot` reads)."""

KEY_COLUMNS = "k.fingerprint AS key_fingerprint, k.seq AS key_seq"
"""What a load with an idempotency key selects of its binding, from ``paysession_keys``
joined as ``k``."""

EVENT_COLUMNS = (
    "session_id, event_id, provider_status, status, session_status, outcome, observed_at, "
    "recorded_at, version, guard, duplicates, kind"
)
"""The provider-event row as every SQL query selects it."""

CLAIM_COLUMNS = "cart_id, token, session_id, action, expires_at"
"""The claim row as every SQL query selects it."""

ANOMALY_KINDS_3 = "('no_legal_path', 'guard_refused', 'double_authorization')"
"""The values the provider-events ``kind`` column could hold in schema version 3."""

ANOMALY_KINDS = "('no_legal_path', 'guard_refused', 'double_authorization', 'future_report')"
"""The values the provider-events ``kind`` column could hold in schema versions 4 to 5
(SQLite) and 4 to 6 (PostgreSQL)."""

ANOMALY_KINDS_NOW = (
    "('no_legal_path', 'guard_refused', 'double_authorization', 'future_report', 'amount_mismatch')"
)
"""The values the provider-events ``kind`` column may hold now."""

CALL_COLUMNS = (
    "session_id, action, idempotency_key, provider_status, status, amount, currency, "
    "asked_at, answered_at"
)
"""The provider-call row as every SQL query selects it."""


def insert_call(placeholder: Placeholder) -> str:
    """INSERT of a provider call's row (:func:`call_row`), kept once: a retried request
    under the same key is the same one."""
    return (
        f"{insert_row('paysession_provider_calls', CALL_COLUMNS, placeholder)} "
        "ON CONFLICT DO NOTHING"
    )


def call_row(call: ProviderCall, time: Callable[[datetime], object]) -> dict[str, object]:
    """A provider call's row, by the names of ``CALL_COLUMNS``; ``time`` encodes an
    instant."""
    return {
        "session_id": call.session_id,
        "action": call.action.value,
        "idempotency_key": call.idempotency_key,
        "provider_status": call.provider_status,
        "status": call.status.value,
        "amount": call.amount,
        "currency": call.currency,
        "asked_at": time(call.asked_at),
        "answered_at": time(call.answered_at),
    }


def call_from_row(row: Row, instant: Callable[[Any], datetime]) -> ProviderCall:
    """The provider call of a row selected as ``CALL_COLUMNS``; ``instant`` decodes a time
    column as the store keeps it."""
    return ProviderCall(
        session_id=row["session_id"],
        action=CallAction(row["action"]),
        idempotency_key=row["idempotency_key"],
        provider_status=row["provider_status"],
        status=PaymentSessionStatus(row["status"]),
        amount=row["amount"],
        currency=row["currency"],
        asked_at=instant(row["asked_at"]),
        answered_at=instant(row["answered_at"]),
    )


_UNRELEASED_HOLDS = """
    SELECT {columns} FROM paysession_sessions AS s
    WHERE s.status <> 'authorized'
      AND s.id IN (
        SELECT session_id FROM paysession_provider_events WHERE status = 'authorized'
        UNION
        SELECT session_id FROM paysession_provider_calls WHERE status = 'authorized'
      )
      AND NOT EXISTS (
        SELECT 1 FROM paysession_provider_events AS e
        WHERE e.session_id = s.id AND e.status = 'canceled'
      )
      AND NOT EXISTS (
        SELECT 1 FROM paysession_provider_calls AS c
        WHERE c.session_id = s.id AND c.status = 'canceled'
      )
    ORDER BY s.updated_at, s.id LIMIT {limit}
    """
"""Sessions not authorized whose provider said it holds money and never that it let go.

A payment canceled at its provider is never authorized again there (a canceled Stripe
PaymentIntent, a voided PayPal authorization), so one release fact settles it."""
"""The values the provider-events ``kind`` column may hold, for its CHECK."""

DOUBLY_AUTHORIZED_CARTS = (
    "SELECT cart_id FROM paysession_sessions WHERE status = 'authorized' "
    "AND cart_id IS NOT NULL GROUP BY cart_id HAVING count(*) > 1 ORDER BY cart_id"
)
"""The carts that break the one-authorization-per-cart rule (none, in a sound store)."""

_AUTHORIZED = PaymentSessionStatus.AUTHORIZED
_STALE_IN = ", ".join(f"'{status.value}'" for status in sorted(STALE_STATUSES))


def refusal(
    rule: str | None, writes: Sequence[Write], binding: Binding | None, detail: str
) -> PaySessionError:
    """The paysession error for a write that broke ``rule`` of the schema.

    Each driver names the rule its error points at (a constraint, a set of columns):
    ``session_id``, ``cart_provider``, ``one_selected``, ``one_authorized``,
    ``record_seq`` or ``key``, ``race`` for a serialization failure, or None for a
    failure no rule of ours explains (a StoreError with the driver's ``detail``).
    """
    first = writes[0]
    session = first.session
    if rule == "session_id":
        return DuplicateSession(session.id, session.cart_id, session.provider_id, ("id",))
    if rule == "cart_provider":
        fields = ("cart_id", "provider_id")
        return DuplicateSession(session.id, session.cart_id, session.provider_id, fields)
    if rule == "one_selected":
        chosen = next((w.session for w in writes if w.session.is_selected), session)
        return SelectionConflict(chosen.id, chosen.cart_id)
    if rule == "one_authorized":
        authorized = next((w.session for w in writes if w.session.status is _AUTHORIZED), session)
        return AuthorizationConflict(authorized.id, authorized.cart_id)
    if rule in ("record_seq", "race"):
        return ConcurrentUpdate(session.id, first.expected_version)
    if rule == "key" and binding is not None:
        return ConcurrentUpdate(binding.session_id, None)
    return StoreError("write", detail)


def migrate_schema(conn: Any, migrations: Sequence[Sequence[str]], placeholder: Placeholder) -> int:
    """Bring the schema to the last of ``migrations``, inside the caller's transaction.

    ``conn`` is a store's connection (its rows read by column name), ``placeholder`` its
    driver's. The version in force is kept in ``paysession_schema``; each version's
    statements run once, in order. A database newer than this paysession is refused
    (StoreError), and version 3 first checks that no cart holds two authorized sessions.
    """
    target = len(migrations)
    conn.execute("CREATE TABLE IF NOT EXISTS paysession_schema (version integer NOT NULL)")
    row = conn.execute("SELECT version FROM paysession_schema").fetchone()
    current = 0 if row is None else int(row["version"])
    if current > target:
        raise StoreError(
            "migrate",
            f"the database is at schema version {current}; this paysession knows up to {target}",
        )
    for version in range(current + 1, target + 1):
        if version == 3:
            carts = conn.execute(DOUBLY_AUTHORIZED_CARTS).fetchall()
            refuse_doubly_authorized([found["cart_id"] for found in carts])
        for statement in migrations[version - 1]:
            conn.execute(statement)
    slot = placeholder("version")
    if row is None:
        conn.execute(
            f"INSERT INTO paysession_schema (version) VALUES ({slot})", {"version": target}
        )
    elif current != target:
        conn.execute(f"UPDATE paysession_schema SET version = {slot}", {"version": target})
    return target


def migrate_up_to(
    conn: Any, migrations: Sequence[Sequence[str]], placeholder: Placeholder, up_to: int | None
) -> int:
    """:func:`migrate_schema` to the last of ``migrations``, or only up to version
    ``up_to`` when given: a database already there (or past it) is left as it is. Returns
    the version in force. InvalidSessionData naming ``up_to`` for a version that is not
    one of ``migrations``."""
    if up_to is None:
        return migrate_schema(conn, migrations, placeholder)
    if isinstance(up_to, bool) or not isinstance(up_to, int) or not 0 < up_to <= len(migrations):
        raise InvalidSessionData(
            {"up_to": f"must be a schema version from 1 to {len(migrations)}; got {up_to!r}"}
        )
    conn.execute("CREATE TABLE IF NOT EXISTS paysession_schema (version integer NOT NULL)")
    row = conn.execute("SELECT version FROM paysession_schema").fetchone()
    current = 0 if row is None else int(row["version"])
    if current >= up_to:
        return current
    return migrate_schema(conn, migrations[:up_to], placeholder)


def refuse_doubly_authorized(carts: Sequence[str]) -> None:
    """MigrationRefused naming ``carts`` when there are any: schema version 3 forbids them."""
    if not carts:
        return
    shown = ", ".join(carts[:20]) + (f" and {len(carts) - 20} more" if len(carts) > 20 else "")
    raise MigrationRefused(
        f"cannot enforce one authorized session per cart: {len(carts)} cart(s) have more "
        f"than one ({shown}); cancel the extra sessions (voiding their holds at the "
        "provider), then open the store again. Nothing was migrated or dropped",
        carts,
    )


@functools.lru_cache(maxsize=64)
def prefixed(columns: str, table: str) -> str:
    """``columns`` (as :data:`SESSION_COLUMNS`) of the table aliased ``table`` in a join,
    each under its own name (SQLite names a column ``AS`` says, or as it pleases)."""
    names = (column.strip() for column in columns.split(","))
    return ", ".join(f"{table}.{name} AS {name}" for name in names)


def _select_matching(
    columns: str, table: str, order: str, placeholder: Placeholder, **filters: object
) -> tuple[str, Params]:
    """A SELECT with only the filters given (None: not filtered), and its values, each
    named after its column.

    Only those given, so that each shape of query gets a plan that uses its index.
    """
    given = {column: value for column, value in filters.items() if value is not None}
    where = " AND ".join(f"{column} = {placeholder(column)}" for column in given) or "1 = 1"
    return f"SELECT {columns} FROM {table} WHERE {where} ORDER BY {order}", given


class SqlReads(abc.ABC):
    """The read side of the SessionStore protocol, over the shared tables.

    A store that mixes this in provides ``_connection`` (a connection for one operation,
    driver errors translated), ``_placeholder``, ``_cache`` and the row builders.
    """

    _EVENTS_IN_RECORDED_ORDER: ClassVar[str]
    """The ORDER BY that lists provider events in the order they were recorded."""
    _cache: SnapshotCache

    @staticmethod
    @abc.abstractmethod
    def _placeholder(name: str) -> str:
        """Where the value ``name`` goes in a statement: the driver's :data:`Placeholder`."""

    @abc.abstractmethod
    def _connection(self, operation: str) -> AbstractContextManager[Any]:
        """A connection for one operation, a read or a write, on a database ready for it
        (migrated, or found current), its driver's errors raised as StoreError."""

    @staticmethod
    @abc.abstractmethod
    def _session_from_row(row: Row) -> PaymentSession:
        """The session of a row selected as :data:`SESSION_COLUMNS`."""

    @staticmethod
    @abc.abstractmethod
    def _event_from_row(row: Row) -> ProviderEvent:
        """The provider event of a row selected as :data:`EVENT_COLUMNS`."""

    @staticmethod
    @abc.abstractmethod
    def _claim_from_row(row: Row) -> Claim:
        """The claim of a row selected as :data:`CLAIM_COLUMNS`."""

    @staticmethod
    @abc.abstractmethod
    def _time(value: datetime) -> object:
        """An instant as the store's time columns keep it."""

    @abc.abstractmethod
    def _read_transaction(self, conn: Any) -> AbstractContextManager[object]:
        """A read-only transaction on ``conn`` whose reads all see one committed state."""

    @contextmanager
    def _snapshot(self, operation: str) -> Iterator[Reader]:
        """Queries that all read one committed state of the database."""
        with self._connection(operation) as conn, self._read_transaction(conn):

            def read(query: str, params: Params) -> list[Row]:
                rows: list[Row] = conn.execute(query, params).fetchall()
                return rows

            yield read

    def _rows(self, operation: str, query: str, params: Params) -> list[Row]:
        with self._connection(operation) as conn:
            rows: list[Row] = conn.execute(query, params).fetchall()
        return rows

    def record(self, session_id: str, seq: int) -> TransitionRecord | None:
        # No id or key holds NUL in any store (they are refused on the way in), and
        # PostgreSQL text cannot even be asked about one: nothing to find.
        if has_nul(session_id):
            return None
        p = self._placeholder
        rows = self._rows(
            "record",
            "SELECT wire FROM paysession_records "
            f"WHERE session_id = {p('session_id')} AND seq = {p('seq')}",
            {"session_id": session_id, "seq": seq},
        )
        return (
            record_from_wire(rows[0]["wire"], f"record {seq} of session {session_id!r}")
            if rows
            else None
        )

    def load_selected(self, cart_id: str) -> list[Snapshot]:
        if has_nul(cart_id):
            return []
        rows = self._rows(
            "load_selected",
            f"SELECT {SESSION_COLUMNS} FROM paysession_sessions "
            f"WHERE cart_id = {self._placeholder('cart_id')} AND is_selected ORDER BY id",
            {"cart_id": cart_id},
        )
        return [self._cache.snapshot(row, self._session_from_row) for row in rows]

    def history(self, session_id: str) -> list[TransitionRecord]:
        if has_nul(session_id):
            return []
        rows = self._rows(
            "history",
            "SELECT wire FROM paysession_records "
            f"WHERE session_id = {self._placeholder('session_id')} ORDER BY seq",
            {"session_id": session_id},
        )
        what = f"a record of session {session_id!r}"
        return [record_from_wire(row["wire"], what) for row in rows]

    def find(
        self,
        *,
        cart_id: str | None = None,
        status: PaymentSessionStatus | None = None,
        provider_id: str | None = None,
        provider_ref: str | None = None,
    ) -> list[PaymentSession]:
        if has_nul(cart_id) or has_nul(provider_id) or has_nul(provider_ref):
            return []
        status_value = None if status is None else PaymentSessionStatus(status).value
        query, params = _select_matching(
            SESSION_COLUMNS,
            "paysession_sessions",
            "created_at, id",
            self._placeholder,
            cart_id=cart_id,
            status=status_value,
            provider_ref=provider_ref,
            provider_id=provider_id,
        )
        rows = self._rows("find", query, params)
        return [self._cache.snapshot(row, self._session_from_row).session for row in rows]

    def _claim_in(
        self, conn: Any, claim: Claim, now: datetime, selected: bool, lock: str = ""
    ) -> tuple[Row, Claim, Claim | None] | None:
        """The claim's work inside the store's write transaction.

        Reads (and, with ``lock``, locks) the cart's sessions, refuses (CartBusy)
        another token's live claim, finds the session (the cart's selected one, or
        ``claim.session_id``), and takes the claim; None, writing nothing, when there is
        no such session. Returns the session's row, the claim taken and the expired
        claim it replaced, if any.
        """
        p = self._placeholder
        cart = {"cart_id": claim.cart_id}
        # Every session row of the cart, in id order (``lock`` is how the store locks
        # them, when it must), then the one the claim is about.
        rows = conn.execute(
            f"SELECT {SESSION_COLUMNS} FROM paysession_sessions WHERE cart_id = {p('cart_id')} "
            f"ORDER BY id{lock}",
            cart,
        ).fetchall()
        held_row = conn.execute(
            f"SELECT {CLAIM_COLUMNS} FROM paysession_claims WHERE cart_id = {p('cart_id')}", cart
        ).fetchone()
        held = None if held_row is None else self._claim_from_row(held_row)
        if held is not None and held.token != claim.token and held.live(now):
            raise CartBusy(held.cart_id, held.expires_at)
        row = next(
            (r for r in rows if (r["is_selected"] if selected else r["id"] == claim.session_id)),
            None,
        )
        if row is None:
            return None
        taken = attrs.evolve(claim, session_id=row["id"])
        conn.execute(
            f"{insert_row('paysession_claims', CLAIM_COLUMNS, p)} "
            "ON CONFLICT (cart_id) DO UPDATE SET token = excluded.token, "
            "session_id = excluded.session_id, action = excluded.action, "
            "expires_at = excluded.expires_at",
            {
                "cart_id": taken.cart_id,
                "token": taken.token,
                "session_id": taken.session_id,
                "action": taken.action.value,
                "expires_at": self._time(taken.expires_at),
            },
        )
        previous = held if held is not None and held.token != claim.token else None
        return row, taken, previous

    def claim_of(self, cart_id: str) -> Claim | None:
        if has_nul(cart_id):
            return None
        rows = self._rows(
            "claim_of",
            f"SELECT {CLAIM_COLUMNS} FROM paysession_claims "
            f"WHERE cart_id = {self._placeholder('cart_id')}",
            {"cart_id": cart_id},
        )
        return self._claim_from_row(rows[0]) if rows else None

    def stale(self, before: datetime, limit: int) -> list[PaymentSession]:
        p = self._placeholder
        rows = self._rows(
            "stale",
            f"SELECT {SESSION_COLUMNS} FROM paysession_sessions WHERE status IN ({_STALE_IN}) "
            f"AND updated_at < {p('before')} ORDER BY updated_at, id LIMIT {p('limit')}",
            {"before": self._time(before), "limit": max(limit, 0)},
        )
        return [self._cache.snapshot(row, self._session_from_row).session for row in rows]

    def provider_event(self, session_id: str, event_id: str) -> ProviderEvent | None:
        if has_nul(session_id) or has_nul(event_id):
            return None
        p = self._placeholder
        rows = self._rows(
            "provider_event",
            f"SELECT {EVENT_COLUMNS} FROM paysession_provider_events "
            f"WHERE session_id = {p('session_id')} AND event_id = {p('event_id')}",
            {"session_id": session_id, "event_id": event_id},
        )
        return self._event_from_row(rows[0]) if rows else None

    @staticmethod
    @abc.abstractmethod
    def _call_from_row(row: Row) -> ProviderCall:
        """The provider call of a row selected as :data:`CALL_COLUMNS`."""

    def provider_calls(self, session_id: str) -> list[ProviderCall]:
        if has_nul(session_id):
            return []
        rows = self._rows(
            "provider_calls",
            f"SELECT {CALL_COLUMNS} FROM paysession_provider_calls "
            f"WHERE session_id = {self._placeholder('session_id')} "
            f"ORDER BY {self._EVENTS_IN_RECORDED_ORDER}",
            {"session_id": session_id},
        )
        return [self._call_from_row(row) for row in rows]

    def unreleased_holds(self, limit: int) -> list[PaymentSession]:
        rows = self._rows(
            "unreleased_holds",
            _UNRELEASED_HOLDS.format(
                columns=prefixed(SESSION_COLUMNS, "s"), limit=self._placeholder("limit")
            ),
            {"limit": max(limit, 0)},
        )
        return [self._cache.snapshot(row, self._session_from_row).session for row in rows]

    def provider_events(
        self, *, session_id: str | None = None, outcome: EventOutcome | None = None
    ) -> list[ProviderEvent]:
        if has_nul(session_id):
            return []
        query, params = _select_matching(
            EVENT_COLUMNS,
            "paysession_provider_events",
            self._EVENTS_IN_RECORDED_ORDER,
            self._placeholder,
            session_id=session_id,
            outcome=None if outcome is None else EventOutcome(outcome).value,
        )
        rows = self._rows("provider_events", query, params)
        return [self._event_from_row(row) for row in rows]


__all__ = [
    "ANOMALY_KINDS",
    "ANOMALY_KINDS_3",
    "ANOMALY_KINDS_NOW",
    "CALL_COLUMNS",
    "CLAIM_COLUMNS",
    "DOUBLY_AUTHORIZED_CARTS",
    "EVENT_COLUMNS",
    "KEY_COLUMNS",
    "SESSION_COLUMNS",
    "JsonTexts",
    "Params",
    "Placeholder",
    "Reader",
    "SnapshotCache",
    "SqlReads",
    "call_from_row",
    "call_row",
    "dump_json",
    "event_row",
    "insert_call",
    "insert_row",
    "load_json",
    "migrate_schema",
    "migrate_up_to",
    "prefixed",
    "refuse_doubly_authorized",
]
