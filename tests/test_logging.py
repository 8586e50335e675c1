"""Log lines under ``paysession.*``: a move at DEBUG, a refusal at INFO, what needs a look
at WARNING; never a session's data or cart."""

from __future__ import annotations

import logging

import pytest

from paysession import (
    ConcurrentUpdate,
    GuardRejected,
    HookError,
    Hooks,
    IllegalTransition,
    PaymentSessions,
    PaymentSessionStatus,
    ReconciliationAnomaly,
)
from paysession.store import MemoryStore
from paysession.writer import retrying

from .helpers import machine_in

SECRET = "4242-secret-card-token"


def levels(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int]]:
    return [(record.name, record.levelno) for record in caplog.records]


@pytest.fixture
def sessions() -> PaymentSessions:
    return PaymentSessions(MemoryStore())


def started(sessions: PaymentSessions) -> str:
    made = sessions.create(cart_id="cart_1", provider_id="stripe", amount=900)
    sessions.fire(made.id, "initiate", data={"id": "pi_1", "client_secret": SECRET})
    return made.id


class TestLevels:
    def test_a_move_is_debug(
        self, sessions: PaymentSessions, caplog: pytest.LogCaptureFixture
    ) -> None:
        session_id = started(sessions)
        with caplog.at_level(logging.DEBUG, logger="paysession"):
            sessions.fire(session_id, "authorize")
        assert levels(caplog) == [("paysession.moves", logging.DEBUG)]
        assert caplog.records[0].getMessage() == (
            f"{session_id!r} seq 2: authorize, pending -> authorized"
        )

    def test_a_refusal_is_info(
        self, sessions: PaymentSessions, caplog: pytest.LogCaptureFixture
    ) -> None:
        session_id = started(sessions)
        with caplog.at_level(logging.DEBUG, logger="paysession"):
            with pytest.raises(IllegalTransition):
                sessions.fire(session_id, "retry")
            with pytest.raises(ConcurrentUpdate):
                sessions.fire(session_id, "authorize", expected_version=0)
        assert levels(caplog) == [("paysession.refusals", logging.INFO)] * 2
        assert "'retry' refused" in caplog.records[0].getMessage()

    def test_a_trigger_cannot_forge_a_line(
        self, sessions: PaymentSessions, caplog: pytest.LogCaptureFixture
    ) -> None:
        session_id = started(sessions)
        forged = "authorize\nINFO paysession.moves: forged"
        debug = caplog.at_level(logging.DEBUG, logger="paysession")
        with debug, pytest.raises(IllegalTransition):
            sessions.fire(session_id, forged)  # type: ignore[arg-type]
        assert levels(caplog) == [("paysession.refusals", logging.INFO)]
        assert "\n" not in caplog.records[0].getMessage()

    def test_a_machines_refusal_is_info_too(self, caplog: pytest.LogCaptureFixture) -> None:
        machine = machine_in(PaymentSessionStatus.PENDING)
        machine.fire("update", amount=0)
        with caplog.at_level(logging.DEBUG, logger="paysession"), pytest.raises(GuardRejected):
            machine.authorize()
        assert levels(caplog) == [("paysession.refusals", logging.INFO)]

    def test_a_failed_after_hook_is_a_warning(self, caplog: pytest.LogCaptureFixture) -> None:
        hooks = Hooks()

        @hooks.after("authorize")
        def broken(event: object) -> None:
            raise RuntimeError("the mailer is down")

        sessions = PaymentSessions(MemoryStore(), hooks=hooks)
        session_id = started(sessions)
        with caplog.at_level(logging.WARNING, logger="paysession"), pytest.raises(HookError):
            sessions.fire(session_id, "authorize")
        assert levels(caplog) == [("paysession.hooks", logging.WARNING)]
        assert caplog.records[0].getMessage().endswith("after-hooks failed: RuntimeError")

    def test_a_lost_race_tried_again_is_a_warning(self, caplog: pytest.LogCaptureFixture) -> None:
        tries: list[int] = []

        def attempt(number: int) -> str:
            tries.append(number)
            if number == 0:
                raise ConcurrentUpdate("ps_1", 3, 4)
            return "done"

        with caplog.at_level(logging.WARNING, logger="paysession"):
            assert retrying(3, attempt, wait=False) == "done"
        assert tries == [0, 1]
        assert levels(caplog) == [("paysession.races", logging.WARNING)]
        assert caplog.records[0].getMessage() == (
            "'ps_1': another move committed first; trying again (2 of 3)"
        )

    def test_an_anomaly_is_a_warning(
        self, sessions: PaymentSessions, caplog: pytest.LogCaptureFixture
    ) -> None:
        session_id = started(sessions)
        sessions.fire(session_id, "cancel")
        with (
            caplog.at_level(logging.WARNING, logger="paysession"),
            pytest.raises(ReconciliationAnomaly),
        ):
            sessions.reconcile(session_id, "succeeded", event_id="evt_1\nforged line")
        assert levels(caplog) == [("paysession.anomalies", logging.WARNING)]
        assert "\n" not in caplog.records[0].getMessage()  # a newline cannot forge a line


def test_no_line_holds_data_or_cart(caplog: pytest.LogCaptureFixture) -> None:
    """Every level, every logger: the data's secret never appears."""
    sessions = PaymentSessions(MemoryStore())
    with caplog.at_level(logging.DEBUG, logger="paysession"):
        session_id = started(sessions)
        sessions.fire(session_id, "update", data={"card": SECRET}, amount=901)
        with pytest.raises(IllegalTransition):
            sessions.fire(session_id, "retry")
        sessions.fire(session_id, "cancel")
        with pytest.raises(ReconciliationAnomaly):
            sessions.reconcile(session_id, "succeeded", event_id="evt_2")
    assert len(caplog.records) >= 5
    assert all(SECRET not in record.getMessage() for record in caplog.records)
