"""Payment providers: the protocol, status maps and replies, and the simulated processor.

The public home of both: ``paysession/provider_api.py`` holds what a provider is and how
its statuses map onto ours; ``paysession/simulation.py`` the simulated processor and
webhook channel used by the tests and the demo. Each real provider has a module of its
own, imported on its own and needing its extra: :mod:`paysession.providers.stripe`
(``paysession[stripe]``), :mod:`~paysession.providers.adyen` (``paysession[adyen]``),
:mod:`~paysession.providers.paypal` (``paysession[paypal]``) and
:mod:`~paysession.providers.klarna` (``paysession[klarna]``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from paysession.provider_api import (
    ADYEN,
    KLARNA,
    NATIVE,
    PAYPAL,
    STRIPE,
    DoubleAuthorization,
    PaymentProvider,
    ProviderReply,
    ProviderReport,
    ProviderRules,
    Providers,
    ProviderTimeout,
    ReconciliationAnomaly,
    UnknownProviderStatus,
    Webhook,
    cancel_key,
    map_status,
    provider_for,
    read_status,
    register_provider,
    register_status_map,
    rules_for,
    status_map,
    void_key,
)

if TYPE_CHECKING:
    from paysession.simulation import SCENARIOS, Hold, SimulatedProvider, WebhookChannel

# The simulated processor (and its SQLite ledger) is loaded when one of its names is
# first asked for (PEP 562): the library's own modules import this one for the
# provider protocol alone.
_SIMULATION = ("SCENARIOS", "Hold", "SimulatedProvider", "WebhookChannel")


def __getattr__(name: str) -> Any:
    if name in _SIMULATION:
        value = getattr(importlib.import_module("paysession.simulation"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ADYEN",
    "KLARNA",
    "NATIVE",
    "PAYPAL",
    "SCENARIOS",
    "STRIPE",
    "DoubleAuthorization",
    "Hold",
    "PaymentProvider",
    "ProviderReply",
    "ProviderReport",
    "ProviderRules",
    "ProviderTimeout",
    "Providers",
    "ReconciliationAnomaly",
    "SimulatedProvider",
    "UnknownProviderStatus",
    "Webhook",
    "WebhookChannel",
    "cancel_key",
    "map_status",
    "provider_for",
    "read_status",
    "register_provider",
    "register_status_map",
    "rules_for",
    "status_map",
    "void_key",
]
