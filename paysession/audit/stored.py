"""A store's trails checked against the store: the chain, and the rows it must lead to.

A trail can be whole and still not be the session's: a record removed from its end
leaves a shorter, valid chain, and a row edited in the database changes no record.
So each session's trail is replayed through the table (every check ``verify`` makes)
and what it leads to is compared with the row:

- the last record's seq is the row's version, and its hash the row's head;
- the replayed session equals the row in every field, ``data`` and ``cart`` compared by
  their digests (under the trail's key, when it has one).

A session whose row is present but whose records are gone is a trail cut at seq 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from paysession._wire import format_datetime, same_digest
from paysession.audit.trail import AuditError, AuditProblem, AuditReport, replay
from paysession.record import TransitionRecord
from paysession.session import FIELDS, PaymentSession
from paysession.store.base import SessionStore, Snapshot

Progress = Callable[[int, int], None]
"""Called as ``progress(sessions, records)`` with the counts checked so far."""


def check_stored(
    snapshot: Snapshot, records: list[TransitionRecord], key: bytes | None = None
) -> AuditProblem | None:
    """The first problem of one stored session's trail against its row, or None."""
    session = snapshot.session
    version = snapshot.version
    # Records past the row's version committed after the row was read: later moves.
    trail = [record for record in records if record.seq <= version]
    if not trail:
        return AuditProblem(
            session.id,
            0,
            0,
            "trail_cut",
            f"the session's row is at version {version} but none of its records is left",
        )
    try:
        replayed = replay(trail, data=session.data, cart=session.cart, key=key)
    except AuditError as error:
        position = 0 if error.position is None else error.position
        return AuditProblem(session.id, error.seq, position, error.reason, error.message)
    last = trail[-1]
    if last.seq != version:
        return AuditProblem(
            session.id,
            last.seq + 1,
            len(trail),
            "trail_cut",
            f"the trail ends at seq {last.seq} but the session's row is at version {version}",
        )
    if not same_digest(last.hash, snapshot.head):
        return AuditProblem(
            session.id,
            version,
            len(trail) - 1,
            "head",
            "the row's head is not the hash of the session's last record",
        )
    differing = [name for name in FIELDS if not _same(replayed, session, name)]
    if differing:
        return AuditProblem(
            session.id,
            version,
            len(trail) - 1,
            "row_mismatch",
            f"the row's {', '.join(differing)} differ from what its trail leads to",
        )
    return None


def _same(replayed: PaymentSession, stored: PaymentSession, name: str) -> bool:
    # data and cart were checked by digest in replay; the rest as they are written,
    # where 1 and True, or two spellings of one instant, are not the same value.
    if name in ("data", "cart"):
        return True
    ours, theirs = getattr(replayed, name), getattr(stored, name)
    if ours is None or theirs is None:
        return ours is theirs
    if hasattr(ours, "tzinfo"):
        return format_datetime(ours) == format_datetime(theirs)
    return type(ours) is type(theirs) and bool(ours == theirs)


def verify_stored(store: SessionStore, session_id: str, key: bytes | None = None) -> AuditReport:
    """Check one session of ``store``: its chain and its row (see the module notes)."""
    found = store.trails(only=session_id)
    if not found:
        return AuditReport(ok=True, sessions=0, records=0)
    snapshot, records = found[0]
    problem = check_stored(snapshot, records, key)
    return AuditReport(
        ok=problem is None,
        sessions=1,
        records=len(records),
        problems=() if problem is None else (problem,),
    )


def verify_store(
    store: SessionStore,
    key: bytes | None = None,
    *,
    progress: Progress | None = None,
    page: int = 500,
) -> AuditReport:
    """Check every session of ``store``, a page of sessions at a time (constant memory).

    Reports the first problem of each bad session, in id order; ``progress`` is called
    after each page.
    """
    sessions = records = 0
    problems: list[AuditProblem] = []
    for snapshot, trail in _every_trail(store, page):
        sessions += 1
        records += len(trail)
        problem = check_stored(snapshot, trail, key)
        if problem is not None:
            problems.append(problem)
        if progress is not None and sessions % page == 0:
            progress(sessions, records)
    if progress is not None:
        progress(sessions, records)
    return AuditReport(
        ok=not problems, sessions=sessions, records=records, problems=tuple(problems)
    )


def _every_trail(
    store: SessionStore, page: int
) -> Iterator[tuple[Snapshot, list[TransitionRecord]]]:
    after: str | None = None
    while True:
        found = store.trails(after=after, limit=page)
        yield from found
        if len(found) < page:
            return
        after = found[-1][0].session.id


__all__ = ["Progress", "check_stored", "verify_store", "verify_stored"]
