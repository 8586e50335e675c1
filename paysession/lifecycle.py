"""The transition table: the one definition of every legal move, as immutable data.

The machine enforces it, the diagrams draw it, the audit verifier checks trails against
it and the README prints it. Nothing here runs a move; see ``paysession/planning.py``.
The table, its guards and how to add a move: ``docs/transition-table.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

import attrs

from paysession.status import PaymentSessionStatus

if TYPE_CHECKING:
    from paysession.session import PaymentSession

S = PaymentSessionStatus


@attrs.frozen
class Guard:
    """A named condition on the session that a move needs before it may run."""

    name: str
    description: str
    check: Callable[[PaymentSession], bool] = attrs.field(repr=False, eq=False)


@attrs.frozen
class Move:
    """One trigger of the table: where it may start, where it goes, what it needs.

    ``dest`` is None for a move inside a status (``initiate``, ``update``, ``select``,
    ``deselect``): the status stays, the move is still stamped, hooked and audited.
    ``params`` names the keyword arguments the trigger takes (fields it replaces), and
    ``needs_params`` says it needs at least one of them; ``sets`` the fields it sets to
    a constant; ``stamps`` the timestamps it sets from the move's clock reading besides
    ``updated_at``.
    """

    trigger: str
    sources: tuple[PaymentSessionStatus, ...]
    dest: PaymentSessionStatus | None
    guards: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    needs_params: bool = False
    sets: tuple[tuple[str, bool], ...] = ()
    stamps: tuple[str, ...] = ()
    description: str = ""

    @property
    def internal(self) -> bool:
        """True for a move inside a status."""
        return self.dest is None

    def dest_from(self, source: PaymentSessionStatus) -> PaymentSessionStatus:
        """The status after this move from ``source``."""
        return source if self.dest is None else self.dest


def _amount_positive(session: PaymentSession) -> bool:
    return session.amount is not None and session.amount > 0


GUARDS: Mapping[str, Guard] = MappingProxyType(
    {
        "is_initiated": Guard(
            "is_initiated",
            "the provider has been called for this session",
            lambda session: session.is_initiated,
        ),
        "amount_positive": Guard(
            "amount_positive",
            "the amount is set and greater than zero",
            _amount_positive,
        ),
    }
)

INITIAL: PaymentSessionStatus = S.PENDING
FINAL: frozenset[PaymentSessionStatus] = frozenset({S.CANCELED})

Trigger = Literal[
    "initiate",
    "update",
    "require_more",
    "authorize",
    "fail",
    "retry",
    "cancel",
    "select",
    "deselect",
]
"""Every trigger a caller may fire, for type checkers: a misspelt trigger is refused
before the code runs. ``tests/test_lifecycle_validate.py`` checks that it names exactly
the table's triggers."""

TRANSITIONS: tuple[Move, ...] = (
    Move(
        "authorize",
        (S.PENDING, S.REQUIRES_MORE),
        S.AUTHORIZED,
        guards=("is_initiated", "amount_positive"),
        stamps=("payment_authorized_at",),
        description="the provider authorized the amount",
    ),
    Move(
        "require_more",
        (S.PENDING, S.REQUIRES_MORE),
        S.REQUIRES_MORE,
        description="the provider asks the customer for more (3-D Secure, a redirect)",
    ),
    Move(
        "fail",
        (S.PENDING, S.REQUIRES_MORE),
        S.ERROR,
        description="the attempt failed; the reason is recorded",
    ),
    Move(
        "retry",
        (S.REQUIRES_MORE, S.ERROR),
        S.PENDING,
        description="back to pending for a new attempt (a new card, another try)",
    ),
    Move(
        "cancel",
        (S.PENDING, S.REQUIRES_MORE, S.ERROR, S.AUTHORIZED),
        S.CANCELED,
        description="canceled is final: nothing leaves it",
    ),
    Move(
        "initiate",
        (S.PENDING,),
        None,
        params=("data",),
        needs_params=True,
        sets=(("is_initiated", True),),
        description="the provider was called; its data replaces the session's",
    ),
    Move(
        "update",
        (S.PENDING, S.REQUIRES_MORE),
        None,
        params=("amount", "data"),
        needs_params=True,
        description="a new amount and/or provider data before authorization",
    ),
    Move(
        "select",
        (S.PENDING, S.REQUIRES_MORE, S.ERROR),
        None,
        sets=(("is_selected", True),),
        description="this session is the one the cart will be completed with",
    ),
    Move(
        "deselect",
        (S.PENDING, S.REQUIRES_MORE, S.ERROR),
        None,
        sets=(("is_selected", False),),
        description="the cart will not be completed with this session",
    ),
)

MOVES: Mapping[str, Move] = MappingProxyType({move.trigger: move for move in TRANSITIONS})
"""The table by trigger name."""

TRIGGERS: tuple[str, ...] = tuple(MOVES)
"""Every trigger name, in table order."""

CREATE = "create"
"""The trigger name of the record that opens a trail (seq 0); not a move of the table."""


def _allowed_by_status() -> Mapping[PaymentSessionStatus, frozenset[str]]:
    allowed: dict[PaymentSessionStatus, set[str]] = {status: set() for status in S}
    for move in TRANSITIONS:
        for source in move.sources:
            allowed[source].add(move.trigger)
    return MappingProxyType({status: frozenset(names) for status, names in allowed.items()})


ALLOWED: Mapping[PaymentSessionStatus, frozenset[str]] = _allowed_by_status()
"""For each status, the triggers the table allows from it (guards aside)."""


@attrs.frozen
class Defect:
    """One thing wrong with a transition table, found by :func:`validate`.

    ``kind`` is one of ``unknown_status``, ``unknown_guard``, ``ambiguous_trigger``,
    ``final_exit``, ``unreachable``, ``dead_end``; ``subject`` is the status, guard or
    trigger it is about; ``detail`` finishes the sentence ``str()`` reads.
    """

    kind: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.detail}"


def _status_name(value: object) -> str:
    return value.value if isinstance(value, PaymentSessionStatus) else str(value)


def _reach(
    starts: frozenset[PaymentSessionStatus],
    edges: Mapping[PaymentSessionStatus, frozenset[PaymentSessionStatus]],
) -> frozenset[PaymentSessionStatus]:
    seen = set(starts)
    todo = list(starts)
    while todo:
        for nxt in edges.get(todo.pop(), frozenset()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return frozenset(seen)


def validate(
    table: tuple[Move, ...],
    *,
    guards: Mapping[str, Guard] = GUARDS,
    initial: PaymentSessionStatus = INITIAL,
    final: frozenset[PaymentSessionStatus] = FINAL,
) -> list[Defect]:
    """Every defect of ``table``, in a stable order; an empty list for a sound table.

    A defect is a status or guard name the table does not know, one trigger with two
    destinations from the same source, a way out of a final status, a status that cannot
    be reached from ``initial``, or a non-final status that cannot reach a final one.
    Moves inside a status neither leave nor reach anything.
    """
    defects: list[Defect] = []

    def known(value: object, where: str) -> bool:
        if isinstance(value, PaymentSessionStatus):
            return True
        defects.append(
            Defect("unknown_status", _status_name(value), f"not a PaymentSessionStatus ({where})")
        )
        return False

    known(initial, "initial")
    for status in sorted(final, key=_status_name):
        known(status, "final")
    forward: dict[PaymentSessionStatus, set[PaymentSessionStatus]] = {}
    dests: dict[tuple[str, PaymentSessionStatus], list[PaymentSessionStatus]] = {}
    exits: list[Defect] = []
    for move in table:
        sources = [s for s in move.sources if known(s, f"a source of {move.trigger!r}")]
        dest_known = move.dest is None or known(move.dest, f"the dest of {move.trigger!r}")
        for name in move.guards:
            if name not in guards:
                defects.append(
                    Defect("unknown_guard", name, f"not a known guard (on {move.trigger!r})")
                )
        if not dest_known:
            continue
        for source in sources:
            dest = move.dest_from(source)
            seen = dests.setdefault((move.trigger, source), [])
            if dest not in seen:
                seen.append(dest)
            if dest != source:
                forward.setdefault(source, set()).add(dest)
                if source in final:
                    exits.append(
                        Defect(
                            "final_exit",
                            source.value,
                            f"final, but {move.trigger!r} leads to {dest.value!r}",
                        )
                    )
    for (trigger, source), options in dests.items():
        if len(options) > 1:
            to = " and to ".join(repr(option.value) for option in options)
            defects.append(
                Defect("ambiguous_trigger", trigger, f"from {source.value!r} goes to {to}")
            )
    defects.extend(exits)
    edges = {source: frozenset(targets) for source, targets in forward.items()}
    if isinstance(initial, PaymentSessionStatus):
        reached = _reach(frozenset({initial}), edges)
        defects.extend(
            Defect("unreachable", status.value, f"cannot be reached from {initial.value!r}")
            for status in PaymentSessionStatus
            if status not in reached
        )
    backward: dict[PaymentSessionStatus, set[PaymentSessionStatus]] = {}
    for source, targets in edges.items():
        for target in targets:
            backward.setdefault(target, set()).add(source)
    finals = frozenset(s for s in final if isinstance(s, PaymentSessionStatus))
    reaching = _reach(finals, {dest: frozenset(srcs) for dest, srcs in backward.items()})
    ends = ", ".join(sorted(status.value for status in finals)) or "none is declared"
    defects.extend(
        Defect("dead_end", status.value, f"cannot reach a final status ({ends})")
        for status in PaymentSessionStatus
        if status not in finals and status not in reaching
    )
    return defects


def shortest_path(
    source: PaymentSessionStatus, dest: PaymentSessionStatus, table: tuple[Move, ...] = TRANSITIONS
) -> tuple[str, ...] | None:
    """The fewest status moves of ``table`` from ``source`` to ``dest``.

    ``()`` when they are the same status; None when no legal path exists (anything after
    canceled, authorized back to pending). Ties go to the move listed first in the table,
    so the answer is the same on every run. Guards are not consulted here: the machine
    still checks them when the moves run.
    """
    if source is dest:
        return ()
    paths: dict[PaymentSessionStatus, tuple[str, ...]] = {source: ()}
    frontier = [source]
    while frontier:
        following: list[PaymentSessionStatus] = []
        for status in frontier:
            for move in table:
                if move.dest is None or status not in move.sources or move.dest in paths:
                    continue
                paths[move.dest] = (*paths[status], move.trigger)
                if move.dest is dest:
                    return paths[dest]
                following.append(move.dest)
        frontier = following
    return None


__all__ = [
    "ALLOWED",
    "CREATE",
    "FINAL",
    "GUARDS",
    "INITIAL",
    "MOVES",
    "TRANSITIONS",
    "TRIGGERS",
    "Defect",
    "Guard",
    "Move",
    "Trigger",
    "shortest_path",
    "validate",
]
