"""Following a store's feed: every committed record, once, in an order that never goes back.

A store hands out records after a cursor (``records_since``); :func:`follow` turns that
into an iterator that waits for new records when it has caught up. A consumer saves
the cursor of each record it has handled (with its own effect, in one transaction
where it can: the transactional outbox), and after a restart follows on from the
last one saved: nothing is lost, and nothing already handled comes again.

Why the order holds on each store: ``docs/concurrency.md`` and the stores' docstrings.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator

from paysession.errors import InvalidSessionData
from paysession.limits import MAX_COUNTER, check_counter
from paysession.store._feed import Wakeup
from paysession.store.base import LoggedRecord, SessionStore

FIRST_PAUSE = 0.01
"""Seconds a caught-up follower first waits before it reads again."""

LONGEST_PAUSE = 0.5
"""The longest wait between two reads: each wait with nothing new doubles the pause up to
it. On PostgreSQL a commit's notice ends a wait early; SQLite and MemoryStore only poll."""

MAX_BATCH = 10_000
"""The most records one read of the store may fetch."""


def check_feed_args(cursor: object, limit: int, name: str, most: int = MAX_COUNTER) -> str | None:
    """The cursor as a store takes it, after checking a feed read's cursor and ``limit``
    (called ``name``, at most ``most``).

    A cursor is a LoggedRecord's ``cursor``, or None for the start. An int is taken as a
    position, which is the cursor on SQLite and in memory (0 is the start everywhere).
    """
    problems: dict[str, str] = {}
    if type(limit) is not int or not 1 <= limit <= most:
        problems[name] = f"must be an int from 1 to {most}"
    if type(cursor) is int:
        check_counter(cursor, "cursor", problems)
    elif cursor is not None and not isinstance(cursor, str):
        problems["cursor"] = "must be a LoggedRecord's cursor (a str), or None for the start"
    if problems:
        raise InvalidSessionData(problems)
    if type(cursor) is int:
        return None if cursor == 0 else str(cursor)
    return cursor if isinstance(cursor, str) else None


class FeedReader:
    """A store's feed read step by step: what ``follow`` and its async twin are built on.

    Each :meth:`step` is one read of the store, or, once caught up, one wait of at most
    :data:`LONGEST_PAUSE`, so that a caller running steps in a thread gets control back
    often enough to stop. :meth:`close` ends the wait's means (on PostgreSQL, its
    listening connection); it must not run while a step does.
    """

    def __init__(
        self, store: SessionStore, cursor: str | int | None, *, batch: int, idle: float | None
    ) -> None:
        self._cursor = check_feed_args(cursor, batch, "batch", MAX_BATCH)
        if idle is not None and (
            type(idle) not in (int, float) or not math.isfinite(idle) or idle < 0
        ):
            raise InvalidSessionData({"idle": "must be None or a finite number of seconds >= 0"})
        self._store = store
        self._batch = batch
        self._idle = None if idle is None else float(idle)
        self._waiting = store.wakeups()
        self._wakeup: Wakeup | None = None
        self._pause = FIRST_PAUSE
        self._quiet_since = time.monotonic()

    def step(self) -> list[LoggedRecord] | None:
        """The next records (an empty list after a wait), or None once ``idle`` is over."""
        if self._wakeup is None:
            # Listening starts before the first read: no notice of a record it misses
            # can be lost.
            self._wakeup = self._waiting.__enter__()
        page = self._store.records_since(self._cursor, self._batch)
        if page:
            self._cursor = page[-1].cursor
            self._pause = FIRST_PAUSE
            self._quiet_since = time.monotonic()
            return page
        wait = self._pause
        if self._idle is not None:
            left = self._idle - (time.monotonic() - self._quiet_since)
            if left <= 0:
                return None
            wait = min(wait, left)
        woken = self._wakeup.wait(wait)
        self._pause = FIRST_PAUSE if woken else min(self._pause * 2, LONGEST_PAUSE)
        return []

    def close(self) -> None:
        if self._wakeup is not None:
            self._wakeup = None
            self._waiting.__exit__(None, None, None)


def follow(
    store: SessionStore, cursor: str | int | None, *, batch: int, idle: float | None
) -> Generator[LoggedRecord, None, None]:
    """Every record after ``cursor`` as it commits; see ``PaymentSessions.follow``.

    The arguments are checked here, at the call; a cursor that the store did not give
    out is refused (InvalidSessionData) by its first read.
    """
    return _follow(FeedReader(store, cursor, batch=batch, idle=idle))


def _follow(reader: FeedReader) -> Generator[LoggedRecord, None, None]:
    try:
        while (page := reader.step()) is not None:
            yield from page
    finally:
        reader.close()


__all__ = [
    "FIRST_PAUSE",
    "LONGEST_PAUSE",
    "MAX_BATCH",
    "FeedReader",
    "check_feed_args",
    "follow",
]
