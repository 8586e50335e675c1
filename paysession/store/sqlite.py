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

import functools
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from paysession._sqlite import use_wal
from paysession.errors import (
    CartBusy,
    ConcurrentUpdate,
    InvalidSessionData,
    PaySessionError,
    SessionNotFound,
    StoreError,
)
from paysession.store._feed import Sleeper, Wakeup, position_of
from paysession.store._rows import Row, logged_record
from paysession.store._sql import (
    JsonTexts,
    Params,
    call_from_row,
    call_row,
    event_row,
    migrate_schema,
    migrate_up_to,
    refusal,
)
from paysession.store._sql_store import ClaimTaken, SqlStore
from paysession.store._sqlite_mapper import (
    CLAIM_LIVE,
    INSERT_CALL,
    INSERT_EVENT,
    INSERT_KEY,
    INSERT_RECORD,
    INSERT_SESSION,
    LAST_POSITION,
    LOAD,
    LOAD_PLAIN,
    NEWEST_OBSERVED,
    RELEASE,
    UPDATE_SESSION,
    claim_from_row,
    event_from_row,
    from_micros,
    mutable_columns,
    new_row,
    placeholder,
    record_row,
    session_from_row,
    to_micros,
    unique_columns,
)
from paysession.store._tables import HAS_SCHEMA_TABLE_SQLITE, schema_behind
from paysession.store.base import (
    Binding,
    CartCheck,
    Claim,
    LoggedRecord,
    ProviderCall,
    ProviderEvent,
    Write,
)
from paysession.store.sqlite_schema import MIGRATIONS

Synchronous = Literal["FULL", "NORMAL"]
_T = TypeVar("_T")


class SqliteStore(SqlStore):
    """A :class:`~paysession.store.SessionStore` in one SQLite file (or ``":memory:"``).

    The file is created by the first write (or :meth:`migrate`), never by a read: reading
    a path where there is no database raises StoreError naming it. ``migrate=False`` is
    for a tool that only reads (an audit): the schema must then be current already.

    ``synchronous`` is ``"FULL"`` (every commit reaches the disk before it returns: the
    default, for money) or ``"NORMAL"`` (in WAL mode a power loss may lose the last
    commits, never corrupt the file; a crashed process loses nothing). ``busy_timeout``
    is how long, in seconds, a write waits for another writer before giving up with
    StoreError. ``":memory:"`` keeps one connection shared by every thread.

    ``read_only=True`` opens the file in SQLite's read-only mode (and not to migrate):
    every write is refused by SQLite itself, with StoreError. It is how the inspector
    and the audit commands look at a store they must not change.
    """

    # Rows in the order they were recorded: rowid grows with every insert.
    _EVENTS_IN_RECORDED_ORDER = "rowid"
    _LOAD = LOAD
    _LOAD_PLAIN = LOAD_PLAIN
    _placeholder = staticmethod(placeholder)
    _session_from_row = staticmethod(session_from_row)
    _event_from_row = staticmethod(event_from_row)

    _call_from_row = staticmethod(functools.partial(call_from_row, instant=from_micros))
    _claim_from_row = staticmethod(claim_from_row)
    _time = staticmethod(to_micros)
    _UNINDEXED = "+"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = 30.0,
        migrate: bool = True,
        read_only: bool = False,
    ) -> None:
        mode = str(synchronous).upper()
        if mode not in ("FULL", "NORMAL"):
            raise InvalidSessionData({"synchronous": "must be 'FULL' or 'NORMAL'"})
        if not busy_timeout >= 0:
            raise InvalidSessionData({"busy_timeout": "must be a number of seconds >= 0"})
        self.path = os.fspath(path)
        if read_only and self.path == ":memory:":
            raise InvalidSessionData({"read_only": "a new in-memory database has nothing to read"})
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
        self._read_only = read_only
        self._migrates = migrate and not self._read_only
        self._closed = False
        # The files within() found to be this store's, as callers' connections name them.
        self._joinable: set[str] = set()
        super().__init__()

    # -- connections and transactions

    def _open(self) -> sqlite3.Connection:
        # A read-only store opens the file by URI, in SQLite's read-only mode; its journal
        # mode is the writers' business (switching to WAL would be a write).
        place = Path(self.path).absolute().as_uri() + "?mode=ro" if self._read_only else self.path
        try:
            conn = sqlite3.connect(
                place,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                uri=self._read_only,
            )
            # Every row is read by column name.
            conn.row_factory = sqlite3.Row
            # PRAGMA takes no parameters; both values are ours (a checked word, an int).
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            if not (self._memory or self._read_only):
                use_wal(conn, self.busy_timeout)
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as error:
            raise StoreError("connect", f"cannot open {self.path}: {error}") from error
        with self._guard:
            self._connections.append(conn)
        return conn

    def _own_connection(self) -> sqlite3.Connection:
        """This thread's connection; call it holding ``self._turn``."""
        if self._closed:
            raise StoreError("connect", "the store is closed")
        if self._memory:
            return self._connections[0] if self._connections else self._open()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._open()
        return conn

    def _ready_to_read(self, operation: str) -> None:
        """Migrate before the first read, but never create a database to read it.

        A read of a file that is not there (a typo in a path, most often) is a StoreError
        naming the path, not an empty database made on the spot; the first write (or
        :meth:`migrate`) creates the file.
        """
        if not self._memory and not os.path.exists(self.path):
            raise StoreError(
                operation, f"no database file {self.path} (a read never creates one; a write does)"
            )
        self._get_ready(operation)

    def _get_ready(self, operation: str) -> None:
        """Migrate, or, for a store opened not to migrate, check the schema is current."""
        if self._migrates:
            self.migrate()
            return
        with self._turn:
            try:
                behind = schema_behind(
                    self._own_connection(), len(MIGRATIONS), HAS_SCHEMA_TABLE_SQLITE
                )
            except sqlite3.Error as error:
                raise StoreError(operation, str(error)) from error
        if behind is not None:
            raise StoreError(operation, behind)
        self._ready = True

    @contextmanager
    def _connection(self, operation: str) -> Iterator[sqlite3.Connection]:
        if not self._ready:
            self._ready_to_read(operation)
        with self._turn:
            try:
                yield self._own_connection()
            except sqlite3.Error as error:
                raise StoreError(operation, str(error)) from error

    @contextmanager
    def _read_transaction(self, conn: sqlite3.Connection) -> Iterator[None]:
        # A deferred transaction: its first read fixes the snapshot (WAL) or takes the
        # shared lock (a rollback journal); every later read sees that same state.
        conn.execute("BEGIN")
        try:
            yield
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def _transaction(
        self, operation: str, apply: Callable[..., _T], *args: Any, migrating: bool = False
    ) -> _T:
        """``apply(conn, *args)`` inside BEGIN IMMEDIATE ... COMMIT; rolled back on error.

        A plain call rather than a context manager: every move goes through here.
        """
        if not (self._ready or migrating):
            self._get_ready(operation)
        with self._turn:
            attempt = 0
            while True:  # at most twice: the second pass returns or raises
                attempt += 1
                conn = self._own_connection()
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
        return migrate_schema(conn, MIGRATIONS, placeholder)

    def _insert(self, write: Write, texts: JsonTexts) -> None:
        self._transaction("create", self._create, write, texts)

    def _create(self, conn: sqlite3.Connection, write: Write, texts: JsonTexts) -> None:
        (record,) = write.records
        try:
            conn.execute(INSERT_SESSION, new_row(write.session, texts, record))
        except sqlite3.IntegrityError as error:
            raise self._refusal(error, write) from error
        last = conn.execute(LAST_POSITION).fetchone()["last"]
        conn.execute(INSERT_RECORD, record_row(record, last + 1))

    def _fetch_one(self, query: str, params: Params) -> Row | None:
        # Spelled out rather than through _connection: every move starts here.
        if not self._ready:
            self._ready_to_read("load")
        with self._turn:
            try:
                row: Row | None = self._own_connection().execute(query, params).fetchone()
            except sqlite3.Error as error:
                raise StoreError("load", str(error)) from error
        return row

    def _write(
        self,
        writes: Sequence[Write],
        texts: Sequence[JsonTexts],
        binding: Binding | None,
        cart_check: CartCheck | None,
        release: Claim | None,
    ) -> None:
        self._transaction("commit", self._commit, writes, texts, binding, cart_check, release)

    def _commit(
        self,
        conn: sqlite3.Connection,
        writes: Sequence[Write],
        texts: Sequence[JsonTexts],
        binding: Binding | None,
        cart_check: CartCheck | None = None,
        release: Claim | None = None,
    ) -> None:
        # BEGIN IMMEDIATE holds the write lock: no claim can be taken before the commit.
        if cart_check is not None:
            live = conn.execute(
                CLAIM_LIVE, (cart_check.cart_id, to_micros(cart_check.now))
            ).fetchone()
            if live is not None:
                raise CartBusy(cart_check.cart_id, from_micros(live["expires_at"]))
        if release is not None:
            conn.execute(RELEASE, (release.cart_id, release.token))
        for write, text in zip(writes, texts, strict=True):
            session = write.session
            try:
                cursor = conn.execute(
                    UPDATE_SESSION,
                    (
                        *mutable_columns(session, text),
                        write.version,
                        write.head,
                        session.id,
                        write.expected_version,
                    ),
                )
            except sqlite3.IntegrityError as error:
                raise self._refusal(error, write) from error
            if cursor.rowcount != 1:
                found = conn.execute(
                    "SELECT version FROM paysession_sessions WHERE id = ?", (session.id,)
                ).fetchone()
                if found is None:
                    raise SessionNotFound(session.id)
                raise ConcurrentUpdate(session.id, write.expected_version, found["version"])
        position = conn.execute(LAST_POSITION).fetchone()["last"]
        for write in writes:
            for record in write.records:
                position += 1
                try:
                    conn.execute(INSERT_RECORD, record_row(record, position))
                except sqlite3.IntegrityError as error:
                    raise self._refusal(error, write) from error
        if binding is not None:
            try:
                conn.execute(
                    INSERT_KEY,
                    (binding.session_id, binding.key, binding.fingerprint, binding.seq),
                )
            except sqlite3.IntegrityError as error:
                raise self._refusal(error, writes[-1], binding) from error

    def _write_event(
        self,
        event: ProviderEvent,
        write: Write | None,
        texts: JsonTexts,
        expected_version: int | None,
        release: Claim | None,
        calls: Sequence[ProviderCall],
    ) -> None:
        self._transaction(
            "record_event",
            self._record_event,
            event,
            write,
            texts,
            expected_version,
            release,
            calls,
        )

    def _write_calls(self, calls: Sequence[ProviderCall]) -> None:
        self._transaction("record_calls", self._keep_calls, calls)

    @staticmethod
    def _keep_calls(conn: sqlite3.Connection, calls: Sequence[ProviderCall]) -> None:
        try:
            conn.executemany(INSERT_CALL, [call_row(call, to_micros) for call in calls])
        except sqlite3.IntegrityError as error:
            # The only rule a call can break: its session must exist.
            raise SessionNotFound(calls[0].session_id) from error

    def _record_event(
        self,
        conn: sqlite3.Connection,
        event: ProviderEvent,
        write: Write | None,
        texts: JsonTexts,
        expected_version: int | None,
        release: Claim | None,
        calls: Sequence[ProviderCall] = (),
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
        version = found["version"]
        if expected_version is not None and version != expected_version:
            raise ConcurrentUpdate(session_id, expected_version, version)
        if event.advances and event.observed_at is not None:
            newest = conn.execute(NEWEST_OBSERVED, (session_id,)).fetchone()["newest"]
            if newest is not None and newest > to_micros(event.observed_at):
                raise ConcurrentUpdate(session_id, expected_version, version)
        try:
            conn.execute(INSERT_EVENT, event_row(event, to_micros))
        except sqlite3.IntegrityError as error:
            if "paysession_provider_events.event_id" in unique_columns(error):
                raise ConcurrentUpdate(session_id, expected_version, version) from error
            raise
        if write is not None:
            self._commit(conn, [write], [texts], None)
        if calls:
            self._keep_calls(conn, calls)
        if release is not None:
            conn.execute(RELEASE, (release.cart_id, release.token))

    def _claim(self, claim: Claim, now: datetime, selected: bool) -> ClaimTaken | None:
        # BEGIN IMMEDIATE: the claim and the session read with it cannot change before
        # the commit, and no select or deselect commits in between.
        return self._transaction("claim", self._claim_in, claim, now, selected)

    def _release(self, claim: Claim) -> bool:
        cursor = self._transaction(
            "release", lambda conn: conn.execute(RELEASE, (claim.cart_id, claim.token))
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

    def records_since(self, cursor: str | None, limit: int) -> list[LoggedRecord]:
        # Positions are the feed's order here: see the module's docstring.
        rows = self._rows(
            "records_since",
            "SELECT position, wire FROM paysession_records WHERE position > :after "
            "ORDER BY position LIMIT :limit",
            {"after": position_of(cursor), "limit": max(limit, 0)},
        )
        return [logged_record(row["position"], row["wire"], str(row["position"])) for row in rows]

    def latest_records(self, limit: int) -> list[LoggedRecord]:
        rows = self._rows(
            "latest_records",
            "SELECT position, wire FROM paysession_records ORDER BY position DESC LIMIT :limit",
            {"limit": max(limit, 0)},
        )
        return [
            logged_record(row["position"], row["wire"], str(row["position"]))
            for row in reversed(rows)
        ]

    def wakeups(self) -> AbstractContextManager[Wakeup]:
        """SQLite announces nothing: a follower polls."""
        return nullcontext(Sleeper())

    def close(self) -> None:
        with self._turn, self._guard:
            self._closed = True
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    def __repr__(self) -> str:
        return f"<SqliteStore {self.path!r} synchronous={self.synchronous}>"

    def within(self, connection: object) -> SqliteStore:
        """This store's tables through the caller's ``sqlite3.Connection``, inside its
        transaction (see :meth:`SessionStore.within`): one is opened ``BEGIN IMMEDIATE``
        when none is, so the write lock is held before the first read. Each write is a
        savepoint; rows are read by name on cursors of paysession's own, the caller's
        row factory left as it is.

        The transaction is opened here, when the view is made: a savepoint the caller
        begins next (SQLAlchemy's ``begin_nested()`` on pysqlite, which begins nothing
        itself) is then a savepoint of it, whose release commits nothing. The schema is
        checked through the connection only while this store has neither migrated nor
        checked it itself; a file found to be this store's is not compared again.
        """
        if not isinstance(connection, sqlite3.Connection):
            raise InvalidSessionData({"connection": "must be a sqlite3.Connection"})
        try:
            rows = connection.execute("PRAGMA database_list").fetchall()
        except sqlite3.Error as error:
            raise StoreError("within", str(error)) from error
        main = next((row[2] for row in rows if row[1] == "main"), "")
        if main not in self._joinable:
            if self._memory or not main or not _same_file(main, self.path):
                raise StoreError(
                    "within",
                    f"the connection is to another database ({main or 'in memory'}) "
                    f"than this store's ({self.path})",
                )
            self._joinable.add(main)
        joined = object.__new__(_JoinedSqliteStore)
        joined.__dict__.update(self.__dict__)
        joined._caller = _CallerConnection(connection)
        joined._turn = nullcontext()
        joined._migrates = False
        try:
            joined._caller.open()
        except sqlite3.Error as error:
            raise StoreError("within", str(error)) from error
        if not self._ready:
            # Through the caller's connection: its transaction may have just migrated.
            joined._get_ready("within")
        return joined

    # -- driver errors into ours

    @staticmethod
    def _refusal(
        error: sqlite3.IntegrityError, write: Write, binding: Binding | None = None
    ) -> PaySessionError:
        return refusal(_RULES.get(unique_columns(error)), [write], binding, str(error))


class _CallerConnection:
    """A caller's ``sqlite3.Connection`` as the store uses it: every statement on a
    cursor of its own that reads rows by name, and a transaction opened when none is
    (``BEGIN IMMEDIATE``: the write lock first, as the store's own writes take it)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def open(self) -> None:
        """Open the caller's transaction, BEGIN IMMEDIATE, unless one is open."""
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN IMMEDIATE")

    def _cursor(self) -> sqlite3.Cursor:
        self.open()
        cursor = self._conn.cursor()
        cursor.row_factory = sqlite3.Row
        return cursor

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self._cursor().execute(sql, params)

    def executemany(self, sql: str, params: Any) -> sqlite3.Cursor:
        return self._cursor().executemany(sql, params)

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction


class _JoinedSqliteStore(SqliteStore):
    """A SqliteStore writing through a caller's connection, inside its transaction:
    each write a savepoint, nothing committed, the connection never closed."""

    _caller: _CallerConnection

    def _own_connection(self) -> sqlite3.Connection:
        # The wrapper offers what the store calls on a connection (execute, executemany,
        # in_transaction), on cursors reading rows by name.
        return cast(sqlite3.Connection, self._caller)

    @contextmanager
    def _read_transaction(self, conn: sqlite3.Connection) -> Iterator[None]:
        yield  # inside the caller's transaction, which holds one state of the file

    def _transaction(
        self, operation: str, apply: Callable[..., _T], *args: Any, migrating: bool = False
    ) -> _T:
        return _in_savepoint(self._caller, operation, apply, *args)

    def _drop(self, conn: sqlite3.Connection) -> None:
        pass  # the caller's connection is the caller's to close

    def close(self) -> None:
        pass  # as _drop: nothing of the caller's is closed

    def __repr__(self) -> str:
        return f"<SqliteStore {self.path!r} within the caller's transaction>"


def _in_savepoint(
    caller: _CallerConnection, operation: str, apply: Callable[..., _T], *args: Any
) -> _T:
    """``apply(conn, *args)`` in a savepoint of the caller's transaction, its driver
    errors raised as StoreError naming ``operation``."""
    conn = cast(sqlite3.Connection, caller)
    try:
        conn.execute("SAVEPOINT paysession")
        try:
            result = apply(conn, *args)
        except BaseException:
            # Undo this write alone: the caller's transaction goes on without it.
            conn.execute("ROLLBACK TO paysession")
            conn.execute("RELEASE paysession")
            raise
        conn.execute("RELEASE paysession")
        return result
    except sqlite3.Error as error:
        raise StoreError(operation, str(error)) from error


def migrate_within(connection: object, up_to: int | None = None) -> int:
    """Create or upgrade paysession's tables through the caller's ``sqlite3.Connection``,
    inside its transaction (opened ``BEGIN IMMEDIATE`` when none is), with the store's
    own migrations; nothing is committed. ``up_to`` stops at that schema version (a
    database already there is left as it is). Returns the version in force.

    For a framework's migration (Alembic's, Django's) that commits the schema with the
    rest of its work: a database migrated so is one :class:`SqliteStore` finds current,
    and one the store migrated first is left as it is. InvalidSessionData for another
    kind of connection, StoreError for the driver's errors.
    """
    if not isinstance(connection, sqlite3.Connection):
        raise InvalidSessionData({"connection": "must be a sqlite3.Connection"})
    caller = _CallerConnection(connection)
    return _in_savepoint(caller, "migrate", migrate_up_to, MIGRATIONS, placeholder, up_to)


def _same_file(one: str, other: str) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:
        return False


# SQLite names the columns of the unique index or key a write broke.
_RULES = {
    frozenset({"paysession_sessions.id"}): "session_id",
    frozenset({"paysession_sessions.cart_id", "paysession_sessions.provider_id"}): (
        "cart_provider"
    ),
    frozenset({"paysession_sessions.cart_id"}): "one_selected",
    frozenset({"paysession_sessions.cart_id", "paysession_sessions.status"}): "one_authorized",
    frozenset({"paysession_records.session_id", "paysession_records.seq"}): "record_seq",
    frozenset({"paysession_keys.session_id", "paysession_keys.key"}): "key",
}


__all__ = ["SqliteStore", "migrate_within"]
