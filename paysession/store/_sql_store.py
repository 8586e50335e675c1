"""SqlStore: what the SQL stores do the same way around their own writes.

A write is checked (:func:`~paysession.store.base.check_writes`) and its JSON text
taken from the snapshot cache before the driver's transaction runs, and the cache
learns the committed snapshot after it. Reads refuse ids with NUL the same way in
every store: no id or key stored anywhere holds one (they are refused on the way in),
and PostgreSQL text cannot even be asked about one.

A driver (``sqlite.py``, ``postgres.py``) supplies its connections (``_connection``), its
statements (``_LOAD``, ``_LOAD_PLAIN``), and the transactions of its writes:
``_insert``, ``_write``, ``_write_event``, ``_claim`` and ``_release``, each raising
paysession errors, never its driver's.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar, TypeVar

from paysession import telemetry
from paysession.errors import StoreError
from paysession.record import TransitionRecord
from paysession.session import PaymentSession
from paysession.store._browse import SqlBrowse
from paysession.store._rows import Row, record_from_wire, session_from_row, unreadable
from paysession.store._sql import SESSION_COLUMNS, JsonTexts, Params, SnapshotCache, dump_json
from paysession.store.base import (
    Binding,
    CartCheck,
    Claim,
    Claimed,
    ProviderCall,
    ProviderEvent,
    Snapshot,
    StoredTrail,
    Unreadable,
    Write,
    check_writes,
    has_nul,
)

_Store = TypeVar("_Store", bound="SqlStore")
ClaimTaken = tuple[Row, Claim, Claim | None]
"""A claim's work done: the session's row, the claim taken and the one it replaced."""


class SqlStore(SqlBrowse):
    """The protocol's writes and point reads, around the driver's transactions."""

    _LOAD: ClassVar[str]
    """The session's row and the record bound to an idempotency key (values: key, id)."""
    _LOAD_PLAIN: ClassVar[str]
    """The session's row (value: id)."""

    def __init__(self) -> None:
        self._cache = SnapshotCache()

    # -- what each driver writes its own way

    @abc.abstractmethod
    def _fetch_one(self, query: str, params: Params) -> Row | None:
        """One row of a point read (``load``), or None."""

    @abc.abstractmethod
    def _insert(self, write: Write, texts: JsonTexts) -> None:
        """Insert a new session's row and its record 0, in one transaction."""

    @abc.abstractmethod
    def _write(
        self,
        writes: Sequence[Write],
        texts: Sequence[JsonTexts],
        binding: Binding | None,
        cart_check: CartCheck | None,
        release: Claim | None,
    ) -> None:
        """Compare-and-set each session, append its records, bind the key: one transaction."""

    @abc.abstractmethod
    def _write_event(
        self,
        event: ProviderEvent,
        write: Write | None,
        texts: JsonTexts,
        expected_version: int | None,
        release: Claim | None,
        calls: Sequence[ProviderCall],
    ) -> None:
        """Record a provider event, with the moves it applied and the calls that led to
        it, in one transaction."""

    @abc.abstractmethod
    def _write_calls(self, calls: Sequence[ProviderCall]) -> None:
        """Keep provider calls (each once) in one transaction; SessionNotFound for a call
        of a session that does not exist."""

    @abc.abstractmethod
    def _claim(self, claim: Claim, now: datetime, selected: bool) -> ClaimTaken | None:
        """Take the claim in one transaction (see ``SqlReads._claim_in``)."""

    @abc.abstractmethod
    def _release(self, claim: Claim) -> bool:
        """Delete the claim if ``claim.token`` still holds it; whether it did."""

    # -- the protocol

    def create(self, session: PaymentSession, record: TransitionRecord) -> None:
        write = Write(session, -1, (record,))
        check_writes([write])
        texts = (dump_json(session.data), dump_json(session.cart))
        self._insert(write, texts)
        self._cache.put(session, record.seq, record.hash, texts)

    def load(self, session_id: str, idempotency_key: str | None = None) -> Snapshot | None:
        if has_nul(session_id):
            return None
        if idempotency_key is None or has_nul(idempotency_key):
            row = self._fetch_one(self._LOAD_PLAIN, {"id": session_id})
            idempotency_key = None
        else:
            row = self._fetch_one(self._LOAD, {"key": idempotency_key, "id": session_id})
        return (
            None
            if row is None
            else self._cache.snapshot(row, self._session_from_row, idempotency_key)
        )

    def commit(
        self,
        writes: Sequence[Write],
        binding: Binding | None = None,
        *,
        cart_check: CartCheck | None = None,
        release: Claim | None = None,
    ) -> None:
        check_writes(writes, binding)
        texts = [self._cache.texts(write.session) for write in writes]
        with telemetry.span("paysession.commit", **{"paysession.sessions": len(writes)}):
            self._write(writes, texts, binding, cart_check, release)
        for write, text in zip(writes, texts, strict=True):
            self._cache.put(write.session, write.version, write.head, text)

    def record_event(
        self,
        event: ProviderEvent,
        write: Write | None = None,
        *,
        expected_version: int | None = None,
        release: Claim | None = None,
        calls: Sequence[ProviderCall] = (),
    ) -> None:
        texts: JsonTexts = (None, None)
        if write is not None:
            check_writes([write])
            texts = self._cache.texts(write.session)
        self._write_event(event, write, texts, expected_version, release, calls)
        if write is not None:
            self._cache.put(write.session, write.version, write.head, texts)

    def record_calls(self, calls: Sequence[ProviderCall]) -> None:
        if calls:
            self._write_calls(calls)

    def trails(
        self, *, after: str | None = None, only: str | None = None, limit: int = 500
    ) -> list[StoredTrail]:
        if has_nul(only) or has_nul(after):
            return []
        p = self._placeholder
        if only is not None:
            sessions_query = (
                f"SELECT {SESSION_COLUMNS} FROM paysession_sessions WHERE id = {p('id')}"
            )
            params: Params = {"id": only}
        else:
            sessions_query = (
                f"SELECT {SESSION_COLUMNS} FROM paysession_sessions WHERE id > {p('after')} "
                f"ORDER BY id LIMIT {p('limit')}"
            )
            params = {"after": "" if after is None else after, "limit": limit}
        # Rows and records in one snapshot: a record past its row's version is then
        # damage, never a move that committed between the two reads.
        with self._snapshot("trails") as read:
            rows = read(sessions_query, params)
            if not rows:
                return []
            # One range read of the records of every session of the page, on the primary
            # key's order; rows are built afresh, bypassing the snapshot cache.
            records = read(
                "SELECT session_id, seq, wire FROM paysession_records "
                f"WHERE session_id >= {p('first')} AND session_id <= {p('last')} "
                "ORDER BY session_id, seq",
                {"first": rows[0]["id"], "last": rows[-1]["id"]},
            )
        by_session: dict[str, list[Row]] = {row["id"]: [] for row in rows}
        for record in records:
            trail = by_session.get(record["session_id"])
            if trail is not None:
                trail.append(record)
        return [self._stored_trail(row, by_session[row["id"]]) for row in rows]

    def _stored_trail(self, row: Row, stored: list[Row]) -> StoredTrail:
        """A session's row and records decoded, or what makes them unreadable."""
        session_id = row["id"]
        version, head = row["version"], row["head"]
        if type(version) is not int or not isinstance(head, str):
            return Unreadable(session_id, None, "the row's version or head is not one")
        try:
            session = session_from_row(self._session_from_row, row)
        except StoreError as error:
            return Unreadable(session_id, None, error.detail)
        records: list[TransitionRecord] = []
        for record in stored:
            seq, wire = record["seq"], record["wire"]
            try:
                if not isinstance(wire, str):
                    raise unreadable(f"record {seq} of session {session_id!r}", TypeError(wire))
                records.append(record_from_wire(wire, f"record {seq} of session {session_id!r}"))
            except StoreError as error:
                return Unreadable(session_id, seq if type(seq) is int else None, error.detail)
        return (Snapshot(session, version, head), records)

    def claim(self, claim: Claim, now: datetime, *, selected: bool) -> Claimed:
        if has_nul(claim.cart_id) or has_nul(claim.session_id):
            return Claimed(None, None)
        found = self._claim(claim, now, selected)
        if found is None:
            return Claimed(None, None)
        row, taken, previous = found
        return Claimed(taken, self._cache.snapshot(row, self._session_from_row), previous)

    def release(self, claim: Claim) -> bool:
        if has_nul(claim.cart_id) or has_nul(claim.token):
            return False
        return self._release(claim)

    def __enter__(self: _Store) -> _Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def committed(self) -> None:
        """See :meth:`SessionStore.committed`: nothing to wake by default (a follower of
        a SQLite file finds new records by polling)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the store's connections."""


__all__ = ["ClaimTaken", "SqlStore"]
