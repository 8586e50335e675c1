"""Abandoned sessions: cancel what nobody finished, under a claim on its cart.

Built on the cancellation flow of ``paysession/checkout.py`` (its claim handling and its
cancel at the provider), so that an expiry never races a completion of the same cart.
"""

from __future__ import annotations

from datetime import timedelta

import attrs

from paysession.checkout import _cancel, _holding
from paysession.errors import CartBusy, ConcurrentUpdate, IllegalTransition, ProviderTimeout
from paysession.providers import Providers
from paysession.service import DEFAULT_LEASE, PaymentSessions
from paysession.session import PaymentSession
from paysession.store.base import STALE_STATUSES, Claim, ClaimAction


@attrs.frozen
class Expiry:
    """What :func:`expire_sessions` did, by session id.

    ``canceled``: abandoned sessions now canceled (at the provider first, when it had
    been called). ``busy``: skipped, their cart held by a live claim (a completion in
    flight). ``moved``: skipped, they moved (or were canceled by another process)
    between the look-up and the cancel. ``unanswered``: skipped, their provider did not
    answer in time; the next run tries them again.
    """

    canceled: tuple[str, ...] = ()
    busy: tuple[str, ...] = ()
    moved: tuple[str, ...] = ()
    unanswered: tuple[str, ...] = ()


def expire_sessions(
    sessions: PaymentSessions,
    provider: Providers,
    *,
    older_than: timedelta,
    limit: int = 1000,
    actor: str = "expiry",
    lease: timedelta = DEFAULT_LEASE,
) -> Expiry:
    """Cancel abandoned sessions: pending, requires_more or error, no move for ``older_than``.

    Each is canceled under a claim on its cart, so a cart whose completion is in flight
    is skipped, and several processes may expire at once: each session is canceled once.
    An initiated session is canceled at its provider first (voiding any hold, under the
    key ``<session key>:cancel``). A claim left by a crashed completion is finished
    first; a session that this (or anything else) moved is left alone. At most
    ``limit`` sessions per call, least recently moved first; running it again finds
    none of those it canceled (idempotent).
    """
    done: dict[str, list[str]] = {"canceled": [], "busy": [], "moved": [], "unanswered": []}
    reason = f"abandoned: no move for {older_than}"
    for session in sessions.stale(older_than, limit=limit):
        done[_expire_one(sessions, provider, session, actor, lease, reason)].append(session.id)
    return Expiry(**{outcome: tuple(ids) for outcome, ids in done.items()})


def _expire_one(
    sessions: PaymentSessions,
    provider: Providers,
    stale: PaymentSession,
    actor: str,
    lease: timedelta,
    reason: str,
) -> str:
    """Cancel one stale session; say whether it was canceled, busy, moved or unanswered."""

    def cancel(session_id: str, claim: Claim | None) -> tuple[str, bool]:
        current = sessions.get(session_id)
        if current.status not in STALE_STATUSES or current.updated_at != stale.updated_at:
            return "moved", False
        records, released = _cancel(sessions, provider, session_id, actor, 3, claim, reason)
        return ("canceled" if records else "moved"), released

    try:
        if stale.cart_id is None:
            return cancel(stale.id, None)[0]
        try:
            claimed = sessions.claim_cart(
                stale.cart_id, lease=lease, session_id=stale.id, action=ClaimAction.CANCEL
            )
        except CartBusy:
            return "busy"
        return _holding(sessions, provider, claimed, actor, 3, cancel)[0]
    except (ConcurrentUpdate, IllegalTransition):
        return "moved"
    except ProviderTimeout:
        return "unanswered"


__all__ = ["Expiry", "expire_sessions"]
