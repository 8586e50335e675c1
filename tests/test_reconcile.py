"""Reconciliation with a provider: status maps, shortest legal paths, events, races.

The path table is written out by hand below; the code under test only fills in the
"got" side. The behaviours that involve the store (duplicates, stale reports, no-ops,
anomalies, races, persistence) run on every store through the ``store`` fixtures.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, cast

import pytest

from paysession import (
    ConcurrentUpdate,
    Hooks,
    InvalidSessionData,
    PaymentSessions,
    PaymentSessionStatus,
    SessionNotFound,
    TransitionEvent,
)
from paysession.providers import ReconciliationAnomaly, UnknownProviderStatus
from paysession.store import MemoryStore, SessionStore
from paysession.store.base import EventOutcome, ProviderEvent, Write

from .conftest import StoreFactory, open_store
from .helpers import PATHS, StepClock, initiated, provider_table

S = PaymentSessionStatus
T = datetime(2024, 4, 20, 12, 0, tzinfo=timezone.utc)  # before the test clocks start

# Rows: a provider status; columns: the session's status when the report arrives.
# A cell is the moves reconciliation makes ("-" for none: a no-op) or ANOMALY. A status
# in flight (processing) never moves a session back from requires_more.
STRIPE_PATHS = """
provider_status          pending       requires_more  error               authorized  canceled
requires_payment_method  -             retry          retry               ANOMALY     ANOMALY
requires_confirmation    -             -              retry               ANOMALY     ANOMALY
processing               -             -              retry               ANOMALY     ANOMALY
requires_action          require_more  -              retry+require_more  ANOMALY     ANOMALY
requires_capture         authorize     authorize      retry+authorize     -           ANOMALY
succeeded                authorize     authorize      retry+authorize     -           ANOMALY
canceled                 cancel        cancel         cancel              cancel      -
"""

PAYPAL_PATHS = """
provider_status          pending       requires_more  error               authorized  canceled
CREATED                  -             retry          retry               ANOMALY     ANOMALY
SAVED                    require_more  -              retry+require_more  ANOMALY     ANOMALY
APPROVED                 require_more  -              retry+require_more  ANOMALY     ANOMALY
PAYER_ACTION_REQUIRED    require_more  -              retry+require_more  ANOMALY     ANOMALY
COMPLETED                authorize     authorize      retry+authorize     -           ANOMALY
VOIDED                   cancel        cancel         cancel              cancel      -
PENDING                  -             -              retry               ANOMALY     ANOMALY
CAPTURED                 authorize     authorize      retry+authorize     -           ANOMALY
PARTIALLY_CAPTURED       authorize     authorize      retry+authorize     -           ANOMALY
DENIED                   fail          fail           -                   ANOMALY     ANOMALY
DECLINED                 fail          fail           -                   ANOMALY     ANOMALY
FAILED                   fail          fail           -                   ANOMALY     ANOMALY
EXPIRED                  cancel        cancel         cancel              cancel      -
pending                  -             -              retry               ANOMALY     ANOMALY
authorized               authorize     authorize      retry+authorize     -           ANOMALY
partially_captured       authorize     authorize      retry+authorize     -           ANOMALY
captured                 authorize     authorize      retry+authorize     -           ANOMALY
completed                authorize     authorize      retry+authorize     -           ANOMALY
denied                   fail          fail           -                   ANOMALY     ANOMALY
voided                   cancel        cancel         cancel              cancel      -
expired                  cancel        cancel         cancel              cancel      -
"""

ADYEN_PATHS = """
provider_status          pending       requires_more  error               authorized  canceled
AUTHORISATION:true       authorize     authorize      retry+authorize     -           ANOMALY
AUTHORISATION:false      fail          fail           -                   ANOMALY     ANOMALY
PENDING:true             -             -              retry               ANOMALY     ANOMALY
CAPTURE:true             authorize     authorize      retry+authorize     -           ANOMALY
CANCELLATION:true        cancel        cancel         cancel              cancel      -
CANCEL_OR_REFUND:true    cancel        cancel         cancel              cancel      -
TECHNICAL_CANCEL:true    cancel        cancel         cancel              cancel      -
OFFER_CLOSED:true        cancel        cancel         cancel              cancel      -
"""

KLARNA_PATHS = """
provider_status          pending       requires_more  error               authorized  canceled
AUTHORIZED/ACCEPTED      authorize     authorize      retry+authorize     -           ANOMALY
AUTHORIZED/PENDING       -             -              retry               ANOMALY     ANOMALY
AUTHORIZED/REJECTED      fail          fail           -                   ANOMALY     ANOMALY
PART_CAPTURED            authorize     authorize      retry+authorize     -           ANOMALY
CAPTURED                 authorize     authorize      retry+authorize     -           ANOMALY
CANCELLED                cancel        cancel         cancel              cancel      -
EXPIRED                  cancel        cancel         cancel              cancel      -
"""

# Where each provider status is meant to take a session: the providers' documentation,
# entry by entry, as docs/providers.md tabulates it (rows without an event type).
MEANS: dict[str, dict[str, PaymentSessionStatus]] = {}
for _provider, _status, _event, _becomes in provider_table():
    if _event is None:
        MEANS.setdefault(_provider, {})[_status] = _becomes
STRIPE_MEANS = MEANS["stripe"]
PAYPAL_MEANS = MEANS["paypal"]


def table_cases(provider: str, table: str) -> list[Any]:
    header, *rows = table.strip().splitlines()
    statuses = header.split()[1:]
    cases = []
    for row in rows:
        provider_status, *cells = row.split()
        for status, cell in zip(statuses, cells, strict=True):
            cases.append(
                pytest.param(
                    provider,
                    provider_status,
                    S(status),
                    cell,
                    id=f"{provider}-{provider_status}-from-{status}",
                )
            )
    return cases


def session_in(
    sessions: PaymentSessions, status: PaymentSessionStatus, provider: str = "stripe"
) -> str:
    """An initiated session (amount 1000) of a new cart, brought to ``status``."""
    session_id = initiated(sessions, None, provider, actor="storefront")
    for trigger in PATHS[status]:
        sessions.fire(session_id, trigger, actor="storefront")
    return session_id


class Meddler:
    """A store whose chosen method first runs ``before`` (once): another writer's move."""

    def __init__(self, inner: SessionStore, method: str, before: Callable[[], object]) -> None:
        self.inner = inner
        self.method = method
        self.before: Callable[[], object] | None = before
        self.calls: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name != self.method:
            return attribute

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(args)
            before, self.before = self.before, None
            if before is not None:
                before()
            return attribute(*args, **kwargs)

        return wrapped


class TestPathTable:
    @pytest.mark.parametrize(
        ("provider", "provider_status", "status", "expected"),
        table_cases("stripe", STRIPE_PATHS)
        + table_cases("paypal", PAYPAL_PATHS)
        + table_cases("adyen", ADYEN_PATHS)
        + table_cases("klarna", KLARNA_PATHS),
    )
    def test_every_provider_status_from_every_status(
        self, provider: str, provider_status: str, status: S, expected: str
    ) -> None:
        """Each report takes the written path, or is an anomaly that changes nothing."""
        sessions = PaymentSessions(MemoryStore(), clock=StepClock())
        session_id = session_in(sessions, status, provider)
        before = sessions.history(session_id)
        means = MEANS[provider][provider_status]
        if expected == "ANOMALY":
            with pytest.raises(ReconciliationAnomaly) as caught:
                sessions.reconcile(session_id, provider_status, event_id="evt_1")
            anomaly = caught.value
            assert (
                anomaly.session_id,
                anomaly.status,
                anomaly.provider_id,
                anomaly.provider_status,
                anomaly.mapped,
                anomaly.event_id,
                anomaly.guard,
            ) == (session_id, status, provider, provider_status, means, "evt_1", None)
            assert sessions.history(session_id) == before
            (listed,) = sessions.anomalies(session_id)
            assert (listed.session_status, listed.status, listed.outcome) == (
                status,
                means,
                EventOutcome.ANOMALY,
            )
            return
        records = sessions.reconcile(session_id, provider_status, event_id="evt_1")
        moves = [] if expected == "-" else expected.split("+")
        assert [r.trigger for r in records] == moves
        assert sessions.get(session_id).status is (status if expected == "-" else means)
        assert {(r.actor, r.reason) for r in records} <= {
            (f"provider:{provider}", f"{provider_status} (event evt_1)")
        }
        assert sessions.verify(session_id).ok


class TestReconcile:
    def test_path_is_one_transaction(self, store: SessionStore) -> None:
        """error → authorized is retry then authorize, one write of two records."""
        meddler = Meddler(store, "record_event", lambda: None)
        sessions = PaymentSessions(cast(SessionStore, meddler), clock=StepClock())
        session_id = session_in(sessions, S.ERROR)
        version = sessions.version(session_id)
        records = sessions.reconcile(session_id, "succeeded", event_id="evt_ok")
        assert [(r.trigger, r.seq) for r in records] == [
            ("retry", version + 1),
            ("authorize", version + 2),
        ]
        ((event, write),) = meddler.calls
        assert isinstance(write, Write) and write.records == tuple(records)
        assert isinstance(event, ProviderEvent) and event.outcome is EventOutcome.APPLIED
        assert (event.session_status, event.status, event.version) == (
            S.ERROR,
            S.AUTHORIZED,
            version + 2,
        )
        assert store.provider_event(session_id, "evt_ok") == event
        assert sessions.history(session_id)[-2:] == tuple(records)
        assert sessions.verify(session_id).ok

    def test_same_status_again_is_a_noop(self, store: SessionStore) -> None:
        """A report of the status the session is in changes nothing and moves nothing."""
        sessions = PaymentSessions(store, clock=StepClock())
        session_id = session_in(sessions, S.AUTHORIZED)
        version = sessions.version(session_id)
        for result in (
            sessions.reconcile(session_id, "succeeded", event_id="evt_a"),
            sessions.reconcile(session_id, "requires_capture"),
        ):
            assert (result.outcome, result.records, len(result)) == (EventOutcome.NOOP, (), 0)
        assert sessions.version(session_id) == version
        events = sessions.provider_events(session_id=session_id)
        assert [e.outcome for e in events] == [EventOutcome.NOOP, EventOutcome.NOOP]
        assert events[0].event_id == "evt_a"
        assert events[1].event_id.startswith("unidentified:")

    def test_repeated_event_id_is_ignored(self, store: SessionStore) -> None:
        """The same event id again is a duplicate, moving nothing even when it could."""
        sessions = PaymentSessions(store, clock=StepClock())
        session_id = session_in(sessions, S.PENDING)
        assert len(sessions.reconcile(session_id, "requires_action", event_id="evt_1")) == 1
        sessions.fire(session_id, "retry", actor="storefront")
        result = sessions.reconcile(session_id, "requires_action", event_id="evt_1")
        assert (result.outcome, result.records) == (EventOutcome.DUPLICATE, ())
        assert not sessions.reconcile(session_id, "requires_action", event_id="evt_1")
        assert sessions.get(session_id).status is S.PENDING
        (event,) = sessions.provider_events(session_id=session_id)
        assert (event.outcome, event.duplicates) == (EventOutcome.APPLIED, 2)

    def test_duplicate_seen_by_a_store_opened_later(self, store_factory: StoreFactory) -> None:
        """Processed event ids are kept in the database, so a restart still ignores them."""
        first = PaymentSessions(store_factory(), clock=StepClock())
        session_id = session_in(first, S.PENDING)
        first.reconcile(session_id, "requires_capture", event_id="evt_9")
        first.store.close()
        later = PaymentSessions(store_factory())
        later.fire(session_id, "cancel", actor="admin")
        again = later.reconcile(session_id, "requires_capture", event_id="evt_9")
        assert (again.outcome, again.records) == (EventOutcome.DUPLICATE, ())
        assert later.anomalies() == []

    def test_older_report_is_stale(self, store: SessionStore) -> None:
        """A report observed before the newest applied one is recorded stale, not applied."""
        sessions = PaymentSessions(store, clock=StepClock())
        session_id = session_in(sessions, S.PENDING)
        sessions.reconcile(session_id, "succeeded", event_id="evt_2", observed_at=T)
        early = T - timedelta(seconds=5)
        result = sessions.reconcile(
            session_id, "requires_action", event_id="evt_1", observed_at=early
        )
        assert (result.outcome, result.records) == (EventOutcome.STALE, ())
        assert sessions.get(session_id).status is S.AUTHORIZED
        assert [(e.event_id, e.outcome, e.observed_at) for e in sessions.provider_events()] == [
            ("evt_2", EventOutcome.APPLIED, T),
            ("evt_1", EventOutcome.STALE, early),
        ]
        assert sessions.anomalies() == []

    def test_a_noop_also_makes_older_reports_stale(self, store: SessionStore) -> None:
        """The newest report found a no-op still outdates older ones."""
        sessions = PaymentSessions(store, clock=StepClock())
        session_id = session_in(sessions, S.PENDING)
        assert (
            sessions.reconcile(session_id, "processing", observed_at=T).outcome is EventOutcome.NOOP
        )
        late = sessions.reconcile(session_id, "succeeded", observed_at=T - timedelta(1))
        assert (late.outcome, late.records) == (EventOutcome.STALE, ())
        assert sessions.get(session_id).status is S.PENDING
        assert [e.outcome for e in sessions.provider_events()] == [
            EventOutcome.NOOP,
            EventOutcome.STALE,
        ]

    def test_same_instant_is_not_stale(self, store: SessionStore) -> None:
        """Reports observed at the same instant are both current (providers round times)."""
        sessions = PaymentSessions(store, clock=StepClock())
        session_id = session_in(sessions, S.PENDING)
        sessions.reconcile(session_id, "requires_action", observed_at=T)
        assert len(sessions.reconcile(session_id, "succeeded", observed_at=T)) == 1

    def test_the_same_report_under_another_id_is_stale(self, store: SessionStore) -> None:
        """The same status at the same instant, under a new event id, is nothing new."""
        sessions = PaymentSessions(store, clock=StepClock())
        session_id = session_in(sessions, S.PENDING)
        sessions.reconcile(session_id, "requires_action", event_id="e1", observed_at=T)
        sessions.fire(session_id, "retry", actor="storefront")
        result = sessions.reconcile(session_id, "requires_action", event_id="e2", observed_at=T)
        assert (result.outcome, sessions.get(session_id).status) == (EventOutcome.STALE, S.PENDING)

    def test_stale_and_anomalous_reports_do_not_outdate_others(self, store: SessionStore) -> None:
        """Only applied and no-op reports set the time older reports are judged by."""
        sessions = PaymentSessions(store, clock=StepClock())
        session_id = session_in(sessions, S.PENDING)
        sessions.reconcile(session_id, "requires_action", observed_at=T)
        sessions.reconcile(session_id, "processing", observed_at=T - timedelta(seconds=9))
        watermark = [e.observed_at for e in sessions.provider_events(session_id=session_id)]
        assert max(e for e in watermark if e is not None) == T
        assert [e.advances for e in sessions.provider_events(session_id=session_id)] == [
            True,
            False,
        ]
        assert len(sessions.reconcile(session_id, "succeeded", observed_at=T)) == 1

    def test_anomaly_is_recorded_raised_and_never_applied(self, store: SessionStore) -> None:
        """Authorized after canceled: ReconciliationAnomaly, listed, the trail untouched."""
        clock = StepClock()
        sessions = PaymentSessions(store, clock=clock)
        session_id = session_in(sessions, S.CANCELED)
        other = session_in(sessions, S.AUTHORIZED)
        trail = sessions.history(session_id)
        with pytest.raises(ReconciliationAnomaly) as caught:
            sessions.reconcile(session_id, "succeeded", event_id="evt_late", observed_at=T)
        assert (caught.value.status, caught.value.mapped, caught.value.guard) == (
            S.CANCELED,
            S.AUTHORIZED,
            None,
        )
        with pytest.raises(ReconciliationAnomaly):
            sessions.reconcile(other, "requires_payment_method")
        assert sessions.history(session_id) == trail
        anomalies = sessions.anomalies()
        assert [
            (a.session_id, a.session_status, a.provider_status, a.status) for a in anomalies
        ] == [
            (session_id, S.CANCELED, "succeeded", S.AUTHORIZED),
            (other, S.AUTHORIZED, "requires_payment_method", S.PENDING),
        ]
        assert anomalies[0].observed_at == T and anomalies[0].recorded_at <= clock.now
        assert sessions.anomalies(other) == anomalies[1:]
        # Its redelivery is a duplicate: ignored, so the provider stops retrying.
        redelivered = sessions.reconcile(session_id, "succeeded", event_id="evt_late")
        assert (redelivered.outcome, redelivered.records) == (EventOutcome.DUPLICATE, ())
        assert not any(e.advances for e in sessions.provider_events(session_id=session_id))

    def test_a_refusing_guard_is_an_anomaly(self, store: SessionStore) -> None:
        """An authorization reported for a session never initiated names the guard."""
        sessions = PaymentSessions(store, clock=StepClock())
        blank = sessions.create(cart_id=None, provider_id="stripe", amount=1000)
        with pytest.raises(ReconciliationAnomaly) as caught:
            sessions.reconcile(blank.id, "succeeded", event_id="evt_1")
        assert (caught.value.status, caught.value.guard) == (S.PENDING, "is_initiated")
        free = sessions.create(cart_id=None, provider_id="paypal", amount=0)
        sessions.fire(free.id, "initiate", data={})
        sessions.fire(free.id, "fail")
        with pytest.raises(ReconciliationAnomaly) as caught:
            sessions.reconcile(free.id, "COMPLETED")
        assert (caught.value.status, caught.value.guard) == (S.ERROR, "amount_positive")
        assert [a.guard for a in sessions.anomalies()] == ["is_initiated", "amount_positive"]
        assert sessions.get(free.id).status is S.ERROR and sessions.version(free.id) == 2

    def test_unknown_status_records_nothing(self, store: SessionStore) -> None:
        """A status the provider's map does not know is UnknownProviderStatus, unrecorded."""
        sessions = PaymentSessions(store, clock=StepClock())
        session_id = session_in(sessions, S.PENDING)
        with pytest.raises(UnknownProviderStatus) as caught:
            sessions.reconcile(session_id, "refunded", event_id="evt_1")
        assert (caught.value.provider_id, caught.value.provider_status) == ("stripe", "refunded")
        assert sessions.provider_events() == []
        with pytest.raises(SessionNotFound):
            sessions.reconcile("ps_missing", "succeeded")

    def test_bad_arguments(self, store: SessionStore) -> None:
        """Each bad argument is named: naive times, empty names, no attempts."""
        sessions = PaymentSessions(store, clock=StepClock())
        session_id = session_in(sessions, S.PENDING)
        with pytest.raises(InvalidSessionData) as refused:
            sessions.reconcile(
                session_id,
                "",
                event_id="",
                observed_at=datetime(2024, 1, 1),
                attempts=0,
            )
        assert set(refused.value.fields) == {
            "provider_status",
            "event_id",
            "observed_at",
            "attempts",
        }
        with pytest.raises(InvalidSessionData) as refused:
            sessions.provider_events(outcome="lost")
        assert refused.value.fields == ("outcome",)

    def test_hooks_run_for_each_step_after_the_commit(self, store: SessionStore) -> None:
        """Every step's after-hooks run once the path is committed; a veto records nothing."""
        hooks = Hooks()
        seen: list[tuple[str, str | None, int]] = []

        @hooks.after()
        def follow(event: TransitionEvent) -> None:
            seen.append((event.trigger, event.actor, store.load(event.session_id).version))  # type: ignore[union-attr]

        sessions = PaymentSessions(store, hooks=hooks, clock=StepClock())
        session_id = session_in(sessions, S.ERROR)
        seen.clear()
        sessions.reconcile(session_id, "requires_capture")
        version = sessions.version(session_id)
        assert seen == [
            ("retry", "provider:stripe", version),
            ("authorize", "provider:stripe", version),
        ]

        @hooks.before("cancel")
        def veto(event: TransitionEvent) -> None:
            raise PermissionError("held for review")

        with pytest.raises(PermissionError):
            sessions.reconcile(session_id, "canceled", event_id="evt_c")
        assert sessions.version(session_id) == version
        assert store.provider_event(session_id, "evt_c") is None


class TestRaces:
    def test_a_storefront_move_first_makes_it_recompute(self, store: SessionStore) -> None:
        """The storefront moves between the read and the commit: reload, new path, commit."""
        storefront = PaymentSessions(store, clock=StepClock())
        session_id = session_in(storefront, S.PENDING)
        meddler = Meddler(
            store, "record_event", lambda: storefront.fire(session_id, "fail", actor="storefront")
        )
        webhooks = PaymentSessions(cast(SessionStore, meddler), clock=StepClock())
        result = webhooks.reconcile(session_id, "succeeded", event_id="evt_1")
        assert [r.trigger for r in result.records] == ["retry", "authorize"]
        assert (result.outcome, result.lost_races) == (EventOutcome.APPLIED, 1)
        assert [r.trigger for r in storefront.history(session_id)] == [
            "create",
            "initiate",
            "fail",
            "retry",
            "authorize",
        ]
        assert storefront.verify(session_id).ok

    def test_a_cancel_first_turns_it_into_an_anomaly(self, store: SessionStore) -> None:
        """The storefront cancels first: the authorization is now an anomaly, not applied."""
        storefront = PaymentSessions(store, clock=StepClock())
        session_id = session_in(storefront, S.PENDING)
        meddler = Meddler(
            store, "record_event", lambda: storefront.fire(session_id, "cancel", actor="storefront")
        )
        webhooks = PaymentSessions(cast(SessionStore, meddler), clock=StepClock())
        with pytest.raises(ReconciliationAnomaly) as caught:
            webhooks.reconcile(session_id, "succeeded", event_id="evt_1")
        assert caught.value.status is S.CANCELED
        assert storefront.get(session_id).status is S.CANCELED

    def test_a_noop_loses_to_a_move(self, store: SessionStore) -> None:
        """A no-op is checked against the version too: after a move it is a path again."""
        storefront = PaymentSessions(store, clock=StepClock())
        session_id = session_in(storefront, S.PENDING)
        meddler = Meddler(
            store, "record_event", lambda: storefront.fire(session_id, "fail", actor="storefront")
        )
        webhooks = PaymentSessions(cast(SessionStore, meddler), clock=StepClock())
        assert [r.trigger for r in webhooks.reconcile(session_id, "processing")] == ["retry"]

    def test_the_same_event_delivered_twice_at_once(self, store: SessionStore) -> None:
        """Two deliveries racing: one applies, the other finds the event and is a duplicate."""
        other = PaymentSessions(store, clock=StepClock())
        session_id = session_in(other, S.PENDING)
        meddler = Meddler(
            store, "record_event", lambda: other.reconcile(session_id, "succeeded", event_id="e")
        )
        racing = PaymentSessions(cast(SessionStore, meddler), clock=StepClock())
        result = racing.reconcile(session_id, "succeeded", event_id="e")
        assert (result.outcome, result.lost_races) == (EventOutcome.DUPLICATE, 1)
        assert [r.trigger for r in other.history(session_id)][-1] == "authorize"
        assert other.version(session_id) == 2

    def test_a_newer_report_first_makes_it_stale(self, store: SessionStore) -> None:
        """A newer report committed between the read and the commit outdates this one."""
        other = PaymentSessions(store, clock=StepClock())
        session_id = session_in(other, S.PENDING)
        meddler = Meddler(
            store, "record_event", lambda: other.reconcile(session_id, "processing", observed_at=T)
        )
        racing = PaymentSessions(cast(SessionStore, meddler), clock=StepClock())
        early = T - timedelta(seconds=1)
        result = racing.reconcile(session_id, "requires_action", observed_at=early)
        assert (result.outcome, result.lost_races) == (EventOutcome.STALE, 1)
        assert other.get(session_id).status is S.PENDING

    def test_gives_up_after_the_attempts(self, store: SessionStore) -> None:
        """A session that keeps moving under it ends in ConcurrentUpdate, nothing written."""
        storefront = PaymentSessions(store, clock=StepClock())
        session_id = session_in(storefront, S.PENDING)

        class Busy(Meddler):
            def __getattr__(self, name: str) -> Any:
                self.before = lambda: storefront.fire(session_id, "update", amount=1001)
                return super().__getattr__(name)

        busy = Busy(store, "record_event", lambda: None)
        webhooks = PaymentSessions(cast(SessionStore, busy), clock=StepClock())
        with pytest.raises(ConcurrentUpdate):
            webhooks.reconcile(session_id, "succeeded", attempts=2)
        assert len(busy.calls) == 2
        assert storefront.provider_events() == []


def deliver(kind: str, place: str, session_id: str) -> None:
    """A webhook process: reconcile one event, then exit."""
    store = open_store(kind, place)
    PaymentSessions(store).reconcile(session_id, "requires_capture", event_id="evt_x")
    store.close()


@pytest.mark.slow
class TestAcrossProcesses:
    store_kinds = ("sqlite", "postgres")

    def test_an_event_handled_by_another_process(self, store_factory: StoreFactory) -> None:
        """An event applied by another process is a duplicate here."""
        sessions = PaymentSessions(store_factory())
        session_id = session_in(sessions, S.PENDING)
        child = multiprocessing.get_context("spawn").Process(
            target=deliver, args=(store_factory.kind, store_factory.place, session_id)
        )
        child.start()
        child.join(60)
        assert child.exitcode == 0
        result = sessions.reconcile(session_id, "requires_capture", event_id="evt_x")
        assert result.outcome is EventOutcome.DUPLICATE
        assert sessions.get(session_id).status is S.AUTHORIZED
