"""The payment session entity: an immutable, validated snapshot."""

from __future__ import annotations

import functools
import os
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, Protocol

import attrs

from paysession._compiled import compile_function
from paysession._frozen import freeze, is_text
from paysession._wire import EARLIEST, LATEST, RANGE, in_range
from paysession.errors import ImmutableSession, InvalidSessionData
from paysession.limits import current
from paysession.status import PaymentSessionStatus

MAX_ID_LENGTH = 256
"""Default longest id, cart id, provider id or idempotency key (see paysession.limits)."""

MAX_AMOUNT = 2**63 - 1
"""Largest amount accepted: what a signed 64-bit database column holds."""

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class Clock(Protocol):
    """A protocol: a callable returning the current time as a timezone-aware datetime."""

    def __call__(self) -> datetime: ...


def utc_now() -> datetime:
    """The default clock: the system time in UTC."""
    return datetime.now(timezone.utc)


system_clock: Callable[[], datetime] = functools.partial(datetime.now, timezone.utc)
"""What ``utc_now`` reads, without a Python frame: the default clock of a machine, read
on every move."""


def new_session_id() -> str:
    """``ps_`` + 26 Crockford base32 characters: 48 bits of milliseconds, 80 random bits.

    Ids made later sort after ids made earlier (to the millisecond).
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "ps_" + "".join(reversed(chars))


def new_idempotency_key() -> str:
    """A random key for resuming cart completion after a failure."""
    return secrets.token_hex(16)


def is_amount(value: object) -> bool:
    """An amount in minor units: an int (never a bool) from 0 to MAX_AMOUNT."""
    return type(value) is int and 0 <= value <= MAX_AMOUNT


def _redacted(value: Mapping[str, object] | None) -> str:
    if value is None:
        return "None"
    return f"<redacted: {len(value)} keys>"


def _short(value: object) -> str:
    if type(value) is int and value.bit_length() > 64:
        return f"an int of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@attrs.frozen(slots=True, weakref_slot=False)
class PaymentSession:
    """One payment session, as Medusa models it; an immutable snapshot.

    Construction validates every field and raises :class:`InvalidSessionData` naming
    each bad one. A snapshot never changes: a move produces a new one. ``data`` (and
    ``cart``) are deep read-only and never shown by ``repr``: they can hold provider
    secrets.
    """

    id: str
    cart_id: str | None
    provider_id: str
    is_selected: bool
    is_initiated: bool
    status: PaymentSessionStatus
    data: Mapping[str, object] = attrs.field(repr=_redacted, hash=False)
    idempotency_key: str | None
    amount: int | None
    payment_authorized_at: datetime | None
    created_at: datetime
    updated_at: datetime
    cart: Mapping[str, object] | None = attrs.field(default=None, repr=_redacted, hash=False)

    def __attrs_post_init__(self) -> None:
        problems: dict[str, str] = {}
        put = object.__setattr__

        _check_id(self.id, "id", problems, nullable=False)
        _check_id(self.cart_id, "cart_id", problems, nullable=True)
        _check_id(self.provider_id, "provider_id", problems, nullable=False)
        _check_id(self.idempotency_key, "idempotency_key", problems, nullable=True)
        for name in ("is_selected", "is_initiated"):
            if not isinstance(getattr(self, name), bool):
                problems[name] = f"must be a bool, got {type(getattr(self, name)).__name__}"

        status: Any = self.status
        if not isinstance(status, PaymentSessionStatus):
            try:
                put(self, "status", PaymentSessionStatus(status))
            except ValueError:
                problems["status"] = (
                    f"must be one of {', '.join(s.value for s in PaymentSessionStatus)}; "
                    f"got {_short(status)}"
                )

        amount: Any = self.amount
        if amount is not None and not is_amount(amount):
            shown = _short(amount) if isinstance(amount, int | float) else type(amount).__name__
            problems["amount"] = (
                f"must be an int from 0 to {MAX_AMOUNT} (minor units) or None, got {shown}"
            )

        if isinstance(self.data, Mapping):
            put(self, "data", freeze(self.data, "data", problems))
        else:
            problems["data"] = f"must be a JSON object, got {type(self.data).__name__}"
        if self.cart is not None:
            if isinstance(self.cart, Mapping):
                put(self, "cart", freeze(self.cart, "cart", problems))
            else:
                problems["cart"] = f"must be a JSON object or None, got {type(self.cart).__name__}"

        for name in ("created_at", "updated_at", "payment_authorized_at"):
            value = getattr(self, name)
            if value is None and name == "payment_authorized_at":
                continue
            normalized = check_datetime(value, name, problems)
            if normalized is not None:
                put(self, name, normalized)

        # An authorized snapshot is history, not a move: Medusa stored authorized sessions
        # before it had is_initiated, amount or payment_authorized_at, and they must read.
        # The authorize move's guards are what keep a session from getting there unpaid.
        if not problems and self.updated_at < self.created_at:
            problems["updated_at"] = "must not be earlier than created_at"
        if problems:
            raise InvalidSessionData(problems)

    @classmethod
    def new(
        cls,
        *,
        cart_id: str | None,
        provider_id: str,
        amount: int | None,
        data: Mapping[str, object] | None = None,
        clock: Clock | None = None,
    ) -> PaymentSession:
        """A pending session with a fresh ``ps_…`` id and idempotency key."""
        now = (clock or utc_now)()
        return cls(
            id=new_session_id(),
            cart_id=cart_id,
            provider_id=provider_id,
            is_selected=False,
            is_initiated=False,
            status=PaymentSessionStatus.PENDING,
            data={} if data is None else data,
            idempotency_key=new_idempotency_key(),
            amount=amount,
            payment_authorized_at=None,
            created_at=now,
            updated_at=now,
        )


def _refuse_assignment(self: PaymentSession, name: str, value: object = None) -> None:
    raise ImmutableSession(name)


# attrs' own __init__ writes through object.__setattr__, so replacing these after the
# class is built leaves construction alone and turns every later write into our error.
PaymentSession.__setattr__ = _refuse_assignment  # type: ignore[assignment,method-assign]
PaymentSession.__delattr__ = _refuse_assignment  # type: ignore[assignment,method-assign]

FIELDS: tuple[str, ...] = tuple(a.name for a in attrs.fields(PaymentSession))


def check_datetime(value: object, name: str, problems: dict[str, str]) -> datetime | None:
    """``value`` as a UTC datetime; naive or non-datetime values go into ``problems``."""
    if not isinstance(value, datetime):
        problems[name] = f"must be a timezone-aware datetime, got {type(value).__name__}"
        return None
    offset = value.utcoffset()
    if offset is None:
        problems[name] = "must be timezone-aware (a naive datetime is ambiguous)"
        return None
    try:
        utc = value if value.tzinfo is timezone.utc else value.astimezone(timezone.utc)
    except OverflowError:  # an offset that carries it off the calendar
        utc = None
    if utc is None or not in_range(utc):
        problems[name] = f"must be an instant {RANGE}"
        return None
    return utc


def _check_id(value: object, name: str, problems: dict[str, str], *, nullable: bool) -> None:
    if value is None:
        if not nullable:
            problems[name] = "is required"
        return
    if not isinstance(value, str):
        problems[name] = f"must be a string, got {type(value).__name__}"
    elif not value:
        problems[name] = "must not be empty"
    elif not is_text(value):
        problems[name] = "must be valid Unicode text (it holds a lone surrogate)"
    elif len(value) > (longest := current().id_length):
        problems[name] = f"must be at most {longest} characters, got {len(value)}"


def _compile_evolve(name: str, given: tuple[str, ...]) -> Any:
    # One straight-line function over the fields: a move copies thirteen slots on the
    # hot path, and a loop with getattr costs several times as much. The fields in
    # ``given`` are arguments; the others come from ``changes`` when it is an argument,
    # else from the session.
    lines = [f"def {name}({', '.join(('session', *given))}):", "    new = _new(PaymentSession)"]
    if "changes" in given:
        lines.append("    get = changes.get")
    for field in FIELDS:
        # Through the slot's own descriptor: object.__setattr__ would look it up again.
        if field in given:
            value = field
        elif "changes" in given:
            value = f"get({field!r}, session.{field})"
        else:
            value = f"session.{field}"
        lines.append(f"    _set_{field}(new, {value})")
    lines.append("    return new")
    namespace: dict[str, Any] = {
        "_new": object.__new__,
        "PaymentSession": PaymentSession,
        **{f"_set_{field}": PaymentSession.__dict__[field].__set__ for field in FIELDS},
    }
    return compile_function(name, lines, namespace)


evolve_trusted: Callable[[PaymentSession, Mapping[str, object]], PaymentSession]
evolve_trusted = _compile_evolve("evolve_trusted", ("changes",))
evolve_trusted.__doc__ = """A copy of ``session`` with ``changes``, skipping validation.

Only for the machine, whose changes are validated before they get here: a move must not
pay for re-checking (and re-freezing) fields it did not touch.
"""

evolve_moved: Callable[[PaymentSession, PaymentSessionStatus, datetime], PaymentSession]
evolve_moved = _compile_evolve("evolve_moved", ("status", "updated_at"))
evolve_moved.__doc__ = """``evolve_trusted(session, {"status": status, "updated_at": updated_at})``
without the mapping, for the moves that change nothing else (most of them)."""


def clock_reading(clock: Callable[[], datetime]) -> datetime:
    """Read ``clock``, refusing a naive or non-datetime reading; always UTC."""
    value = clock()
    # in_range() written out: every move reads the clock.
    if type(value) is datetime and value.tzinfo is timezone.utc and EARLIEST <= value < LATEST:
        return value
    problems: dict[str, str] = {}
    checked = check_datetime(value, "clock", problems)
    if checked is None:
        raise InvalidSessionData(problems)
    return checked


__all__ = ["Clock", "PaymentSession", "new_idempotency_key", "new_session_id", "utc_now"]
