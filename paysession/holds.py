"""Money at the provider: the calls that hold or release it, and what a session holds.

Every authorize, cancel and void paysession asks of a provider is kept as a
:class:`~paysession.store.base.ProviderCall`, with its answer. Together with the
provider's reports (the events reconciliation recorded), they say for any session which
holds were asked for and which were released, and so which money a session holds that
its cart cannot keep (``docs/one-charge.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import attrs

from paysession.providers import ProviderReply, read_status
from paysession.session import Clock, PaymentSession, clock_reading
from paysession.status import PaymentSessionStatus
from paysession.store.base import CallAction, ProviderCall, ProviderEvent

_AUTHORIZED = PaymentSessionStatus.AUTHORIZED
_CANCELED = PaymentSessionStatus.CANCELED


def provider_call(
    clock: Clock,
    session: PaymentSession,
    action: CallAction,
    idempotency_key: str,
    reply: ProviderReply,
    asked_at: datetime,
) -> ProviderCall:
    """The call just answered by ``reply``, as it is kept: no data of the provider's
    (its client secret stays out), the answer read through the provider's rules."""
    return ProviderCall(
        session_id=session.id,
        action=action,
        idempotency_key=idempotency_key,
        provider_status=reply.status,
        status=read_status(session.provider_id, reply.status, declined=reply.decline is not None),
        asked_at=asked_at,
        answered_at=clock_reading(clock),
        amount=reply.amount,
        currency=reply.currency,
    )


@attrs.frozen
class Holds:
    """What a session's provider said of its money.

    ``asked``: the calls and reports that say the provider holds money for it (an
    authorization answered or reported); ``released``: those that say it let go (a
    cancel or void answered canceled, a cancellation reported). ``unreleased`` is true
    when money was held, never released, and the session is not authorized: money its
    cart cannot keep. A payment canceled at its provider is never authorized again
    there, so one release settles it.
    """

    session_id: str
    asked: tuple[ProviderCall | ProviderEvent, ...]
    released: tuple[ProviderCall | ProviderEvent, ...]
    unreleased: bool

    @property
    def voided(self) -> bool:
        """Whether a hold was asked for and then released."""
        return bool(self.asked) and bool(self.released)


def holds_of(
    session: PaymentSession,
    calls: Sequence[ProviderCall],
    events: Sequence[ProviderEvent],
) -> Holds:
    """The :class:`Holds` of ``session`` from its kept calls and recorded events."""
    facts: list[ProviderCall | ProviderEvent] = [*events, *calls]
    asked = tuple(fact for fact in facts if fact.status is _AUTHORIZED)
    released = tuple(fact for fact in facts if fact.status is _CANCELED)
    unreleased = bool(asked) and not released and session.status is not _AUTHORIZED
    return Holds(session.id, asked, released, unreleased)


__all__ = ["Holds", "holds_of", "provider_call"]
