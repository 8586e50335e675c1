"""validate(): the defects of a transition table, shown on deliberately broken tables."""

from __future__ import annotations

from typing import get_args

import attrs

from paysession.lifecycle import FINAL, TRANSITIONS, Defect, Move, Trigger, validate
from paysession.status import PaymentSessionStatus

S = PaymentSessionStatus


def edited(trigger: str, **changes: object) -> tuple[Move, ...]:
    """The built-in table with one move changed."""
    return tuple(
        attrs.evolve(move, **changes) if move.trigger == trigger else move for move in TRANSITIONS
    )


def without(trigger: str) -> tuple[Move, ...]:
    """The built-in table with one move removed."""
    return tuple(move for move in TRANSITIONS if move.trigger != trigger)


class TestValidate:
    def test_built_in_table_is_sound(self) -> None:
        """The table the machine runs has no defect."""
        assert validate(TRANSITIONS) == []

    def test_unreachable_status(self) -> None:
        """Without 'fail' nothing leads to error any more."""
        assert validate(without("fail")) == [
            Defect("unreachable", "error", "cannot be reached from 'pending'")
        ]

    def test_final_status_with_a_way_out(self) -> None:
        """A move that leaves canceled contradicts its being final."""
        table = (*TRANSITIONS, Move("reopen", (S.CANCELED,), S.PENDING))
        assert validate(table) == [
            Defect("final_exit", "canceled", "final, but 'reopen' leads to 'pending'")
        ]

    def test_move_inside_a_final_status_is_no_way_out(self) -> None:
        """A move that keeps canceled (dest None) does not leave it."""
        table = (*TRANSITIONS, Move("annotate", (S.CANCELED,), None))
        assert validate(table) == []

    def test_status_that_cannot_reach_a_final_one(self) -> None:
        """error with neither retry nor cancel is a trap."""
        table = edited("cancel", sources=(S.PENDING, S.REQUIRES_MORE, S.AUTHORIZED))
        table = tuple(
            attrs.evolve(move, sources=(S.REQUIRES_MORE,)) if move.trigger == "retry" else move
            for move in table
        )
        assert validate(table) == [
            Defect("dead_end", "error", "cannot reach a final status (canceled)")
        ]

    def test_no_final_status_declared(self) -> None:
        """With no final status every status is a dead end."""
        assert validate(TRANSITIONS, final=frozenset()) == [
            Defect("dead_end", status.value, "cannot reach a final status (none is declared)")
            for status in S
        ]

    def test_one_trigger_with_two_destinations(self) -> None:
        """A second 'fail' from pending to canceled makes 'fail' ambiguous there."""
        table = (*TRANSITIONS, Move("fail", (S.PENDING,), S.CANCELED))
        assert validate(table) == [
            Defect("ambiguous_trigger", "fail", "from 'pending' goes to 'error' and to 'canceled'")
        ]

    def test_status_move_clashing_with_a_move_inside_the_status(self) -> None:
        """'select' both staying in pending and leaving it is ambiguous."""
        table = (*TRANSITIONS, Move("select", (S.PENDING,), S.AUTHORIZED))
        assert validate(table) == [
            Defect(
                "ambiguous_trigger",
                "select",
                "from 'pending' goes to 'pending' and to 'authorized'",
            )
        ]

    def test_same_destination_twice_is_not_ambiguous(self) -> None:
        """Repeating a move with the same destination is no conflict."""
        table = (*TRANSITIONS, Move("cancel", (S.PENDING,), S.CANCELED))
        assert validate(table) == []

    def test_unknown_destination_status(self) -> None:
        """A dest that is not a PaymentSessionStatus is named with its move."""
        table = (*TRANSITIONS, Move("capture", (S.AUTHORIZED,), "captured"))
        assert validate(table) == [
            Defect(
                "unknown_status", "captured", "not a PaymentSessionStatus (the dest of 'capture')"
            )
        ]

    def test_unknown_source_status(self) -> None:
        """A source spelled as a plain string is not a status of the table."""
        table = (*TRANSITIONS, Move("refund", ("captured",), S.CANCELED))
        assert validate(table) == [
            Defect(
                "unknown_status", "captured", "not a PaymentSessionStatus (a source of 'refund')"
            )
        ]

    def test_unknown_initial_and_final(self) -> None:
        """The initial and final statuses are checked too; nothing is reachable then."""
        defects = validate(
            TRANSITIONS,
            initial="open",
            final=FINAL | {"closed"},
        )
        assert defects == [
            Defect("unknown_status", "open", "not a PaymentSessionStatus (initial)"),
            Defect("unknown_status", "closed", "not a PaymentSessionStatus (final)"),
        ]

    def test_unknown_guard(self) -> None:
        """A guard name missing from GUARDS is named with its trigger."""
        table = edited("authorize", guards=("is_initiated", "is_paid"))
        assert validate(table) == [
            Defect("unknown_guard", "is_paid", "not a known guard (on 'authorize')")
        ]

    def test_guards_can_be_given(self) -> None:
        """The guard registry is a parameter: without it every guard is unknown."""
        assert validate(TRANSITIONS, guards={}) == [
            Defect("unknown_guard", "is_initiated", "not a known guard (on 'authorize')"),
            Defect("unknown_guard", "amount_positive", "not a known guard (on 'authorize')"),
        ]

    def test_several_defects_in_a_stable_order(self) -> None:
        """Names first, then ambiguity, exits, unreachable and dead-end statuses."""
        table = (
            *without("fail"),
            Move("reopen", (S.CANCELED,), S.PENDING, guards=("is_open",)),
            Move("retry", (S.REQUIRES_MORE,), S.AUTHORIZED),
        )
        assert validate(table) == [
            Defect("unknown_guard", "is_open", "not a known guard (on 'reopen')"),
            Defect(
                "ambiguous_trigger",
                "retry",
                "from 'requires_more' goes to 'pending' and to 'authorized'",
            ),
            Defect("final_exit", "canceled", "final, but 'reopen' leads to 'pending'"),
            Defect("unreachable", "error", "cannot be reached from 'pending'"),
        ]


class TestDefect:
    def test_str_reads_as_a_sentence(self) -> None:
        """str() puts the subject before what is wrong with it."""
        defect = Defect("unreachable", "error", "cannot be reached from 'pending'")
        assert str(defect) == "error: cannot be reached from 'pending'"


def test_the_trigger_type_names_exactly_the_tables_triggers() -> None:
    """``Trigger`` (what type checkers accept) and the table cannot drift apart."""
    assert sorted(get_args(Trigger)) == sorted(move.trigger for move in TRANSITIONS)
