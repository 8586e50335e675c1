"""A simulated payment processor and webhook channel, for tests and the demo.

- ``paysession/simulation/processor.py``: ``SimulatedProvider``, a Stripe-like
  processor with a ledger of holds;
- ``paysession/simulation/webhooks.py``: ``WebhookChannel``, which delivers its notices
  late, twice and out of order.
"""

from paysession.simulation.processor import SCENARIOS, Hold, SimulatedProvider
from paysession.simulation.webhooks import WebhookChannel

__all__ = ["SCENARIOS", "Hold", "SimulatedProvider", "WebhookChannel"]
