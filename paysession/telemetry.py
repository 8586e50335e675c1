"""OpenTelemetry for paysession: off unless the ``otel`` extra is installed and enabled.

``paysession.telemetry.enable()`` (after the application has set up its OpenTelemetry
SDK: tracer and meter providers, exporters) turns on:

- a span per move (``paysession.move``, from ``PaymentSessions.fire``), with the trigger,
  the session id and the outcome (``committed``, ``refused`` or ``error``);
- a span per commit of a store (``paysession.commit``), with the number of sessions
  written;
- a span per provider call (``paysession.provider``), with the provider id and the call
  (``initiate``, ``update``, ``authorize``, ``cancel``, ``status``);
- a counter of moves, ``paysession.moves``, by trigger and outcome.

Spans and counts carry ids, triggers and outcomes, never a session's data or cart.
Until ``enable()`` runs, each of these costs one check of a flag, and ``opentelemetry``
is never imported. ``disable()`` turns it off again.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from paysession.errors import REFUSALS, MissingExtra, PaySessionError


class _On:
    """What enable() made: the tracer, the move counter and the error status."""

    def __init__(self, tracer: Any, moves: Any, error_status: Any) -> None:
        self.tracer = tracer
        self.moves = moves
        self.error_status = error_status


# Replaced whole, never changed in place: a move reads it once, so that enable() or
# disable() in another thread can never leave it half set under a move in flight.
_on: _On | None = None


def enable() -> None:
    """Turn on spans and counts through the OpenTelemetry API (the ``otel`` extra).

    Raises MissingExtra, with the pip line, when ``opentelemetry-api`` is not installed.
    """
    global _on
    try:
        # The optional extra, loaded only when asked for.
        trace = importlib.import_module("opentelemetry.trace")
        metrics = importlib.import_module("opentelemetry.metrics")
    except ImportError as missing:
        raise MissingExtra("paysession.telemetry", "otel") from missing
    moves = metrics.get_meter("paysession").create_counter(
        "paysession.moves", unit="{move}", description="moves by trigger and outcome"
    )
    _on = _On(trace.get_tracer("paysession"), moves, trace.Status(trace.StatusCode.ERROR))


def disable() -> None:
    """Turn spans and counts off again."""
    global _on
    _on = None


def enabled() -> bool:
    return _on is not None


_OFF = nullcontext()
"""What span() and move() hand out while telemetry is off: no work, not even a generator."""


def span(name: str, **attributes: str | int) -> AbstractContextManager[Any]:
    """A span named ``name`` while telemetry is on; otherwise nothing at all."""
    on = _on
    if on is None:
        return _OFF
    started: AbstractContextManager[Any] = on.tracer.start_as_current_span(
        name, attributes=attributes
    )
    return started


def move(session_id: str, trigger: str) -> AbstractContextManager[None]:
    """The span and the count of one move, with its outcome."""
    on = _on
    return _OFF if on is None else _move(on, session_id, trigger)


@contextmanager
def _move(on: _On, session_id: str, trigger: str) -> Iterator[None]:
    attributes = {"paysession.session_id": session_id, "paysession.trigger": trigger}
    with on.tracer.start_as_current_span("paysession.move", attributes=attributes) as current:
        outcome = "error"
        try:
            yield
            outcome = "committed"
        except PaySessionError as error:
            outcome = "refused" if isinstance(error, REFUSALS) else "error"
            raise
        finally:
            current.set_attribute("paysession.outcome", outcome)
            if outcome == "error":
                current.set_status(on.error_status)
            on.moves.add(1, {"paysession.trigger": trigger, "paysession.outcome": outcome})


class TracedProvider:
    """A provider whose calls are spans: what ``provider_for`` hands out while on."""

    def __init__(self, provider: Any) -> None:
        self._provider = provider
        self.id: str = provider.id

    def _call(self, call: str, *args: Any, **kwargs: Any) -> Any:
        attributes = {"paysession.provider_id": self.id, "paysession.call": call}
        with span("paysession.provider", **attributes):
            return getattr(self._provider, call)(*args, **kwargs)

    def initiate(self, session: Any) -> Any:
        return self._call("initiate", session)

    def update(self, session: Any) -> Any:
        return self._call("update", session)

    def authorize(self, session: Any, *, idempotency_key: str) -> Any:
        return self._call("authorize", session, idempotency_key=idempotency_key)

    def cancel(self, session: Any, *, idempotency_key: str) -> Any:
        return self._call("cancel", session, idempotency_key=idempotency_key)

    def status(self, session: Any) -> Any:
        return self._call("status", session)


__all__ = ["TracedProvider", "disable", "enable", "enabled", "move", "span"]
