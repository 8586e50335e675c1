"""What the stores share to serve the feed: cursors of positions, and waiting between reads."""

from __future__ import annotations

import time
from typing import Protocol

from paysession.errors import InvalidSessionData
from paysession.limits import MAX_COUNTER

BAD_CURSOR = "not a cursor of this store: give a LoggedRecord's cursor, or None for the start"
"""What a refused cursor is told."""


class Wakeup(Protocol):
    """How a feed follower waits for new records (see :meth:`SessionStore.wakeups`)."""

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True if a commit was announced meanwhile."""
        ...


class Sleeper:
    """The :class:`Wakeup` of a store that announces nothing: it sleeps the timeout out."""

    def wait(self, timeout: float) -> bool:
        time.sleep(max(timeout, 0.0))
        return False


def position_of(cursor: str | None) -> int:
    """The position a SQLite or memory cursor stands for (0, the start, for None).

    Raises InvalidSessionData naming ``cursor`` for anything but a position's digits.
    """
    if cursor is None:
        return 0
    if not (
        isinstance(cursor, str)
        and cursor.isascii()
        and cursor.isdigit()
        and len(cursor) <= 19
        and int(cursor) <= MAX_COUNTER
    ):
        raise InvalidSessionData({"cursor": BAD_CURSOR})
    return int(cursor)


__all__ = ["BAD_CURSOR", "Sleeper", "Wakeup", "position_of"]
