"""``verify``: every session of a trail checked in one pass, with its anchors.

Each record is checked as ``paysession/audit/trail.py`` describes (hash, link,
sequence, the move against the table, time, changes). Checkpoint lines and heads given
from outside are checked as ``paysession/audit/anchors.py`` describes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from paysession._wire import same_digest
from paysession.audit.anchors import AnchorCheck, Checkpoint, head_problem
from paysession.audit.sinks import BadLine
from paysession.audit.trail import AuditError, AuditProblem, AuditReport, SessionTrail
from paysession.record import TransitionRecord

Heads = Mapping[str, tuple[int, str]]
"""Session id to the ``(seq, hash)`` of a record the session's trail must hold."""


def verify(
    records: Iterable[TransitionRecord | BadLine | Checkpoint],
    *,
    key: bytes | None = None,
    heads: Heads | None = None,
) -> AuditReport:
    """Check the trails of any number of sessions; report the first bad record of each.

    ``records`` may interleave sessions in any order but must keep each session's records
    in seq order; it is read once, holding one session's state per session. With ``key``
    every hash must be the HMAC-SHA-256 the machine made with that key. A
    :class:`BadLine` (from :func:`read_jsonl`) is a problem of the session it names, or
    one of its own when it names none.

    A :class:`Checkpoint` (from an anchored sink) must be sealed (under ``key``), follow
    its sink's previous one, and find every session it names at exactly the record it
    names; each sink's checkpoints must end with its closing one. ``heads`` (exported
    from a store with ``paysession audit heads``, say) name a record each session's
    trail must hold: a session missing, or cut before it, is found even where the
    checkpoints were rewritten.
    """
    check = _Check(key, heads)
    position = -1
    for position, item in enumerate(records):
        if isinstance(item, Checkpoint):
            check.checkpoint(item, position)
        elif isinstance(item, BadLine):
            check.bad_line(item, position)
        else:
            check.record(item, position)
    return check.report(position + 1)


class _Check:
    """One pass of :func:`verify`: the state of every session's trail so far, and what
    was found wrong. Each kind of line the trail holds has its own method."""

    def __init__(self, key: bytes | None, heads: Heads | None) -> None:
        self.key = key
        self.trails: dict[str, SessionTrail] = {}
        self.bad: set[str] = set()
        self.problems: list[AuditProblem] = []
        self.anchors = AnchorCheck(key, heads)
        self.records = 0  # records and bad lines; checkpoints are not records

    def fail(self, session_id: str, seq: int | None, position: int, reason: str, why: str) -> None:
        """The session's first problem: it is checked no further."""
        self.problems.append(AuditProblem(session_id, seq, position, reason, why))
        self.trails.pop(session_id, None)
        self.bad.add(session_id)

    def checkpoint(self, item: Checkpoint, position: int) -> None:
        """A sealed checkpoint must find every session it names at the record it names."""
        wrong = self.anchors.seal_problem(item)
        if wrong is not None:
            self.problems.append(AuditProblem(None, None, position, "anchor", wrong))
        else:
            for session_id, expected in item.heads.items():
                if session_id in self.bad:
                    continue
                trail = self.trails.get(session_id)
                reached = None if trail is None else (trail.seq, trail.hash)
                why = head_problem(expected, reached, at_most=True)
                if why is not None:
                    self.fail(session_id, expected[0], position, "anchor", f"a checkpoint {why}")
        self.anchors.passed(item, position)

    def bad_line(self, item: BadLine, position: int) -> None:
        """A line that is no record: a problem of the session it names, or its own."""
        self.records += 1
        named = item.session_id
        if named is None:
            self.problems.append(AuditProblem(None, None, position, item.reason, item.message))
        elif named not in self.bad:
            self.fail(named, None, position, item.reason, item.message)

    def record(self, item: TransitionRecord, position: int) -> None:
        """A record: checked as the next of its session's trail, and against the head
        given from outside for its seq."""
        self.records += 1
        session_id = item.session_id
        if session_id in self.bad:
            return
        trail = self.trails.get(session_id)
        try:
            if trail is None:
                self.trails[session_id] = SessionTrail.open(item, position, self.key)
            else:
                trail.step(item, position, self.key)
        except AuditError as error:
            self.fail(session_id, item.seq, position, error.reason, error.message)
            return
        outside = self.anchors.outside
        head = outside.get(session_id) if outside else None
        if head is not None and head[0] == item.seq and not same_digest(head[1], item.hash):
            self.fail(
                session_id, item.seq, position, "anchor", "the outside head names another record"
            )

    def report(self, end: int) -> AuditReport:
        """What was found, once the trail has ended at ``end``: sinks whose last
        checkpoint is not their closing one, and sessions cut before their outside head."""
        for sink, at in self.anchors.open_chains():
            self.problems.append(
                AuditProblem(
                    None,
                    None,
                    at,
                    "anchor",
                    f"sink {sink[:12]}'s last checkpoint is not its closing one: the trail "
                    "was cut after it, or its writer never closed it",
                )
            )
        for session_id, expected in self.anchors.outside.items():
            if session_id in self.bad:
                continue
            trail = self.trails.get(session_id)
            reached = None if trail is None else (trail.seq, trail.hash)
            why = head_problem(expected, reached, at_most=False)
            if why is not None:
                self.fail(session_id, expected[0], end, "anchor", f"the outside head {why}")
        return AuditReport(
            ok=not self.problems,
            sessions=len(self.trails) + len(self.bad),
            records=self.records,
            problems=tuple(self.problems),
        )


__all__ = ["Heads", "verify"]
