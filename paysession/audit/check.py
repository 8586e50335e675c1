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
    trails: dict[str, SessionTrail] = {}
    bad: set[str] = set()
    problems: list[AuditProblem] = []
    anchors = AnchorCheck(key, heads)
    outside = anchors.outside
    count = 0

    def fail(session_id: str, seq: int | None, position: int, reason: str, why: str) -> None:
        problems.append(AuditProblem(session_id, seq, position, reason, why))
        trails.pop(session_id, None)
        bad.add(session_id)

    position = -1
    for position, item in enumerate(records):
        if isinstance(item, Checkpoint):
            wrong = anchors.seal_problem(item)
            if wrong is not None:
                problems.append(AuditProblem(None, None, position, "anchor", wrong))
            else:
                for session_id, expected in item.heads.items():
                    if session_id in bad:
                        continue
                    trail = trails.get(session_id)
                    reached = None if trail is None else (trail.seq, trail.hash)
                    why = head_problem(expected, reached, at_most=True)
                    if why is not None:
                        fail(session_id, expected[0], position, "anchor", f"a checkpoint {why}")
            anchors.passed(item, position)
            continue
        count += 1  # records and bad lines; checkpoints are not records
        if isinstance(item, BadLine):
            named = item.session_id
            if named is None:
                problems.append(AuditProblem(None, None, position, item.reason, item.message))
            elif named not in bad:
                fail(named, None, position, item.reason, item.message)
            continue
        session_id = item.session_id
        if session_id in bad:
            continue
        trail = trails.get(session_id)
        try:
            if trail is None:
                trails[session_id] = SessionTrail.open(item, position, key)
            else:
                trail.step(item, position, key)
        except AuditError as error:
            fail(session_id, item.seq, position, error.reason, error.message)
            continue
        outside_head = outside.get(session_id) if outside else None
        if (
            outside_head is not None
            and outside_head[0] == item.seq
            and not same_digest(outside_head[1], item.hash)
        ):
            fail(session_id, item.seq, position, "anchor", "the outside head names another record")
    for sink, at in anchors.open_chains():
        problems.append(
            AuditProblem(
                None,
                None,
                at,
                "anchor",
                f"sink {sink[:12]}'s last checkpoint is not its closing one: the trail was "
                "cut after it, or its writer never closed it",
            )
        )
    for session_id, expected in outside.items():
        if session_id in bad:
            continue
        trail = trails.get(session_id)
        why = head_problem(
            expected, None if trail is None else (trail.seq, trail.hash), at_most=False
        )
        if why is not None:
            fail(session_id, expected[0], position + 1, "anchor", f"the outside head {why}")
    return AuditReport(
        ok=not problems,
        sessions=len(trails) + len(bad),
        records=count,
        problems=tuple(problems),
    )


__all__ = ["Heads", "verify"]
