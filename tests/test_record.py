"""Records: the fast canonical text a move hashes is exactly the canonical JSON of its body."""

from __future__ import annotations

import linecache
from datetime import timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from paysession import PaymentSessionStatus, TransitionRecord
from paysession._wire import canonical_json, format_datetime, parse_datetime
from paysession.record import GENESIS, RecordFields, _sealed_record, compute_hash, make_record
from paysession.session import evolve_trusted

from .strategies import aware_datetimes

texts = st.none() | st.text(max_size=30)
wire_values = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.text(max_size=20)
)


class TestCanonical:
    @given(
        session_id=st.text(min_size=1, max_size=20),
        seq=st.integers(min_value=0, max_value=10**9),
        trigger=st.text(min_size=1, max_size=15),
        source=st.none() | st.sampled_from(list(PaymentSessionStatus)),
        dest=st.sampled_from(list(PaymentSessionStatus)),
        at=aware_datetimes,
        actor=texts,
        reason=texts,
        idempotency_key=texts,
        changes=st.dictionaries(
            st.sampled_from(["amount", "data", "updated_at", "is_selected"]),
            st.tuples(wire_values, wire_values),
        ),
        key=st.none() | st.binary(min_size=1, max_size=16),
    )
    def test_hash_is_over_canonical_body(self, key: bytes | None, **fields: object) -> None:
        """make_record's hash equals compute_hash over the canonical JSON of its body."""
        record = make_record(RecordFields(prev_hash=GENESIS, **fields), key)  # type: ignore[arg-type]
        assert record.hash == compute_hash(record.body(), key)

    def test_wire_round_trip(self) -> None:
        """to_dict/from_dict give back the same record."""
        at = parse_datetime("2024-04-21T14:50:24.077Z")
        record = make_record(
            RecordFields(
                session_id="ps_1",
                seq=3,
                trigger="update",
                source=PaymentSessionStatus.PENDING,
                dest=PaymentSessionStatus.PENDING,
                at=at,
                actor="storefront",
                reason=None,
                idempotency_key="k",
                changes={"amount": (1, 2)},
                prev_hash=GENESIS,
            )
        )
        assert TransitionRecord.from_dict(record.to_dict()) == record
        assert canonical_json(record.to_dict())  # encodable as canonical JSON


class TestFormatDatetime:
    @given(aware_datetimes)
    def test_round_trip(self, value: object) -> None:
        """Formatting then parsing gives the same instant."""
        assert parse_datetime(format_datetime(value)) == value  # type: ignore[arg-type]

    def test_memory_does_not_confuse_values(self) -> None:
        """Remembered texts answer only for the same instant, in whatever offset."""
        a = parse_datetime("2024-04-21T14:50:24.077Z")
        b = parse_datetime("2024-04-21T14:50:24.078123Z")
        a_in_paris = a.astimezone(timezone(timedelta(hours=2)))
        assert [format_datetime(x) for x in (a, a, b, a, a_in_paris)] == [
            "2024-04-21T14:50:24.077Z",
            "2024-04-21T14:50:24.077Z",
            "2024-04-21T14:50:24.078123Z",
            "2024-04-21T14:50:24.077Z",
            "2024-04-21T14:50:24.077Z",
        ]

    def test_memory_stays_right_when_full(self) -> None:
        """More instants than the memory holds: every text is still its own instant's."""
        start = parse_datetime("2024-04-21T14:50:24.000Z")
        instants = [start + timedelta(milliseconds=n) for n in range(3000)]
        for _ in range(2):
            texts = [format_datetime(x) for x in instants]
            assert [parse_datetime(t) for t in texts] == instants


class TestLine:
    @given(
        actor=texts,
        reason=texts,
        changes=st.dictionaries(
            st.sampled_from(["idempotency_key", "hash", "dest", "amount"]) | st.text(max_size=20),
            st.tuples(wire_values, wire_values),
        ),
    )
    def test_cached_line_is_the_canonical_line(
        self, actor: str | None, reason: str | None, changes: dict[str, tuple[object, object]]
    ) -> None:
        """The line make_record keeps is exactly the canonical JSON of to_dict()."""
        at = parse_datetime("2024-04-21T14:50:24.077Z")
        record = make_record(
            RecordFields(
                session_id='ps_",\\"idempotency_key\\":',
                seq=1,
                trigger="update",
                source=PaymentSessionStatus.PENDING,
                dest=PaymentSessionStatus.PENDING,
                at=at,
                actor=actor,
                reason=reason,
                idempotency_key=None,
                changes=changes,
                prev_hash=GENESIS,
            )
        )
        assert record.canonical(with_hash=True) == canonical_json(record.to_dict())


class TestGeneratedCode:
    def test_tracebacks_show_the_generated_lines(self) -> None:
        """The functions built with exec have their source in linecache, not <string>."""

        for function, first in (
            (_sealed_record, "def sealed_record("),
            (evolve_trusted, "def evolve_trusted("),
        ):
            filename = function.__code__.co_filename
            assert filename.startswith("<paysession generated ")
            assert linecache.getline(filename, 1).startswith(first)
            assert linecache.getline(filename, 2).strip()
