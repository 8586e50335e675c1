"""Random sequences of moves against a small reference model written here."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from paysession import (
    GuardRejected,
    Hooks,
    IdempotencyConflict,
    IllegalTransition,
    InvalidSessionData,
    PaymentSession,
    PaymentSessionStatus,
    SessionMachine,
    TransitionEvent,
    TransitionRecord,
)

from .helpers import StepClock

S = PaymentSessionStatus

# The reference model's own table: (trigger) -> (sources, dest or None for "stays").
MODEL: dict[str, tuple[set[S], S | None]] = {
    "authorize": ({S.PENDING, S.REQUIRES_MORE}, S.AUTHORIZED),
    "require_more": ({S.PENDING, S.REQUIRES_MORE}, S.REQUIRES_MORE),
    "fail": ({S.PENDING, S.REQUIRES_MORE}, S.ERROR),
    "retry": ({S.REQUIRES_MORE, S.ERROR}, S.PENDING),
    "cancel": ({S.PENDING, S.REQUIRES_MORE, S.ERROR, S.AUTHORIZED}, S.CANCELED),
    "initiate": ({S.PENDING}, None),
    "update": ({S.PENDING, S.REQUIRES_MORE}, None),
    "select": ({S.PENDING, S.REQUIRES_MORE, S.ERROR}, None),
    "deselect": ({S.PENDING, S.REQUIRES_MORE, S.ERROR}, None),
}

DATA = [{}, {"id": "pi_1"}, {"id": "pi_2", "nested": [1, {"a": None}]}]
_UNSET = object()


class Vetoed(Exception):
    pass


class SessionMoves(RuleBasedStateMachine):
    @initialize(amount=st.sampled_from([None, 0, 1, 2500]))
    def start(self, amount: int | None) -> None:
        self.clock = StepClock()
        self.veto = False
        self.hooks = Hooks()
        self.after_seen: list[str] = []

        @self.hooks.before()
        def maybe_veto(event: TransitionEvent) -> None:
            if self.veto:
                raise Vetoed(event.trigger)

        self.hooks.after()(lambda event: self.after_seen.append(event.trigger))
        session = PaymentSession.new(cart_id="c", provider_id="p", amount=amount, clock=self.clock)
        self.machine = SessionMachine(session, hooks=self.hooks, clock=self.clock)
        # The reference model.
        self.status = S.PENDING
        self.initiated = False
        self.selected = False
        self.amount = amount
        self.data: dict[str, object] = {}
        self.moves = 0
        self.keys: dict[str, tuple[str, object, object, TransitionRecord]] = {}
        self.last_updated = session.updated_at

    @rule(
        trigger=st.sampled_from([*MODEL, "capture"]),
        amount=st.sampled_from([_UNSET, -1, 0, 700, 2500]),
        data=st.sampled_from([_UNSET, *range(len(DATA))]),
        veto=st.booleans(),
        key=st.sampled_from([None, None, "k1", "k2", "k3"]),
    )
    def fire(self, trigger: str, amount: object, data: object, veto: bool, key: str | None) -> None:
        params: dict[str, object] = {}
        if trigger == "update":
            if amount is not _UNSET:
                params["amount"] = amount
            if data is not _UNSET:
                params["data"] = DATA[data]  # type: ignore[index]
        elif trigger == "initiate":
            params["data"] = DATA[0 if data is _UNSET else data]  # type: ignore[index]
        self.veto = veto
        before_session, before_history = self.machine.session, self.machine.history
        after_count = len(self.after_seen)
        expected = self.expect(trigger, params, veto, key)
        try:
            record = self.machine.fire(trigger, idempotency_key=key, **params)
        except Exception as error:  # compared with the model's expectation below
            assert isinstance(expected, type) and type(error) is expected, (expected, error)
            assert self.machine.session is before_session
            assert self.machine.history == before_history
            assert len(self.after_seen) == after_count
            return
        if isinstance(expected, TransitionRecord):  # an idempotent repeat
            assert record is expected
            assert self.machine.history == before_history
            assert len(self.after_seen) == after_count
            return
        assert expected == "moves", (expected, trigger)
        self.apply(trigger, params)
        if key is not None:
            self.keys[key] = (trigger, params.get("amount"), params.get("data"), record)
        assert self.after_seen[-1] == trigger

    def expect(
        self, trigger: str, params: dict[str, object], veto: bool, key: str | None
    ) -> object:
        if trigger not in MODEL:
            return IllegalTransition
        amount = params.get("amount")
        if "amount" in params and (not isinstance(amount, int) or amount < 0):
            return InvalidSessionData
        if trigger == "update" and not params:
            return InvalidSessionData
        if key is not None and key in self.keys:
            bound = self.keys[key]
            if bound[:3] == (trigger, params.get("amount"), params.get("data")):
                return bound[3]
            return IdempotencyConflict
        sources, _ = MODEL[trigger]
        if self.status not in sources:
            return IllegalTransition
        if trigger == "authorize" and not (self.initiated and (self.amount or 0) > 0):
            return GuardRejected
        if veto:
            return Vetoed
        return "moves"

    def apply(self, trigger: str, params: dict[str, object]) -> None:
        _, dest = MODEL[trigger]
        if dest is not None:
            self.status = dest
        if trigger == "initiate":
            self.initiated = True
        if trigger in ("select", "deselect"):
            self.selected = trigger == "select"
        if "amount" in params:
            self.amount = params["amount"]  # type: ignore[assignment]
        if "data" in params:
            self.data = params["data"]  # type: ignore[assignment]
        self.moves += 1

    @rule(by=st.integers(min_value=1, max_value=10_000))
    def clock_back(self, by: int) -> None:
        self.clock.back(timedelta(milliseconds=by))

    @invariant()
    def agrees_with_model(self) -> None:
        session = self.machine.session
        assert session.status is self.status
        assert (session.is_initiated, session.is_selected) == (self.initiated, self.selected)
        assert (session.amount, session.data) == (self.amount, self.data)
        assert len(self.machine.history) == self.moves + 1

    @invariant()
    def stamps_hold(self) -> None:
        session = self.machine.session
        if session.status is S.AUTHORIZED:
            assert session.payment_authorized_at is not None
        assert session.updated_at >= self.last_updated
        assert session.updated_at >= session.created_at
        self.last_updated = session.updated_at


SessionMoves.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestSessionMoves = SessionMoves.TestCase
