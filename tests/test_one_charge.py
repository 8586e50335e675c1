"""One order, one charge: a cart is authorized at most once, and no hold is left behind.

The two-tab race of a customer who switches method while a completion is in flight,
made deterministic by the simulator's ``on_authorize`` hook (it runs while the first
tab's request is at the provider), on every store; the rule in the database; claims,
their expiry and takeover; voids; abandoned sessions; and bad input.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import cast

import pytest

from paysession import PaymentSessions, PaymentSessionStatus, Reconciliation
from paysession.checkout import (
    CompletionOutcome,
    cancel_payment,
    complete_cart,
)
from paysession.errors import (
    AuthorizationConflict,
    CartBusy,
    CartNotFound,
    ClaimNotHeld,
    IllegalTransition,
    InvalidSessionData,
    NoSelectedSession,
    SessionNotFound,
)
from paysession.expiry import expire_sessions
from paysession.providers import (
    STRIPE,
    DoubleAuthorization,
    ReconciliationAnomaly,
    SimulatedProvider,
    Webhook,
    register_status_map,
)
from paysession.store import SessionStore
from paysession.store.base import AnomalyKind, ClaimAction

from .conftest import StoreFactory
from .helpers import StepClock
from .test_reconcile import Meddler

S = PaymentSessionStatus
O = CompletionOutcome  # noqa: E741
LEASE = timedelta(seconds=30)


def seed_for(*session_ids: str, scenario: str = "authorized") -> int:
    """A simulator seed that plays ``scenario`` for every one of the sessions."""
    return next(
        n
        for n in range(10_000)
        if all(SimulatedProvider(n).scenario(sid) == scenario for sid in session_ids)
    )


class Cart:
    """cart_9 with two sessions (stripe, stripe_eu) and two tabs on one database."""

    def __init__(self, factory: StoreFactory, tmp_path: Path) -> None:
        register_status_map("stripe_eu", STRIPE, like="stripe")
        self.clock = StepClock()
        self.tab1 = PaymentSessions(factory(), clock=self.clock)
        self.tab2 = PaymentSessions(factory(), clock=self.clock)
        self.a = self.tab1.create(cart_id="cart_9", provider_id="stripe", amount=5000)
        self.b = self.tab1.create(cart_id="cart_9", provider_id="stripe_eu", amount=5000)
        seed = seed_for(self.a.id, self.b.id)
        ledger = tmp_path / "provider.db"
        self.stripe = SimulatedProvider(seed, ledger=ledger, clock=self.clock)
        self.stripe_eu = SimulatedProvider(
            seed, provider_id="stripe_eu", ledger=ledger, clock=self.clock
        )
        self.providers = {"stripe": self.stripe, "stripe_eu": self.stripe_eu}

    def while_a_is_in_flight(self, run: Callable[[], None]) -> list[str]:
        """Run ``run`` once, at the moment the provider receives a's first request."""
        ran: list[str] = []

        def hook(session: object, key: str) -> None:
            self.stripe.on_authorize = None
            ran.append(key)
            run()

        self.stripe.on_authorize = hook
        return ran

    def deliver(self, notice: Webhook, tab: PaymentSessions | None = None) -> Reconciliation:
        """Deliver the webhook ``notice`` as observed, through tab 2 unless ``tab`` is given."""
        return (tab or self.tab2).reconcile(
            notice.session_id,
            notice.provider_status,
            event_id=notice.event_id,
            observed_at=notice.observed_at,
            provider=self.providers,
            amount=notice.amount,
            decline=notice.decline,
        )

    def meddled(self, meanwhile: Callable[[], None]) -> PaymentSessions:
        """Tab 1's store, whose next ``record_event`` first runs ``meanwhile`` (another tab)."""
        store = Meddler(self.tab1.store, "record_event", meanwhile)
        return PaymentSessions(cast(SessionStore, store), clock=self.clock)

    def authorized(self) -> list[str]:
        return [s.id for s in self.tab1.find(cart_id="cart_9") if s.status is S.AUTHORIZED]

    def holds(self) -> list[str]:
        return [hold.session_id for hold in self.stripe.holds()]

    def verified(self) -> bool:
        return all(self.tab1.verify(s.id).ok for s in self.tab1.find(cart_id="cart_9"))


class TestTwoTabs:
    def test_a_switch_while_in_flight_is_refused(
        self, store_factory: StoreFactory, tmp_path: Path
    ) -> None:
        """The issue's reproduction: tab 2's select and completion get CartBusy; one charge."""
        cart = Cart(store_factory, tmp_path)
        refused: list[type[BaseException]] = []

        def tab2() -> None:
            with pytest.raises(CartBusy) as caught:
                cart.tab2.select(cart.b.id)
            assert caught.value.cart_id == "cart_9"
            refused.append(type(caught.value))
            with pytest.raises(CartBusy):
                complete_cart(cart.tab2, cart.stripe_eu, "cart_9")
            refused.append(CartBusy)
            with pytest.raises(CartBusy):
                cancel_payment(cart.tab2, cart.stripe, cart.a.id)
            refused.append(CartBusy)

        cart.tab1.select(cart.a.id)
        ran = cart.while_a_is_in_flight(tab2)
        done = complete_cart(cart.tab1, cart.stripe, "cart_9")
        assert ran and refused == [CartBusy, CartBusy, CartBusy]
        assert done.outcome is O.AUTHORIZED
        assert cart.authorized() == [cart.a.id] and cart.holds() == [cart.a.id]
        assert cart.tab1.anomalies() == []
        # Once authorized, the cart's choice can no longer change.
        with pytest.raises(IllegalTransition):
            cart.tab2.select(cart.b.id)
        assert cart.tab2.get(cart.b.id).is_selected is False
        assert cart.verified()

    def test_a_switch_through_a_webhook_is_voided(
        self, store_factory: StoreFactory, tmp_path: Path
    ) -> None:
        """b authorized at its provider while a's completion is in flight: b's hold is voided."""
        cart = Cart(store_factory, tmp_path)

        def b_authorized_elsewhere() -> None:
            # The customer paid with the other method in another tab, straight at the
            # provider; its webhook arrives while a's request is in flight.
            cart.tab2.fire(cart.b.id, "initiate", data={"id": "pi_b"})
            cart.stripe_eu.authorize(cart.tab2.get(cart.b.id), idempotency_key="tab2")
            notice = cart.stripe_eu.outbox[-1]
            with pytest.raises(DoubleAuthorization) as caught:
                cart.tab2.reconcile(
                    cart.b.id,
                    notice.provider_status,
                    event_id=notice.event_id,
                    observed_at=notice.observed_at,
                    provider=cart.providers,
                )
            assert caught.value.voided and cart.a.id in caught.value.conflict

        cart.tab1.select(cart.a.id)
        cart.while_a_is_in_flight(b_authorized_elsewhere)
        done = complete_cart(cart.tab1, cart.providers, "cart_9")
        assert done.outcome is O.AUTHORIZED
        assert cart.authorized() == [cart.a.id]
        assert cart.holds() == [cart.a.id]
        assert cart.stripe.voided() == [cart.b.id]
        voided = cart.tab1.get(cart.b.id)
        assert voided.status is S.CANCELED
        last = cart.tab1.history(cart.b.id)[-1]
        assert last.trigger == "cancel" and f"switched to session {cart.a.id}" in (
            last.reason or ""
        )
        (anomaly,) = cart.tab1.anomalies(kind="double_authorization")
        assert anomaly.session_id == cart.b.id and anomaly.kind is AnomalyKind.DOUBLE_AUTHORIZATION
        assert cart.verified()

    def test_the_first_answer_after_the_claim_expired(
        self, store_factory: StoreFactory, tmp_path: Path
    ) -> None:
        """Tab 1's answer comes after its lease: tab 2 takes over, voids a, authorizes b."""
        cart = Cart(store_factory, tmp_path)
        second: list[object] = []

        def lease_passes() -> None:
            cart.clock.now += LEASE + timedelta(seconds=1)
            cart.tab2.select(cart.b.id)  # the claim has lapsed: allowed
            second.append(complete_cart(cart.tab2, cart.providers, "cart_9", lease=LEASE))

        cart.tab1.select(cart.a.id)
        keys = cart.while_a_is_in_flight(lease_passes)
        first = complete_cart(cart.tab1, cart.stripe, "cart_9", lease=LEASE)
        (other,) = second
        outcomes = sorted([first.outcome.value, other.outcome.value])  # type: ignore[attr-defined]
        assert outcomes == ["authorized", "voided"]
        assert other.taken_over is True  # type: ignore[attr-defined]
        assert first.outcome is O.VOIDED
        # The takeover asked about a's attempt under the very same key (the ledger, shared
        # by both provider ids, also holds b's one request).
        assert cart.stripe.requests == {keys[0]: 2, cart.b.idempotency_key: 1}
        assert cart.authorized() == [cart.b.id]
        assert cart.holds() == [cart.b.id] and cart.stripe.voided() == [cart.a.id]
        (anomaly,) = cart.tab1.anomalies(cart.a.id)
        assert anomaly.kind is AnomalyKind.DOUBLE_AUTHORIZATION
        assert cart.tab1.get(cart.a.id).status is S.CANCELED
        assert cart.tab1.claim_of("cart_9") is None
        assert cart.verified()

    def test_the_answer_recorded_first_by_a_takeover(
        self, store_factory: StoreFactory, tmp_path: Path
    ) -> None:
        """Tab 1's lease lapses between its check and its commit: it reports voided."""
        cart = Cart(store_factory, tmp_path)
        second: list[object] = []

        def lease_passes() -> None:
            cart.clock.now += LEASE + timedelta(seconds=1)
            cart.tab2.select(cart.b.id)
            second.append(complete_cart(cart.tab2, cart.providers, "cart_9", lease=LEASE))

        # The takeover runs just before tab 1 looks for an answer under its key.
        slow = PaymentSessions(
            cast(SessionStore, Meddler(cart.tab1.store, "provider_event", lease_passes)),
            clock=cart.clock,
        )
        slow.select(cart.a.id)
        first = complete_cart(slow, cart.stripe, "cart_9", lease=LEASE)
        (other,) = second
        assert (first.outcome, other.outcome) == (O.VOIDED, O.AUTHORIZED)  # type: ignore[attr-defined]
        assert cart.authorized() == [cart.b.id] and cart.holds() == [cart.b.id]
        assert cart.verified()

    def test_a_void_then_a_replayed_answer(
        self, store_factory: StoreFactory, tmp_path: Path
    ) -> None:
        """Voided, then authorized by a replayed answer before the cancel commits: canceled."""
        cart = Cart(store_factory, tmp_path)
        cart.tab1.select(cart.b.id)
        cart.tab1.fire(cart.a.id, "initiate", data={"id": "pi_a"})
        key = cart.a.idempotency_key
        assert key is not None
        cart.stripe.authorize(cart.tab1.get(cart.a.id), idempotency_key=key)  # a's hold
        notice = cart.stripe.outbox[-1]

        def customer_switches_back() -> None:
            # After the void, before its cancel commits: the customer picks a again and
            # its completion replays the provider's first answer (authorized).
            cart.tab2.select(cart.a.id)
            assert complete_cart(cart.tab2, cart.providers, "cart_9").outcome is O.AUTHORIZED

        webhook = PaymentSessions(
            cast(SessionStore, Meddler(cart.tab1.store, "record_event", customer_switches_back)),
            clock=cart.clock,
        )
        with pytest.raises(DoubleAuthorization) as caught:
            webhook.reconcile(
                cart.a.id, notice.provider_status, event_id=notice.event_id, provider=cart.providers
            )
        assert caught.value.voided
        assert cart.tab1.get(cart.a.id).status is S.CANCELED
        assert cart.authorized() == [] and cart.holds() == []
        assert cart.verified()

    @pytest.mark.parametrize("collide", [False, True])
    def test_a_void_whose_report_was_redelivered_meanwhile(
        self, store_factory: StoreFactory, tmp_path: Path, collide: bool
    ) -> None:
        """Voided while a redelivery of the report was found stale: the anomaly is kept.

        The stress test's failure: after the void, the customer picks a again, its
        completion replays the provider's answer and a second delivery of the same
        webhook is stale (the answer recorded that very report). The report's event id
        is then taken by a stale event, yet the void must still be recorded: under
        ``<event id>:void``, or a fresh id when a webhook took that one too (``collide``).
        """
        cart = Cart(store_factory, tmp_path)
        cart.tab1.select(cart.b.id)
        cart.tab1.fire(cart.a.id, "initiate", data={"id": "pi_a"})
        key = cart.a.idempotency_key
        assert key is not None
        cart.stripe.authorize(cart.tab1.get(cart.a.id), idempotency_key=key)  # a's hold
        notice = cart.stripe.outbox[-1]
        if collide:
            taken = cart.tab1.reconcile(
                cart.a.id, "requires_payment_method", event_id=f"{notice.event_id}:void"
            )
            assert taken.outcome.value == "noop"
        redelivered: list[str] = []

        def customer_switches_back() -> None:
            cart.tab2.select(cart.a.id)
            assert complete_cart(cart.tab2, cart.providers, "cart_9").outcome is O.AUTHORIZED
            redelivered.append(cart.deliver(notice).outcome.value)

        with pytest.raises(DoubleAuthorization) as caught:
            cart.deliver(notice, cart.meddled(customer_switches_back))
        assert redelivered == ["stale"]
        assert caught.value.voided and cart.stripe.voided() == [cart.a.id]
        assert cart.tab1.get(cart.a.id).status is S.CANCELED
        (anomaly,) = cart.tab1.anomalies(cart.a.id)
        assert anomaly.kind is AnomalyKind.DOUBLE_AUTHORIZATION
        assert anomaly.provider_status == notice.provider_status
        assert anomaly.event_id.startswith(f"{notice.event_id}:void")
        assert (anomaly.event_id == f"{notice.event_id}:void") is not collide
        assert cart.authorized() == [] and cart.holds() == []
        assert cart.verified()

    def test_a_late_authorization_whose_report_was_redelivered_meanwhile(
        self, store_factory: StoreFactory, tmp_path: Path
    ) -> None:
        """Authorized after it was canceled: the void's anomaly is kept though the id is taken.

        While the hold is voided, a newer report is found a no-op and a redelivery of
        the same authorization is then stale under the very event id.
        """
        cart = Cart(store_factory, tmp_path)
        cart.tab1.select(cart.a.id)
        cart.tab1.fire(cart.a.id, "initiate", data={"id": "pi_a"})
        session = cart.tab1.get(cart.a.id)
        cart.tab1.fire(cart.a.id, "cancel", reason="customer left")
        cart.stripe.authorize(session, idempotency_key="late")  # held for nothing
        notice = cart.stripe.outbox[-1]
        redelivered: list[str] = []

        def newer_reports() -> None:
            noop = cart.tab2.reconcile(
                cart.a.id,
                "canceled",
                event_id="evt_newer",
                observed_at=notice.observed_at + timedelta(seconds=1),
            )
            redelivered.extend([noop.outcome.value, cart.deliver(notice).outcome.value])

        with pytest.raises(ReconciliationAnomaly) as caught:
            cart.deliver(notice, cart.meddled(newer_reports))
        assert redelivered == ["noop", "stale"]
        assert caught.value.voided and cart.stripe.voided() == [cart.a.id]
        (anomaly,) = cart.tab1.anomalies(cart.a.id)
        assert anomaly.kind is AnomalyKind.NO_LEGAL_PATH
        assert anomaly.event_id == f"{notice.event_id}:void"
        assert cart.holds() == [] and cart.verified()


class TestTheRuleInTheDatabase:
    def test_a_second_authorize_is_refused(self, store: SessionStore) -> None:
        """Firing authorize on another session of an authorized cart: refused, nothing written."""
        sessions = PaymentSessions(store, clock=StepClock())
        first = sessions.create(cart_id="cart_1", provider_id="stripe", amount=10)
        second = sessions.create(cart_id="cart_1", provider_id="paypal", amount=10)
        for session in (first, second):
            sessions.fire(session.id, "initiate", data={"id": "x"})
        sessions.fire(first.id, "authorize")
        before = sessions.history(second.id)
        with pytest.raises(AuthorizationConflict) as caught:
            sessions.fire(second.id, "authorize")
        assert (caught.value.session_id, caught.value.cart_id) == (second.id, "cart_1")
        assert sessions.history(second.id) == before
        assert sessions.get(second.id).status is S.PENDING
        # Once the first is canceled, the cart may be authorized again.
        sessions.fire(first.id, "cancel")
        sessions.fire(second.id, "authorize")
        assert sessions.get(second.id).status is S.AUTHORIZED

    @pytest.mark.parametrize("kind", ["sqlite", "postgres"])
    def test_the_index_refuses_raw_sql(
        self, kind: str, tmp_path: Path, request: pytest.FixtureRequest
    ) -> None:
        """The rule is the database's: an UPDATE that bypasses paysession is refused too."""
        if kind == "sqlite":
            from paysession.store import SqliteStore

            place = str(tmp_path / "raw.db")
            store: SessionStore = SqliteStore(place)
        else:
            from paysession.store.postgres import PostgresStore

            place = request.getfixturevalue("postgres_dsn")
            store = PostgresStore(place)
        sessions = PaymentSessions(store)
        first = sessions.create(cart_id="c", provider_id="stripe", amount=10)
        second = sessions.create(cart_id="c", provider_id="paypal", amount=10)
        sessions.fire(first.id, "initiate", data={})
        sessions.fire(first.id, "authorize")
        store.close()
        update = (
            "UPDATE paysession_sessions SET status = 'authorized', "
            "payment_authorized_at = updated_at WHERE id = {}"
        )
        if kind == "sqlite":
            with sqlite3.connect(place) as conn, pytest.raises(sqlite3.IntegrityError):
                conn.execute(update.format("?"), (second.id,))
        else:
            import psycopg

            with psycopg.connect(place) as conn, pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute(update.format("%s"), (second.id,))


class TestClaims:
    def test_select_and_deselect_wait_for_the_claim(self, store: SessionStore) -> None:
        """While claimed: no select, no deselect; after release or expiry: allowed again."""
        clock = StepClock()
        sessions = PaymentSessions(store, clock=clock)
        a = sessions.create(cart_id="cart_1", provider_id="stripe", amount=10)
        b = sessions.create(cart_id="cart_1", provider_id="paypal", amount=10)
        sessions.select(a.id)
        held = sessions.claim_cart("cart_1", lease=timedelta(seconds=5))
        assert held.claim is not None and held.claim.session_id == a.id
        assert held.session is not None and held.session.session.id == a.id
        version = sessions.version(a.id)
        for move in (lambda: sessions.select(b.id), lambda: sessions.fire(a.id, "deselect")):
            with pytest.raises(CartBusy) as caught:
                move()
            assert caught.value.expires_at == held.claim.expires_at
        with pytest.raises(CartBusy):
            sessions.fire_many(a.id, [("deselect", {})])
        with pytest.raises(CartBusy):
            sessions.claim_cart("cart_1")
        # Nor a new amount: the provider would hold one amount and the session say another.
        with pytest.raises(CartBusy):
            sessions.fire(a.id, "update", amount=20)
        with pytest.raises(CartBusy):
            sessions.fire_many(a.id, [("update", {"data": {"k": 1}}), ("update", {"amount": 1})])
        assert sessions.version(a.id) == version
        # Moves that change neither the cart's choice nor the amount are not held up.
        sessions.fire(a.id, "update", data={"note": "gift"})
        sessions.fire(a.id, "update", amount=10)  # the same amount
        sessions.release_cart(held.claim)
        sessions.fire(a.id, "update", amount=20)
        assert sessions.claim_of("cart_1") is None
        sessions.select(b.id)
        again = sessions.claim_cart("cart_1", lease=timedelta(seconds=5))
        clock.now += timedelta(seconds=6)
        sessions.select(a.id)  # the claim has lapsed
        taken = sessions.claim_cart("cart_1", lease=timedelta(seconds=5))
        assert taken.previous is not None and again.claim is not None
        assert taken.previous.token == again.claim.token
        assert taken.previous.session_id == b.id

    def test_bad_input_changes_nothing(self, store: SessionStore) -> None:
        """Unknown carts, bad leases and TTLs, a token not the holder's: typed errors."""
        sessions = PaymentSessions(store, clock=StepClock())
        a = sessions.create(cart_id="cart_1", provider_id="stripe", amount=10)
        with pytest.raises(CartNotFound) as unknown:
            complete_cart(sessions, SimulatedProvider(), "cart_404")
        assert isinstance(unknown.value, NoSelectedSession) and "cart_404" in str(unknown.value)
        with pytest.raises(NoSelectedSession):
            sessions.claim_cart("cart_1")
        for lease in (timedelta(0), timedelta(seconds=-1), timedelta(days=2), 30):
            with pytest.raises(InvalidSessionData) as refused:
                sessions.claim_cart("cart_1", lease=lease, session_id=a.id)  # type: ignore[arg-type]
            assert refused.value.fields == ("lease",)
        for cart_id in ("", "a\x00b", 7):
            with pytest.raises(InvalidSessionData) as refused:
                sessions.claim_cart(cart_id)  # type: ignore[arg-type]
            assert refused.value.fields == ("cart_id",)
        with pytest.raises(SessionNotFound):
            sessions.claim_cart("cart_2", session_id=a.id)
        for ttl in (timedelta(0), timedelta(seconds=-5)):
            with pytest.raises(InvalidSessionData) as refused:
                expire_sessions(sessions, SimulatedProvider(), older_than=ttl)
            assert refused.value.fields == ("older_than",)
        assert sessions.abandoned(timedelta.max) == []  # older than time itself: none
        held = sessions.claim_cart("cart_1", session_id=a.id, action="cancel")
        assert held.claim is not None and held.claim.action is ClaimAction.CANCEL
        forged = type(held.claim)(
            held.claim.cart_id, "not-the-token", a.id, held.claim.action, held.claim.expires_at
        )
        with pytest.raises(ClaimNotHeld):
            sessions.release_cart(forged)
        assert sessions.claim_of("cart_1") == held.claim  # still held
        sessions.release_cart(held.claim)
        with pytest.raises(ClaimNotHeld):
            sessions.release_cart(held.claim)
        assert sessions.get(a.id).status is S.PENDING
        assert len(sessions.history(a.id)) == 1


class TestExpire:
    def test_abandoned_sessions_are_canceled_once(
        self, store_factory: StoreFactory, tmp_path: Path
    ) -> None:
        """Stale sessions canceled (at the provider first when initiated); busy carts
        skipped; one whose provider holds the money is authorized, never canceled."""
        clock = StepClock()
        sessions = PaymentSessions(store_factory(), clock=clock)
        quiet = sessions.create(cart_id="cart_1", provider_id="stripe", amount=10)
        initiated = sessions.create(cart_id="cart_2", provider_id="stripe", amount=10)
        paid = sessions.create(cart_id="cart_6", provider_id="stripe", amount=10)
        provider = SimulatedProvider(
            seed_for(initiated.id, paid.id), ledger=tmp_path / "provider.db", clock=clock
        )
        sessions.fire(initiated.id, "initiate", data={"id": "pi"})
        provider.update(sessions.get(initiated.id))  # the provider knows it, holds nothing
        sessions.fire(paid.id, "initiate", data={"id": "pi_paid"})
        provider.authorize(sessions.get(paid.id), idempotency_key="lost")  # a hold
        busy = sessions.create(cart_id="cart_3", provider_id="stripe", amount=10)
        sessions.select(busy.id)
        done = sessions.create(cart_id="cart_4", provider_id="stripe", amount=10)
        sessions.fire(done.id, "cancel")
        clock.now += timedelta(hours=2)
        fresh = sessions.create(cart_id="cart_5", provider_id="stripe", amount=10)
        held = sessions.claim_cart("cart_3", lease=timedelta(minutes=5))
        expired = expire_sessions(sessions, provider, older_than=timedelta(hours=1))
        assert sorted(expired.canceled) == sorted([quiet.id, initiated.id])
        assert expired.busy == (busy.id,) and expired.moved == ()
        assert expired.authorized == (paid.id,)
        assert sessions.get(paid.id).status is S.AUTHORIZED
        assert sessions.get(fresh.id).status is S.PENDING
        assert sessions.get(busy.id).status is S.PENDING
        assert [hold.session_id for hold in provider.holds()] == [paid.id]
        assert sessions.history(initiated.id)[-1].reason == (
            "abandoned: no move for 1:00:00 (canceled)"
        )
        assert [c for c, _ in provider.calls if c == "cancel"] == ["cancel"]
        again = expire_sessions(sessions, provider, older_than=timedelta(hours=1))
        assert again.canceled == () and again.busy == (busy.id,)
        assert held.claim is not None
        sessions.release_cart(held.claim)
        last = expire_sessions(sessions, provider, older_than=timedelta(hours=1))
        assert last.canceled == (busy.id,)
        assert all(sessions.verify(s.id).ok for s in sessions.find())

    def test_several_expirers_at_once(self, store_factory: StoreFactory, tmp_path: Path) -> None:
        """Four expirers at once (their own store objects): each session canceled exactly once."""
        clock = StepClock()
        sessions = PaymentSessions(store_factory(), clock=clock)
        ledger = tmp_path / "provider.db"
        ids = []
        for n in range(24):
            session = sessions.create(cart_id=f"cart_{n}", provider_id="stripe", amount=10)
            if n % 2:
                sessions.fire(session.id, "initiate", data={"id": f"pi_{n}"})
            ids.append(session.id)
        clock.now += timedelta(hours=1)
        results = []

        def expirer() -> None:
            mine = PaymentSessions(store_factory(), clock=clock)
            provider = SimulatedProvider(ledger=ledger, clock=clock)
            results.append(expire_sessions(mine, provider, older_than=timedelta(minutes=1)))

        threads = [threading.Thread(target=expirer) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        canceled = [sid for result in results for sid in result.canceled]
        assert sorted(canceled) == sorted(ids)
        for sid in ids:
            assert [r.trigger for r in sessions.history(sid)].count("cancel") == 1
        assert SimulatedProvider(ledger=ledger).holds() == []


class Counting:
    """A store that counts the write transactions a caller asks of it."""

    WRITES = ("create", "commit", "claim", "release", "record_event", "count_duplicate")

    def __init__(self, inner: SessionStore) -> None:
        self.inner = inner
        self.writes: list[tuple[str, bool]] = []

    def __getattr__(self, name: str) -> object:
        attribute = getattr(self.inner, name)
        if name not in self.WRITES:
            return attribute

        def counted(*args: object, **kwargs: object) -> object:
            checks = kwargs.get("cart_check") is not None or kwargs.get("release") is not None
            self.writes.append((name, checks))
            return attribute(*args, **kwargs)

        return counted


class TestCost:
    def test_a_completion_pays_one_extra_commit(self, store: SessionStore) -> None:
        """Claim, then the answer's commit releasing it: one commit more than the answer alone."""
        sessions = PaymentSessions(store, clock=StepClock())
        session = sessions.create(cart_id="cart_1", provider_id="stripe", amount=10)
        sessions.fire(session.id, "initiate", data={"id": "pi"})
        sessions.select(session.id)
        counting = Counting(store)
        counted = PaymentSessions(counting, clock=StepClock())  # type: ignore[arg-type]
        provider = SimulatedProvider(seed_for(session.id))
        assert complete_cart(counted, provider, "cart_1").outcome is O.AUTHORIZED
        assert counting.writes == [("claim", False), ("record_event", True)]

    def test_other_moves_do_not_pay(self, store: SessionStore) -> None:
        """Moves that leave the cart's choice and the amount alone ask no claim check."""
        counting = Counting(store)
        sessions = PaymentSessions(counting, clock=StepClock())  # type: ignore[arg-type]
        session = sessions.create(cart_id="cart_1", provider_id="stripe", amount=10)
        sessions.fire(session.id, "initiate", data={"id": "pi"})
        for trigger in ("require_more", "retry", "fail", "retry"):
            sessions.fire(session.id, trigger)
        sessions.fire(session.id, "update", data={"note": "gift"})
        sessions.fire(session.id, "update", amount=10)
        assert counting.writes == [("create", False)] + [("commit", False)] * 7
        sessions.fire(session.id, "update", amount=20)
        assert counting.writes[-1] == ("commit", True)
        sessions.select(session.id)
        assert counting.writes[-1] == ("commit", True)


class TestAsync:
    def test_the_async_twin(self, tmp_path: Path) -> None:
        """Completion, cancellation and expiry through AsyncPaymentSessions, with a lease."""
        import asyncio

        from paysession import AsyncPaymentSessions
        from paysession.store import MemoryStore

        clock = StepClock()
        sessions = PaymentSessions(MemoryStore(), clock=clock)
        first = sessions.create(cart_id="cart_1", provider_id="stripe", amount=10)
        sessions.select(first.id)
        second = sessions.create(cart_id="cart_2", provider_id="stripe", amount=10)
        provider = SimulatedProvider(seed_for(first.id, second.id), clock=clock)

        async def run() -> None:
            aio = AsyncPaymentSessions(sessions)
            done = await aio.complete_cart(provider, "cart_1", lease=timedelta(seconds=5))
            assert done.outcome is O.AUTHORIZED
            (record,) = await aio.cancel_payment(provider, first.id, lease=timedelta(seconds=5))
            assert record.trigger == "cancel"
            clock.now += timedelta(hours=1)
            expired = await aio.expire_sessions(provider, older_than=timedelta(minutes=1))
            assert expired.canceled == (second.id,)
            assert await aio.anomalies(kind="double_authorization") == []

        asyncio.run(run())
        assert provider.holds() == []


class TestReconcileArguments:
    def test_a_provider_that_is_not_one(self, store: SessionStore) -> None:
        """reconcile's provider must be a provider or a mapping: typed error, nothing recorded."""
        sessions = PaymentSessions(store, clock=StepClock())
        session = sessions.create(cart_id="cart_1", provider_id="stripe", amount=10)
        for wrong in (object(), "stripe", 3):
            with pytest.raises(InvalidSessionData) as refused:
                sessions.reconcile(session.id, "succeeded", provider=wrong)  # type: ignore[arg-type]
            assert refused.value.fields == ("provider",)
        assert sessions.provider_events() == []
        with pytest.raises(InvalidSessionData) as refused:
            sessions.anomalies(kind="bogus")
        assert refused.value.fields == ("kind",)
