"""Cart completion: authorized exactly once, through declines, 3-D Secure, timeouts and crashes."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import attrs
import pytest

from paysession import (
    Hooks,
    IllegalTransition,
    InvalidSessionData,
    PaymentSession,
    PaymentSessions,
    PaymentSessionStatus,
    TransitionEvent,
)
from paysession.checkout import (
    Completion,
    CompletionOutcome,
    CompletionTimeout,
    NoSelectedSession,
    cancel_payment,
    complete_cart,
    provider_key,
)
from paysession.errors import CartBusy
from paysession.providers import (
    ProviderReply,
    SimulatedProvider,
    Webhook,
    WebhookChannel,
)
from paysession.store import EventOutcome, MemoryStore, SessionStore
from paysession.store.base import AnomalyKind

from .conftest import StoreFactory, open_store
from .helpers import StepClock, initiated
from .test_reconcile import Meddler

S = PaymentSessionStatus
O = CompletionOutcome  # noqa: E741


class Crash(Exception):
    """Stands for the process dying: raised after the provider answered, before the commit."""


def cart_playing(
    sessions: PaymentSessions, scenario: str, cart_id: str = "cart_1"
) -> tuple[PaymentSession, SimulatedProvider]:
    """An initiated, selected session of ``cart_id``; a simulator that plays ``scenario`` for it."""
    session = sessions.get(initiated(sessions, cart_id, amount=4999, actor="storefront"))
    sessions.select(session.id, actor="storefront")
    seed = next(n for n in range(1000) if SimulatedProvider(n).scenario(session.id) == scenario)
    # The provider keeps time on the same timeline as the service (both from T0).
    return sessions.get(session.id), SimulatedProvider(seed=seed, clock=StepClock())


def triggers(sessions: PaymentSessions, session_id: str) -> list[str]:
    return [record.trigger for record in sessions.history(session_id)]


class TestCompletion:
    def test_authorized_at_once(self, store: SessionStore) -> None:
        """One provider call with the session's key; a second completion returns at once."""
        sessions = PaymentSessions(store, clock=StepClock())
        session, provider = cart_playing(sessions, "authorized")
        done = complete_cart(sessions, provider, "cart_1")
        key = session.idempotency_key
        assert key is not None
        assert (done.outcome, done.provider_status, done.idempotency_key) == (
            O.AUTHORIZED,
            "requires_capture",
            key,
        )
        assert done.session.status is S.AUTHORIZED and done.session.is_initiated
        assert [r.trigger for r in done.records] == ["update", "authorize"]
        assert done.records[-1].idempotency_key == f"complete:{key}"
        (answer,) = sessions.provider_events(session_id=session.id)
        assert (answer.event_id, answer.provider_status, answer.version) == (
            f"complete:{key}",
            "requires_capture",
            done.records[-1].seq,
        )
        assert answer.observed_at == provider.outbox[-1].observed_at
        calls = list(provider.calls)
        again = complete_cart(sessions, provider, "cart_1")
        assert again == Completion(O.AUTHORIZED, done.session)
        assert provider.calls == calls
        assert (provider.authorizations, provider.requests) == ({key: 1}, {key: 1})
        assert sessions.verify(session.id).ok

    def test_requires_more_then_authorized(self) -> None:
        """The customer must act; after 3-D Secure the next completion authorizes."""
        sessions = PaymentSessions(MemoryStore(), clock=StepClock())
        session, provider = cart_playing(sessions, "requires_more")
        key = session.idempotency_key
        first = complete_cart(sessions, provider, "cart_1")
        assert (first.outcome, first.session.status) == (O.REQUIRES_MORE, S.REQUIRES_MORE)
        assert first.session.data["next_action"] == "3ds"
        waiting = complete_cart(sessions, provider, "cart_1")
        assert (waiting.outcome, waiting.idempotency_key) == (O.REQUIRES_MORE, f"{key}:1")
        provider.customer_acts(session.id)
        done = complete_cart(sessions, provider, "cart_1")
        assert (done.outcome, done.idempotency_key) == (O.AUTHORIZED, f"{key}:2")
        assert provider.authorizations == {key: 1}
        assert triggers(sessions, session.id)[-2:] == ["update", "authorize"]

    def test_decline_leaves_it_retryable(self, store: SessionStore) -> None:
        """A decline fails the session; completing again retries under a new key."""
        sessions = PaymentSessions(store, clock=StepClock())
        session, provider = cart_playing(sessions, "declined_then_retry")
        key = session.idempotency_key
        declined = complete_cart(sessions, provider, "cart_1")
        assert (declined.outcome, declined.session.status) == (O.DECLINED, S.ERROR)
        assert declined.session.data["last_error"] == "card_declined"
        done = complete_cart(sessions, provider, "cart_1")
        assert (done.outcome, done.idempotency_key) == (O.AUTHORIZED, f"{key}:1")
        assert provider.authorizations == {f"{key}:1": 1}
        assert triggers(sessions, session.id) == [
            "create",
            "initiate",
            "select",
            "update",
            "fail",
            "retry",
            "update",
            "authorize",
        ]
        assert sessions.verify(session.id).ok

    def test_webhooks_older_than_the_answer_are_stale(self, store: SessionStore) -> None:
        """A decline notice delivered after the retry's authorization is stale, not an anomaly."""
        sessions = PaymentSessions(store, clock=StepClock())
        session, provider = cart_playing(sessions, "declined_then_retry")
        complete_cart(sessions, provider, "cart_1")
        complete_cart(sessions, provider, "cart_1")
        outcomes = [
            sessions.reconcile(
                n.session_id, n.provider_status, event_id=n.event_id, observed_at=n.observed_at
            ).outcome
            for n in reversed(provider.outbox)
        ]
        assert outcomes == [EventOutcome.STALE, EventOutcome.STALE]
        assert sessions.anomalies() == []
        assert sessions.get(session.id).status is S.AUTHORIZED

    def test_timeout_raises_and_a_retry_resumes(self, store: SessionStore) -> None:
        """The answer is lost: CompletionTimeout; the retry asks again with the same key."""
        sessions = PaymentSessions(store, clock=StepClock())
        session, provider = cart_playing(sessions, "timeout")
        key = session.idempotency_key
        assert key is not None
        with pytest.raises(CompletionTimeout) as caught:
            complete_cart(sessions, provider, "cart_1")
        assert (caught.value.session_id, caught.value.idempotency_key) == (session.id, key)
        assert isinstance(caught.value, TimeoutError)
        assert sessions.get(session.id).status is S.PENDING
        done = complete_cart(sessions, provider, "cart_1")
        assert done.outcome is O.AUTHORIZED
        assert (provider.requests, provider.authorizations) == ({key: 2}, {key: 1})

    def test_crash_between_the_answer_and_the_commit(self, store: SessionStore) -> None:
        """After the crash, the retry authorizes once and the provider saw one authorization."""
        hooks = Hooks()
        crashes = [Crash("killed after the provider said yes")]

        @hooks.before("authorize")
        def die_once(event: TransitionEvent) -> None:
            if crashes:
                raise crashes.pop()

        sessions = PaymentSessions(store, hooks=hooks, clock=StepClock())
        session, provider = cart_playing(sessions, "authorized")
        key = session.idempotency_key
        assert key is not None
        with pytest.raises(Crash):
            complete_cart(sessions, provider, "cart_1")
        assert provider.authorizations == {key: 1}
        assert sessions.get(session.id).status is S.PENDING
        done = complete_cart(sessions, provider, "cart_1")
        assert done.outcome is O.AUTHORIZED
        assert (provider.requests, provider.authorizations) == ({key: 2}, {key: 1})
        assert triggers(sessions, session.id).count("authorize") == 1

    def test_a_racing_completion_is_refused(self, store: SessionStore) -> None:
        """A double click while the first completion is in flight: CartBusy, one authorize."""
        other = PaymentSessions(store, clock=StepClock())
        session, provider = cart_playing(other, "authorized")
        refused: list[CartBusy] = []

        def double_click() -> None:
            with pytest.raises(CartBusy) as caught:
                complete_cart(other, provider, "cart_1")
            refused.append(caught.value)

        meddler = Meddler(store, "record_event", double_click)
        sessions = PaymentSessions(cast(SessionStore, meddler), clock=StepClock())
        done = complete_cart(sessions, provider, "cart_1")
        assert done.outcome is O.AUTHORIZED
        assert [r.trigger for r in done.records] == ["update", "authorize"]
        assert [busy.cart_id for busy in refused] == ["cart_1"]
        assert triggers(other, session.id).count("authorize") == 1
        assert provider.authorizations == {session.idempotency_key: 1}
        # The answer's commit released the claim: the next click returns at once.
        assert store.claim_of("cart_1") is None
        assert complete_cart(other, provider, "cart_1").outcome is O.AUTHORIZED

    def test_a_racing_decline_is_not_retried(self) -> None:
        """A double click after a decline is refused while in flight, then gets a new attempt."""
        store = MemoryStore()
        other = PaymentSessions(store, clock=StepClock())
        session, provider = cart_playing(other, "declined_then_retry")

        def double_click() -> None:
            with pytest.raises(CartBusy):
                complete_cart(other, provider, "cart_1")

        meddler = Meddler(store, "record_event", double_click)
        sessions = PaymentSessions(cast(SessionStore, meddler), clock=StepClock())
        assert complete_cart(sessions, provider, "cart_1").outcome is O.DECLINED
        assert meddler.before is None  # the double click happened, and was refused
        assert triggers(other, session.id).count("fail") == 1
        assert provider.authorizations == {}

    def test_a_webhook_first(self, store: SessionStore) -> None:
        """The provider's webhook authorizes before completion commits: one authorize."""
        webhooks = PaymentSessions(store, clock=StepClock())
        session, provider = cart_playing(webhooks, "authorized")

        def deliver() -> None:
            for notice in provider.outbox:
                webhooks.reconcile(
                    notice.session_id, notice.provider_status, event_id=notice.event_id
                )

        meddler = Meddler(store, "record_event", deliver)
        sessions = PaymentSessions(cast(SessionStore, meddler), clock=StepClock())
        done = complete_cart(sessions, provider, "cart_1")
        assert (done.outcome, done.records, done.lost_races) == (O.AUTHORIZED, (), 1)
        history = webhooks.history(session.id)
        assert [(r.trigger, r.actor) for r in history if r.trigger == "authorize"] == [
            ("authorize", "provider:stripe")
        ]
        assert provider.authorizations == {session.idempotency_key: 1}

    def test_canceled_meanwhile_is_an_anomaly_and_voided(self, store: SessionStore) -> None:
        """Authorized at the provider while the storefront canceled: recorded, hold voided."""
        storefront = PaymentSessions(store, clock=StepClock())
        session, provider = cart_playing(storefront, "authorized")
        meddler = Meddler(store, "record_event", lambda: storefront.fire(session.id, "cancel"))
        sessions = PaymentSessions(cast(SessionStore, meddler), clock=StepClock())
        done = complete_cart(sessions, provider, "cart_1")
        assert (done.outcome, done.session.status) == (O.VOIDED, S.CANCELED)
        (anomaly,) = storefront.anomalies(session.id)
        assert anomaly.event_id == f"complete:{session.idempotency_key}"
        assert (anomaly.kind, anomaly.session_status) == (
            AnomalyKind.NO_LEGAL_PATH,
            S.CANCELED,
        )
        assert provider.holds() == [] and provider.voided() == [session.id]
        assert store.claim_of("cart_1") is None

    def test_cancel_payment(self, store: SessionStore) -> None:
        """Canceled at the provider, then here; older webhooks are stale; twice is harmless."""
        sessions = PaymentSessions(store, clock=StepClock())
        session, provider = cart_playing(sessions, "authorized")
        complete_cart(sessions, provider, "cart_1")
        records = cancel_payment(sessions, provider, session.id, actor="shop")
        assert [(r.trigger, r.actor, r.reason) for r in records] == [("cancel", "shop", "canceled")]
        assert cancel_payment(sessions, provider, session.id) == []
        authorized, canceled = provider.outbox
        for notice in (canceled, authorized):
            sessions.reconcile(
                session.id,
                notice.provider_status,
                event_id=notice.event_id,
                observed_at=notice.observed_at,
            )
        assert sessions.anomalies() == []
        assert sessions.get(session.id).status is S.CANCELED
        # Both were known by then: the cancel's answer carried the same instant as its notice.
        assert [e.event_id for e in sessions.provider_events(outcome="stale")] == [
            canceled.event_id,
            authorized.event_id,
        ]

    def test_cancel_payment_after_the_webhook_won(self, store: SessionStore) -> None:
        """The provider's cancel webhook reconciled while we asked it: canceled, [] back."""
        sessions = PaymentSessions(store, clock=StepClock())
        session, provider = cart_playing(sessions, "authorized")
        complete_cart(sessions, provider, "cart_1")
        loads = 0

        def webhook_lands_on_the_second_load() -> None:
            # cancel_payment reads the session, asks the provider, then commits (which
            # reads it again): the webhook is reconciled just before that second read.
            nonlocal loads
            loads += 1
            if loads == 2:
                sessions.reconcile(session.id, "canceled", event_id="evt_cancel")

        class Racing(Meddler):
            def __getattr__(self, name: str) -> Any:
                attribute = getattr(self.inner, name)
                if name != "load":
                    return attribute

                def load(*args: Any, **kwargs: Any) -> Any:
                    webhook_lands_on_the_second_load()
                    return attribute(*args, **kwargs)

                return load

        racing = PaymentSessions(
            cast(SessionStore, Racing(store, "load", lambda: None)), clock=StepClock()
        )
        assert cancel_payment(racing, provider, session.id) == []
        assert sessions.get(session.id).status is S.CANCELED
        assert triggers(sessions, session.id)[-1] == "cancel"
        assert sessions.verify(session.id).ok

    def test_a_canceled_session_is_not_sent_to_the_provider(self) -> None:
        """Completing a canceled session is IllegalTransition; the provider is not called."""
        sessions = PaymentSessions(MemoryStore(), clock=StepClock())
        session, provider = cart_playing(sessions, "authorized")
        sessions.fire(session.id, "cancel")
        with pytest.raises(IllegalTransition) as caught:
            complete_cart(sessions, provider, "cart_1")
        assert (caught.value.trigger, caught.value.status) == ("authorize", "canceled")
        assert provider.calls == []

    def test_initiates_a_session_first(self) -> None:
        """A session the provider has not seen yet is initiated with the provider's data."""
        sessions = PaymentSessions(MemoryStore(), clock=StepClock())
        session = sessions.create(cart_id="cart_1", provider_id="stripe", amount=700)
        sessions.select(session.id)
        provider = SimulatedProvider(
            next(n for n in range(999) if SimulatedProvider(n).scenario(session.id) == "authorized")
        )
        assert complete_cart(sessions, provider, "cart_1").outcome is O.AUTHORIZED
        assert triggers(sessions, session.id) == ["create", "select", "initiate", "authorize"]
        assert provider.calls == [("initiate", session.id), ("authorize", session.id)]

    def test_wrong_inputs(self) -> None:
        """No selected session, no provider for it, no attempts: each a typed error."""
        sessions = PaymentSessions(MemoryStore(), clock=StepClock())
        with pytest.raises(NoSelectedSession) as missing:
            complete_cart(sessions, SimulatedProvider(), "cart_9")
        assert missing.value.cart_id == "cart_9" and isinstance(missing.value, LookupError)
        session = sessions.create(cart_id="cart_2", provider_id="paypal", amount=10)
        sessions.select(session.id)
        with pytest.raises(InvalidSessionData) as refused:
            complete_cart(sessions, SimulatedProvider(), "cart_2")
        assert refused.value.fields == ("provider",)
        with pytest.raises(InvalidSessionData) as refused:
            complete_cart(sessions, {"paypal": SimulatedProvider()}, "cart_2", attempts=0)
        assert refused.value.fields == ("attempts",)

    def test_keys(self) -> None:
        """Attempt 0 uses the session's key, later ones number it; no key means the id."""
        session = PaymentSession.new(cart_id="c", provider_id="stripe", amount=1)
        key = session.idempotency_key
        assert (provider_key(session, 0), provider_key(session, 2)) == (key, f"{key}:2")
        keyless = attrs.evolve(session, idempotency_key=None)
        assert provider_key(keyless, 1) == f"{session.id}:1"


class LedgerProvider:
    """A provider whose memory (answers by key, authorizations) lives in a JSON file.

    Stands for a real processor that outlives the process calling it.
    """

    id = "stripe"

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"answers": {}, "authorizations": {}, "requests": {}}
        loaded: dict[str, Any] = json.loads(self.path.read_text())
        return loaded

    def initiate(self, session: PaymentSession) -> ProviderReply:
        return ProviderReply("requires_payment_method", {"id": "pi_ledger"})

    def update(self, session: PaymentSession) -> ProviderReply:
        return ProviderReply("requires_payment_method", {"id": "pi_ledger"})

    def authorize(self, session: PaymentSession, *, idempotency_key: str) -> ProviderReply:
        ledger = self._load()
        ledger["requests"][idempotency_key] = ledger["requests"].get(idempotency_key, 0) + 1
        if idempotency_key not in ledger["answers"]:
            ledger["answers"][idempotency_key] = "requires_capture"
            ledger["authorizations"][idempotency_key] = 1
        self.path.write_text(json.dumps(ledger))
        return ProviderReply(ledger["answers"][idempotency_key], {"id": "pi_ledger"})

    def cancel(self, session: PaymentSession, *, idempotency_key: str) -> ProviderReply:
        return ProviderReply("canceled")

    def status(self, session: PaymentSession) -> ProviderReply:
        return ProviderReply("requires_capture")


LEASE = timedelta(milliseconds=500)


def complete_then_die(kind: str, place: str, ledger: str) -> None:
    """A checkout process killed (os._exit) after the provider said yes, before the commit.

    It dies holding its claim on the cart, for LEASE.
    """
    hooks = Hooks()

    @hooks.before("authorize")
    def die(event: TransitionEvent) -> None:
        os._exit(17)

    sessions = PaymentSessions(open_store(kind, place), hooks=hooks)
    complete_cart(sessions, LedgerProvider(Path(ledger)), "cart_1", lease=LEASE)


@pytest.mark.slow
class TestKilledProcess:
    store_kinds = ("sqlite", "postgres")

    def test_killed_after_the_answer(self, store_factory: StoreFactory, tmp_path: Path) -> None:
        """A process dies after the provider's yes; another one completes: one authorization."""
        sessions = PaymentSessions(store_factory())
        session = sessions.create(cart_id="cart_1", provider_id="stripe", amount=1200)
        sessions.select(session.id)
        ledger = tmp_path / "provider.json"
        child = multiprocessing.get_context("spawn").Process(
            target=complete_then_die, args=(store_factory.kind, store_factory.place, str(ledger))
        )
        child.start()
        child.join(60)
        assert child.exitcode == 17
        assert sessions.get(session.id).status is S.PENDING
        left = sessions.claim_of("cart_1")
        assert left is not None and left.session_id == session.id
        # Until its lease has passed, the dead process's claim holds the cart.
        if left.live(datetime.now(timezone.utc)):
            with pytest.raises(CartBusy):
                complete_cart(sessions, LedgerProvider(ledger), "cart_1")
        time.sleep(max((left.expires_at - datetime.now(timezone.utc)).total_seconds(), 0))
        done = complete_cart(sessions, LedgerProvider(ledger), "cart_1")
        assert (done.outcome, done.taken_over) == (O.AUTHORIZED, True)
        assert sessions.claim_of("cart_1") is None
        book = json.loads(ledger.read_text())
        key = session.idempotency_key
        assert (book["authorizations"], book["requests"]) == ({key: 1}, {key: 2})
        assert triggers(sessions, session.id).count("authorize") == 1


def simulated(scenario: str) -> tuple[PaymentSession, SimulatedProvider]:
    session = PaymentSession.new(cart_id="c", provider_id="stripe", amount=5)
    seed = next(n for n in range(1000) if SimulatedProvider(n).scenario(session.id) == scenario)
    return session, SimulatedProvider(seed, clock=StepClock())


class TestSimulatedProvider:
    def test_requires_more_until_the_customer_acts(self) -> None:
        """requires_action for every key until 3-D Secure; then authorized, counted once."""
        session, provider = simulated("requires_more")
        assert provider.authorize(session, idempotency_key="k0").status == "requires_action"
        assert provider.authorize(session, idempotency_key="k1").status == "requires_action"
        provider.customer_acts(session.id)
        assert provider.authorize(session, idempotency_key="k2").status == "requires_capture"
        assert provider.authorize(session, idempotency_key="k1").status == "requires_action"
        assert provider.authorizations == {"k0": 1}
        assert [n.provider_status for n in provider.outbox] == [
            "requires_action",
            "requires_capture",
        ]
        assert provider.outbox[0].observed_at <= provider.outbox[1].observed_at
        assert {n.observed_at.microsecond for n in provider.outbox} == {0}  # whole seconds

    def test_declined_then_a_new_key_succeeds(self) -> None:
        """The first attempt is declined; the same key stays declined, a new one succeeds."""
        session, provider = simulated("declined_then_retry")
        assert provider.authorize(session, idempotency_key="k0").status == (
            "requires_payment_method"
        )
        assert provider.authorize(session, idempotency_key="k0").data["last_error"] == (
            "card_declined"
        )
        assert provider.authorize(session, idempotency_key="k1").status == "requires_capture"
        assert provider.authorize(session, idempotency_key="k2").status == "requires_capture"
        assert provider.authorizations == {"k1": 1}
        assert provider.requests == {"k0": 2, "k1": 1, "k2": 1}

    def test_cancel(self) -> None:
        """A cancel is answered once per key and sends one notice."""
        session, provider = simulated("authorized")
        assert provider.cancel(session, idempotency_key="c").status == "canceled"
        assert provider.cancel(session, idempotency_key="c").status == "canceled"
        assert provider.status(session).status == "canceled"
        assert [n.provider_status for n in provider.outbox] == ["canceled"]
        assert provider.authorize(session, idempotency_key="k").status == "canceled"
        assert provider.authorizations == {}


class TestWebhookChannel:
    def test_late_twice_and_out_of_order(self) -> None:
        """Every notice arrives; some twice, some after later ones; the same for a seed."""
        notices = [
            Webhook(f"evt_{n}", f"ps_{n // 3}", "requires_capture", datetime.now(timezone.utc))
            for n in range(300)
        ]

        def run(seed: int) -> list[Webhook]:
            channel = WebhookChannel(seed)
            delivered = [d for n in notices for d in channel.push(n)]
            return delivered + channel.flush()

        delivered = run(5)
        assert delivered == run(5) != run(6)
        assert {d.event_id for d in delivered} == {n.event_id for n in notices}
        assert 30 < len(delivered) - len(notices) < 100
        order = [int(d.event_id[4:]) for d in delivered]
        assert sum(1 for a, b in itertools.pairwise(order) if b < a) > 30


class TestFireMany:
    def test_moves_in_one_transaction_the_key_on_the_last(self, store: SessionStore) -> None:
        """update then authorize: one commit, the key binds authorize; a repeat returns it."""
        sessions = PaymentSessions(store, clock=StepClock())
        session, _ = cart_playing(sessions, "authorized")
        moves: list[tuple[str, dict[str, object]]] = [
            ("update", {"amount": 5000}),
            ("authorize", {}),
        ]
        records = sessions.fire_many(session.id, moves, actor="shop", idempotency_key="k")
        assert [(r.trigger, r.idempotency_key) for r in records] == [
            ("update", None),
            ("authorize", "k"),
        ]
        assert sessions.fire_many(session.id, moves, idempotency_key="k") == records[-1:]
        assert sessions.history(session.id)[-2:] == tuple(records)
        assert sessions.get(session.id).amount == 5000

    def test_refusals(self) -> None:
        """No moves, or a select among them, is refused; a refused move commits nothing."""
        sessions = PaymentSessions(MemoryStore(), clock=StepClock())
        session, _ = cart_playing(sessions, "authorized")
        version = sessions.version(session.id)
        for moves, field in (([], "moves"), ([("select", {})], "moves")):
            with pytest.raises(InvalidSessionData) as refused:
                sessions.fire_many(session.id, moves)
            assert refused.value.fields == (field,)
        with pytest.raises(IllegalTransition):
            sessions.fire_many(session.id, [("fail", {}), ("authorize", {})])
        assert sessions.version(session.id) == version
