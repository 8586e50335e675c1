"""Payment providers as checkout code sees them: a protocol, status maps, a simulator.

A provider speaks its own status names (Stripe's PaymentIntent, PayPal's orders); a
status map turns each into one of ours so that reconciliation can move the session.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

import attrs

from paysession.errors import (
    DoubleAuthorization,
    InvalidSessionData,
    ProviderTimeout,
    ReconciliationAnomaly,
    UnknownProviderStatus,
)
from paysession.session import Clock, PaymentSession, utc_now
from paysession.status import PaymentSessionStatus

S = PaymentSessionStatus
_T = TypeVar("_T")

STRIPE: Mapping[str, PaymentSessionStatus] = MappingProxyType(
    {
        "requires_payment_method": S.PENDING,
        "requires_confirmation": S.PENDING,
        "processing": S.PENDING,
        "requires_action": S.REQUIRES_MORE,
        "requires_capture": S.AUTHORIZED,
        "succeeded": S.AUTHORIZED,
        "canceled": S.CANCELED,
    }
)
"""Stripe PaymentIntent statuses. Stripe has no error state: a decline returns the intent
to ``requires_payment_method``, which reconciliation reaches as ``fail`` then ``retry``
only when the session had moved on; from pending it is a no-op."""

PAYPAL: Mapping[str, PaymentSessionStatus] = MappingProxyType(
    {
        "CREATED": S.PENDING,
        "SAVED": S.REQUIRES_MORE,
        "APPROVED": S.REQUIRES_MORE,
        "PAYER_ACTION_REQUIRED": S.REQUIRES_MORE,
        "VOIDED": S.CANCELED,
        "COMPLETED": S.AUTHORIZED,
    }
)
"""PayPal order statuses, as Medusa's PayPal plugin reads them."""

NATIVE: Mapping[str, PaymentSessionStatus] = MappingProxyType({s.value: s for s in S})
"""Our own status names, for providers that report them directly (manual, system)."""

_MAPS: dict[str, Mapping[str, PaymentSessionStatus]] = {
    "stripe": STRIPE,
    "paypal": PAYPAL,
    "manual": NATIVE,
    "system": NATIVE,
}


def register_status_map(
    provider_id: str, mapping: Mapping[str, PaymentSessionStatus | str]
) -> None:
    """Teach paysession another provider's status names (replaces an earlier map)."""
    problems: dict[str, str] = {}
    checked: dict[str, PaymentSessionStatus] = {}
    for name, status in mapping.items():
        try:
            checked[name] = PaymentSessionStatus(status)
        except ValueError:
            problems[f"mapping.{name}"] = "must map to a payment session status"
    if not provider_id:
        problems["provider_id"] = "must not be empty"
    if problems:
        raise InvalidSessionData(problems)
    _MAPS[provider_id] = MappingProxyType(checked)


def status_map(provider_id: str) -> Mapping[str, PaymentSessionStatus]:
    """The status map registered for ``provider_id``."""
    try:
        return _MAPS[provider_id]
    except KeyError:
        raise UnknownProviderStatus(provider_id, None) from None


def map_status(provider_id: str, provider_status: str) -> PaymentSessionStatus:
    """Our status for what ``provider_id`` calls ``provider_status``."""
    try:
        return status_map(provider_id)[provider_status]
    except KeyError:
        raise UnknownProviderStatus(provider_id, provider_status) from None


def void_key(session: PaymentSession) -> str:
    """The idempotency key under which a session's extra hold is voided (cancel)."""
    return f"{session.idempotency_key or session.id}:void"


def cancel_key(session: PaymentSession) -> str:
    """The idempotency key under which a session's payment is canceled at its provider."""
    return f"{session.idempotency_key or session.id}:cancel"


@attrs.frozen
class ProviderReply:
    """What a provider answered: its own status name and its data for the session.

    ``observed_at`` is when the provider's state took that status, when it says (the
    time its webhooks carry): cart completion keeps it so that webhooks observed before
    the answer are recognised as stale.
    """

    status: str
    data: Mapping[str, object] = attrs.field(factory=dict, repr=False)
    observed_at: datetime | None = None


class PaymentProvider(Protocol):
    """A protocol: what checkout code asks of a payment processor.

    Every call that changes something at the provider takes the session's
    ``idempotency_key``, so that a retried call is not a second payment.
    """

    id: str

    def initiate(self, session: PaymentSession) -> ProviderReply: ...

    def update(self, session: PaymentSession) -> ProviderReply: ...

    def authorize(self, session: PaymentSession, *, idempotency_key: str) -> ProviderReply: ...

    def cancel(self, session: PaymentSession, *, idempotency_key: str) -> ProviderReply: ...

    def status(self, session: PaymentSession) -> ProviderReply: ...


def provider_for(
    provider: PaymentProvider | Mapping[str, PaymentProvider], session: PaymentSession
) -> PaymentProvider:
    """The provider for ``session``: ``provider`` itself, or its entry in a mapping.

    InvalidSessionData (field ``provider``) when none is given for its provider id.
    """
    if isinstance(provider, Mapping):
        found = provider.get(session.provider_id)
    else:
        found = provider if provider.id == session.provider_id else None
    if found is None:
        raise InvalidSessionData(
            {"provider": f"no provider given for provider_id {session.provider_id!r}"}
        )
    return found


Providers = PaymentProvider | Mapping[str, PaymentProvider]
"""A provider, or a mapping from provider id to provider."""


@attrs.frozen
class Webhook:
    """A provider's notice about a session, as a webhook endpoint receives it."""

    event_id: str
    session_id: str
    provider_status: str
    observed_at: datetime


SCENARIOS = ("authorized", "requires_more", "declined_then_retry", "timeout")
"""The scripted outcomes of SimulatedProvider, chosen per session by the seed."""


_LEDGER_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS sim_intents (
        session_id TEXT PRIMARY KEY,
        provider_id TEXT NOT NULL,
        amount INTEGER,
        status TEXT NOT NULL,
        asked INTEGER NOT NULL DEFAULT 0,
        acted INTEGER NOT NULL DEFAULT 0,
        action_key TEXT,
        timed_out INTEGER NOT NULL DEFAULT 0,
        notices INTEGER NOT NULL DEFAULT 0,
        changed_at TEXT
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS sim_answers (
        key TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        data TEXT NOT NULL,
        observed_at TEXT
    )
    """,
    "CREATE TABLE IF NOT EXISTS sim_requests (key TEXT PRIMARY KEY, count INTEGER NOT NULL)",
    """
    CREATE TABLE IF NOT EXISTS sim_authorizations (
        key TEXT PRIMARY KEY, session_id TEXT NOT NULL, count INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS sim_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        provider_status TEXT NOT NULL,
        observed_at TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS sim_voids (
        key TEXT PRIMARY KEY, session_id TEXT NOT NULL, held INTEGER NOT NULL
    )
    """,
)


def _use_wal(conn: sqlite3.Connection) -> None:
    # Switching a new file to WAL can answer "database is locked" at once, without
    # waiting, while another process opens it: ask first, and retry for a while.
    for _ in range(2000):
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() == "wal":
            return
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error):
                raise
            time.sleep(0.005)
    conn.execute("PRAGMA journal_mode = WAL")


_HELD = "requires_capture"
"""The simulator's status of a payment whose money is held (Stripe: authorized, not captured)."""


@attrs.frozen
class Hold:
    """Money a provider holds for a session: authorized, not yet voided (or captured)."""

    session_id: str
    provider_id: str
    amount: int | None


class _Intent:
    """The simulator's state of one session's payment (Stripe's PaymentIntent)."""

    __slots__ = (
        "acted",
        "action_key",
        "amount",
        "asked",
        "changed_at",
        "notices",
        "provider_id",
        "session_id",
        "status",
        "timed_out",
    )

    def __init__(self, row: tuple[Any, ...]) -> None:
        (
            self.session_id,
            self.provider_id,
            self.amount,
            self.status,
            self.asked,
            acted,
            self.action_key,
            timed_out,
            self.notices,
            changed_at,
        ) = row
        self.acted = bool(acted)
        self.timed_out = bool(timed_out)
        self.changed_at = None if changed_at is None else datetime.fromisoformat(changed_at)

    def row(self) -> tuple[Any, ...]:
        changed = None if self.changed_at is None else self.changed_at.isoformat()
        return (
            self.session_id,
            self.provider_id,
            self.amount,
            self.status,
            self.asked,
            int(self.acted),
            self.action_key,
            int(self.timed_out),
            self.notices,
            changed,
        )


class SimulatedProvider:
    """A deterministic stand-in for a Stripe-like processor, for demos and tests.

    It speaks Stripe's PaymentIntent statuses. Each session gets one scenario from the
    seed (see ``SCENARIOS``):

    - ``authorized``: the first authorization request succeeds (``requires_capture``);
    - ``requires_more``: it answers ``requires_action`` until the customer acts
      (:meth:`customer_acts`, the 3-D Secure step), which authorizes the payment;
    - ``declined_then_retry``: the first attempt is declined (back to
      ``requires_payment_method``); a later attempt, under a new key, succeeds;
    - ``timeout``: the first request is carried out but its answer is lost
      (ProviderTimeout); asking again with the same key gets the answer.

    Like Stripe it is idempotent per key: a key that was answered gets the same answer
    again, and a payment is authorized at most once, whatever the keys. A cancel voids
    the payment (and its hold). ``authorizations`` counts authorizations by the key of
    the request that made them, ``requests`` every authorize call by key, and
    ``outbox`` holds the webhooks this object sent (one per status change,
    ``observed_at`` from ``clock``), in the order it sent them; ``send``, when given, is
    also called with each one as it is sent (before the caller has the answer).
    ``on_authorize``, when given, is called with the session and the key at the moment
    an authorize call arrives, before the provider acts on it: a test's way to run
    something while a request is in flight.

    The provider's memory is its ledger: in this object's memory by default, or in the
    SQLite file ``ledger``, which several processes (and objects, each with its own
    ``provider_id``) may share, as they would share one real processor. :meth:`holds`
    lists the money it holds.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        provider_id: str = "stripe",
        clock: Clock | None = None,
        send: Callable[[Webhook], object] | None = None,
        ledger: str | os.PathLike[str] | None = None,
        on_authorize: Callable[[PaymentSession, str], object] | None = None,
    ) -> None:
        self.id = provider_id
        self.seed = seed
        self.calls: list[tuple[str, str]] = []
        self.outbox: list[Webhook] = []
        self.ledger = None if ledger is None else os.fspath(ledger)
        self.on_authorize = on_authorize
        self._clock: Clock = clock or utc_now
        self._send = send
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._pending: list[Webhook] = []

    # -- the ledger

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(
                self.ledger or ":memory:",
                timeout=60,
                isolation_level=None,
                check_same_thread=False,
            )
            if self.ledger is not None:
                conn.execute("PRAGMA busy_timeout = 60000")
                _use_wal(conn)
                conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _LEDGER_SCHEMA:
                conn.execute(statement)
            conn.execute("COMMIT")
            self._conn = conn
        return self._conn

    def _act(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """``operation`` in one transaction of the ledger; its notices sent after it."""
        with self._lock:
            conn = self._db()
            pending: list[Webhook] = []
            self._pending = pending
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = operation(conn)
                conn.executemany(
                    "INSERT INTO sim_outbox (event_id, session_id, provider_status, observed_at) "
                    "VALUES (?, ?, ?, ?)",
                    [
                        (n.event_id, n.session_id, n.provider_status, n.observed_at.isoformat())
                        for n in pending
                    ],
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        for notice in pending:
            self.outbox.append(notice)
            if self._send is not None:
                self._send(notice)
        return result

    def _intent(self, conn: sqlite3.Connection, session: PaymentSession) -> _Intent:
        row = conn.execute(
            "SELECT * FROM sim_intents WHERE session_id = ?", (session.id,)
        ).fetchone()
        if row is None:
            row = (session.id, self.id, session.amount, "requires_payment_method")
            row += (0, 0, None, 0, 0, None)
        return _Intent(row)

    def _save(self, conn: sqlite3.Connection, intent: _Intent) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO sim_intents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            intent.row(),
        )

    def _answer(self, conn: sqlite3.Connection, key: str) -> ProviderReply | None:
        row = conn.execute(
            "SELECT status, data, observed_at FROM sim_answers WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        observed = None if row[2] is None else datetime.fromisoformat(row[2])
        return ProviderReply(row[0], json.loads(row[1]), observed)

    def _remember(self, conn: sqlite3.Connection, key: str, reply: ProviderReply) -> None:
        observed = None if reply.observed_at is None else reply.observed_at.isoformat()
        conn.execute(
            "INSERT OR REPLACE INTO sim_answers VALUES (?, ?, ?, ?)",
            (key, reply.status, json.dumps(dict(reply.data)), observed),
        )

    def _count(self, table: str) -> dict[str, int]:
        # Every provider's rows: keys are the sessions' own, unique across providers.
        rows = self._act(
            lambda conn: conn.execute(f"SELECT key, count FROM {table} ORDER BY key").fetchall()
        )
        return {key: count for key, count in rows}

    @property
    def authorizations(self) -> dict[str, int]:
        """Authorizations made, by the key of the request that made them."""
        return self._count("sim_authorizations")

    @property
    def requests(self) -> dict[str, int]:
        """Authorize calls received, by key."""
        return self._count("sim_requests")

    def holds(self) -> list[Hold]:
        """The money held: every payment authorized and not voided, oldest session first."""
        rows = self._act(
            lambda conn: conn.execute(
                "SELECT session_id, provider_id, amount FROM sim_intents WHERE status = ? "
                "ORDER BY session_id",
                (_HELD,),
            ).fetchall()
        )
        return [Hold(*row) for row in rows]

    def voided(self) -> list[str]:
        """The sessions whose hold was voided by a cancel under a ``:void`` key."""
        rows = self._act(
            lambda conn: conn.execute(
                "SELECT session_id FROM sim_voids WHERE held AND key LIKE '%:void' "
                "ORDER BY session_id"
            ).fetchall()
        )
        return [session_id for (session_id,) in rows]

    def sent(self, after: int = 0) -> list[tuple[int, Webhook]]:
        """Every notice any process sent through the ledger, numbered, after number ``after``.

        What a webhook endpoint of a shared ledger delivers (the numbers are its cursor).
        """
        rows = self._act(
            lambda conn: conn.execute(
                "SELECT id, event_id, session_id, provider_status, observed_at FROM sim_outbox "
                "WHERE id > ? ORDER BY id",
                (after,),
            ).fetchall()
        )
        return [
            (number, Webhook(event_id, session_id, status, datetime.fromisoformat(observed)))
            for number, event_id, session_id, status, observed in rows
        ]

    def close(self) -> None:
        """Close the ledger's connection (a file ledger stays on disk)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- the processor

    def scenario(self, session_id: str) -> str:
        """The scenario this provider plays for ``session_id`` (stable for a seed)."""
        return random.Random(f"{self.seed}:{session_id}").choice(SCENARIOS)

    def _move(self, intent: _Intent, status: str) -> None:
        intent.status = status
        intent.notices += 1
        intent.changed_at = self._clock()
        self._pending.append(
            Webhook(
                f"evt_{intent.session_id}_{intent.notices}",
                intent.session_id,
                status,
                intent.changed_at,
            )
        )

    def _reply(self, session: PaymentSession, intent: _Intent, **extra: object) -> ProviderReply:
        name = f"pi_{session.id.removeprefix('ps_')}"
        data = {"id": name, "client_secret": f"{name}_secret_sim", **extra}
        return ProviderReply(intent.status, data, intent.changed_at)

    def initiate(self, session: PaymentSession) -> ProviderReply:
        self.calls.append(("initiate", session.id))
        return self._act(lambda conn: self._reply(session, self._intent(conn, session)))

    def update(self, session: PaymentSession) -> ProviderReply:
        self.calls.append(("update", session.id))
        return self._act(lambda conn: self._reply(session, self._intent(conn, session)))

    def authorize(self, session: PaymentSession, *, idempotency_key: str) -> ProviderReply:
        self.calls.append(("authorize", session.id))
        if self.on_authorize is not None:
            self.on_authorize(session, idempotency_key)
        reply, lost = self._act(lambda conn: self._authorize_in(conn, session, idempotency_key))
        if lost:
            raise ProviderTimeout(f"simulated timeout authorizing {session.id}")
        return reply

    def _authorize_in(
        self, conn: sqlite3.Connection, session: PaymentSession, key: str
    ) -> tuple[ProviderReply, bool]:
        conn.execute(
            "INSERT INTO sim_requests VALUES (?, 1) "
            "ON CONFLICT (key) DO UPDATE SET count = count + 1",
            (key,),
        )
        answered = self._answer(conn, key)
        if answered is not None:
            return answered, False
        intent = self._intent(conn, session)
        scenario = self.scenario(session.id)
        if intent.status in (_HELD, "canceled"):
            reply = self._reply(session, intent)
        elif intent.status == "requires_action" and not intent.acted:
            reply = self._reply(session, intent, next_action="3ds")
        else:
            intent.asked += 1
            if scenario == "requires_more" and not intent.acted:
                intent.action_key = key
                self._move(intent, "requires_action")
                reply = self._reply(session, intent, next_action="3ds")
            elif scenario == "declined_then_retry" and intent.asked == 1:
                self._move(intent, "requires_payment_method")
                reply = self._reply(session, intent, last_error="card_declined")
            else:
                self._hold(conn, intent, key)
                reply = self._reply(session, intent)
        self._remember(conn, key, reply)
        lost = scenario == "timeout" and not intent.timed_out
        intent.timed_out = intent.timed_out or lost
        self._save(conn, intent)
        return reply, lost

    def _hold(self, conn: sqlite3.Connection, intent: _Intent, key: str) -> None:
        conn.execute(
            "INSERT INTO sim_authorizations VALUES (?, ?, 1) "
            "ON CONFLICT (key) DO UPDATE SET count = count + 1",
            (key, intent.session_id),
        )
        self._move(intent, _HELD)

    def customer_acts(self, session_id: str) -> None:
        """The customer completes the action asked for (3-D Secure): the payment is authorized."""

        def act(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT * FROM sim_intents WHERE session_id = ?", (session_id,)
            ).fetchone()
            if row is None:
                return
            intent = _Intent(row)
            if intent.status == "requires_action" and not intent.acted:
                intent.acted = True
                self._hold(conn, intent, intent.action_key or "customer")
                self._save(conn, intent)

        self._act(act)

    def cancel(self, session: PaymentSession, *, idempotency_key: str) -> ProviderReply:
        self.calls.append(("cancel", session.id))
        return self._act(lambda conn: self._cancel_in(conn, session, idempotency_key))

    def _cancel_in(
        self, conn: sqlite3.Connection, session: PaymentSession, key: str
    ) -> ProviderReply:
        answered = self._answer(conn, key)
        if answered is not None:
            return answered
        intent = self._intent(conn, session)
        conn.execute(
            "INSERT OR IGNORE INTO sim_voids VALUES (?, ?, ?)",
            (key, session.id, int(intent.status == _HELD)),
        )
        if intent.status != "canceled":
            self._move(intent, "canceled")
        reply = self._reply(session, intent)
        self._remember(conn, key, reply)
        self._save(conn, intent)
        return reply

    def status(self, session: PaymentSession) -> ProviderReply:
        self.calls.append(("status", session.id))
        return self._act(lambda conn: self._reply(session, self._intent(conn, session)))

    def __getstate__(self) -> dict[str, Any]:
        # Sent to another process: the ledger file travels, its connection does not.
        state = dict(self.__dict__)
        state["_conn"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()


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


__all__ = [
    "NATIVE",
    "PAYPAL",
    "SCENARIOS",
    "STRIPE",
    "DoubleAuthorization",
    "Hold",
    "PaymentProvider",
    "ProviderReply",
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
    "register_status_map",
    "status_map",
    "void_key",
]
