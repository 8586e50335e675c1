"""paysession: the lifecycle of a payment session in checkout code.

Legal moves only, enforced by a ``transitions`` state machine; every move stamped,
hooked and written to a tamper-evident audit trail; Medusa's wire JSON in and out.
"""

from paysession.codec import from_dict, from_json, to_dict, to_json
from paysession.errors import (
    ConcurrentUpdate,
    DuplicateSession,
    GuardRejected,
    HookError,
    IdempotencyConflict,
    IllegalTransition,
    ImmutableSession,
    InvalidSessionData,
    PaySessionError,
    SelectionConflict,
    SessionNotFound,
    StoreError,
)
from paysession.hooks import Hooks, TransitionEvent
from paysession.lifecycle import TRANSITIONS
from paysession.machine import SessionMachine
from paysession.record import TransitionRecord
from paysession.service import PaymentSessions
from paysession.session import PaymentSession
from paysession.status import PaymentSessionStatus

__all__ = [
    "TRANSITIONS",
    "ConcurrentUpdate",
    "DuplicateSession",
    "GuardRejected",
    "HookError",
    "Hooks",
    "IdempotencyConflict",
    "IllegalTransition",
    "ImmutableSession",
    "InvalidSessionData",
    "PaySessionError",
    "PaymentSession",
    "PaymentSessionStatus",
    "PaymentSessions",
    "SelectionConflict",
    "SessionMachine",
    "SessionNotFound",
    "StoreError",
    "TransitionEvent",
    "TransitionRecord",
    "from_dict",
    "from_json",
    "to_dict",
    "to_json",
]

# Checkout integration: reconciliation with providers, cart completion, asyncio.
from paysession.aio import AsyncPaymentSessions
from paysession.checkout import (
    Completion,
    CompletionOutcome,
    CompletionTimeout,
    NoSelectedSession,
    cancel_payment,
    complete_cart,
)
from paysession.errors import (
    AuthorizationConflict,
    CartBusy,
    DoubleAuthorization,
    ProviderTimeout,
    ReconciliationAnomaly,
    UnknownProviderStatus,
)
from paysession.expiry import Expiry, expire_sessions
from paysession.providers import (
    ProviderReply,
)
from paysession.service import Reconciliation
from paysession.store.base import AnomalyKind, EventOutcome, ProviderEvent

__all__ += [
    "AnomalyKind",
    "AsyncPaymentSessions",
    "AuthorizationConflict",
    "CartBusy",
    "Completion",
    "CompletionOutcome",
    "CompletionTimeout",
    "DoubleAuthorization",
    "EventOutcome",
    "Expiry",
    "NoSelectedSession",
    "ProviderEvent",
    "ProviderReply",
    "ProviderTimeout",
    "Reconciliation",
    "ReconciliationAnomaly",
    "UnknownProviderStatus",
    "cancel_payment",
    "complete_cart",
    "expire_sessions",
]
