"""The five statuses a payment session can be in."""

from __future__ import annotations

from enum import Enum


class PaymentSessionStatus(str, Enum):
    """Medusa's ``PaymentSession.status``; the value is the wire string."""

    AUTHORIZED = "authorized"
    PENDING = "pending"
    REQUIRES_MORE = "requires_more"
    ERROR = "error"
    CANCELED = "canceled"

    def __str__(self) -> str:
        return self.value


__all__ = ["PaymentSessionStatus"]
