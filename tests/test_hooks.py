"""Hooks: vetoes before a move, reactions after it, one registry shared by many machines."""

from __future__ import annotations

import attrs
import pytest

from paysession import (
    HookError,
    Hooks,
    IllegalTransition,
    PaymentSessionStatus,
    TransitionEvent,
)
from paysession.errors import DefinitionError, ReentrantMove

from .helpers import machine_in

S = PaymentSessionStatus


class Veto(Exception):
    pass


class TestOrder:
    def test_phases_in_order(self) -> None:
        """before, on_exit, then (once final) on_enter and after, each with the same event."""
        hooks, seen = Hooks(), []

        @hooks.before("authorize")
        def before(event: TransitionEvent) -> None:
            seen.append(("before", event))

        @hooks.on_exit(S.PENDING)
        def on_exit(event: TransitionEvent) -> None:
            seen.append(("on_exit", event))

        @hooks.on_enter("authorized")
        def on_enter(event: TransitionEvent) -> None:
            seen.append(("on_enter", event))

        @hooks.after()
        def listener(event: TransitionEvent) -> None:
            seen.append(("after", event))

        machine = machine_in(S.PENDING, hooks=hooks)
        seen.clear()
        record = machine.authorize(actor="storefront", reason="pay", idempotency_key="k")
        assert [kind for kind, _ in seen] == ["before", "on_exit", "on_enter", "after"]
        events = {event for _, event in seen}
        assert len(events) == 1
        (event,) = events
        assert (event.trigger, event.source, event.dest, event.actor, event.reason) == (
            "authorize",
            S.PENDING,
            S.AUTHORIZED,
            "storefront",
            "pay",
        )
        assert (event.idempotency_key, event.at) == ("k", record.at)
        assert event.after == machine.session
        assert event.before.status is S.PENDING

    def test_event_is_immutable(self) -> None:
        """A hook cannot change the event it is given."""
        hooks, events = Hooks(), []
        hooks.after()(events.append)
        machine_in(S.PENDING, hooks=hooks)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            events[0].trigger = "cancel"

    def test_in_status_moves_skip_enter_and_exit(self) -> None:
        """on_enter/on_exit fire for status moves only; after-hooks see every move."""
        hooks, seen = Hooks(), []
        hooks.on_enter(S.PENDING)(lambda e: seen.append(("enter", e.trigger)))
        hooks.on_exit(S.PENDING)(lambda e: seen.append(("exit", e.trigger)))
        hooks.after()(lambda e: seen.append(("after", e.trigger)))
        machine = machine_in(S.PENDING, hooks=hooks)
        machine.select()
        assert seen == [("after", "initiate"), ("after", "select")]

    def test_reflexive_status_move_fires_enter(self) -> None:
        """require_more from requires_more still enters requires_more."""
        hooks, seen = Hooks(), []
        hooks.on_enter("requires_more")(lambda e: seen.append(e.source))
        machine = machine_in(S.REQUIRES_MORE, hooks=hooks)
        machine.require_more()
        assert seen == [S.PENDING, S.REQUIRES_MORE]

    def test_trigger_filter(self) -> None:
        """A hook registered for one trigger sees only that trigger."""
        hooks, seen = Hooks(), []
        hooks.after("cancel")(lambda e: seen.append(e.trigger))
        machine = machine_in(S.PENDING, hooks=hooks)
        machine.require_more()
        machine.cancel()
        assert seen == ["cancel"]

    def test_shared_registry(self) -> None:
        """One registry serves many machines; hooks added later apply to all of them."""
        hooks, seen = Hooks(), []
        first, second = machine_in(S.PENDING, hooks=hooks), machine_in(S.PENDING, hooks=hooks)
        hooks.after("fail")(lambda e: seen.append(e.session_id))
        first.fail()
        second.fail()
        assert seen == [first.session.id, second.session.id]


class TestVeto:
    @pytest.mark.parametrize("kind", ["before", "on_exit"])
    def test_veto_changes_nothing(self, kind: str) -> None:
        """A raising before-hook vetoes: its exception reaches the caller, nothing changes."""
        hooks, after = Hooks(), []

        def refuse(event: TransitionEvent) -> None:
            raise Veto(event.trigger)

        if kind == "before":
            hooks.before("authorize")(refuse)
        else:
            hooks.on_exit(S.PENDING)(refuse)
        hooks.after()(after.append)
        machine = machine_in(S.PENDING, hooks=hooks)
        before, history, seen = machine.session, machine.history, len(after)
        with pytest.raises(Veto):
            machine.authorize(idempotency_key="k")
        assert machine.session is before and machine.history == history
        assert len(after) == seen
        hooks._hooks.clear()
        hooks._compiled.clear()
        assert machine.authorize(idempotency_key="k").dest is S.AUTHORIZED

    def test_before_hook_cannot_reenter(self) -> None:
        """A before-hook that fires a move on its own machine is refused, nothing changes."""
        hooks = Hooks()
        machine = machine_in(S.PENDING, hooks=hooks)

        @hooks.before("authorize")
        def reenter(event: TransitionEvent) -> None:
            machine.cancel()

        before = machine.session
        with pytest.raises(ReentrantMove) as caught:
            machine.authorize()
        assert "before-hooks cannot fire" in str(caught.value)
        assert machine.session is before


class TestAfterFailure:
    def test_after_hook_error_keeps_the_move(self) -> None:
        """An after-hook exception surfaces as HookError; the move stands; all hooks ran."""
        hooks, ran = Hooks(), []

        @hooks.after("authorize")
        def broken(event: TransitionEvent) -> None:
            raise RuntimeError("ledger down")

        @hooks.after("authorize")
        def still_runs(event: TransitionEvent) -> None:
            ran.append(event.trigger)

        machine = machine_in(S.PENDING, hooks=hooks)
        with pytest.raises(HookError) as caught:
            machine.authorize()
        assert machine.session.status is S.AUTHORIZED
        assert caught.value.session == machine.session
        assert caught.value.record == machine.history[-1]
        assert isinstance(caught.value.error, RuntimeError)
        assert ran == ["authorize"]

    def test_after_hook_may_fire_next_move(self) -> None:
        """An after-hook may fire a follow-up move once the first is final."""
        hooks = Hooks()
        machine = machine_in(S.PENDING, hooks=hooks)
        hooks.after("fail")(lambda e: machine.retry(actor="auto-retry"))
        machine.fail()
        assert [r.trigger for r in machine.history[-2:]] == ["fail", "retry"]
        assert machine.session.status is S.PENDING


class TestRegistration:
    def test_unknown_trigger(self) -> None:
        """Registering for a trigger the table lacks is a DefinitionError, not a refusal."""
        with pytest.raises(DefinitionError) as caught:
            Hooks().before("capture")
        assert (caught.value.kind, caught.value.name) == ("trigger", "capture")
        assert "authorize" in caught.value.known
        assert not isinstance(caught.value, IllegalTransition)

    def test_unknown_status(self) -> None:
        """Registering for a status that does not exist is a DefinitionError naming it."""
        with pytest.raises(DefinitionError) as caught:
            Hooks().on_enter("captured")
        assert (caught.value.kind, caught.value.name) == ("status", "captured")
