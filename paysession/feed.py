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
from paysession.limits import check_counter
from paysession.store.base import LoggedRecord, SessionStore

FIRST_PAUSE = 0.01
"""Seconds a caught-up follower first waits before it reads again."""

LONGEST_PAUSE = 0.5
"""The longest wait between two reads: each wait with nothing new doubles the pause up to
it. On PostgreSQL a commit's notice ends a wait early; SQLite and MemoryStore only poll."""

MAX_BATCH = 10_000
"""The most records one read of the store may fetch."""


def check_feed_args(cursor: object, limit: int, limit_name: str) -> str | None:
    """The cursor as a store takes it, after checking the arguments of a feed read.

    A cursor is a LoggedRecord's ``cursor``, or None for the start. An int is taken as a
    position, which is the cursor on SQLite and in memory (0 is the start everywhere).
    """
    problems: dict[str, str] = {}
    check_counter(limit, limit_name, problems, low=1)
    if type(limit) is int and limit > MAX_BATCH and limit_name == "batch":
        problems[limit_name] = f"must be an int from 1 to {MAX_BATCH}"
    if type(cursor) is int:
        check_counter(cursor, "cursor", problems)
    elif cursor is not None and not isinstance(cursor, str):
        problems["cursor"] = "must be a LoggedRecord's cursor (a str), or None for the start"
    if problems:
        raise InvalidSessionData(problems)
    if type(cursor) is int:
        return None if cursor == 0 else str(cursor)
    return cursor if isinstance(cursor, str) else None


def follow(
    store: SessionStore, cursor: str | int | None, *, batch: int, idle: float | None
) -> Generator[LoggedRecord, None, None]:
    """Every record after ``cursor`` as it commits; see ``PaymentSessions.follow``.

    The arguments are checked here, at the call; a cursor that the store did not give
    out is refused (InvalidSessionData) by its first read.
    """
    start = check_feed_args(cursor, batch, "batch")
    if idle is not None and (type(idle) not in (int, float) or not math.isfinite(idle) or idle < 0):
        raise InvalidSessionData({"idle": "must be None or a finite number of seconds >= 0"})
    return _follow(store, start, batch, None if idle is None else float(idle))


def _follow(
    store: SessionStore, cursor: str | None, batch: int, idle: float | None
) -> Generator[LoggedRecord, None, None]:
    with store.wakeups() as wakeup:
        pause = FIRST_PAUSE
        quiet_since = time.monotonic()
        while True:
            page = store.records_since(cursor, batch)
            if page:
                for logged in page:
                    yield logged
                    cursor = logged.cursor
                pause = FIRST_PAUSE
                quiet_since = time.monotonic()
                continue
            wait = pause
            if idle is not None:
                left = idle - (time.monotonic() - quiet_since)
                if left <= 0:
                    return
                wait = min(wait, left)
            woken = wakeup.wait(wait)
            pause = FIRST_PAUSE if woken else min(pause * 2, LONGEST_PAUSE)


__all__ = ["FIRST_PAUSE", "LONGEST_PAUSE", "MAX_BATCH", "check_feed_args", "follow"]
