"""PaymentSessions over every store: one transaction per move, hooks, selection, keys, retries."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path
from typing import Any

import pytest

from paysession import (
    ConcurrentUpdate,
    GuardRejected,
    HookError,
    Hooks,
    IdempotencyConflict,
    IllegalTransition,
    InvalidSessionData,
    PaymentSessions,
    PaymentSessionStatus,
    SessionNotFound,
    TransitionEvent,
)
from paysession.audit import replay, verify
from paysession.errors import DuplicateSession, SelectionConflict, StoreError
from paysession.store import (
    MemoryStore,
    SessionStore,
    SqliteStore,
)

from .conftest import StoreFactory
from .helpers import T0, StepClock, initiated, service

S = PaymentSessionStatus


class TestPaymentSessions:
    def test_moves_are_stamped_by_the_clock(self) -> None:
        """create and every move read the injected clock."""
        clock = StepClock()
        sessions = PaymentSessions(MemoryStore(), clock=clock)
        session = sessions.create(cart_id="cart_1", provider_id="stripe", amount=10)
        record = sessions.fire(session.id, "cancel")
        assert (session.created_at, record.at) == (clock.now - clock.step, clock.now)
        assert session.created_at > T0

    def test_expected_version_must_be_a_version(self) -> None:
        """expected_version is an int >= 0 (not a bool, not a string) or None."""
        sessions = PaymentSessions(MemoryStore())
        session_id = initiated(sessions)
        for bad in ("1", True, -1, 1.0):
            with pytest.raises(InvalidSessionData) as refused:
                sessions.fire(session_id, "fail", expected_version=bad)  # type: ignore[arg-type]
            assert refused.value.fields == ("expected_version",)
        assert sessions.version(session_id) == 1

    def test_find_takes_a_status_or_its_name(self) -> None:
        """find accepts a status or its wire name, and refuses anything else."""
        sessions = PaymentSessions(MemoryStore(), clock=StepClock())
        session_id = initiated(sessions)
        assert [s.id for s in sessions.find(status="pending")] == [session_id]
        assert sessions.find(status=S.ERROR) == []
        with pytest.raises(InvalidSessionData) as refused:
            sessions.find(status="paid")
        assert refused.value.fields == ("status",)

    def test_hmac_key_seals_every_record(self) -> None:
        """With a key, the trail verifies under that key and not without it."""
        sessions = PaymentSessions(MemoryStore(), key=b"audit-key")
        session_id = initiated(sessions)
        sessions.fire(session_id, "authorize")
        assert sessions.verify(session_id).ok
        assert not verify(sessions.history(session_id)).ok
        assert verify(sessions.history(session_id), key=b"audit-key").ok

    def test_attempts_must_be_positive(self) -> None:
        """fire_with_retry needs at least one attempt."""
        sessions = PaymentSessions(MemoryStore())
        session_id = initiated(sessions)
        with pytest.raises(InvalidSessionData) as refused:
            sessions.fire_with_retry(session_id, "fail", attempts=0)
        assert refused.value.fields == ("attempts",)

    def test_repr_names_the_store(self) -> None:
        """repr shows which store the service uses."""
        assert repr(PaymentSessions(MemoryStore())) == "<PaymentSessions <MemoryStore 0 sessions>>"


class TestThreads:
    @pytest.mark.parametrize("path", ["file", ":memory:"])
    def test_threads_share_one_store(self, tmp_path: Path, path: str) -> None:
        """Threads moving the same sessions through one SqliteStore lose no move."""
        store = SqliteStore(tmp_path / "threads.db" if path == "file" else ":memory:")
        sessions = PaymentSessions(store)
        ids = [initiated(sessions, f"cart_{n}") for n in range(3)]
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(10):
                    for session_id in ids:
                        sessions.fire_with_retry(session_id, "update", attempts=50, amount=7)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert [sessions.version(session_id) for session_id in ids] == [41, 41, 41]
        assert all(sessions.verify(session_id).ok for session_id in ids)
        store.close()


class TestErrors:
    def test_messages(self) -> None:
        """Each error says what happened from its attributes."""
        assert [
            str(SessionNotFound("ps_1")),
            str(ConcurrentUpdate("ps_1", 3, 4)),
            str(ConcurrentUpdate("ps_1", 3)),
            str(SelectionConflict("ps_2", "cart_1")),
            str(DuplicateSession("ps_1", "cart_1", "stripe", ("cart_id", "provider_id"))),
            str(DuplicateSession("ps_1", None, "stripe", ("id",))),
            str(StoreError("commit", "database is locked")),
        ] == [
            "no payment session 'ps_1'",
            "session ps_1 was changed by another move first (expected version 3, found 4); "
            "nothing was written",
            "session ps_1 was changed by another move first (expected version 3); "
            "nothing was written",
            "cannot select session ps_2: another session of cart cart_1 is selected; "
            "nothing was written",
            "cart cart_1 already has a payment session with provider 'stripe'",
            "a payment session with id ps_1 already exists",
            "session store failed during commit: database is locked",
        ]

    def test_errors_cross_process_boundaries(self) -> None:
        """The store errors pickle and unpickle to equal facts (workers send them back)."""
        for error in (
            SessionNotFound("ps_1"),
            ConcurrentUpdate("ps_1", 3, 4),
            SelectionConflict("ps_2", "cart_1"),
            DuplicateSession("ps_1", "cart_1", "stripe", ("id",)),
            StoreError("commit", "database is locked"),
        ):
            copy = pickle.loads(pickle.dumps(error))
            assert (type(copy), vars(copy)) == (type(error), vars(error))

    def test_builtin_families(self) -> None:
        """SessionNotFound is a LookupError; a selection conflict is a concurrent update."""
        assert issubclass(SessionNotFound, LookupError)
        assert issubclass(SelectionConflict, ConcurrentUpdate)


class Calls:
    """A hook registry that records which hooks ran, by kind and trigger."""

    def __init__(self) -> None:
        self.hooks = Hooks()
        self.seen: list[tuple[str, str]] = []

        @self.hooks.before()
        def before(event: TransitionEvent) -> None:
            self.seen.append(("before", event.trigger))

        @self.hooks.after()
        def after(event: TransitionEvent) -> None:
            self.seen.append(("after", event.trigger))


class TestServiceMoves:
    def test_row_equals_the_replay_of_its_trail(self, store: SessionStore) -> None:
        """After a run of moves the row is what replaying its trail rebuilds."""
        sessions = service(store)
        session_id = initiated(sessions)
        for trigger in ("require_more", "fail", "retry", "authorize"):
            sessions.fire(session_id, trigger)
        sessions.fire(session_id, "cancel", reason="customer left")
        row = sessions.get(session_id)
        assert row.status is S.CANCELED
        assert replay(sessions.history(session_id), data=row.data, cart=row.cart) == row
        assert sessions.verify(session_id).ok
        assert sessions.version(session_id) == 6

    def test_create_writes_session_and_record_zero(self, store: SessionStore) -> None:
        """create stores the session at version 0 with its create record."""
        sessions = service(store)
        session = sessions.create(cart_id="cart_1", provider_id="stripe", amount=10)
        assert sessions.get(session.id) == session
        assert [r.trigger for r in sessions.history(session.id)] == ["create"]
        assert sessions.version(session.id) == 0

    def test_duplicate_provider_on_a_cart(self, store: SessionStore) -> None:
        """A second session for the same cart and provider raises DuplicateSession."""
        sessions = service(store)
        sessions.create(cart_id="cart_1", provider_id="stripe", amount=10)
        with pytest.raises(DuplicateSession) as refused:
            sessions.create(cart_id="cart_1", provider_id="stripe", amount=20)
        assert (refused.value.cart_id, refused.value.fields) == (
            "cart_1",
            ("cart_id", "provider_id"),
        )
        assert len(sessions.find(cart_id="cart_1")) == 1

    def test_unknown_session(self, store: SessionStore) -> None:
        """Every read and move of an unknown id raises SessionNotFound, a LookupError."""
        sessions = service(store)
        for call in (
            lambda: sessions.get("ps_x"),
            lambda: sessions.version("ps_x"),
            lambda: sessions.history("ps_x"),
            lambda: sessions.fire("ps_x", "cancel"),
        ):
            with pytest.raises(LookupError) as missing:
                call()
            assert type(missing.value) is SessionNotFound
            assert vars(missing.value) == {"session_id": "ps_x"}

    def test_stale_expected_version(self, store: SessionStore) -> None:
        """A stale expected_version raises ConcurrentUpdate; no hook runs, nothing is written."""
        calls = Calls()
        sessions = service(store, calls.hooks)
        session_id = initiated(sessions)
        calls.seen.clear()
        with pytest.raises(ConcurrentUpdate) as refused:
            sessions.fire(session_id, "authorize", expected_version=0)
        assert vars(refused.value) == {"session_id": session_id, "expected": 0, "actual": 1}
        assert calls.seen == []
        assert sessions.version(session_id) == 1
        record = sessions.fire(session_id, "authorize", expected_version=1)
        assert (record.seq, record.dest) == (2, S.AUTHORIZED)

    def test_lost_race_fires_no_after_hook(self, store_factory: StoreFactory) -> None:
        """A move that loses the race at commit is rolled back and its after-hooks never run."""
        calls = Calls()
        sessions = service(store_factory(), calls.hooks)
        rival = service(store_factory())
        session_id = initiated(sessions)

        @calls.hooks.before("authorize")
        def meanwhile(event: TransitionEvent) -> None:
            rival.fire(event.session_id, "cancel", actor="webhook")

        calls.seen.clear()
        with pytest.raises(ConcurrentUpdate):
            sessions.fire(session_id, "authorize")
        assert calls.seen == [("before", "authorize")]
        trail = sessions.history(session_id)
        assert [(r.trigger, r.actor) for r in trail[2:]] == [("cancel", "webhook")]
        assert sessions.get(session_id).status is S.CANCELED

    def test_after_hooks_see_the_committed_move(self, store: SessionStore) -> None:
        """After-hooks run once the move is committed: a read from the hook sees it."""
        hooks = Hooks()
        sessions = service(store, hooks)
        seen: list[tuple[S, int]] = []

        @hooks.after("authorize")
        def look(event: TransitionEvent) -> None:
            seen.append((sessions.get(event.session_id).status, sessions.version(event.session_id)))

        session_id = initiated(sessions)
        sessions.fire(session_id, "authorize")
        assert seen == [(S.AUTHORIZED, 2)]

    def test_failing_after_hook_keeps_the_move(self, store: SessionStore) -> None:
        """An after-hook that raises gives HookError, and the committed move stands."""
        hooks = Hooks()
        sessions = service(store, hooks)
        boom = RuntimeError("mailer down")

        @hooks.after("fail")
        def mail(event: TransitionEvent) -> None:
            raise boom

        session_id = initiated(sessions)
        with pytest.raises(HookError) as failed:
            sessions.fire(session_id, "fail")
        assert failed.value.errors == (boom,)
        assert failed.value.record == sessions.history(session_id)[-1]
        assert failed.value.session == sessions.get(session_id)

    def test_before_hook_veto_writes_nothing(self, store: SessionStore) -> None:
        """A before-hook that raises vetoes the move: nothing is written."""
        hooks = Hooks()
        sessions = service(store, hooks)
        veto = PermissionError("fraud check")

        @hooks.before("authorize")
        def fraud(event: TransitionEvent) -> None:
            raise veto

        session_id = initiated(sessions)
        with pytest.raises(PermissionError) as stopped:
            sessions.fire(session_id, "authorize")
        assert stopped.value is veto
        assert sessions.version(session_id) == 1

    def test_illegal_and_guarded_moves_write_nothing(self, store: SessionStore) -> None:
        """The table and its guards hold through the service; refusals write nothing."""
        sessions = service(store)
        session = sessions.create(cart_id="cart_1", provider_id="stripe", amount=1000)
        with pytest.raises(GuardRejected) as guarded:
            sessions.fire(session.id, "authorize")
        assert (guarded.value.trigger, guarded.value.guard) == ("authorize", "is_initiated")
        sessions.fire(session.id, "cancel")
        with pytest.raises(IllegalTransition) as illegal:
            sessions.fire(session.id, "retry")
        assert (illegal.value.trigger, illegal.value.status, illegal.value.allowed) == (
            "retry",
            "canceled",
            frozenset(),
        )
        assert sessions.version(session.id) == 1

    def test_records_since_follows_every_move(self, store: SessionStore) -> None:
        """A consumer reading from a cursor sees every record of every session once."""
        sessions = service(store)
        one, two = initiated(sessions, "cart_1"), initiated(sessions, "cart_2")
        sessions.fire(two, "authorize")
        sessions.fire(one, "fail")
        seen = [(e.record.session_id, e.record.seq) for e in sessions.records_since(0, 100)]
        assert sorted(seen) == sorted(
            (r.session_id, r.seq) for sid in (one, two) for r in sessions.history(sid)
        )
        assert len({e.cursor for e in sessions.records_since(0, 100)}) == 6


class TestServiceSelect:
    def test_select_deselects_the_others_in_one_commit(self, store: SessionStore) -> None:
        """select deselects the cart's selected session, each an audited move of its own."""
        calls = Calls()
        sessions = service(store, calls.hooks)
        one = initiated(sessions, "cart_1", "stripe")
        two = initiated(sessions, "cart_1", "paypal")
        sessions.select(one)
        calls.seen.clear()
        record = sessions.select(two, actor="storefront")
        assert (record.trigger, record.session_id) == ("select", two)
        deselect = sessions.history(one)[-1]
        assert (deselect.trigger, deselect.actor, deselect.reason) == (
            "deselect",
            "storefront",
            f"replaced by {two}",
        )
        assert [s.id for s in sessions.find(cart_id="cart_1") if s.is_selected] == [two]
        fifth = sessions.records_since(None, 5)[-1].cursor
        tail = [(e.record.session_id, e.record.trigger) for e in sessions.records_since(fifth, 10)]
        assert tail == [(one, "deselect"), (two, "select")]
        assert calls.seen == [
            ("before", "select"),
            ("before", "deselect"),
            ("after", "deselect"),
            ("after", "select"),
        ]

    def test_fire_select_is_select(self, store: SessionStore) -> None:
        """fire(id, "select") deselects the others too."""
        sessions = service(store)
        one = initiated(sessions, "cart_1", "stripe")
        two = initiated(sessions, "cart_1", "paypal")
        sessions.fire(one, "select")
        sessions.fire(two, "select")
        assert [s.is_selected for s in (sessions.get(one), sessions.get(two))] == [False, True]

    def test_an_authorized_choice_cannot_be_replaced(self, store: SessionStore) -> None:
        """When the selected session is authorized, selecting another is illegal."""
        sessions = service(store)
        one = initiated(sessions, "cart_1", "stripe")
        two = initiated(sessions, "cart_1", "paypal")
        sessions.select(one)
        sessions.fire(one, "authorize")
        with pytest.raises(IllegalTransition) as illegal:
            sessions.select(two)
        assert (illegal.value.trigger, illegal.value.status) == ("deselect", "authorized")
        assert sessions.version(two) == 1

    def test_a_racing_selection_is_a_concurrent_update(self, store_factory: StoreFactory) -> None:
        """Another session selected between read and commit makes select lose the race."""
        hooks = Hooks()
        sessions = service(store_factory(), hooks)
        rival = service(store_factory())
        one = initiated(sessions, "cart_1", "stripe")
        two = initiated(sessions, "cart_1", "paypal")

        @hooks.before("select")
        def meanwhile(event: TransitionEvent) -> None:
            rival.select(one)

        with pytest.raises(ConcurrentUpdate) as lost:
            sessions.select(two)
        assert type(lost.value) is SelectionConflict
        assert vars(lost.value) == {
            "session_id": two,
            "cart_id": "cart_1",
            "expected": None,
            "actual": None,
        }
        assert [s.id for s in sessions.find(cart_id="cart_1") if s.is_selected] == [one]
        assert sessions.version(two) == 1


class TestServiceIdempotency:
    def test_repeat_returns_the_stored_record(self, store: SessionStore) -> None:
        """The same key, trigger and arguments return the stored record; no hook runs again."""
        calls = Calls()
        sessions = service(store, calls.hooks)
        session_id = initiated(sessions)
        first = sessions.fire(session_id, "update", idempotency_key="k1", amount=1500)
        calls.seen.clear()
        again = sessions.fire(session_id, "update", idempotency_key="k1", amount=1500)
        assert again == first
        assert calls.seen == []
        assert sessions.version(session_id) == 2

    def test_repeat_after_a_restart(self, store_factory: StoreFactory) -> None:
        """Keys are persisted: a request repeated through a new store gets the record back."""
        sessions = service(store_factory())
        session_id = initiated(sessions)
        first = sessions.fire(session_id, "authorize", idempotency_key="k1", expected_version=1)
        later = service(store_factory())
        assert (
            later.fire(session_id, "authorize", idempotency_key="k1", expected_version=1) == first
        )

    def test_other_trigger_or_arguments_conflict(self, store: SessionStore) -> None:
        """The same key with another trigger or other arguments raises IdempotencyConflict."""
        sessions = service(store)
        session_id = initiated(sessions)
        sessions.fire(session_id, "update", idempotency_key="k1", amount=1500)
        with pytest.raises(IdempotencyConflict) as other_trigger:
            sessions.fire(session_id, "fail", idempotency_key="k1")
        assert vars(other_trigger.value) == {"key": "k1", "trigger": "update", "attempted": "fail"}
        with pytest.raises(IdempotencyConflict) as other_args:
            sessions.fire(session_id, "update", idempotency_key="k1", amount=1600)
        assert vars(other_args.value) == {"key": "k1", "trigger": "update", "attempted": "update"}
        assert sessions.version(session_id) == 2

    def test_a_failed_move_binds_no_key(self, store: SessionStore) -> None:
        """Only a successful move binds its key: after a refusal the key is still free."""
        sessions = service(store)
        session_id = initiated(sessions)
        with pytest.raises(IllegalTransition):
            sessions.fire(session_id, "retry", idempotency_key="k1")
        record = sessions.fire(session_id, "fail", idempotency_key="k1")
        assert (record.trigger, record.idempotency_key) == ("fail", "k1")

    def test_key_bound_by_a_racing_process(self, store_factory: StoreFactory) -> None:
        """When another process binds the key first, the caller gets that stored record."""
        hooks = Hooks()
        sessions = service(store_factory(), hooks)
        rival = service(store_factory())
        session_id = initiated(sessions)
        rivals: list[Any] = []

        @hooks.before("update")
        def meanwhile(event: TransitionEvent) -> None:
            if not rivals:
                rivals.append(rival.fire(session_id, "update", idempotency_key="k", amount=7))

        assert sessions.fire(session_id, "update", idempotency_key="k", amount=7) == rivals[0]
        assert [r.trigger for r in sessions.history(session_id)] == ["create", "initiate", "update"]

    def test_key_bound_by_a_racing_process_to_another_move(
        self, store_factory: StoreFactory
    ) -> None:
        """A key a racing process bound to another move raises IdempotencyConflict."""
        hooks = Hooks()
        sessions = service(store_factory(), hooks)
        rival = service(store_factory())
        session_id = initiated(sessions)

        @hooks.before("authorize")
        def meanwhile(event: TransitionEvent) -> None:
            rival.fire(session_id, "fail", idempotency_key="k")

        with pytest.raises(IdempotencyConflict) as conflict:
            sessions.fire(session_id, "authorize", idempotency_key="k")
        assert vars(conflict.value) == {"key": "k", "trigger": "fail", "attempted": "authorize"}


class TestServiceRetry:
    def test_retry_reapplies_after_a_lost_race(self, store_factory: StoreFactory) -> None:
        """fire_with_retry reloads after a lost race and applies the move to the new state."""
        hooks = Hooks()
        sessions = service(store_factory(), hooks)
        rival = service(store_factory())
        session_id = initiated(sessions)
        raced: list[bool] = []

        @hooks.before("update")
        def meanwhile(event: TransitionEvent) -> None:
            if not raced:
                raced.append(True)
                rival.fire(session_id, "require_more")

        record = sessions.fire_with_retry(session_id, "update", amount=5)
        assert (record.seq, record.source, record.dest) == (3, S.REQUIRES_MORE, S.REQUIRES_MORE)

    def test_retry_stops_when_the_move_became_illegal(self, store_factory: StoreFactory) -> None:
        """When the winner made the move illegal, the retry raises instead of forcing it."""
        hooks = Hooks()
        sessions = service(store_factory(), hooks)
        rival = service(store_factory())
        session_id = initiated(sessions)

        @hooks.before("authorize")
        def meanwhile(event: TransitionEvent) -> None:
            if sessions.get(session_id).status is S.PENDING:
                rival.fire(session_id, "cancel")

        with pytest.raises(IllegalTransition):
            sessions.fire_with_retry(session_id, "authorize")
        assert sessions.get(session_id).status is S.CANCELED

    def test_retry_gives_up(self, store_factory: StoreFactory) -> None:
        """After ``attempts`` lost races the last ConcurrentUpdate reaches the caller."""
        hooks = Hooks()
        sessions = service(store_factory(), hooks)
        rival = service(store_factory())
        session_id = initiated(sessions)

        @hooks.before("update")
        def meanwhile(event: TransitionEvent) -> None:
            rival.fire(session_id, "require_more")

        with pytest.raises(ConcurrentUpdate):
            sessions.fire_with_retry(session_id, "update", attempts=3, amount=5)
        assert sessions.version(session_id) == 4
