"""paysession: the lifecycle of a payment session in checkout code.

Legal moves only, enforced by a ``transitions`` state machine; every move stamped,
hooked and written to a tamper-evident audit trail; Medusa's wire JSON in and out.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paysession.aio import AsyncPaymentSessions
    from paysession.checkout import (
        Completion,
        CompletionOutcome,
        CompletionTimeout,
        cancel_payment,
        complete_cart,
    )
    from paysession.codec import (
        from_dict,
        from_json,
        to_dict,
        to_json,
    )
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
        NoSelectedSession,
        PaySessionError,
        ProviderTimeout,
        ReconciliationAnomaly,
        SelectionConflict,
        SessionNotFound,
        StoreError,
        UnknownProviderStatus,
        WebhookRejected,
    )
    from paysession.expiry import (
        Expiry,
        expire_sessions,
    )
    from paysession.holds import Holds
    from paysession.hooks import (
        Hooks,
        TransitionEvent,
    )
    from paysession.lifecycle import (
        TRANSITIONS,
        Trigger,
    )
    from paysession.machine import SessionMachine
    from paysession.providers import ProviderReply
    from paysession.record import TransitionRecord
    from paysession.service import (
        PaymentSessions,
        Reconciliation,
    )
    from paysession.session import PaymentSession
    from paysession.status import PaymentSessionStatus
    from paysession.store.base import (
        AnomalyKind,
        CallAction,
        EventOutcome,
        ProviderCall,
        ProviderEvent,
    )

# Every public name is loaded on first use (PEP 562): `import paysession` costs a
# short-lived process (a CLI call, a worker) nothing it does not touch, and a
# synchronous caller never loads asyncio, the simulation or the checkout flows. Each
# name maps to the module that defines it; to add one, add a line here and the same
# import under TYPE_CHECKING above (what type checkers and IDEs read).
_LAZY: dict[str, str] = {
    "AsyncPaymentSessions": "paysession.aio",
    "Completion": "paysession.checkout",
    "CompletionOutcome": "paysession.checkout",
    "CompletionTimeout": "paysession.checkout",
    "cancel_payment": "paysession.checkout",
    "complete_cart": "paysession.checkout",
    "from_dict": "paysession.codec",
    "from_json": "paysession.codec",
    "to_dict": "paysession.codec",
    "to_json": "paysession.codec",
    "AuthorizationConflict": "paysession.errors",
    "CartBusy": "paysession.errors",
    "CartConflict": "paysession.errors",
    "ConcurrentUpdate": "paysession.errors",
    "DoubleAuthorization": "paysession.errors",
    "DuplicateSession": "paysession.errors",
    "GuardRejected": "paysession.errors",
    "HookError": "paysession.errors",
    "IdempotencyConflict": "paysession.errors",
    "IllegalTransition": "paysession.errors",
    "ImmutableSession": "paysession.errors",
    "InvalidSessionData": "paysession.errors",
    "NoSelectedSession": "paysession.errors",
    "PaySessionError": "paysession.errors",
    "ProviderTimeout": "paysession.errors",
    "ReconciliationAnomaly": "paysession.errors",
    "SelectionConflict": "paysession.errors",
    "SessionNotFound": "paysession.errors",
    "StoreError": "paysession.errors",
    "UnknownProviderStatus": "paysession.errors",
    "WebhookRejected": "paysession.errors",
    "Expiry": "paysession.expiry",
    "Holds": "paysession.holds",
    "expire_sessions": "paysession.expiry",
    "Hooks": "paysession.hooks",
    "TransitionEvent": "paysession.hooks",
    "TRANSITIONS": "paysession.lifecycle",
    "Trigger": "paysession.lifecycle",
    "SessionMachine": "paysession.machine",
    "ProviderReply": "paysession.providers",
    "TransitionRecord": "paysession.record",
    "PaymentSessions": "paysession.service",
    "Reconciliation": "paysession.service",
    "PaymentSession": "paysession.session",
    "PaymentSessionStatus": "paysession.status",
    "AnomalyKind": "paysession.store.base",
    "CallAction": "paysession.store.base",
    "EventOutcome": "paysession.store.base",
    "ProviderCall": "paysession.store.base",
    "ProviderEvent": "paysession.store.base",
}


if not TYPE_CHECKING:
    # Hidden from type checkers, which read the imports above instead: to them, a
    # misspelt name is still an error, not Any.

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # the next lookup is a plain one
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
