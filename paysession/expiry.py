"""Abandoned sessions: cancel what nobody finished, under a claim on its cart; and the
sweep of holds that canceled sessions left at their provider.

Built on the cancellation flow of ``paysession/checkout.py`` (its claim handling, its
question to the provider first and its cancel there), so that an expiry never races a
completion of the same cart and never cancels a payment the provider has authorized.
"""

from __future__ import annotations

from datetime import timedelta

import attrs

from paysession.checkout import Checkout
from paysession.errors import CartBusy, ConcurrentUpdate, IllegalTransition, ProviderTimeout
from paysession.providers import Providers
from paysession.service import DEFAULT_LEASE, PaymentSessions
from paysession.session import PaymentSession
from paysession.status import PaymentSessionStatus
from paysession.store.base import STALE_STATUSES, Claim, ClaimAction


@attrs.frozen
class Expiry:
    """What :func:`expire_sessions` did, by session id.

    ``canceled``: abandoned sessions now canceled (at the provider first, when it had
    been called). ``busy``: skipped, their cart held by a live claim (a completion in
    flight). ``moved``: skipped, they moved (or were canceled by another process)
    between the look-up and the cancel. ``unanswered``: skipped, their provider did not
    answer in time; the next run tries them again. ``authorized``: not canceled, their
    provider holds the money (a paid order whose report was lost or late): the
    authorization is recorded instead (or, when the cart cannot keep it, voided as a
    double authorization). ``in_flight``: skipped, their provider is still processing
    the payment. ``released``: canceled sessions whose provider still held money for
    them (a late authorization), now voided there.
    """

    canceled: tuple[str, ...] = ()
    busy: tuple[str, ...] = ()
    moved: tuple[str, ...] = ()
    unanswered: tuple[str, ...] = ()
    authorized: tuple[str, ...] = ()
    in_flight: tuple[str, ...] = ()
    released: tuple[str, ...] = ()


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
    first; a session that this (or anything else) moved is left alone. Before anything
    is canceled at the provider, the provider is asked where the payment is: one it has
    authorized is recorded, never canceled (``authorized``), one still in flight is
    left for the next run (``in_flight``). At most ``limit`` sessions per call, least
    recently moved first; running it again finds none of those it canceled
    (idempotent).

    Then the sweep: canceled sessions whose provider said it holds money and never that
    it let go (a late authorization recorded while no provider was at hand, a session
    canceled with a plain ``fire("cancel")``) have that hold voided (``released``), up
    to ``limit`` of them.
    """
    done: dict[str, list[str]] = {field.name: [] for field in attrs.fields(Expiry)}
    reason = f"abandoned: no move for {older_than}"
    # Few reloads per session: one that keeps moving is not abandoned.
    checkout = Checkout(sessions, provider, actor=actor, attempts=3, lease=lease)
    for session in sessions.abandoned(older_than, limit=limit):
        done[_expire_one(checkout, session, reason)].append(session.id)
    for session in sessions.unreleased_holds(limit=limit):
        if session.status is PaymentSessionStatus.CANCELED:
            try:
                if sessions.release_hold(session.id, provider):
                    done["released"].append(session.id)
            except ProviderTimeout:
                done["unanswered"].append(session.id)
    return Expiry(**{outcome: tuple(ids) for outcome, ids in done.items()})


def _expire_one(checkout: Checkout, stale: PaymentSession, reason: str) -> str:
    """Cancel one abandoned session; say whether it was canceled, busy, moved, unanswered,
    authorized or in flight."""
    sessions = checkout.sessions

    def cancel(session_id: str, claim: Claim | None) -> tuple[str, bool]:
        current = sessions.get(session_id)
        if current.status not in STALE_STATUSES or current.updated_at != stale.updated_at:
            return "moved", False
        found = checkout.ask_first(current)
        if found is None:
            return "in_flight", False
        if found is PaymentSessionStatus.AUTHORIZED:
            return "authorized", False
        if found is PaymentSessionStatus.CANCELED:
            return "moved", False  # canceled at the provider: reconciled just now
        records, released = checkout.cancel(session_id, claim, reason, asked=True)
        return ("canceled" if records else "moved"), released

    try:
        if stale.cart_id is None:
            return cancel(stale.id, None)[0]
        try:
            claimed = sessions.claim_cart(
                stale.cart_id,
                lease=checkout.lease,
                session_id=stale.id,
                action=ClaimAction.CANCEL,
            )
        except CartBusy:
            return "busy"
        return checkout.under_claim(claimed, cancel)[0]
    except (ConcurrentUpdate, IllegalTransition):
        return "moved"
    except ProviderTimeout:
        return "unanswered"


__all__ = ["Expiry", "expire_sessions"]
