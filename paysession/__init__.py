"""paysession: the lifecycle of a payment session in checkout code.

Legal moves only, enforced by a ``transitions`` state machine; every move stamped,
hooked and written to a tamper-evident audit trail; Medusa's wire JSON in and out.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paysession.aio import (
        AsyncPaymentSessions,
    )
    from paysession.audit.trail import (
        AuditReport,
    )
    from paysession.checkout import (
        Checkout,
        Completion,
        CompletionOutcome,
        CompletionTimeout,
        cancel_payment,
        complete_cart,
        complete_session,
    )
    from paysession.codec import (
        from_dict,
        from_json,
        to_dict,
        to_json,
    )
    from paysession.errors import (
        AuditError,
        AuthorizationConflict,
        CartBusy,
        CartConflict,
        CartNotFound,
        ClaimNotHeld,
        ConcurrentUpdate,
        DefinitionError,
        DiagramError,
        DoubleAuthorization,
        DuplicateSession,
        GuardRejected,
        HookError,
        IdempotencyConflict,
        IllegalTransition,
        ImmutableSession,
        InvalidSessionData,
        MigrationRefused,
        MissingExtra,
        MissingRenderer,
        NoSelectedSession,
        PaySessionError,
        ProviderTimeout,
        ReconciliationAnomaly,
        ReentrantMove,
        SelectionConflict,
        SessionNotFound,
        SinkError,
        StoreError,
        UnknownProviderStatus,
        WebhookRejected,
    )
    from paysession.expiry import (
        Expiry,
        expire_sessions,
    )
    from paysession.holds import (
        Holds,
    )
    from paysession.hooks import (
        Hooks,
        TransitionEvent,
    )
    from paysession.lifecycle import (
        TRANSITIONS,
        Trigger,
    )
    from paysession.machine import (
        SessionMachine,
    )
    from paysession.provider_api import (
        PaymentProvider,
        ProviderReply,
        ProviderReport,
    )
    from paysession.reconcile import (
        Reconciliation,
    )
    from paysession.record import (
        TransitionRecord,
    )
    from paysession.service import (
        PaymentSessions,
    )
    from paysession.session import (
        PaymentSession,
    )
    from paysession.status import (
        PaymentSessionStatus,
    )
    from paysession.store.base import (
        AnomalyKind,
        CallAction,
        Claim,
        ClaimAction,
        Claimed,
        EventOutcome,
        LoggedRecord,
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
    "AuditReport": "paysession.audit.trail",
    "Checkout": "paysession.checkout",
    "Completion": "paysession.checkout",
    "CompletionOutcome": "paysession.checkout",
    "CompletionTimeout": "paysession.checkout",
    "cancel_payment": "paysession.checkout",
    "complete_cart": "paysession.checkout",
    "complete_session": "paysession.checkout",
    "from_dict": "paysession.codec",
    "from_json": "paysession.codec",
    "to_dict": "paysession.codec",
    "to_json": "paysession.codec",
    "AuditError": "paysession.errors",
    "AuthorizationConflict": "paysession.errors",
    "CartBusy": "paysession.errors",
    "CartConflict": "paysession.errors",
    "CartNotFound": "paysession.errors",
    "ClaimNotHeld": "paysession.errors",
    "ConcurrentUpdate": "paysession.errors",
    "DefinitionError": "paysession.errors",
    "DiagramError": "paysession.errors",
    "DoubleAuthorization": "paysession.errors",
    "DuplicateSession": "paysession.errors",
    "GuardRejected": "paysession.errors",
    "HookError": "paysession.errors",
    "IdempotencyConflict": "paysession.errors",
    "IllegalTransition": "paysession.errors",
    "ImmutableSession": "paysession.errors",
    "InvalidSessionData": "paysession.errors",
    "MigrationRefused": "paysession.errors",
    "MissingExtra": "paysession.errors",
    "MissingRenderer": "paysession.errors",
    "NoSelectedSession": "paysession.errors",
    "PaySessionError": "paysession.errors",
    "ProviderTimeout": "paysession.errors",
    "ReconciliationAnomaly": "paysession.errors",
    "ReentrantMove": "paysession.errors",
    "SelectionConflict": "paysession.errors",
    "SessionNotFound": "paysession.errors",
    "SinkError": "paysession.errors",
    "StoreError": "paysession.errors",
    "UnknownProviderStatus": "paysession.errors",
    "WebhookRejected": "paysession.errors",
    "Expiry": "paysession.expiry",
    "expire_sessions": "paysession.expiry",
    "Holds": "paysession.holds",
    "Hooks": "paysession.hooks",
    "TransitionEvent": "paysession.hooks",
    "TRANSITIONS": "paysession.lifecycle",
    "Trigger": "paysession.lifecycle",
    "SessionMachine": "paysession.machine",
    "PaymentProvider": "paysession.provider_api",
    "ProviderReply": "paysession.provider_api",
    "ProviderReport": "paysession.provider_api",
    "Reconciliation": "paysession.reconcile",
    "TransitionRecord": "paysession.record",
    "PaymentSessions": "paysession.service",
    "PaymentSession": "paysession.session",
    "PaymentSessionStatus": "paysession.status",
    "AnomalyKind": "paysession.store.base",
    "CallAction": "paysession.store.base",
    "Claim": "paysession.store.base",
    "ClaimAction": "paysession.store.base",
    "Claimed": "paysession.store.base",
    "EventOutcome": "paysession.store.base",
    "LoggedRecord": "paysession.store.base",
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
    "AuditError",
    "AuditReport",
    "AuthorizationConflict",
    "CallAction",
    "CartBusy",
    "CartConflict",
    "CartNotFound",
    "Checkout",
    "Claim",
    "ClaimAction",
    "ClaimNotHeld",
    "Claimed",
    "Completion",
    "CompletionOutcome",
    "CompletionTimeout",
    "ConcurrentUpdate",
    "DefinitionError",
    "DiagramError",
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
    "LoggedRecord",
    "MigrationRefused",
    "MissingExtra",
    "MissingRenderer",
    "NoSelectedSession",
    "PaySessionError",
    "PaymentProvider",
    "PaymentSession",
    "PaymentSessionStatus",
    "PaymentSessions",
    "ProviderCall",
    "ProviderEvent",
    "ProviderReply",
    "ProviderReport",
    "ProviderTimeout",
    "Reconciliation",
    "ReconciliationAnomaly",
    "ReentrantMove",
    "SelectionConflict",
    "SessionMachine",
    "SessionNotFound",
    "SinkError",
    "StoreError",
    "TransitionEvent",
    "TransitionRecord",
    "Trigger",
    "UnknownProviderStatus",
    "WebhookRejected",
    "__version__",
    "cancel_payment",
    "complete_cart",
    "complete_session",
    "expire_sessions",
    "from_dict",
    "from_json",
    "to_dict",
    "to_json",
]
