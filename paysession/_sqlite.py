"""What every SQLite file of paysession needs, whoever opens it: the switch to WAL."""

from __future__ import annotations

import sqlite3
import time


def use_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Put the connection's file in WAL mode, waiting up to ``timeout`` seconds for it.

    WAL is a property of the file: once set it stays. Switching to it can answer
    "database is locked" at once, without the busy handler, while another connection
    opens the same new file; so ask first, and retry the switch until ``timeout`` has
    passed.
    """
    (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    if str(mode).lower() == "wal":
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


__all__ = ["use_wal"]
