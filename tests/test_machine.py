"""The transition table, enforced by SessionMachine: every (trigger, status) pair."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import given, settings

from paysession import (
    TRANSITIONS,
    GuardRejected,
    IdempotencyConflict,
    IllegalTransition,
    InvalidSessionData,
    PaymentSession,
    PaymentSessionStatus,
    SessionMachine,
)
from paysession._wire import canonical_json, digest
from paysession.audit import replay, verify
from paysession.lifecycle import ALLOWED, MOVES, TRIGGERS

from .helpers import StepClock, args_for, machine_in
from .strategies import json_objects

S = PaymentSessionStatus

# The table of docs/transition-table.md, written out independently of paysession.lifecycle.
EXPECTED: dict[tuple[str, S], S] = {
    ("authorize", S.PENDING): S.AUTHORIZED,
    ("authorize", S.REQUIRES_MORE): S.AUTHORIZED,
    ("require_more", S.PENDING): S.REQUIRES_MORE,
    ("require_more", S.REQUIRES_MORE): S.REQUIRES_MORE,
    ("fail", S.PENDING): S.ERROR,
    ("fail", S.REQUIRES_MORE): S.ERROR,
    ("retry", S.REQUIRES_MORE): S.PENDING,
    ("retry", S.ERROR): S.PENDING,
    ("cancel", S.PENDING): S.CANCELED,
    ("cancel", S.REQUIRES_MORE): S.CANCELED,
    ("cancel", S.ERROR): S.CANCELED,
    ("cancel", S.AUTHORIZED): S.CANCELED,
    ("initiate", S.PENDING): S.PENDING,
    ("update", S.PENDING): S.PENDING,
    ("update", S.REQUIRES_MORE): S.REQUIRES_MORE,
    ("select", S.PENDING): S.PENDING,
    ("select", S.REQUIRES_MORE): S.REQUIRES_MORE,
    ("select", S.ERROR): S.ERROR,
    ("deselect", S.PENDING): S.PENDING,
    ("deselect", S.REQUIRES_MORE): S.REQUIRES_MORE,
    ("deselect", S.ERROR): S.ERROR,
}

ALL_PAIRS = list(itertools.product(TRIGGERS, S))


class TestTable:
    def test_table_matches_design(self) -> None:
        """The data table describes exactly the moves of the design notes."""
        derived = {
            (move.trigger, source): move.dest_from(source)
            for move in TRANSITIONS
            for source in move.sources
        }
        assert derived == EXPECTED

    def test_allowed_by_status(self) -> None:
        """ALLOWED lists, for each status, the triggers that may start there."""
        for status in S:
            assert ALLOWED[status] == {t for (t, s) in EXPECTED if s is status}

    def test_canceled_is_final(self) -> None:
        """Nothing leaves canceled."""
        assert ALLOWED[S.CANCELED] == frozenset()

    def test_table_is_immutable(self) -> None:
        """The table cannot be changed at run time."""
        with pytest.raises(AttributeError):
            TRANSITIONS[0].dest = S.ERROR  # type: ignore[misc]
        assert isinstance(TRANSITIONS, tuple)


class TestEveryPair:
    @pytest.mark.parametrize(("trigger", "status"), ALL_PAIRS)
    def test_pair(self, trigger: str, status: S) -> None:
        """Legal pairs move as the table says; the others raise and change nothing."""
        machine = machine_in(status)
        before, history = machine.session, machine.history
        if (trigger, status) in EXPECTED:
            record = machine.fire(trigger, **args_for(trigger))
            assert machine.session.status is EXPECTED[(trigger, status)]
            assert (record.trigger, record.source, record.dest) == (
                trigger,
                status,
                EXPECTED[(trigger, status)],
            )
            assert machine.history == (*history, record)
        else:
            with pytest.raises(IllegalTransition) as caught:
                machine.fire(trigger, **args_for(trigger))
            assert (caught.value.trigger, caught.value.status, caught.value.allowed) == (
                trigger,
                status.value,
                ALLOWED[status],
            )
            assert machine.session is before
            assert machine.history == history

    @pytest.mark.parametrize(("trigger", "status"), ALL_PAIRS)
    def test_can_agrees_with_fire(self, trigger: str, status: S) -> None:
        """can() is True exactly for the pairs that fire."""
        machine = machine_in(status)
        assert machine.can(trigger) is ((trigger, status) in EXPECTED)

    def test_unknown_trigger(self) -> None:
        """An unknown trigger name is an IllegalTransition listing what is legal."""
        machine = machine_in(S.PENDING)
        with pytest.raises(IllegalTransition) as caught:
            machine.fire("capture")
        assert (caught.value.trigger, caught.value.status, caught.value.allowed) == (
            "capture",
            "pending",
            ALLOWED[S.PENDING],
        )
        assert machine.can("capture") is False

    def test_allowed(self) -> None:
        """allowed() is the table's triggers from the current status."""
        for status in S:
            assert machine_in(status).allowed() == ALLOWED[status]


class TestGuards:
    def test_not_initiated(self) -> None:
        """authorize needs an initiated session."""
        machine = SessionMachine(PaymentSession.new(cart_id="c", provider_id="p", amount=10))
        before, history = machine.session, machine.history
        with pytest.raises(GuardRejected) as caught:
            machine.authorize()
        assert (caught.value.trigger, caught.value.guard) == ("authorize", "is_initiated")
        assert machine.session is before and machine.history == history
        assert machine.can("authorize") is False

    @pytest.mark.parametrize("amount", [0, None])
    def test_amount_not_positive(self, amount: int | None) -> None:
        """authorize needs an amount greater than zero."""
        machine = SessionMachine(PaymentSession.new(cart_id="c", provider_id="p", amount=amount))
        machine.initiate({})
        before, history = machine.session, machine.history
        with pytest.raises(GuardRejected) as caught:
            machine.authorize()
        assert (caught.value.trigger, caught.value.guard) == ("authorize", "amount_positive")
        assert machine.session is before and machine.history == history

    def test_guard_then_update(self) -> None:
        """Once the amount is set, the same authorize passes."""
        machine = SessionMachine(PaymentSession.new(cart_id="c", provider_id="p", amount=0))
        machine.initiate({})
        machine.update(amount=500)
        assert machine.can("authorize")
        assert machine.authorize().dest is S.AUTHORIZED


class TestStamps:
    def test_every_move_stamps_updated_at(self) -> None:
        """updated_at is the clock reading of the move."""
        clock = StepClock()
        machine = machine_in(S.PENDING, clock)
        record = machine.require_more()
        assert machine.session.updated_at == clock.now == record.at

    def test_authorize_stamps_payment_authorized_at(self) -> None:
        """authorize stamps payment_authorized_at from the same reading as updated_at."""
        clock = StepClock()
        machine = machine_in(S.PENDING, clock)
        record = machine.authorize()
        session = machine.session
        assert session.payment_authorized_at == session.updated_at == record.at == clock.now

    def test_payment_authorized_at_never_cleared(self) -> None:
        """Canceling an authorized session keeps its authorization time."""
        machine = machine_in(S.AUTHORIZED)
        stamp = machine.session.payment_authorized_at
        machine.cancel()
        assert machine.session.payment_authorized_at == stamp is not None

    def test_clock_going_back_never_moves_time_back(self) -> None:
        """A clock that steps back stamps the last time again, not an earlier one."""
        clock = StepClock()
        machine = machine_in(S.PENDING, clock)
        last = machine.session.updated_at
        clock.back(timedelta(minutes=1))
        machine.require_more()
        assert machine.session.updated_at == last
        assert [r.at for r in machine.history] == sorted(r.at for r in machine.history)

    def test_naive_clock_refused(self) -> None:
        """A clock that returns a naive datetime is refused; nothing changes."""
        machine = machine_in(S.PENDING)
        before = machine.session
        machine._clock = lambda: before.updated_at.replace(tzinfo=None)
        with pytest.raises(InvalidSessionData) as caught:
            machine.require_more()
        assert caught.value.fields == ("clock",)
        assert machine.session is before


class TestEffects:
    def test_initiate(self) -> None:
        """initiate sets is_initiated and replaces data."""
        machine = SessionMachine(
            PaymentSession.new(cart_id="c", provider_id="p", amount=1, data={"a": 1})
        )
        record = machine.initiate({"b": 2})
        assert machine.session.is_initiated is True
        assert machine.session.data == {"b": 2}
        assert set(record.changes) == {"is_initiated", "data", "updated_at"}

    def test_update(self) -> None:
        """update replaces the amount and/or data and records both."""
        machine = machine_in(S.REQUIRES_MORE)
        record = machine.update(amount=1500, data={"id": "pi_2"})
        assert (machine.session.amount, machine.session.data) == (1500, {"id": "pi_2"})
        assert record.changes["amount"] == (1000, 1500)

    def test_update_needs_something(self) -> None:
        """update with neither amount nor data is refused."""
        machine = machine_in(S.PENDING)
        with pytest.raises(InvalidSessionData) as caught:
            machine.update()
        assert caught.value.fields == ("amount",)

    @pytest.mark.parametrize("amount", [-1, True, 1.5, "10", 2**63])
    def test_update_bad_amount(self, amount: object) -> None:
        """A bad amount is refused naming the field; nothing changes."""
        machine = machine_in(S.PENDING)
        before, history = machine.session, machine.history
        with pytest.raises(InvalidSessionData) as caught:
            machine.update(amount=amount)  # type: ignore[arg-type]
        assert caught.value.fields == ("amount",)
        assert machine.session is before and machine.history == history

    def test_unknown_argument(self) -> None:
        """An argument the trigger does not take is refused naming it."""
        machine = machine_in(S.PENDING)
        with pytest.raises(InvalidSessionData) as caught:
            machine.fire("authorize", amount=5)
        assert caught.value.fields == ("amount",)

    def test_select_and_deselect(self) -> None:
        """select and deselect flip is_selected and keep the status."""
        machine = machine_in(S.ERROR)
        machine.select()
        assert (machine.session.is_selected, machine.session.status) == (True, S.ERROR)
        machine.deselect()
        assert machine.session.is_selected is False

    @pytest.mark.parametrize(
        ("name", "value"), [("actor", ""), ("reason", 5), ("actor", "x" * 5000)]
    )
    def test_bad_metadata(self, name: str, value: object) -> None:
        """actor, reason and idempotency_key are checked before anything moves."""
        machine = machine_in(S.PENDING)
        with pytest.raises(InvalidSessionData) as caught:
            machine.fire("require_more", **{name: value})  # type: ignore[arg-type]
        assert caught.value.fields == (name,)


class TestHistory:
    def test_record_zero(self) -> None:
        """Record 0 holds the session as the trail began."""
        session = PaymentSession.new(cart_id="c", provider_id="p", amount=7, data={"k": "v"})
        first = SessionMachine(session).history[0]
        assert (first.seq, first.trigger, first.source, first.dest) == (
            0,
            "create",
            None,
            S.PENDING,
        )
        assert first.changes["amount"] == (None, 7)
        assert first.changes["data"][1].startswith("sha256:")  # type: ignore[union-attr]

    def test_sequence_and_chain(self) -> None:
        """Records are numbered from 0 and each links to the hash of the one before."""
        machine = machine_in(S.AUTHORIZED)
        machine.cancel(actor="ops", reason="customer asked")
        history = machine.history
        assert [r.seq for r in history] == list(range(len(history)))
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(history))
        assert (history[-1].actor, history[-1].reason) == ("ops", "customer asked")


class TestIdempotency:
    def test_same_key_same_move_returns_original(self) -> None:
        """The same key, trigger and arguments return the first record and add nothing."""
        machine = machine_in(S.PENDING)
        first = machine.update(amount=5, idempotency_key="k1")
        history = machine.history
        assert machine.update(amount=5, idempotency_key="k1") is first
        assert machine.history == history

    def test_same_key_after_status_moved_on(self) -> None:
        """A repeated request gets its record back even when the move is no longer legal."""
        machine = machine_in(S.PENDING)
        first = machine.authorize(idempotency_key="auth-1")
        machine.cancel()
        assert machine.authorize(idempotency_key="auth-1") is first

    def test_other_trigger_conflicts(self) -> None:
        """The same key with another trigger is an IdempotencyConflict."""
        machine = machine_in(S.PENDING)
        machine.require_more(idempotency_key="k1")
        with pytest.raises(IdempotencyConflict) as caught:
            machine.fail(idempotency_key="k1")
        assert (caught.value.key, caught.value.trigger, caught.value.attempted) == (
            "k1",
            "require_more",
            "fail",
        )

    def test_other_arguments_conflict(self) -> None:
        """The same key with other arguments is an IdempotencyConflict."""
        machine = machine_in(S.PENDING)
        machine.update(amount=5, idempotency_key="k1")
        with pytest.raises(IdempotencyConflict) as caught:
            machine.update(amount=6, idempotency_key="k1")
        assert (caught.value.trigger, caught.value.attempted) == ("update", "update")

    def test_failed_move_binds_nothing(self) -> None:
        """Only successful moves bind a key: after a refusal the key is still free."""
        machine = SessionMachine(PaymentSession.new(cart_id="c", provider_id="p", amount=5))
        with pytest.raises(GuardRejected):
            machine.authorize(idempotency_key="k1")
        machine.initiate({})
        assert machine.authorize(idempotency_key="k1").dest is S.AUTHORIZED

    def test_keys_are_per_trigger_arguments_not_metadata(self) -> None:
        """actor and reason are not part of what a key binds."""
        machine = machine_in(S.PENDING)
        first = machine.fail(idempotency_key="k", reason="declined")
        assert machine.fail(idempotency_key="k", reason="declined (retry of request)") is first


class TestSharedEngine:
    def test_no_machine_per_session(self) -> None:
        """Binding sessions adds nothing to the shared transitions machine."""
        from paysession.planning import _ENGINE

        before = list(_ENGINE.models)
        machines = [machine_in(S.PENDING) for _ in range(50)]
        for machine in machines:
            machine.authorize()
        assert _ENGINE.models == before

    def test_equal_sessions_do_not_collide(self) -> None:
        """Two machines on equal snapshots move independently."""
        session = PaymentSession.new(cart_id="c", provider_id="p", amount=5)
        a, b = SessionMachine(session), SessionMachine(session)
        a.cancel()
        assert (a.session.status, b.session.status) == (S.CANCELED, S.PENDING)


class TestDocs:
    def test_every_trigger_has_a_method(self) -> None:
        """Each trigger of the table is a method of SessionMachine."""
        for trigger in MOVES:
            assert callable(getattr(SessionMachine, trigger))


class TestEveryChangeRecorded:
    """A change is judged by its JSON, never by Python's == (issue: 0 == False == 0.0)."""

    @pytest.mark.parametrize(
        ("first", "then"),
        [
            ({"captured": 0}, {"captured": False}),
            ({"captured": 1}, {"captured": True}),
            ({"captured": 1}, {"captured": 1.0}),
            ({"x": 0.0}, {"x": -0.0}),
            ({"deep": [{"n": 0}]}, {"deep": [{"n": False}]}),
        ],
    )
    def test_equal_in_python_different_in_json(
        self, first: dict[str, object], then: dict[str, object]
    ) -> None:
        machine = SessionMachine(
            PaymentSession.new(cart_id="c", provider_id="stripe", amount=1, clock=StepClock())
        )
        machine.initiate(first)
        record = machine.update(data=then)
        assert record.changes["data"] == (digest(first), digest(then))
        assert verify(machine.history).ok
        assert replay(machine.history, data=then) == machine.session

    @settings(max_examples=200, deadline=None)
    @given(first=json_objects, then=json_objects)
    def test_data_change_recorded_iff_its_json_differs(
        self, first: dict[str, object], then: dict[str, object]
    ) -> None:
        machine = SessionMachine(
            PaymentSession.new(cart_id="c", provider_id="stripe", amount=1, clock=StepClock())
        )
        machine.initiate(first)
        record = machine.update(data=then)
        assert ("data" in record.changes) == (canonical_json(first) != canonical_json(then))
        assert replay(machine.history, data=then) == machine.session
