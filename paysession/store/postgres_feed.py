"""PostgreSQL's feed: every committed record, in an order that never goes back, without a
global row that every commit would queue for.

The promise (see ``SessionStore.records_since``): a reader passing each record's cursor
back in sees every committed record exactly once; a record committing later never lands
behind a cursor already passed; each session's records come in seq order. Numbers from
a sequence alone break it: they are handed out when a transaction asks, not when it
commits, so a transaction holding 7 may commit after one holding 8, and a reader that
had read up to 8 would never see 7. A single counter row taken by every write keeps
the order, but queues every commit of the fleet behind the previous one's flush (schema
versions 1 to 4 did that). Since version 5:

- Each record carries a feed key, ``xact``: the id of the transaction that wrote it
  (``pg_current_xact_id()``), raised to the key of the session's previous record if
  that is higher (the session row keeps its last record's key, and the write's
  compare-and-set reads it).
- Each record takes its ``position`` from a sequence, inside the write, after the
  compare-and-set.
- A reader orders by (xact, position) and reads only keys below the oldest transaction
  still in flight, ``pg_snapshot_xmin(pg_current_snapshot())``, taken by the reading
  statement itself.

Why that keeps the promise:

1. Transaction ids are handed out in increasing order, and every transaction below the
   bound has ended. So every record with a key below it was written by a transaction
   that has ended (a key is never below its own transaction's id): committed, and
   visible to the reading statement, or rolled back for good.
2. A transaction still in flight has an id at or above the bound, so it writes keys at
   or above it; a transaction that begins later gets a higher id still. The records
   below the bound never change again: nothing can appear behind a cursor taken from
   them.
3. A session's keys never go down along its trail (the raise above), and within one key
   its positions follow its seq: the next record's write takes the session's row lock,
   which the previous record's transaction held until it committed, before it takes a
   number. So its records come in seq order. Today the compare-and-set alone already
   ensures it (a write expects a version it read before its transaction began, so the
   previous record's transaction had ended and had its id); the raise keeps it true for
   a write that takes its transaction id before it reads the session.

The cost is latency, not throughput: a record reaches readers once every transaction
that began before it commits has ended. A transaction left open anywhere in the cluster
(idle inside BEGIN after writing something) holds the feed back until it ends; nothing
is lost meanwhile. Ids are 64 bits (``xid8``) and never wrap. The sequence must keep
its cache of 1 (the default): a cache per connection would hand out numbers out of
order between connections.

Followers wait through LISTEN/NOTIFY (:func:`listening`); each store announces its
commits (:class:`Announcer`), and a follower also polls with backoff, for records
announced late or held back by another transaction.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import DictRow

from paysession.errors import InvalidSessionData, StoreError
from paysession.limits import MAX_COUNTER
from paysession.store._feed import BAD_CURSOR, Wakeup
from paysession.store._rows import logged_record
from paysession.store.base import LoggedRecord

Connection = psycopg.Connection[DictRow]

# The key is output as text under another name: ORDER BY a bare "xact" would sort by
# the output column, as text, where "1000" comes before "726".
FEED = (
    "SELECT r.xact::text AS feed_key, r.position, r.wire FROM paysession_records AS r "
    "WHERE (r.xact, r.position) > (%s::xid8, %s) "
    "AND r.xact < pg_snapshot_xmin(pg_current_snapshot()) "
    "ORDER BY r.xact, r.position LIMIT %s"
)
"""Up to a limit of records after a cursor's (xact, position), below the bound."""

LATEST = (
    "SELECT r.xact::text AS feed_key, r.position, r.wire FROM paysession_records AS r "
    "WHERE r.xact < pg_snapshot_xmin(pg_current_snapshot()) "
    "ORDER BY r.xact DESC, r.position DESC LIMIT %s"
)
"""The newest records below the bound, newest first: where a follower may start."""

CHANNEL = "paysession_feed"

# Sent after a write has committed, in a transaction of its own whose commit does not
# wait for the disk: the notice only wakes followers, who would find the records at
# their next poll anyway. Sent inside the write's transaction, NOTIFY would hold the
# database's notify lock through that commit's flush, queueing the fleet's commits.
NOTIFY = f"SET LOCAL synchronous_commit TO OFF; NOTIFY {CHANNEL}"

ANNOUNCE_EVERY = 0.02
"""Seconds: the shortest interval between two notices from one store."""


def parse_cursor(cursor: str | None) -> tuple[str, int]:
    """The (xact, position) a cursor ``"<xact>-<position>"`` stands for; ("0", 0) for None.

    Raises InvalidSessionData naming ``cursor`` for anything else.
    """
    if cursor is None:
        return "0", 0
    xact, dash, position = cursor.partition("-") if isinstance(cursor, str) else ("", "", "")
    digits = all(part.isascii() and part.isdigit() and len(part) <= 19 for part in (xact, position))
    if not (dash and digits and int(position) <= MAX_COUNTER):
        raise InvalidSessionData({"cursor": BAD_CURSOR})
    return xact, int(position)


def read_feed(conn: Connection, after: tuple[str, int], limit: int) -> list[LoggedRecord]:
    """Up to ``limit`` records after the cursor's (xact, position), below the bound."""
    rows = conn.execute(FEED, (*after, max(limit, 0))).fetchall()
    return [_logged(row) for row in rows]


def read_latest(conn: Connection, limit: int) -> list[LoggedRecord]:
    """The newest ``limit`` records below the bound, oldest first, with their cursors."""
    rows = conn.execute(LATEST, (max(limit, 0),)).fetchall()
    return [_logged(row) for row in reversed(rows)]


def _logged(row: DictRow) -> LoggedRecord:
    """A record of the feed from a row of :data:`FEED` or :data:`LATEST`, with its cursor."""
    position = row["position"]
    return logged_record(position, row["wire"], f"{row['feed_key']}-{position}")


class Announcer:
    """Wakes the followers once a write has committed: at most one notice per
    :data:`ANNOUNCE_EVERY`, since each costs a transaction and a busy writer would
    otherwise pay one per move.

    A follower woken by a notice polls again soon after (``paysession.feed.FIRST_PAUSE``,
    then backing off), so the commits that followed a notice unannounced are found
    within a few polls.
    """

    def __init__(self) -> None:
        self._last = -ANNOUNCE_EVERY
        self._lock = threading.Lock()

    def due(self) -> bool:
        """Whether a notice goes out now; if so, the next one waits its interval."""
        now = time.monotonic()
        with self._lock:
            if now - self._last < ANNOUNCE_EVERY:
                return False
            self._last = now
            return True

    def __call__(self, conn: Connection) -> None:
        if self.due():
            self.send(conn)

    def send(self, conn: Connection) -> None:
        """Send a notice through ``conn`` (after :meth:`due` said one goes out)."""
        try:
            conn.execute(NOTIFY)
        except psycopg.Error:
            # The move has committed whatever happens here, so the failure is not the
            # caller's: a follower that misses the notice finds the record by polling.
            return


class _Listener:
    """The :class:`~paysession.store.base.Wakeup` of a LISTENing connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn  # its own connection (see listening), which reads no row

    def wait(self, timeout: float) -> bool:
        try:
            woken = any(True for _ in self._conn.notifies(timeout=timeout, stop_after=1))
            # Every notice queued by now counts once: a burst of commits is one wakeup.
            while woken and any(True for _ in self._conn.notifies(timeout=0, stop_after=1)):
                pass
        except psycopg.Error as error:
            raise StoreError("follow", str(error).strip()) from error
        return woken


@contextmanager
def listening(dsn: str) -> Iterator[Wakeup]:
    """A connection of its own that LISTENs for the notices, for one follower.

    Outside the store's pool: a pooled connection would go on listening for whoever takes
    it next. It listens before the follower's first read, so that no notice of a record
    that read missed is lost.
    """
    try:
        conn = psycopg.connect(dsn, autocommit=True)
    except psycopg.Error as error:
        raise StoreError("follow", str(error).strip()) from error
    try:
        try:
            conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as error:
            raise StoreError("follow", str(error).strip()) from error
        yield _Listener(conn)
    finally:
        conn.close()


__all__ = [
    "ANNOUNCE_EVERY",
    "CHANNEL",
    "FEED",
    "LATEST",
    "NOTIFY",
    "Announcer",
    "listening",
    "parse_cursor",
    "read_feed",
    "read_latest",
]
