"""SQLAlchemy 2 connections and ORM sessions for ``PaymentSessions.within`` (the
``sqlalchemy`` extra: ``pip install 'paysession[sqlalchemy]'``).

:func:`joined` reads a ``Connection`` or a ``Session`` on the pysqlite or psycopg
dialect: paysession writes through its driver connection, inside the transaction
SQLAlchemy has open (one is begun when none is, as SQLAlchemy's own first statement
would), and the view's ``commit()`` and ``rollback()`` are SQLAlchemy's. The moves'
after-hooks are handed to SQLAlchemy's events: they run once the transaction's commit
has happened, never after a rollback, and not for moves made inside a savepoint
(``begin_nested()``) that was rolled back.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Callable
from typing import Any

from paysession.errors import InvalidSessionData, MissingExtra
from paysession.transaction import Joined
from paysession.writer import AfterCommit

try:
    from sqlalchemy import event
    from sqlalchemy.engine import Connection
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError
    from sqlalchemy.orm import Session, SessionTransaction
except ImportError as missing:  # the optional extra is not installed
    raise MissingExtra("paysession.contrib.sqlalchemy", "sqlalchemy") from missing

Finish = Callable[[], None]


def joined(connection: object) -> Joined:
    """What a SQLAlchemy ``Connection`` or ``Session`` offers ``PaymentSessions.within``.

    InvalidSessionData naming ``connection`` for anything else: another object, an
    asyncio connection or session, a closed one, or a dialect whose driver paysession
    does not write through (only pysqlite and psycopg).
    """
    if isinstance(connection, Session):
        return _session_joined(connection)
    if isinstance(connection, Connection):
        return _connection_joined(connection)
    raise InvalidSessionData(
        {
            "connection": "must be a SQLAlchemy Connection or Session (not an asyncio one); "
            f"got {type(connection).__name__}"
        }
    )


def _connection_joined(connection: Connection) -> Joined:
    driver = _driver(connection)
    if not connection.in_transaction():
        # SQLAlchemy must know of the transaction paysession's writes open on its
        # driver connection: otherwise its commit() would have nothing to commit, and
        # the writes would be rolled back when the connection goes back to its pool.
        connection.begin()
    waiting = _connection_waiting(connection)
    return Joined(driver, connection.commit, connection.rollback, waiting.add)


def _session_joined(session: Session) -> Joined:
    try:
        connection = session.connection()  # begins the session's transaction
    except SQLAlchemyError as error:
        raise InvalidSessionData(
            {"connection": f"the session has no connection to write through: {error}"}
        ) from error
    driver = _driver(connection)
    waiting = _session_waiting(session)
    waiting.connection = connection
    return Joined(driver, session.commit, session.rollback, waiting.add)


def _driver(connection: Connection) -> object:
    """The driver's own connection under ``connection``: a ``sqlite3.Connection`` (the
    pysqlite dialect) or a ``psycopg.Connection`` (the psycopg dialect)."""
    if connection.closed or connection.invalidated:
        raise InvalidSessionData({"connection": "the SQLAlchemy connection is closed"})
    driver = connection.connection.driver_connection
    top = type(driver).__module__.partition(".")[0]
    if isinstance(driver, sqlite3.Connection) or (
        top == "psycopg" and type(driver).__name__ == "Connection"
    ):
        return driver
    dialect = connection.dialect
    raise InvalidSessionData(
        {
            "connection": f"the {dialect.name}+{dialect.driver} dialect is not one paysession "
            "writes through: use sqlite+pysqlite or postgresql+psycopg"
        }
    )


def _in_transaction(driver: Any) -> bool:
    """Whether the driver's connection has a transaction open (failed or not)."""
    if isinstance(driver, sqlite3.Connection):
        return driver.in_transaction
    return bool(driver.info.transaction_status.name != "IDLE")  # psycopg's TransactionStatus


def _commits(driver: Any) -> bool:
    """Whether a commit of the driver's connection would keep what its transaction wrote.

    Not when there is no transaction (SQLite ended it on an error) nor when it failed
    (PostgreSQL then answers COMMIT by rolling back, and psycopg raises nothing): the
    moves are gone, and so are their hooks.
    """
    if isinstance(driver, sqlite3.Connection):
        return driver.in_transaction
    return bool(driver.info.transaction_status.name == "INTRANS")


class _Waiting:
    """The after-hooks of the moves made in a SQLAlchemy transaction, in the order the
    moves were made, with where each open savepoint began among them. Safe between
    threads (an asyncio view runs its calls in worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._finishes: list[Finish] = []
        self._savepoints: list[int] = []

    def add(self, finish: Finish) -> None:
        with self._lock:
            self._finishes.append(finish)

    def extend(self, finishes: list[Finish]) -> None:
        with self._lock:
            self._finishes.extend(finishes)

    def mark(self) -> int:
        """Where a savepoint begun now begins among the finishes."""
        with self._lock:
            return len(self._finishes)

    def drop_from(self, mark: int) -> None:
        """Forget the finishes from ``mark`` on: their savepoint was rolled back."""
        with self._lock:
            del self._finishes[mark:]

    def savepoint(self) -> None:
        self._savepoints.append(self.mark())

    def savepoint_released(self) -> None:
        if self._savepoints:
            self._savepoints.pop()

    def savepoint_rolled_back(self) -> None:
        # A savepoint begun before these listeners were there holds every finish here.
        self.drop_from(self._savepoints.pop() if self._savepoints else 0)

    def take(self) -> list[Finish]:
        """Every finish, forgotten here: the transaction has ended."""
        with self._lock:
            finishes, self._finishes = self._finishes, []
            self._savepoints = []
            return finishes


def _run(finishes: list[Finish]) -> None:
    """Run the finishes in order, each even when an earlier one's hooks failed; HookError
    then names every failure (as the view's own commit() does)."""
    after = AfterCommit()
    for finish in finishes:
        after.add(finish)
    after.run()


# -- a Connection

_CONNECTIONS: weakref.WeakKeyDictionary[Connection, _Waiting] = weakref.WeakKeyDictionary()
_SESSIONS: weakref.WeakKeyDictionary[Session, _SessionWaiting] = weakref.WeakKeyDictionary()
_INSTALLING = threading.Lock()


def _connection_waiting(connection: Connection) -> _Waiting:
    """The waiting hooks of ``connection``, its listeners installed the first time."""
    with _INSTALLING:
        waiting = _CONNECTIONS.get(connection)
        if waiting is not None:
            return waiting
        waiting = _CONNECTIONS[connection] = _Waiting()

    # SQLAlchemy Core has no event after a commit: ConnectionEvents.commit fires before
    # the DBAPI commit, whose failure would then come too late to keep the hooks from
    # running (and the pool's checkin, the next event, may come much later, or never
    # while the connection is kept). So when moves' hooks wait, the commit listener
    # makes the DBAPI commit itself, and runs the hooks once it has returned; SQLAlchemy's
    # own DBAPI commit, which follows, finds nothing left to commit (a no-op on sqlite3
    # and on psycopg). The check is the driver's own: a transaction that failed (which
    # PostgreSQL's COMMIT rolls back without an error) or that the database ended is
    # not committed here, and its moves' hooks are dropped with them. A failed commit
    # is raised as SQLAlchemy raises the driver's errors, and no hook runs. A HookError
    # raised after the commit leaves SQLAlchemy's transaction to be rolled back before
    # the connection is used again (a no-op on the database: the commit stands), which
    # engine.begin() does by itself.
    def commit(conn: Connection) -> None:
        finishes = waiting.take()
        driver: Any = conn.connection.driver_connection
        if not finishes or not _commits(driver):
            return
        try:
            driver.commit()
        except conn.dialect.loaded_dbapi.Error as error:
            raise DBAPIError.instance(
                None, None, error, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
            ) from error
        _run(finishes)

    def rollback(conn: Connection) -> None:
        waiting.take()

    def savepoint(conn: Connection, name: str | None) -> None:
        waiting.savepoint()

    def release_savepoint(conn: Connection, name: str, context: None) -> None:
        waiting.savepoint_released()

    def rollback_savepoint(conn: Connection, name: str, context: None) -> None:
        waiting.savepoint_rolled_back()

    event.listen(connection, "commit", commit)
    event.listen(connection, "rollback", rollback)
    event.listen(connection, "savepoint", savepoint)
    event.listen(connection, "release_savepoint", release_savepoint)
    event.listen(connection, "rollback_savepoint", rollback_savepoint)
    return waiting


# -- a Session


class _SessionWaiting(_Waiting):
    """A session's waiting hooks, where each of its savepoints (nested transactions)
    began among them, whether its transaction's commit has happened, and the
    connection its view writes through."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: dict[SessionTransaction, int] = {}
        self.committed = False
        self.connection: Connection | None = None


def _session_waiting(session: Session) -> _SessionWaiting:
    """The waiting hooks of ``session``, its listeners installed the first time."""
    with _INSTALLING:
        waiting = _SESSIONS.get(session)
        if waiting is not None:
            return waiting
        waiting = _SESSIONS[session] = _SessionWaiting()

    # Before the outermost transaction's commit, a transaction that failed or ended
    # (see _commits) has lost its moves: their hooks go. The Session's after_commit
    # fires once its connections' DBAPI commits have returned, after each savepoint's
    # release too: only the outermost transaction's counts (no nested transaction
    # then). Even that one commits nothing when the session joined a transaction of its
    # Connection's that it does not own (join_transaction_mode): the driver's
    # connection, still in its transaction, says so, and the hooks then wait for that
    # Connection's own commit. The hooks run at after_transaction_end, once the session
    # has closed its transaction, so that a HookError leaves the session usable and a
    # hook may use the session again.
    def after_transaction_create(sess: Session, transaction: SessionTransaction) -> None:
        if transaction.nested:
            waiting.marks[transaction] = waiting.mark()
            # The session emits a savepoint's SAVEPOINT when it next uses its connection,
            # and the moves are written beside it: without this, they would be made
            # before the savepoint begins, and kept when it is rolled back.
            sess.connection()

    def before_commit(sess: Session) -> None:
        connection = waiting.connection
        if sess.in_nested_transaction() or connection is None:
            return
        if not _commits(connection.connection.driver_connection):
            waiting.take()

    def after_commit(sess: Session) -> None:
        if sess.in_nested_transaction():
            return
        connection = waiting.connection
        if connection is not None and _in_transaction(connection.connection.driver_connection):
            _connection_waiting(connection).extend(waiting.take())
            return
        waiting.committed = True

    def after_soft_rollback(sess: Session, previous: SessionTransaction) -> None:
        # The transaction rolled back is the nearest savepoint or the outermost one.
        rolled_back: SessionTransaction | None = previous
        while rolled_back is not None and not rolled_back.nested:
            if rolled_back.parent is None:
                waiting.take()
                return
            rolled_back = rolled_back.parent
        if rolled_back is not None:
            waiting.drop_from(waiting.marks.pop(rolled_back, 0))

    def after_transaction_end(sess: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is not None:
            return
        committed, waiting.committed = waiting.committed, False
        waiting.marks.clear()
        waiting.connection = None
        finishes = waiting.take()
        if committed:
            _run(finishes)

    event.listen(session, "after_transaction_create", after_transaction_create)
    event.listen(session, "before_commit", before_commit)
    event.listen(session, "after_commit", after_commit)
    event.listen(session, "after_soft_rollback", after_soft_rollback)
    event.listen(session, "after_transaction_end", after_transaction_end)
    return waiting


__all__ = ["joined"]
