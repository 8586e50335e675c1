"""The transition table: the one definition of every legal move, as immutable data.

The machine enforces it, the diagrams draw it, the audit verifier checks trails against
it and the README prints it. Nothing here runs a move; see :mod:`paysession.machine`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

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
    ``params`` names the keyword arguments the trigger takes (fields it replaces);
    ``sets`` the fields it sets to a constant; ``stamps`` the timestamps it sets from
    the move's clock reading besides ``updated_at``.
    """

    trigger: str
    sources: tuple[PaymentSessionStatus, ...]
    dest: PaymentSessionStatus | None
    guards: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
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
        sets=(("is_initiated", True),),
        description="the provider was called; its data replaces the session's",
    ),
    Move(
        "update",
        (S.PENDING, S.REQUIRES_MORE),
        None,
        params=("amount", "data"),
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


__all__ = [
    "ALLOWED",
    "CREATE",
    "FINAL",
    "GUARDS",
    "INITIAL",
    "MOVES",
    "TRANSITIONS",
    "TRIGGERS",
    "Guard",
    "Move",
]
