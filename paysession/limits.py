"""Bounds on what paysession accepts, so hostile input is refused early and cheaply.

Input over a limit is :class:`~paysession.InvalidSessionData` naming the field, found
without a slow or memory-hungry path: sizes are counted while the input is walked once,
and the walk stops at the limit.
"""

from __future__ import annotations

import enum
from typing import TypeVar

import attrs

from paysession.errors import InvalidSessionData


@attrs.frozen
class Limits:
    """The limits in force; change them with :func:`configure`."""

    data_bytes: int = 1024 * 1024
    """Largest ``data`` (and, separately, ``cart``), counted as JSON text."""
    text_length: int = 4096
    """Longest ``actor`` or ``reason`` of a move, in characters."""
    id_length: int = 256
    """Longest id, cart id, provider id or idempotency key, in characters."""
    depth: int = 64
    """Deepest nesting of ``data`` or ``cart``."""
    int_digits: int = 100
    """Most decimal digits of an integer in ``data`` or ``cart``: larger ones are refused
    where they enter, not when a trail or a store later fails to write them."""

    @property
    def document_chars(self) -> int:
        """Longest JSON document ``from_json`` reads: data, cart and the other fields."""
        return 2 * self.data_bytes + 64 * 1024


MAX_COUNTER = 2**63 - 1
"""The largest seq, version or position: what a 64-bit database column holds."""


def check_counter(
    value: object, name: str, problems: dict[str, str], *, low: int = 0, nullable: bool = False
) -> None:
    """Put a problem for ``name`` unless ``value`` is an int from ``low`` to MAX_COUNTER."""
    if value is None and nullable:
        return
    if type(value) is not int or not low <= value <= MAX_COUNTER:
        problems[name] = f"must be an int from {low} to {MAX_COUNTER}" + (
            " or None" if nullable else ""
        )


_current = Limits()


_E = TypeVar("_E", bound=enum.Enum)


def member(kind: type[_E], value: object, field: str) -> _E:
    """``value`` as a member of the str enum ``kind``; InvalidSessionData naming ``field``."""
    try:
        return kind(value)
    except ValueError:
        names = ", ".join(str(item.value) for item in kind)
        raise InvalidSessionData({field: f"must be one of {names}"}) from None


def current() -> Limits:
    """The limits in force."""
    return _current


def configure(**changes: int) -> Limits:
    """Set some limits for the whole process (e.g. ``configure(data_bytes=65536)``).

    Returns the limits now in force. Each must be a positive int.
    """
    global _current
    names = {field.name for field in attrs.fields(Limits)}
    problems = {
        name: "must be a positive int" if name in names else "is not a limit"
        for name, value in changes.items()
        if name not in names or type(value) is not int or value < 1
    }
    if problems:
        raise InvalidSessionData(problems)
    _current = attrs.evolve(_current, **changes)
    return _current


__all__ = ["MAX_COUNTER", "Limits", "check_counter", "configure", "current", "member"]
