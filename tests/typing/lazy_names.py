"""Checked by mypy in CI, never run: the names ``paysession`` loads on first use keep
their types, and a misspelt one is still an error (not Any)."""

from __future__ import annotations

from typing_extensions import assert_type

import paysession
from paysession.aio import AsyncPaymentSessions
from paysession.checkout import Completion
from paysession.service import PaymentSessions
from paysession.status import PaymentSessionStatus


def names() -> None:
    assert_type(paysession.PaymentSessions, type[PaymentSessions])
    assert_type(paysession.AsyncPaymentSessions, type[AsyncPaymentSessions])
    assert_type(paysession.Completion, type[Completion])
    assert_type(paysession.PaymentSessionStatus, type[PaymentSessionStatus])
    paysession.PaymentSesions  # type: ignore[attr-defined]  # noqa: B018
