"""Webhooks delivered the way real ones arrive: some late, some twice, out of order."""

from __future__ import annotations

import random

from paysession.provider_api import Webhook


class WebhookChannel:
    """Delivers webhooks the way real ones arrive: some late, some twice, out of order.

    ``push`` takes the notices in the order the provider sent them and returns the ones
    to deliver now; ``flush`` returns the rest. Each notice is held back with probability
    ``late`` (released after a few later ones, so it arrives out of order and stale),
    and delivered a second time with probability ``duplicate``. Deterministic for a seed.
    """

    def __init__(self, seed: int = 0, *, late: float = 0.25, duplicate: float = 0.2) -> None:
        self._rng = random.Random(f"{seed}:webhooks")
        self._late = late
        self._duplicate = duplicate
        self._held: list[tuple[int, Webhook]] = []

    def push(self, notice: Webhook) -> list[Webhook]:
        due: list[Webhook] = []
        still: list[tuple[int, Webhook]] = []
        for wait, held in self._held:
            if wait <= 1:
                due.append(held)
            else:
                still.append((wait - 1, held))
        self._held = still
        copies = [notice, notice] if self._rng.random() < self._duplicate else [notice]
        for copy in copies:
            if self._rng.random() < self._late:
                self._held.append((self._rng.randint(1, 4), copy))
            else:
                # Sometimes ahead of what was held back: out of order even when not late.
                due.insert(self._rng.randint(0, len(due)), copy)
        return due

    def flush(self) -> list[Webhook]:
        rest = [notice for _, notice in self._held]
        self._held = []
        return rest


__all__ = ["WebhookChannel"]
