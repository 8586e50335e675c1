"""A simulated Stripe-like payment processor, with a ledger several processes can share.

Each session plays a scenario chosen by the seed; the processor is idempotent per key
and keeps its holds in its ledger. It follows ``paysession/provider_api.py``, like a
real provider.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import attrs

from paysession._sqlite import use_wal
from paysession.errors import (
    ProviderTimeout,
)
from paysession.provider_api import ProviderReply, Webhook
from paysession.session import Clock, PaymentSession, utc_now

_T = TypeVar("_T")

SCENARIOS = ("authorized", "requires_more", "declined_then_retry", "timeout", "processing")
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
        observed_at TEXT NOT NULL,
        amount INTEGER,
        decline TEXT
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS sim_voids (
        key TEXT PRIMARY KEY, session_id TEXT NOT NULL, held INTEGER NOT NULL
    )
    """,
)


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
      (ProviderTimeout); asking again with the same key gets the answer;
    - ``processing``: an asynchronous method: it answers ``processing`` until the
      payment settles (:meth:`customer_acts` stands for that too), which authorizes it.

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
                use_wal(conn, 60)
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
                    "INSERT INTO sim_outbox "
                    "(event_id, session_id, provider_status, observed_at, amount, decline) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (
                            n.event_id,
                            n.session_id,
                            n.provider_status,
                            n.observed_at.isoformat(),
                            n.amount,
                            n.decline,
                        )
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
        return _replied(row[0], json.loads(row[1]), observed)

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
                "SELECT id, event_id, session_id, provider_status, observed_at, amount, decline "
                "FROM sim_outbox "
                "WHERE id > ? ORDER BY id",
                (after,),
            ).fetchall()
        )
        return [
            (
                number,
                Webhook(
                    event_id, session_id, status, datetime.fromisoformat(observed), amount, decline
                ),
            )
            for number, event_id, session_id, status, observed, amount, decline in rows
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

    def _move(self, intent: _Intent, status: str, decline: str | None = None) -> None:
        intent.status = status
        intent.notices += 1
        # Like Stripe's ``created``, in whole seconds: several changes share an instant.
        intent.changed_at = self._clock().replace(microsecond=0)
        # Like a PaymentIntent event, the notice says the amount and any decline.
        self._pending.append(
            Webhook(
                f"evt_{intent.session_id}_{intent.notices}",
                intent.session_id,
                status,
                intent.changed_at,
                intent.amount,
                decline,
            )
        )

    def _reply(self, session: PaymentSession, intent: _Intent, **extra: object) -> ProviderReply:
        name = f"pi_{session.id.removeprefix('ps_')}"
        data = {"id": name, "client_secret": f"{name}_secret_sim", "amount": intent.amount}
        return _replied(intent.status, {**data, **extra}, intent.changed_at)

    def initiate(self, session: PaymentSession) -> ProviderReply:
        self.calls.append(("initiate", session.id))
        return self._act(lambda conn: self._reply(session, self._intent(conn, session)))

    def update(self, session: PaymentSession) -> ProviderReply:
        self.calls.append(("update", session.id))
        return self._act(lambda conn: self._update_in(conn, session))

    def _update_in(self, conn: sqlite3.Connection, session: PaymentSession) -> ProviderReply:
        # Like a PaymentIntent, its amount follows the session's until money is held.
        intent = self._intent(conn, session)
        if intent.status not in (_HELD, "canceled"):
            intent.amount = session.amount
            self._save(conn, intent)
        return self._reply(session, intent)

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
        elif intent.status == "processing" and not intent.acted:
            reply = self._reply(session, intent)
        else:
            intent.asked += 1
            if scenario == "requires_more" and not intent.acted:
                intent.action_key = key
                self._move(intent, "requires_action")
                reply = self._reply(session, intent, next_action="3ds")
            elif scenario == "processing" and not intent.acted:
                intent.action_key = key
                self._move(intent, "processing")
                reply = self._reply(session, intent)
            elif scenario == "declined_then_retry" and intent.asked == 1:
                self._move(intent, "requires_payment_method", decline="card_declined")
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
        """The customer completes the action asked for (3-D Secure), or an asynchronous
        payment settles: the payment is authorized."""

        def act(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT * FROM sim_intents WHERE session_id = ?", (session_id,)
            ).fetchone()
            if row is None:
                return
            intent = _Intent(row)
            if intent.status in ("requires_action", "processing") and not intent.acted:
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


def _replied(status: str, data: dict[str, Any], observed_at: datetime | None) -> ProviderReply:
    """An answer as a Stripe adapter reads a PaymentIntent: the amount it is for, and a
    decline's code when ``last_error`` says the attempt was declined."""
    amount = data.get("amount")
    decline = data.get("last_error")
    return ProviderReply(
        status,
        data,
        observed_at,
        amount=amount if isinstance(amount, int) else None,
        decline=decline if isinstance(decline, str) else None,
    )


__all__ = ["SCENARIOS", "Hold", "SimulatedProvider"]
