"""PostgresStore: one database shared by a fleet, through psycopg 3 and a connection pool.

Install the ``postgres`` extra. Any number of threads, processes and hosts may share
one database: every move is a compare-and-set on the session row inside one
transaction, and the database's constraints refuse what the rules forbid.

The feed (``records_since`` and ``follow``) has no global row either: why it still
never misses a record is in :mod:`paysession.store.postgres_feed`.

A write of one session, the common case, is a single statement (data-modifying CTEs),
hence one round trip and one implicit transaction; a write of several sessions
(select with deselects) is an explicit transaction.
"""

from __future__ import annotations

import functools
import math
import select
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any, NoReturn, cast

from paysession.errors import MissingExtra

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg.abc import Params as Values
    from psycopg.rows import dict_row
    from psycopg.types.string import TextLoader
    from psycopg_pool import ConnectionPool
except ImportError as missing:  # the optional extra is not installed
    raise MissingExtra("PostgresStore", "postgres") from missing

from paysession.errors import (
    CartBusy,
    ConcurrentUpdate,
    InvalidSessionData,
    PaySessionError,
    SessionNotFound,
    StoreError,
)
from paysession.store._feed import Wakeup
from paysession.store._postgres_mapper import (
    CART_ROWS_LOCK,
    CLAIM_LIVE,
    CREATE_SESSION,
    INSERT_CALL,
    INSERT_EVENT,
    INSERT_KEY,
    LOAD,
    LOAD_PLAIN,
    LOCK_CART,
    MIGRATION_LOCK,
    NEWEST_OBSERVED,
    RELEASE,
    UPDATE_SESSION,
    Connection,
    claim_from_row,
    commit_one_statement,
    event_from_row,
    insert_records_statement,
    instant_as_is,
    placeholder,
    records_params,
    session_from_row,
    update_params,
)
from paysession.store._rows import Row
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
from paysession.store._tables import HAS_SCHEMA_TABLE_POSTGRES, schema_behind
from paysession.store.base import (
    Binding,
    CartCheck,
    Claim,
    LoggedRecord,
    ProviderCall,
    ProviderEvent,
    Write,
)
from paysession.store.postgres_feed import (
    Announcer,
    listening,
    parse_cursor,
    read_feed,
    read_latest,
)
from paysession.store.postgres_schema import (
    MIGRATIONS,
    built_concurrently,
    in_one_transaction,
    in_transaction,
)


class PostgresStore(SqlStore):
    """A :class:`~paysession.store.SessionStore` in a PostgreSQL database (psycopg 3).

    ``migrate=False`` is for a tool that only reads (an audit): the schema must then be
    current already, and nothing in the database is changed. ``read_only=True`` goes
    further (and implies it): every connection's transactions are read-only, so the
    server itself refuses any write, with StoreError.

    ``dsn`` is a libpq connection string or URL. Connections come from a pool of
    ``min_size`` to ``max_size`` per store (so per process); ``timeout`` is how long,
    in seconds, an operation waits for a free connection. Open one store per process
    (after any fork) and close it when done.
    """

    _EVENTS_IN_RECORDED_ORDER = "recorded"
    _LOAD = LOAD
    _LOAD_PLAIN = LOAD_PLAIN
    _placeholder = staticmethod(placeholder)
    _session_from_row = staticmethod(session_from_row)
    _event_from_row = staticmethod(event_from_row)

    _call_from_row = staticmethod(functools.partial(call_from_row, instant=instant_as_is))
    _claim_from_row = staticmethod(claim_from_row)
    _time = staticmethod(instant_as_is)

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 8,
        timeout: float = 30.0,
        migrate: bool = True,
        read_only: bool = False,
    ) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            raise InvalidSessionData({"max_size": "must be >= 1 and >= min_size >= 0"})
        self._dsn = dsn
        # libpq counts whole seconds, and at least 2.
        self._connect_timeout = max(2, math.ceil(timeout))
        self._migrates = migrate and not read_only
        self._announce = Announcer()
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            # Every row is read by column name.
            kwargs={"autocommit": True, "row_factory": dict_row},
            name="paysession",
            open=False,
            check=self._check,
            configure=_configure_read_only if read_only else _configure,
        )
        self._opened = False
        self._ready = False
        self._guard = threading.Lock()
        # What within() found: this store's database (its _DATABASE row), and the
        # callers' connections found to be to it (a connection never changes database).
        self._database: Row | None = None
        self._joinable: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
        super().__init__()

    # -- connections and transactions

    def _check(self, conn: Connection) -> None:
        """The pool's check of each connection it hands out: free unless the server left.

        An idle connection has nothing to read. When its socket is readable, the server
        has most likely closed it (a restart or failover closes every pooled connection
        at once): then one empty query says for sure, and a dead connection is
        discarded here, with the rest of the dead ones, instead of failing a request
        each once the database is back.
        """
        if not _has_input(conn):
            return
        try:
            ConnectionPool.check_connection(conn)
        except psycopg.Error:
            self._pool.check()
            raise

    def _first_connection(self, operation: str) -> None:
        """Connect once, directly, before the pool opens: a wrong database, user or
        password, or a server that is not there, is a StoreError at once, with the
        server's (or libpq's) own reason.

        The pool connects in the background and retries what fails, for minutes: left
        to it, the first operation would wait its whole ``timeout`` and then say only
        that no connection came, the reason being in the pool's log alone.
        """
        try:
            dsn = self._dsn
            if "connect_timeout" not in psycopg.conninfo.conninfo_to_dict(dsn):
                dsn = psycopg.conninfo.make_conninfo(dsn, connect_timeout=self._connect_timeout)
            psycopg.connect(dsn, autocommit=True).close()
        except psycopg.Error as error:
            raise StoreError(operation, _connection_failure(error)) from error

    @contextmanager
    def _lease(self, operation: str) -> Iterator[Connection]:
        """A connection of the pool for one operation, whatever the schema's version
        (``_connection`` checks it first)."""
        if not self._opened:
            with self._guard:
                if not self._opened:
                    self._first_connection(operation)
                    self._pool.open()
                    self._opened = True
        # getconn/putconn rather than the pool's connection(), whose `with conn` commits
        # on the way out: with autocommit there is nothing to commit (each transaction
        # here is its own block), and that call cost every operation tens of µs. A
        # connection returned broken or inside a transaction is the pool's to discard or
        # roll back.
        try:
            conn = self._pool.getconn()
            try:
                yield conn
            finally:
                self._pool.putconn(conn)
        except psycopg.Error as error:  # PoolTimeout included
            raise StoreError(operation, str(error).strip()) from error

    def _connection(self, operation: str) -> AbstractContextManager[Connection]:
        if not self._ready:
            if self._migrates:
                self.migrate()
            else:
                with self._lease(operation) as conn:
                    behind = schema_behind(conn, len(MIGRATIONS), HAS_SCHEMA_TABLE_POSTGRES)
                if behind is not None:
                    raise StoreError(operation, behind)
                self._ready = True
        return self._lease(operation)

    @contextmanager
    def _read_transaction(self, conn: Connection) -> Iterator[None]:
        # REPEATABLE READ: every statement of the transaction sees the snapshot its first
        # one took (READ COMMITTED would take a new one per statement).
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield

    def _write_one(self, conn: Connection, statement: str, params: Values) -> psycopg.Cursor[Row]:
        """Send a write of one statement; its cursor. Here the statement is a transaction
        of its own (the connection autocommits): it commits whole, or not at all."""
        return conn.execute(statement, params)

    def _notify(self, conn: Connection) -> None:
        """Wake the followers once a write has committed (see :class:`Announcer`)."""
        self._announce(conn)

    # -- the protocol

    def migrate(self) -> int:
        """Create or upgrade the schema; return its version.

        Every pending version's statements run in one transaction, and then the index
        builds written CONCURRENTLY, outside it, resuming any that an interrupted
        migration left unfinished (see :mod:`paysession.store.postgres_schema`). An
        advisory lock makes concurrent migrations (a fleet starting at once) wait for
        each other rather than race to create the same tables.
        """
        with self._lease("migrate") as conn, _migration_lock(conn):
            with conn.transaction():
                target = migrate_schema(conn, in_transaction(MIGRATIONS), placeholder)
            _build_indexes(conn, built_concurrently(MIGRATIONS))
        self._ready = True
        return target

    def _insert(self, write: Write, texts: JsonTexts) -> None:
        session, (record,) = write.session, write.records
        params = [
            session.id,
            session.cart_id,
            session.provider_id,
            session.is_selected,
            session.is_initiated,
            session.status.value,
            texts[0],
            session.idempotency_key,
            session.amount,
            session.payment_authorized_at,
            session.created_at,
            session.updated_at,
            texts[1],
            record.seq,
            record.hash,
            *records_params([record]),
        ]
        with self._connection("create") as conn:
            try:
                self._write_one(conn, CREATE_SESSION, params)
            except psycopg.Error as error:
                raise _refusal(error, [write], None) from error
            self._notify(conn)

    def _fetch_one(self, query: str, params: Params) -> Row | None:
        with self._connection("load") as conn:
            return conn.execute(query, params).fetchone()

    def _write(
        self,
        writes: Sequence[Write],
        texts: Sequence[JsonTexts],
        binding: Binding | None,
        cart_check: CartCheck | None,
        release: Claim | None,
    ) -> None:
        with self._connection("commit") as conn:
            try:
                if len(writes) == 1 and cart_check is None and release is None:
                    self._commit_one(conn, writes[0], texts[0], binding)
                else:
                    self._commit_many(conn, writes, texts, binding, cart_check, release)
            except psycopg.Error as error:
                raise _refusal(error, writes, binding) from error
            self._notify(conn)

    def _commit_many(
        self,
        conn: Connection,
        writes: Sequence[Write],
        texts: Sequence[JsonTexts],
        binding: Binding | None,
        cart_check: CartCheck | None = None,
        release: Claim | None = None,
    ) -> None:
        with conn.transaction():
            if cart_check is not None:
                # The cart's rows first (as claim() does): a claim committed before
                # this lock was granted is visible to the next statement.
                conn.execute(LOCK_CART, (cart_check.cart_id,))
                live = conn.execute(CLAIM_LIVE, (cart_check.cart_id, cart_check.now)).fetchone()
                if live is not None:
                    raise CartBusy(cart_check.cart_id, live["expires_at"])
            if release is not None:
                conn.execute(RELEASE, (release.cart_id, release.token))
            for write, text in zip(writes, texts, strict=True):
                cursor = conn.execute(UPDATE_SESSION, update_params(write, text))
                if cursor.rowcount != 1:
                    self._refuse_stale(conn, write)
            if binding is not None:
                conn.execute(
                    INSERT_KEY,
                    (binding.session_id, binding.key, binding.fingerprint, binding.seq),
                )
            records = [record for write in writes for record in write.records]
            conn.execute(insert_records_statement(len(records)), records_params(records))

    def _commit_one(
        self, conn: Connection, write: Write, texts: JsonTexts, binding: Binding | None
    ) -> None:
        params = update_params(write, texts)
        if binding is not None:
            params += (binding.key, binding.fingerprint, binding.seq)
        params += records_params(write.records)
        statement = commit_one_statement(len(write.records), binding is not None)
        # When the version has moved, the statement changed nothing (see
        # commit_one_statement): the refusal has nothing to undo.
        if self._write_one(conn, statement, params).rowcount != len(write.records):
            self._refuse_stale(conn, write)

    @staticmethod
    def _refuse_stale(conn: Connection, write: Write) -> NoReturn:
        session_id = write.session.id
        found = conn.execute(
            "SELECT version FROM paysession_sessions WHERE id = %s", (session_id,)
        ).fetchone()
        if found is None:
            raise SessionNotFound(session_id)
        raise ConcurrentUpdate(session_id, write.expected_version, found["version"])

    def _write_event(
        self,
        event: ProviderEvent,
        write: Write | None,
        texts: JsonTexts,
        expected_version: int | None,
        release: Claim | None,
        calls: Sequence[ProviderCall],
    ) -> None:
        with self._connection("record_event") as conn:
            try:
                with conn.transaction():
                    self._record_event(conn, event, write, texts, expected_version)
                    if calls:
                        conn.cursor().executemany(
                            INSERT_CALL, [call_row(c, instant_as_is) for c in calls]
                        )
                    if release is not None:
                        conn.execute(RELEASE, (release.cart_id, release.token))
            except pg_errors.UniqueViolation as error:
                if error.diag.constraint_name == "paysession_provider_events_pkey":
                    raise ConcurrentUpdate(event.session_id, expected_version) from error
                if write is None:
                    raise StoreError("record_event", str(error).strip()) from error
                raise _refusal(error, [write], None) from error
            except pg_errors.ForeignKeyViolation as error:
                raise SessionNotFound(event.session_id) from error
            except psycopg.Error as error:
                if write is None:
                    raise StoreError("record_event", str(error).strip()) from error
                raise _refusal(error, [write], None) from error
            if write is not None:
                self._notify(conn)

    def _write_calls(self, calls: Sequence[ProviderCall]) -> None:
        with self._connection("record_calls") as conn:
            try:
                with conn.transaction():
                    conn.cursor().executemany(
                        INSERT_CALL, [call_row(c, instant_as_is) for c in calls]
                    )
            except pg_errors.ForeignKeyViolation as error:
                raise SessionNotFound(calls[0].session_id) from error

    def _record_event(
        self,
        conn: Connection,
        event: ProviderEvent,
        write: Write | None,
        texts: JsonTexts,
        expected_version: int | None,
    ) -> None:
        # The session's row lock comes first (the compare-and-set of the write, or FOR NO
        # KEY UPDATE): a report racing this one for the same session waits for it, and
        # each statement after the lock sees what that report committed.
        session_id = event.session_id
        if write is not None:
            if conn.execute(UPDATE_SESSION, update_params(write, texts)).rowcount != 1:
                self._refuse_stale(conn, write)
            expected_version = write.expected_version
        elif expected_version is not None:
            found = conn.execute(
                "SELECT version FROM paysession_sessions WHERE id = %s FOR NO KEY UPDATE",
                (session_id,),
            ).fetchone()
            if found is None:
                raise SessionNotFound(session_id)
            if found["version"] != expected_version:
                raise ConcurrentUpdate(session_id, expected_version, found["version"])
        if event.advances:
            row = conn.execute(NEWEST_OBSERVED, (session_id,)).fetchone()
            newest = None if row is None else row["newest"]
            if newest is not None and newest > event.observed_at:
                raise ConcurrentUpdate(session_id, expected_version)
        conn.execute(INSERT_EVENT, event_row(event, instant_as_is))
        if write is not None:
            conn.execute(
                insert_records_statement(len(write.records)), records_params(write.records)
            )

    def _claim(self, claim: Claim, now: datetime, selected: bool) -> ClaimTaken | None:
        with self._connection("claim") as conn:
            try:
                with conn.transaction():
                    # Read committed: each statement sees what committed before it
                    # started. Locking the cart's rows first waits out any select or
                    # deselect of the cart in flight (they lock the same rows first, see
                    # _commit_many), and keeps new ones out until this claim commits;
                    # they then see it and refuse.
                    return self._claim_in(conn, claim, now, selected, CART_ROWS_LOCK)
            except pg_errors.DeadlockDetected as error:  # the lock order rules it out
                raise StoreError("claim", str(error).strip()) from error

    def _release(self, claim: Claim) -> bool:
        with self._connection("release") as conn:
            cursor = self._write_one(conn, RELEASE, (claim.cart_id, claim.token))
        return cursor.rowcount == 1

    def count_duplicate(self, session_id: str, event_id: str) -> None:
        with self._connection("count_duplicate") as conn:
            self._write_one(
                conn,
                "UPDATE paysession_provider_events SET duplicates = duplicates + 1 "
                "WHERE session_id = %s AND event_id = %s",
                (session_id, event_id),
            )

    def records_since(self, cursor: str | None, limit: int) -> list[LoggedRecord]:
        after = parse_cursor(cursor)
        with self._connection("records_since") as conn:
            return read_feed(conn, after, limit)

    def latest_records(self, limit: int) -> list[LoggedRecord]:
        with self._connection("latest_records") as conn:
            return read_latest(conn, limit)

    def wakeups(self) -> AbstractContextManager[Wakeup]:
        return listening(self._dsn)

    def close(self) -> None:
        self._pool.close()

    def __repr__(self) -> str:
        return f"<PostgresStore pool={self._pool.name}>"

    def within(self, connection: object) -> PostgresStore:
        """This store's tables through the caller's ``psycopg.Connection``, inside its
        transaction (see :meth:`SessionStore.within`). An autocommit connection outside
        a transaction block gets one opened (``BEGIN``); a non-autocommit connection
        opens its own with the first statement. Each write is a savepoint; rows are read
        by name on cursors of paysession's own, the caller's row factory and loaders
        left as they are.

        A connection is asked which database it is to the first time only (a
        connection never changes database), and the schema is checked through it only
        while this store has neither migrated nor checked it itself: on a connection
        that does not autocommit, a view made per transaction sends nothing of its own
        before its first read (psycopg begins the transaction with it).
        """
        if not isinstance(connection, psycopg.Connection):
            raise InvalidSessionData({"connection": "must be a psycopg.Connection"})
        caller = _CallerConnection(connection)
        try:
            caller.open()
        except psycopg.Error as error:
            raise StoreError("within", str(error).strip()) from error
        if connection not in self._joinable:
            self._same_database(caller)
            self._joinable.add(connection)
        joined = object.__new__(_JoinedPostgresStore)
        joined.__dict__.update(self.__dict__)
        joined._caller = caller
        if not self._ready:
            # Through the caller's connection: its transaction may have just migrated.
            with joined._connection("within") as conn:
                behind = schema_behind(conn, len(MIGRATIONS), HAS_SCHEMA_TABLE_POSTGRES)
            if behind is not None:
                raise StoreError("within", behind)
        return joined

    def _same_database(self, caller: _CallerConnection) -> None:
        """StoreError unless the caller's connection is to this store's database."""
        try:
            theirs = caller.execute(_DATABASE).fetchone()
            if self._database is None or theirs != self._database:
                # Read (again, after a restart of the server) on a connection of ours.
                with self._lease("within") as conn:
                    self._database = conn.execute(_DATABASE).fetchone()
        except psycopg.Error as error:
            raise StoreError("within", str(error).strip()) from error
        if theirs != self._database:
            name = "?" if theirs is None else theirs["name"]
            raise StoreError(
                "within", f"the connection is to another database ({name}) than this store's"
            )


def migrate_within(connection: object, up_to: int | None = None) -> int:
    """Create or upgrade paysession's tables through the caller's ``psycopg.Connection``,
    inside its transaction (opened when none is), with the store's own migrations;
    nothing is committed. ``up_to`` stops at that schema version (a database already
    there is left as it is). Returns the version in force.

    For a framework's migration (Alembic's, Django's) that commits the schema with the
    rest of its work: a database migrated so is one :class:`PostgresStore` finds
    current, and one the store migrated first is left as it is. Inside a transaction no
    index can be built CONCURRENTLY: those builds are plain ones here, which hold off
    writes to their table while they run. The migration's advisory lock is taken for
    the transaction, so stores migrating at the same time wait for its commit.
    InvalidSessionData for another kind of connection, StoreError for the driver's
    errors.
    """
    if not isinstance(connection, psycopg.Connection):
        raise InvalidSessionData({"connection": "must be a psycopg.Connection"})
    caller = _CallerConnection(connection)
    migrations = in_one_transaction(MIGRATIONS)
    try:
        # Waited for, not polled as migrate() does: the caller's transaction is open
        # already, so a store building an index CONCURRENTLY waits for it either way, and
        # PostgreSQL's deadlock check then ends one of the two instead of both waiting.
        caller.execute("SELECT pg_advisory_xact_lock(%(lock)s)", {"lock": MIGRATION_LOCK})
        with caller.transaction():
            return migrate_up_to(caller, migrations, placeholder, up_to)
    except psycopg.Error as error:
        raise StoreError("migrate", str(error).strip()) from error


_DATABASE = (
    "SELECT current_database() AS name, pg_postmaster_start_time() AS started, "
    "(SELECT oid FROM pg_database WHERE datname = current_database()) AS oid"
)
"""What tells one database from another: its name, its oid and when its server started
(two clusters on one host share neither the start time nor, as a rule, the oid)."""


class _CallerConnection:
    """A caller's ``psycopg.Connection`` as the store uses it: every statement on a
    cursor of its own (rows by name, ``json`` handed over as text), inside the caller's
    transaction, opened when none is; ``transaction`` is a savepoint of it."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def _opened(self, command: str = "") -> str:
        """``command`` to send as it is, after BEGIN when the caller's transaction must
        be opened by it (an autocommit connection outside a transaction block; psycopg
        opens one itself before the first statement otherwise); StoreError when the
        caller's transaction has failed."""
        conn = self._conn
        status = conn.info.transaction_status
        if status == psycopg.pq.TransactionStatus.INERROR:
            raise StoreError(
                "within", "the caller's transaction has failed: roll it back and start again"
            )
        if status == psycopg.pq.TransactionStatus.IDLE and conn.autocommit:
            return f"BEGIN; {command}" if command else "BEGIN"
        return command

    def open(self) -> None:
        """Open the caller's transaction when it is paysession's to open (see
        ``_opened``)."""
        begin = self._opened()
        if begin:
            self._conn.execute(begin)

    def cursor(self) -> psycopg.Cursor[Row]:
        self.open()
        cursor = self._conn.cursor(row_factory=dict_row)
        cursor.adapters.register_loader("json", TextLoader)
        return cursor

    def execute(self, query: str, params: Values | None = None) -> psycopg.Cursor[Row]:
        return self.cursor().execute(query, params)

    def execute_saved(self, query: str, params: Values) -> psycopg.Cursor[Row]:
        """``query``, a write of one statement, in a savepoint of its own."""
        with self.transaction():
            return self.execute(query, params)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A savepoint around one write: a statement refused half way (a rule of the
        database, a lost race) leaves the caller's transaction as it was before the
        write, and usable.

        Once the write is done the savepoint is left to the caller's transaction, not
        released: a RELEASE would cost a round trip, and changes nothing the caller can
        see. Its commit commits it with the rest, a rollback (to a savepoint of the
        caller's, or of the whole transaction) takes it with the rest; a savepoint of the
        caller's released, or rolled back to, takes it too, and no statement of
        paysession's ever names it afterwards. A refused write rolls back to its own
        savepoint, the newest of that name, and releases it.

        SAVEPOINT and ROLLBACK TO are sent as they are, not through psycopg's
        ``transaction()``, whose block would be the whole transaction (and commit it)
        on a connection that has not begun one, and whose rollback empties the
        connection's cache of prepared statements.
        """
        self._conn.execute(self._opened("SAVEPOINT paysession"))
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK TO paysession; RELEASE paysession")
            raise


class _JoinedPostgresStore(PostgresStore):
    """A PostgresStore writing through a caller's connection, inside its transaction:
    each write a savepoint, nothing committed, the store's pool left alone.

    Reads need none: a read changes nothing a savepoint would undo. The writes of
    several statements are savepoints already (``conn.transaction()``, here the
    caller's connection's); those of one statement get one in ``_write_one``.
    """

    _caller: _CallerConnection

    @contextmanager
    def _joined(self, operation: str) -> Iterator[Connection]:
        try:
            yield cast(Connection, self._caller)
        except psycopg.Error as error:
            raise StoreError(operation, str(error).strip()) from error

    def _connection(self, operation: str) -> AbstractContextManager[Connection]:
        return self._joined(operation)

    def _write_one(self, conn: Connection, statement: str, params: Values) -> psycopg.Cursor[Row]:
        return self._caller.execute_saved(statement, params)

    def _notify(self, conn: Connection) -> None:
        # Not inside the caller's transaction: the notice's SET LOCAL would make the
        # caller's whole commit asynchronous, and a plain NOTIFY would hold the
        # database's notify lock through that commit's flush. The view's moves are
        # announced by committed(), once the caller's commit has happened.
        pass

    def committed(self) -> None:
        """Wake the followers, through a connection of the store's pool, now that the
        caller's transaction has committed the view's writes."""
        if not self._announce.due():
            return  # a notice went out moments ago: no connection leased for nothing
        try:
            with self._lease("committed") as conn:
                self._announce.send(conn)
        except StoreError:
            # The caller's commit stands whatever happens here: a follower that misses
            # the notice finds the records at its next poll.
            return

    @contextmanager
    def _read_transaction(self, conn: Connection) -> Iterator[None]:
        yield  # inside the caller's transaction, at its isolation level

    def close(self) -> None:
        pass  # the pool is the store's, the connection the caller's

    def __repr__(self) -> str:
        return "<PostgresStore within the caller's transaction>"


def _configure(conn: Connection) -> None:
    """Each new connection hands ``json`` columns over as their text.

    Most loads find the session in the snapshot cache at the same version, and then
    its ``data`` and ``cart`` need no decoding; the rest are decoded by ``load_json``.
    """
    conn.adapters.register_loader("json", TextLoader)


def _configure_read_only(conn: Connection) -> None:
    """A connection whose every transaction is read-only: the server refuses any write."""
    _configure(conn)
    conn.execute("SET default_transaction_read_only = on")


@contextmanager
def _migration_lock(conn: Connection) -> Iterator[None]:
    """Hold the migration's advisory lock (a session lock: the migration spans several
    transactions) for the block.

    Asked for again and again rather than waited on: a process blocked in
    pg_advisory_lock would be a transaction in progress, which the holder's CREATE
    INDEX CONCURRENTLY waits for, while it waits for the holder: a deadlock.
    """
    while True:
        row = conn.execute(
            "SELECT pg_try_advisory_lock(%s) AS locked", (MIGRATION_LOCK,)
        ).fetchone()
        if row is not None and row["locked"]:
            break
        time.sleep(_LOCK_POLL)
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


_LOCK_POLL = 0.05
"""Seconds between two requests for the migration lock."""

_INDEX_STATE = """
    SELECT c.relname, i.indisvalid FROM pg_class AS c JOIN pg_index AS i ON i.indexrelid = c.oid
    WHERE c.relname = ANY(%s) AND c.relnamespace = to_regnamespace(current_schema())
"""


def _build_indexes(conn: Connection, indexes: Sequence[tuple[str, str]]) -> None:
    """Build each index not yet valid, outside any transaction (``conn`` autocommits).

    An index left INVALID by a build cut short (the process killed, the connection
    lost, a statement canceled) is dropped, concurrently too, and built again.
    """
    if not indexes:
        return
    found = conn.execute(_INDEX_STATE, ([name for name, _ in indexes],)).fetchall()
    valid = {row["relname"]: row["indisvalid"] for row in found}
    for name, statement in indexes:
        if valid.get(name) is True:
            continue
        if name in valid:
            # Our own name, from the list above: not user input.
            conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        conn.execute(statement)


def _connection_failure(error: psycopg.Error) -> str:
    """psycopg's reason a connection failed, on one line: libpq's message spans several
    (the server's FATAL, a hint), with its own indentation."""
    return " ".join(str(error).split())


def _has_input(conn: Connection) -> bool:
    """Whether an idle connection's socket is readable (or closed): never, while it lives."""
    if conn.closed:
        return True
    fd = conn.fileno()
    if hasattr(select, "poll"):
        # poll, not select: select cannot watch a descriptor numbered 1024 or above.
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])


def _refusal(
    error: psycopg.Error, writes: Sequence[Write], binding: Binding | None
) -> PaySessionError:
    """The paysession error for a driver error raised inside a write transaction."""
    rule = None
    if isinstance(error, pg_errors.UniqueViolation):
        rule = _RULES.get(error.diag.constraint_name or "")
    elif isinstance(error, pg_errors.SerializationFailure | pg_errors.DeadlockDetected):
        rule = "race"
    return refusal(rule, writes, binding, str(error).strip())


# PostgreSQL names the constraint (or unique index) a write broke.
_RULES = {
    "paysession_sessions_pkey": "session_id",
    "paysession_cart_provider": "cart_provider",
    "paysession_one_selected_per_cart": "one_selected",
    "paysession_one_authorized_per_cart": "one_authorized",
    "paysession_records_pkey": "record_seq",
    "paysession_keys_pkey": "key",
}


__all__ = ["PostgresStore", "migrate_within"]
