"""OpenTelemetry: spans for moves, commits and provider calls, and a count of moves by
trigger and outcome, checked with the SDK's in-memory exporter and reader."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from paysession import IllegalTransition, PaymentSessions, telemetry
from paysession.checkout import complete_cart
from paysession.store import MemoryStore

from .helpers import run_without
from .test_checkout import cart_playing

SECRET = "pi_secret_never_in_a_span"
SPANS = InMemorySpanExporter()
READER = InMemoryMetricReader()


@pytest.fixture(scope="module", autouse=True)
def sdk() -> Iterator[None]:
    """The application's side: an SDK with in-memory exporters (set once per process)."""
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(SPANS))
    trace.set_tracer_provider(tracing)
    metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))
    yield


@pytest.fixture
def on() -> Iterator[None]:
    telemetry.enable()
    SPANS.clear()
    try:
        yield
    finally:
        telemetry.disable()


def moves_counted() -> dict[tuple[str, str], int]:
    counted: dict[tuple[str, str], int] = {}
    data = READER.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "paysession.moves":
                    for point in metric.data.data_points:
                        key = (
                            str(point.attributes["paysession.trigger"]),
                            str(point.attributes["paysession.outcome"]),
                        )
                        counted[key] = counted.get(key, 0) + point.value
    return counted


def started(sessions: PaymentSessions) -> str:
    made = sessions.create(cart_id="cart_1", provider_id="stripe", amount=900)
    sessions.fire(made.id, "initiate", data={"id": "pi_1", "client_secret": SECRET})
    return made.id


def attributes(name: str) -> list[dict[str, Any]]:
    return [dict(span.attributes or {}) for span in SPANS.get_finished_spans() if span.name == name]


class TestOff:
    def test_nothing_until_enabled(self) -> None:
        assert not telemetry.enabled()
        SPANS.clear()
        sessions = PaymentSessions(MemoryStore())
        session_id = started(sessions)
        sessions.fire(session_id, "authorize")
        assert SPANS.get_finished_spans() == ()


@pytest.mark.usefixtures("on")
class TestOn:
    def test_a_move_is_a_span_with_its_commit_inside(self) -> None:
        sessions = PaymentSessions(MemoryStore())
        session_id = started(sessions)
        SPANS.clear()
        sessions.fire(session_id, "authorize")
        finished = {span.name: span for span in SPANS.get_finished_spans()}
        move, commit = finished["paysession.move"], finished["paysession.commit"]
        assert dict(move.attributes or {}) == {
            "paysession.session_id": session_id,
            "paysession.trigger": "authorize",
            "paysession.outcome": "committed",
        }
        assert commit.parent is not None and commit.parent.span_id == move.context.span_id
        assert dict(commit.attributes or {}) == {"paysession.sessions": 1}

    def test_moves_are_counted_by_trigger_and_outcome(self) -> None:
        before = moves_counted()
        sessions = PaymentSessions(MemoryStore())
        session_id = started(sessions)
        with pytest.raises(IllegalTransition):
            sessions.fire(session_id, "retry")
        after = moves_counted()
        gained = {key: after[key] - before.get(key, 0) for key in after}
        assert gained[("initiate", "committed")] == 1
        assert gained[("retry", "refused")] == 1
        assert attributes("paysession.move")[-1]["paysession.outcome"] == "refused"

    def test_provider_calls_are_spans(self) -> None:
        sessions = PaymentSessions(MemoryStore())
        session, provider = cart_playing(sessions, "authorized")
        SPANS.clear()
        complete_cart(sessions, provider, session.cart_id)
        calls = [span["paysession.call"] for span in attributes("paysession.provider")]
        assert "authorize" in calls
        assert all(
            span["paysession.provider_id"] == "stripe" for span in attributes("paysession.provider")
        )

    def test_no_span_holds_data_or_cart(self) -> None:
        sessions = PaymentSessions(MemoryStore())
        session_id = started(sessions)
        sessions.fire(session_id, "update", data={"card": SECRET})
        assert SPANS.get_finished_spans()
        for span in SPANS.get_finished_spans():
            assert SECRET not in repr(dict(span.attributes or {}))


def test_enabling_without_the_extra_says_what_to_install() -> None:
    done = run_without(
        "opentelemetry",
        "from paysession import telemetry\n"
        "from paysession.errors import MissingExtra\n"
        "try:\n"
        "    telemetry.enable()\n"
        "except MissingExtra as missing:\n"
        "    print(missing)\n",
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        "paysession.telemetry needs the otel extra: pip install 'paysession[otel]'\n"
    )


def test_turning_it_on_and_off_under_load_never_fails_a_move() -> None:
    """enable() and disable() racing moves in other threads: every move still returns."""
    sessions = PaymentSessions(MemoryStore())
    ids = [
        sessions.create(cart_id=f"cart_{n}", provider_id="stripe", amount=100).id for n in range(3)
    ]
    stop = threading.Event()

    def toggle() -> None:
        while not stop.is_set():
            telemetry.enable()
            telemetry.disable()

    toggler = threading.Thread(target=toggle)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns often: the race gets its chances
    toggler.start()
    try:
        for _ in range(150):
            for session_id in ids:
                sessions.fire(session_id, "update", amount=101)
                sessions.fire(session_id, "update", amount=100)
    finally:
        stop.set()
        toggler.join()
        sys.setswitchinterval(interval)
    assert all(sessions.version(session_id) == 300 for session_id in ids)
