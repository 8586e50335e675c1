"""paysession: the lifecycle of a payment session in checkout code.

Legal moves only, enforced by a ``transitions`` state machine; every move stamped,
hooked and written to a tamper-evident audit trail; Medusa's wire JSON in and out.
"""

from paysession.aio import AsyncPaymentSessions
from paysession.checkout import (
    Completion,
    CompletionOutcome,
    CompletionTimeout,
    NoSelectedSession,
    cancel_payment,
    complete_cart,
)
from paysession.codec import from_dict, from_json, to_dict, to_json
from paysession.errors import (
    AuthorizationConflict,
    CartBusy,
    CartConflict,
    ConcurrentUpdate,
    DoubleAuthorization,
    DuplicateSession,
    GuardRejected,
    HookError,
    IdempotencyConflict,
    IllegalTransition,
    ImmutableSession,
    InvalidSessionData,
    PaySessionError,
    ProviderTimeout,
    ReconciliationAnomaly,
    SelectionConflict,
    SessionNotFound,
    StoreError,
    UnknownProviderStatus,
    WebhookRejected,
)
from paysession.expiry import Expiry, expire_sessions
from paysession.holds import Holds
from paysession.hooks import Hooks, TransitionEvent
from paysession.lifecycle import TRANSITIONS, Trigger
from paysession.machine import SessionMachine
from paysession.providers import (
    ProviderReply,
)
from paysession.record import TransitionRecord
from paysession.service import PaymentSessions, Reconciliation
from paysession.session import PaymentSession
from paysession.status import PaymentSessionStatus
from paysession.store.base import AnomalyKind, CallAction, EventOutcome, ProviderCall, ProviderEvent

# The one place the version is written: the build reads it from here (pyproject.toml,
# [tool.hatch.version]), so it costs nothing at import.
__version__ = "0.1.0"

# What a checkout developer imports: the session and its moves, the service and its
# asyncio twin, cart completion, and the errors they raise. Everything else (stores,
# providers, the audit trail, diagrams) is imported from its own module.
__all__ = [
    "TRANSITIONS",
    "AnomalyKind",
    "AsyncPaymentSessions",
    "AuthorizationConflict",
    "CallAction",
    "CartBusy",
    "CartConflict",
    "Completion",
    "CompletionOutcome",
    "CompletionTimeout",
    "ConcurrentUpdate",
    "DoubleAuthorization",
    "DuplicateSession",
    "EventOutcome",
    "Expiry",
    "GuardRejected",
    "Holds",
    "HookError",
    "Hooks",
    "IdempotencyConflict",
    "IllegalTransition",
    "ImmutableSession",
    "InvalidSessionData",
    "NoSelectedSession",
    "PaySessionError",
    "PaymentSession",
    "PaymentSessionStatus",
    "PaymentSessions",
    "ProviderCall",
    "ProviderEvent",
    "ProviderReply",
    "ProviderTimeout",
    "Reconciliation",
    "ReconciliationAnomaly",
    "SelectionConflict",
    "SessionMachine",
    "SessionNotFound",
    "StoreError",
    "TransitionEvent",
    "TransitionRecord",
    "Trigger",
    "UnknownProviderStatus",
    "WebhookRejected",
    "__version__",
    "cancel_payment",
    "complete_cart",
    "expire_sessions",
    "from_dict",
    "from_json",
    "to_dict",
    "to_json",
]
