"""A store's trails checked against the store: the chain, and the rows it must lead to.

A trail can be whole and still not be the session's: a record removed from its end
leaves a shorter, valid chain, and a row edited in the database changes no record.
So each session's trail is replayed through the table (every check ``verify`` makes)
and what it leads to is compared with the row:

- the last record's seq is the row's version, and its hash the row's head;
- the replayed session equals the row in every field, ``data`` and ``cart`` compared by
  their digests (under the trail's key, when it has one).

A session whose row is present but whose records are gone is a trail cut at seq 0.

Row and records are read in one snapshot (see ``SessionStore.trails``), so every record
is accounted for: one past the row's version is named too (a record forged after the
last move, or a row rolled back to an earlier state with the records after it left in
place). A row or record paysession never wrote, which cannot even be decoded, is a
problem of its session, and the audit goes on to the next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from paysession._wire import format_datetime, same_digest
from paysession.audit.anchors import head_problem
from paysession.audit.check import Heads
from paysession.audit.trail import AuditError, AuditProblem, AuditReport, replay
from paysession.errors import StoreError
from paysession.record import TransitionRecord
from paysession.session import FIELDS, PaymentSession
from paysession.store._rows import DECODE
from paysession.store.base import SessionStore, Snapshot, StoredTrail, Unreadable

Progress = Callable[[int, int], None]
"""Called as ``progress(sessions, records)`` with the counts checked so far."""


def check_stored(
    snapshot: Snapshot, records: Iterable[TransitionRecord], key: bytes | None = None
) -> AuditProblem | None:
    """The first problem of one stored session's trail against its row, or None.

    ``records`` are the session's records in seq order; they are read once, one at a
    time, so a stream of them is checked in constant memory. It may be left unread past
    the first problem.
    """
    session = snapshot.session
    version = snapshot.version
    upto = _UpTo(iter(records), version)
    try:
        replayed = replay(upto, data=session.data, cart=session.cart, key=key)
    except AuditError as error:
        if upto.count == 0:
            return AuditProblem(
                session.id,
                0,
                0,
                "trail_cut",
                f"the session's row is at version {version} but none of its records is left",
            )
        position = 0 if error.position is None else error.position
        return AuditProblem(session.id, error.seq, position, error.reason, error.message)
    problem = _against_row(snapshot, replayed, upto)
    if problem is not None or upto.past is None:
        return problem
    past = [upto.past.seq]
    more = 0
    for record in upto.rest:
        if len(past) < 10:
            past.append(record.seq)
        else:
            more += 1
    return AuditProblem(
        session.id,
        past[0],
        upto.count,
        "past_version",
        f"{_seqs(past, more)} past the row's version {version}: forged after the last "
        "move, or the row was rolled back",
    )


class _UpTo:
    """The records up to the row's version, one at a time; it remembers the last one,
    how many there were, and the first record past the version."""

    def __init__(self, rest: Iterator[TransitionRecord], version: int) -> None:
        self.rest = rest
        self.version = version
        self.count = 0
        self.last: TransitionRecord | None = None
        self.past: TransitionRecord | None = None

    def __iter__(self) -> Iterator[TransitionRecord]:
        for record in self.rest:
            if record.seq > self.version:
                self.past = record
                return
            self.count += 1
            self.last = record
            yield record


def _seqs(seqs: list[int], more: int) -> str:
    shown = ", ".join(str(seq) for seq in seqs)
    if len(seqs) == 1:
        return f"record at seq {shown} is"
    return f"records at seq {shown}{f' and {more} more' if more else ''} are"


def check_trail(found: StoredTrail, key: bytes | None = None) -> AuditProblem | None:
    """:func:`check_stored` for what ``SessionStore.trails`` gives, unreadable ones too."""
    if isinstance(found, Unreadable):
        return AuditProblem(found.session_id, found.seq, 0, "unreadable", found.why)
    return check_stored(*found, key)


def _against_row(snapshot: Snapshot, replayed: PaymentSession, upto: _UpTo) -> AuditProblem | None:
    """The first problem of the records up to the row's version, against the row."""
    session = snapshot.session
    version = snapshot.version
    last = upto.last
    assert last is not None  # replay refuses an empty trail
    if last.seq != version:
        return AuditProblem(
            session.id,
            last.seq + 1,
            upto.count,
            "trail_cut",
            f"the trail ends at seq {last.seq} but the session's row is at version {version}",
        )
    if not same_digest(last.hash, snapshot.head):
        return AuditProblem(
            session.id,
            version,
            upto.count - 1,
            "head",
            "the row's head is not the hash of the session's last record",
        )
    differing = [name for name in FIELDS if not _same_field(replayed, session, name)]
    if differing:
        return AuditProblem(
            session.id,
            version,
            upto.count - 1,
            "row_mismatch",
            f"the row's {', '.join(differing)} differ from what its trail leads to",
        )
    return None


def _same_field(replayed: PaymentSession, stored: PaymentSession, name: str) -> bool:
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
    problem = check_trail(found[0], key)
    return AuditReport(
        ok=problem is None,
        sessions=1,
        records=_count(found[0]),
        problems=() if problem is None else (problem,),
    )


def verify_store(
    store: SessionStore,
    key: bytes | None = None,
    *,
    heads: Heads | None = None,
    progress: Progress | None = None,
    page: int = 500,
) -> AuditReport:
    """Check every session of ``store``, a page of sessions at a time (constant memory).

    Reports the first problem of each bad session, in id order; ``progress`` is called
    after each page. ``heads`` (as ``paysession audit heads --db`` printed them earlier,
    kept elsewhere) anchor the store: each session they name must still hold the record
    they name, at or below its row's version. A session whose head went back (its row
    and records rolled back, even with the later records removed) or that vanished is an
    ``anchor`` problem; the ``vanished`` ones come last.
    """
    sessions = records = 0
    problems: list[AuditProblem] = []
    unseen = set(heads or ())
    for found in _every_trail(store, page):
        sessions += 1
        records += _count(found)
        problem = check_trail(found, key)
        if heads is not None:
            session_id = trail_id(found)
            unseen.discard(session_id)
            expected = heads.get(session_id)
            if problem is None and expected is not None:
                problem = _anchor_problem(found, expected)
        if problem is not None:
            problems.append(problem)
        if progress is not None and sessions % page == 0:
            progress(sessions, records)
    if progress is not None:
        progress(sessions, records)
    for session_id in sorted(unseen):
        seq = (heads or {})[session_id][0]
        problems.append(
            AuditProblem(
                session_id,
                seq,
                0,
                "vanished",
                f"the outside head names seq {seq} of a session the store no longer holds",
            )
        )
    return AuditReport(
        ok=not problems, sessions=sessions, records=records, problems=tuple(problems)
    )


def _anchor_problem(found: StoredTrail, expected: tuple[int, str]) -> AuditProblem | None:
    """Why a verified session does not hold the record an outside head names, or None."""
    if isinstance(found, Unreadable):
        return None  # already a problem of its own
    snapshot, records = found
    seq, head = expected
    session_id = snapshot.session.id
    why = head_problem(expected, (snapshot.version, snapshot.head), at_most=False)
    if why is None and seq < snapshot.version:
        held = records[seq] if seq < len(records) else None
        if held is None or held.seq != seq or not same_digest(held.hash, head):
            why = f"names another record as seq {seq} (the trail's was replaced)"
    if why is None:
        return None
    went_back = " (the row went back)" if snapshot.version < seq else ""
    return AuditProblem(
        session_id, seq, min(seq, len(records)), "anchor", f"the outside head {why}{went_back}"
    )


def store_heads(store: SessionStore, page: int = 500) -> dict[str, tuple[int, str]]:
    """Every session's ``(version, head)`` as its row holds them, by id: heads to keep
    elsewhere and give back to :func:`verify_store` later. A session that cannot be read
    raises the StoreError (``decode``) naming it: no head is taken on trust."""
    heads: dict[str, tuple[int, str]] = {}
    for found in _every_trail(store, page):
        if isinstance(found, Unreadable):
            raise StoreError(DECODE, found.why)
        snapshot = found[0]
        heads[snapshot.session.id] = (snapshot.version, snapshot.head)
    return heads


def _count(found: StoredTrail) -> int:
    return 0 if isinstance(found, Unreadable) else len(found[1])


def trail_id(found: StoredTrail) -> str:
    """The id of the session ``found`` is about."""
    return found.session_id if isinstance(found, Unreadable) else found[0].session.id


def _every_trail(store: SessionStore, page: int) -> Iterator[StoredTrail]:
    after: str | None = None
    while True:
        found = store.trails(after=after, limit=page)
        yield from found
        if len(found) < page:
            return
        after = trail_id(found[-1])


__all__ = [
    "Progress",
    "check_stored",
    "check_trail",
    "store_heads",
    "trail_id",
    "verify_store",
    "verify_stored",
]
