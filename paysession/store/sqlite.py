"""SqliteStore: the embedded default, on the standard library's sqlite3.

The file is in WAL mode, so readers never wait for the writer. Write transactions
start with ``BEGIN IMMEDIATE``: the write lock is taken before the first read of the
transaction, so two processes can never both read a version and then both write, and
a busy database is waited for (``busy_timeout``) instead of failing half way through.
Each thread gets its own connection; several processes may share one file (on a
local disk: SQLite's locks do not work over network file systems).

Global positions: writers are serialized by the database's write lock, so ``max + 1``
taken inside the write transaction is handed out in commit order.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, TypeVar

from paysession.errors import (
    AuthorizationConflict,
    CartBusy,
    ConcurrentUpdate,
    DuplicateSession,
    InvalidSessionData,
    PaySessionError,
    SelectionConflict,
    SessionNotFound,
    StoreError,
)
from paysession.record import TransitionRecord
from paysession.session import PaymentSession
from paysession.status import PaymentSessionStatus
from paysession.store._sql import (
    ANOMALY_KINDS,
    DOUBLY_AUTHORIZED_CARTS,
    EVENT_COLUMNS,
    SESSION_COLUMNS,
    SnapshotCache,
    SqlReads,
    Texts,
    dump_json,
    load_json,
    refuse_doubly_authorized,
)
from paysession.store.base import (
    AnomalyKind,
    Binding,
    CartCheck,
    Claim,
    ClaimAction,
    Claimed,
    EventOutcome,
    ProviderEvent,
    Snapshot,
    Write,
    check_writes,
    record_wire,
)

Synchronous = Literal["FULL", "NORMAL"]
_T = TypeVar("_T")

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)

# Each entry is one schema version: the statements that lead to it from the one before.
# Published versions never change; a change of schema is a new entry.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE paysession_sessions (
            id TEXT PRIMARY KEY,
            cart_id TEXT,
            provider_id TEXT NOT NULL,
            is_selected INTEGER NOT NULL CHECK (is_selected IN (0, 1)),
            is_initiated INTEGER NOT NULL CHECK (is_initiated IN (0, 1)),
            status TEXT NOT NULL CHECK (
                status IN ('authorized', 'pending', 'requires_more', 'error', 'canceled')
            ),
            data TEXT NOT NULL,
            idempotency_key TEXT,
            amount INTEGER CHECK (amount >= 0),
            payment_authorized_at INTEGER,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL CHECK (updated_at >= created_at),
            cart TEXT,
            version INTEGER NOT NULL CHECK (version >= 0),
            head TEXT NOT NULL,
            CONSTRAINT paysession_cart_provider UNIQUE (cart_id, provider_id),
            CHECK (status <> 'authorized' OR payment_authorized_at IS NOT NULL)
        )
        """,
        """
        CREATE UNIQUE INDEX paysession_one_selected_per_cart
            ON paysession_sessions (cart_id) WHERE is_selected
        """,
        "CREATE INDEX paysession_sessions_status ON paysession_sessions (status)",
        """
        CREATE TABLE paysession_records (
            session_id TEXT NOT NULL REFERENCES paysession_sessions (id),
            seq INTEGER NOT NULL CHECK (seq >= 0),
            position INTEGER NOT NULL UNIQUE CHECK (position > 0),
            trigger TEXT NOT NULL,
            at INTEGER NOT NULL,
            hash TEXT NOT NULL,
            wire TEXT NOT NULL,
            PRIMARY KEY (session_id, seq)
        )
        """,
        """
        CREATE TABLE paysession_keys (
            session_id TEXT NOT NULL,
            key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (session_id, key),
            FOREIGN KEY (session_id, seq) REFERENCES paysession_records (session_id, seq)
        )
        """,
    ),
    # 2: provider events, for reconciliation (one row per report; duplicates counted).
    (
        """
        CREATE TABLE paysession_provider_events (
            session_id TEXT NOT NULL REFERENCES paysession_sessions (id),
            event_id TEXT NOT NULL,
            provider_status TEXT NOT NULL,
            status TEXT NOT NULL CHECK (
                status IN ('authorized', 'pending', 'requires_more', 'error', 'canceled')
            ),
            session_status TEXT NOT NULL CHECK (
                session_status IN ('authorized', 'pending', 'requires_more', 'error', 'canceled')
            ),
            outcome TEXT NOT NULL CHECK (
                outcome IN ('applied', 'noop', 'stale', 'duplicate', 'anomaly')
            ),
            observed_at INTEGER,
            recorded_at INTEGER NOT NULL,
            version INTEGER NOT NULL CHECK (version >= 0),
            guard TEXT,
            duplicates INTEGER NOT NULL DEFAULT 0 CHECK (duplicates >= 0),
            PRIMARY KEY (session_id, event_id)
        )
        """,
        """
        CREATE INDEX paysession_provider_events_outcome
            ON paysession_provider_events (outcome, recorded_at)
        """,
    ),
    # 3: one authorized session per cart (checked before: see _PRECHECKS), the claims
    # that hold a cart while a provider call is in flight, and the kind of an anomaly.
    (
        # (cart_id, status) rather than cart_id alone: SQLite names an index's columns
        # in its error, and this must not read like the one-selected-per-cart index.
        """
        CREATE UNIQUE INDEX paysession_one_authorized_per_cart
            ON paysession_sessions (cart_id, status) WHERE status = 'authorized'
        """,
        """
        CREATE TABLE paysession_claims (
            cart_id TEXT PRIMARY KEY,
            token TEXT NOT NULL,
            session_id TEXT NOT NULL REFERENCES paysession_sessions (id),
            action TEXT NOT NULL CHECK (action IN ('authorize', 'cancel')),
            expires_at INTEGER NOT NULL
        )
        """,
        f"ALTER TABLE paysession_provider_events ADD COLUMN kind TEXT "
        f"CHECK (kind IN {ANOMALY_KINDS})",
    ),
)

_CLAIM_LIVE = "SELECT expires_at FROM paysession_claims WHERE cart_id = ? AND expires_at > ?"
_RELEASE = "DELETE FROM paysession_claims WHERE cart_id = ? AND token = ?"

_LOAD_PLAIN = f"SELECT {SESSION_COLUMNS} FROM paysession_sessions WHERE id = ?"
_LOAD = (
    f"SELECT {', '.join('s.' + c for c in SESSION_COLUMNS.split(', '))}, k.fingerprint, k.seq "
    "FROM paysession_sessions AS s LEFT JOIN paysession_keys AS k "
    "ON k.session_id = s.id AND k.key = ? WHERE s.id = ?"
)
_INSERT_SESSION = (
    f"INSERT INTO paysession_sessions ({SESSION_COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPDATE_SESSION = (
    "UPDATE paysession_sessions SET is_selected = ?, is_initiated = ?, status = ?, data = ?, "
    "idempotency_key = ?, amount = ?, payment_authorized_at = ?, updated_at = ?, cart = ?, "
    "version = ?, head = ? WHERE id = ? AND version = ?"
)
_LAST_POSITION = "SELECT coalesce(max(position), 0) FROM paysession_records"
_INSERT_RECORD = (
    "INSERT INTO paysession_records (session_id, seq, position, trigger, at, hash, wire) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_KEY = "INSERT INTO paysession_keys (session_id, key, fingerprint, seq) VALUES (?, ?, ?, ?)"
_INSERT_EVENT = (
    f"INSERT INTO paysession_provider_events ({EVENT_COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_NEWEST_OBSERVED = (
    "SELECT max(observed_at) FROM paysession_provider_events "
    "WHERE session_id = ? AND outcome IN ('applied', 'noop')"
)


def _micros(value: datetime) -> int:
    return (value - _EPOCH) // _MICROSECOND


def _instant(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _session_from_row(row: Sequence[Any]) -> PaymentSession:
    return PaymentSession(
        id=row[0],
        cart_id=row[1],
        provider_id=row[2],
        is_selected=bool(row[3]),
        is_initiated=bool(row[4]),
        status=row[5],
        data=load_json(row[6]),
        idempotency_key=row[7],
        amount=row[8],
        payment_authorized_at=None if row[9] is None else _instant(row[9]),
        created_at=_instant(row[10]),
        updated_at=_instant(row[11]),
        cart=load_json(row[12]),
    )


def _mutable_columns(session: PaymentSession, texts: Texts) -> tuple[object, ...]:
    authorized_at = session.payment_authorized_at
    return (
        int(session.is_selected),
        int(session.is_initiated),
        session.status.value,
        texts[0],
        session.idempotency_key,
        session.amount,
        None if authorized_at is None else _micros(authorized_at),
        _micros(session.updated_at),
        texts[1],
    )


def _record_row(record: TransitionRecord, position: int) -> tuple[object, ...]:
    return (
        record.session_id,
        record.seq,
        position,
        record.trigger,
        _micros(record.at),
        record.hash,
        record_wire(record),
    )


def _event_row(event: ProviderEvent) -> tuple[object, ...]:
    return (
        event.session_id,
        event.event_id,
        event.provider_status,
        event.status.value,
        event.session_status.value,
        event.outcome.value,
        None if event.observed_at is None else _micros(event.observed_at),
        _micros(event.recorded_at),
        event.version,
        event.guard,
        event.duplicates,
        None if event.kind is None else event.kind.value,
    )


def _claim_from_row(row: Sequence[Any]) -> Claim:
    return Claim(row[0], row[1], row[2], ClaimAction(row[3]), _instant(row[4]))


def _event_from_row(row: Sequence[Any]) -> ProviderEvent:
    return ProviderEvent(
        session_id=row[0],
        event_id=row[1],
        provider_status=row[2],
        status=PaymentSessionStatus(row[3]),
        session_status=PaymentSessionStatus(row[4]),
        outcome=EventOutcome(row[5]),
        observed_at=None if row[6] is None else _instant(row[6]),
        recorded_at=_instant(row[7]),
        version=row[8],
        guard=row[9],
        duplicates=row[10],
        kind=None if row[11] is None else AnomalyKind(row[11]),
    )


def _unique_columns(error: sqlite3.IntegrityError) -> frozenset[str]:
    # "UNIQUE constraint failed: t.a, t.b": Python 3.10's sqlite3 has no error codes
    # to go by, and the message is stable across SQLite versions.
    text = str(error)
    prefix = "UNIQUE constraint failed: "
    if not text.startswith(prefix):
        return frozenset()
    return frozenset(name.strip() for name in text[len(prefix) :].split(","))


class SqliteStore(SqlReads):
    """A :class:`~paysession.store.SessionStore` in one SQLite file (or ``":memory:"``).

    ``synchronous`` is ``"FULL"`` (every commit reaches the disk before it returns: the
    default, for money) or ``"NORMAL"`` (in WAL mode a power loss may lose the last
    commits, never corrupt the file; a crashed process loses nothing). ``busy_timeout``
    is how long, in seconds, a write waits for another writer before giving up with
    StoreError. ``":memory:"`` keeps one connection shared by every thread.
    """

    # Rows in the order they were recorded: rowid grows with every insert.
    _EVENTS_IN_RECORDED_ORDER = "rowid"
    _session_from_row = staticmethod(_session_from_row)
    _event_from_row = staticmethod(_event_from_row)
    _claim_from_row = staticmethod(_claim_from_row)
    _time = staticmethod(_micros)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = 30.0,
    ) -> None:
        mode = str(synchronous).upper()
        if mode not in ("FULL", "NORMAL"):
            raise InvalidSessionData({"synchronous": "must be 'FULL' or 'NORMAL'"})
        if not busy_timeout >= 0:
            raise InvalidSessionData({"busy_timeout": "must be a number of seconds >= 0"})
        self.path = os.fspath(path)
        self.synchronous = mode
        self.busy_timeout = float(busy_timeout)
        self._memory = self.path == ":memory:"
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        # One in-memory database means one connection: threads take turns with it. A
        # file gives each thread its own connection, and SQLite's locks do the rest.
        self._turn: AbstractContextManager[object] = (
            threading.RLock() if self._memory else nullcontext()
        )
        self._ready = False
        self._cache = SnapshotCache()
        self._closed = False

    # -- connections and transactions

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            # PRAGMA takes no parameters; both values are ours (a checked word, an int).
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            if not self._memory:
                self._use_wal(conn)
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as error:
            raise StoreError("connect", str(error)) from error
        with self._guard:
            self._connections.append(conn)
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        # WAL is a property of the file: once set it stays. Switching to it can return
        # "database is locked" at once, without the busy handler, while another
        # connection opens the same new file; so ask first, and retry the switch until
        # the busy timeout has passed.
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() == "wal":
            return
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection; call it holding ``self._turn``."""
        if self._closed:
            raise StoreError("connect", "the store is closed")
        if self._memory:
            return self._connections[0] if self._connections else self._open()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._open()
        return conn

    @contextmanager
    def _read(self, operation: str) -> Iterator[sqlite3.Connection]:
        if not self._ready:
            self.migrate()
        with self._turn:
            try:
                yield self._conn()
            except sqlite3.Error as error:
                raise StoreError(operation, str(error)) from error

    def _transaction(
        self, operation: str, apply: Callable[..., _T], *args: Any, migrating: bool = False
    ) -> _T:
        """``apply(conn, *args)`` inside BEGIN IMMEDIATE ... COMMIT; rolled back on error.

        A plain call rather than a context manager: every move goes through here.
        """
        if not (self._ready or migrating):
            self.migrate()
        with self._turn:
            attempt = 0
            while True:  # at most twice: the second pass returns or raises
                attempt += 1
                conn = self._conn()
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        result = apply(conn, *args)
                    except BaseException:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                    return result
                except sqlite3.Error as error:
                    self._drop(conn)
                    # A connection opened while the file could not be written stays
                    # read-only once it can be: a new one, once, says whether it still is
                    # (nothing was written: a read-only connection cannot write).
                    if attempt == 2 or "readonly database" not in str(error):
                        raise StoreError(operation, str(error)) from error

    def _drop(self, conn: sqlite3.Connection) -> None:
        """Roll back, and forget the connection a driver error came through.

        One that met a read-only file, a full disk or an I/O error is not worth keeping:
        the thread's next operation opens a new one. Not for ``":memory:"``, whose one
        connection is the database.
        """
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # closing the connection below rolls back all the same
        if self._memory:
            return
        with self._guard:
            if conn in self._connections:
                self._connections.remove(conn)
        self._local.conn = None
        conn.close()

    # -- the protocol

    def migrate(self) -> int:
        """Create or upgrade the schema in one transaction; return its version."""
        target = self._transaction("migrate", self._migrate, migrating=True)
        self._ready = True
        return target

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> int:
        target = len(MIGRATIONS)
        conn.execute("CREATE TABLE IF NOT EXISTS paysession_schema (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM paysession_schema").fetchone()
        current = 0 if row is None else int(row[0])
        if current > target:
            raise StoreError(
                "migrate",
                f"the database is at schema version {current}; this paysession knows "
                f"up to {target}",
            )
        for version in range(current + 1, target + 1):
            if version == 3:
                carts = [cart for (cart,) in conn.execute(DOUBLY_AUTHORIZED_CARTS)]
                refuse_doubly_authorized(carts)
            for statement in MIGRATIONS[version - 1]:
                conn.execute(statement)
        if row is None:
            conn.execute("INSERT INTO paysession_schema (version) VALUES (?)", (target,))
        elif current != target:
            conn.execute("UPDATE paysession_schema SET version = ?", (target,))
        return target

    def create(self, session: PaymentSession, record: TransitionRecord) -> None:
        check_writes([Write(session, -1, (record,))])
        texts = (dump_json(session.data), dump_json(session.cart))
        self._transaction("create", self._create, session, record, texts)
        self._cache.put(session, record.seq, record.hash, texts)

    def _create(
        self,
        conn: sqlite3.Connection,
        session: PaymentSession,
        record: TransitionRecord,
        texts: Texts,
    ) -> None:
        authorized_at = session.payment_authorized_at
        try:
            conn.execute(
                _INSERT_SESSION,
                (
                    session.id,
                    session.cart_id,
                    session.provider_id,
                    int(session.is_selected),
                    int(session.is_initiated),
                    session.status.value,
                    texts[0],
                    session.idempotency_key,
                    session.amount,
                    None if authorized_at is None else _micros(authorized_at),
                    _micros(session.created_at),
                    _micros(session.updated_at),
                    texts[1],
                    record.seq,
                    record.hash,
                ),
            )
        except sqlite3.IntegrityError as error:
            raise self._refusal(error, session) from error
        (last,) = conn.execute(_LAST_POSITION).fetchone()
        conn.execute(_INSERT_RECORD, _record_row(record, last + 1))

    def load(self, session_id: str, idempotency_key: str | None = None) -> Snapshot | None:
        # Spelled out rather than through _read: every move starts here.
        if not self._ready:
            self.migrate()
        with self._turn:
            try:
                if idempotency_key is None:
                    row = self._conn().execute(_LOAD_PLAIN, (session_id,)).fetchone()
                else:
                    row = self._conn().execute(_LOAD, (idempotency_key, session_id)).fetchone()
            except sqlite3.Error as error:
                raise StoreError("load", str(error)) from error
        return (
            None if row is None else self._cache.snapshot(row, _session_from_row, idempotency_key)
        )

    def load_selected(self, cart_id: str) -> list[Snapshot]:
        with self._read("load_selected") as conn:
            rows = conn.execute(
                f"SELECT {SESSION_COLUMNS} FROM paysession_sessions "
                "WHERE cart_id = ? AND is_selected ORDER BY id",
                (cart_id,),
            ).fetchall()
        return [self._cache.snapshot(row, _session_from_row) for row in rows]

    def commit(
        self,
        writes: Sequence[Write],
        binding: Binding | None = None,
        *,
        cart_check: CartCheck | None = None,
        release: Claim | None = None,
    ) -> None:
        check_writes(writes, binding)
        texts = [self._cache.texts(write.session) for write in writes]
        self._transaction("commit", self._commit, writes, texts, binding, cart_check, release)
        for write, text in zip(writes, texts, strict=True):
            self._cache.put(write.session, write.version, write.head, text)

    def _commit(
        self,
        conn: sqlite3.Connection,
        writes: Sequence[Write],
        texts: Sequence[Texts],
        binding: Binding | None,
        cart_check: CartCheck | None = None,
        release: Claim | None = None,
    ) -> None:
        # BEGIN IMMEDIATE holds the write lock: no claim can be taken before the commit.
        if cart_check is not None:
            live = conn.execute(
                _CLAIM_LIVE, (cart_check.cart_id, _micros(cart_check.now))
            ).fetchone()
            if live is not None:
                raise CartBusy(cart_check.cart_id, _instant(live[0]))
        if release is not None:
            conn.execute(_RELEASE, (release.cart_id, release.token))
        for write, text in zip(writes, texts, strict=True):
            session = write.session
            try:
                cursor = conn.execute(
                    _UPDATE_SESSION,
                    (
                        *_mutable_columns(session, text),
                        write.version,
                        write.head,
                        session.id,
                        write.expected_version,
                    ),
                )
            except sqlite3.IntegrityError as error:
                raise self._refusal(error, session) from error
            if cursor.rowcount != 1:
                found = conn.execute(
                    "SELECT version FROM paysession_sessions WHERE id = ?", (session.id,)
                ).fetchone()
                if found is None:
                    raise SessionNotFound(session.id)
                raise ConcurrentUpdate(session.id, write.expected_version, found[0])
        (position,) = conn.execute(_LAST_POSITION).fetchone()
        for write in writes:
            for record in write.records:
                position += 1
                try:
                    conn.execute(_INSERT_RECORD, _record_row(record, position))
                except sqlite3.IntegrityError as error:
                    raise self._refusal(error, write.session, write) from error
        if binding is not None:
            try:
                conn.execute(
                    _INSERT_KEY,
                    (binding.session_id, binding.key, binding.fingerprint, binding.seq),
                )
            except sqlite3.IntegrityError as error:
                if "paysession_keys.key" in _unique_columns(error):
                    raise ConcurrentUpdate(binding.session_id, None) from error
                raise

    def newest_observed(self, session_id: str) -> datetime | None:
        with self._read("newest_observed") as conn:
            (newest,) = conn.execute(_NEWEST_OBSERVED, (session_id,)).fetchone()
        return None if newest is None else _instant(newest)

    def record_event(
        self,
        event: ProviderEvent,
        write: Write | None = None,
        *,
        expected_version: int | None = None,
        release: Claim | None = None,
    ) -> None:
        texts: Texts = (None, None)
        if write is not None:
            check_writes([write])
            texts = self._cache.texts(write.session)
        self._transaction(
            "record_event", self._record_event, event, write, texts, expected_version, release
        )
        if write is not None:
            self._cache.put(write.session, write.version, write.head, texts)

    def _record_event(
        self,
        conn: sqlite3.Connection,
        event: ProviderEvent,
        write: Write | None,
        texts: Texts,
        expected_version: int | None,
        release: Claim | None,
    ) -> None:
        # BEGIN IMMEDIATE holds the write lock from the first read: what is checked here
        # cannot change before the commit.
        session_id = event.session_id
        found = conn.execute(
            "SELECT version FROM paysession_sessions WHERE id = ?", (session_id,)
        ).fetchone()
        if found is None:
            raise SessionNotFound(session_id)
        if write is not None:
            expected_version = write.expected_version
        if expected_version is not None and found[0] != expected_version:
            raise ConcurrentUpdate(session_id, expected_version, found[0])
        if event.advances and event.observed_at is not None:
            (newest,) = conn.execute(_NEWEST_OBSERVED, (session_id,)).fetchone()
            if newest is not None and newest > _micros(event.observed_at):
                raise ConcurrentUpdate(session_id, expected_version, found[0])
        try:
            conn.execute(_INSERT_EVENT, _event_row(event))
        except sqlite3.IntegrityError as error:
            if "paysession_provider_events.event_id" in _unique_columns(error):
                raise ConcurrentUpdate(session_id, expected_version, found[0]) from error
            raise
        if write is not None:
            self._commit(conn, [write], [texts], None)
        if release is not None:
            conn.execute(_RELEASE, (release.cart_id, release.token))

    def claim(self, claim: Claim, now: datetime, *, selected: bool) -> Claimed:
        # BEGIN IMMEDIATE: the claim and the session read with it cannot change before
        # the commit, and no select or deselect commits in between.
        found = self._transaction("claim", self._claim_in, claim, now, selected)
        if found is None:
            return Claimed(None, None)
        row, taken, previous = found
        return Claimed(taken, self._cache.snapshot(row, _session_from_row), previous)

    def release(self, claim: Claim) -> bool:
        cursor = self._transaction(
            "release", lambda conn: conn.execute(_RELEASE, (claim.cart_id, claim.token))
        )
        return bool(cursor.rowcount == 1)

    def count_duplicate(self, session_id: str, event_id: str) -> None:
        self._transaction(
            "count_duplicate",
            lambda conn: conn.execute(
                "UPDATE paysession_provider_events SET duplicates = duplicates + 1 "
                "WHERE session_id = ? AND event_id = ?",
                (session_id, event_id),
            ),
        )

    def close(self) -> None:
        with self._turn, self._guard:
            self._closed = True
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SqliteStore {self.path!r} synchronous={self.synchronous}>"

    # -- driver errors into ours

    @staticmethod
    def _refusal(
        error: sqlite3.IntegrityError, session: PaymentSession, write: Write | None = None
    ) -> PaySessionError:
        columns = _unique_columns(error)
        if columns == {"paysession_sessions.id"}:
            return DuplicateSession(session.id, session.cart_id, session.provider_id, ("id",))
        if columns == {"paysession_sessions.cart_id", "paysession_sessions.provider_id"}:
            return DuplicateSession(
                session.id, session.cart_id, session.provider_id, ("cart_id", "provider_id")
            )
        if columns == {"paysession_sessions.cart_id"}:
            return SelectionConflict(session.id, session.cart_id)
        if columns == {"paysession_sessions.cart_id", "paysession_sessions.status"}:
            return AuthorizationConflict(session.id, session.cart_id)
        if columns == {"paysession_records.session_id", "paysession_records.seq"}:
            return ConcurrentUpdate(session.id, None if write is None else write.expected_version)
        return StoreError("write", str(error))


__all__ = ["SqliteStore"]
