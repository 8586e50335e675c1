"""A session rebuilt from its trail: replay, its AuditError, and any run of moves replayed."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paysession import InvalidSessionData, PaymentSession, PaySessionError, SessionMachine
from paysession.audit import (
    AuditError,
    AuditReport,
    BadLine,
    MemorySink,
    read_jsonl,
    replay,
    verify,
)
from paysession.lifecycle import TRIGGERS

from .helpers import KEY, StepClock, forge, numbered_session, story, write_trail
from .strategies import json_objects, sessions


class TestReplay:
    def test_rebuilds_the_session(self) -> None:
        """Replay with the session's data equals the stored session."""
        machine = story()
        assert replay(machine.history, data=machine.session.data) == machine.session

    def test_empty_data_needs_nothing(self) -> None:
        """A trail whose data is the digest of {} replays without data=."""
        clock = StepClock()
        machine = SessionMachine(numbered_session(1, clock), clock=clock)
        machine.select()
        machine.cancel()
        assert machine.history[-1].changes["updated_at"]
        assert replay(machine.history) == machine.session

    def test_data_needed(self) -> None:
        """Without data=, a trail with other data cannot give back the stored session."""
        with pytest.raises(AuditError) as caught:
            replay(story().history)
        assert (caught.value.reason, caught.value.session_id, caught.value.seq) == (
            "data_needed",
            "ps_0001",
            6,
        )

    def test_data_mismatch(self) -> None:
        """data= must be the data the trail's last digest is of."""
        with pytest.raises(AuditError) as caught:
            replay(story().history, data={"id": "pi_1"})
        assert (caught.value.reason, caught.value.session_id, caught.value.seq) == (
            "data_mismatch",
            "ps_0001",
            6,
        )

    def test_invalid_data(self) -> None:
        """data= that is not JSON data is refused like any session data."""
        with pytest.raises(InvalidSessionData) as caught:
            replay(story().history, data={"n": float("nan")})
        assert caught.value.fields == ("data.<key 1>",)

    def test_cart(self) -> None:
        """A cart is a digest too: needed, checked, and refused where the trail has none."""
        clock = StepClock()
        cart = {"id": "cart_1", "email": "a@example.com"}
        machine = SessionMachine(numbered_session(1, clock, cart=cart), clock=clock)
        machine.cancel()
        assert replay(machine.history, cart=cart) == machine.session
        for wrong, reason in ((None, "cart_needed"), ({"id": "cart_2"}, "cart_mismatch")):
            with pytest.raises(AuditError) as caught:
                replay(machine.history, cart=wrong)
            assert caught.value.reason == reason
        other = story()
        with pytest.raises(AuditError) as caught:
            replay(other.history, data=other.session.data, cart={})
        assert caught.value.reason == "cart_mismatch"

    def test_raises_at_the_first_impossible_step(self) -> None:
        """Replay checks what verify checks and names the record."""
        forged = forge(story().history, 4, trigger="retry")
        with pytest.raises(AuditError) as caught:
            replay(forged, data={})
        error = caught.value
        assert (error.reason, error.session_id, error.seq, error.position) == (
            "illegal_move",
            "ps_0001",
            4,
            4,
        )
        assert isinstance(error, PaySessionError) and isinstance(error, ValueError)

    def test_one_session_of_a_file(self, tmp_path: Path) -> None:
        """With session_id, other sessions' records in the input are skipped."""
        path = tmp_path / "trail.jsonl"
        machines = write_trail(path, sessions=5, moves=30, seed=1)
        for machine in machines:
            rebuilt = replay(
                read_jsonl(path), session_id=machine.session.id, data=machine.session.data
            )
            assert rebuilt == machine.session

    def test_unknown_session_and_empty_trail(self) -> None:
        """No record of the session is an unknown_session error."""
        with pytest.raises(AuditError) as caught:
            replay(story().history, session_id="ps_9999")
        assert (caught.value.reason, caught.value.session_id) == ("unknown_session", "ps_9999")
        with pytest.raises(AuditError) as caught:
            replay([])
        assert (caught.value.reason, caught.value.session_id) == ("unknown_session", None)

    def test_mixed_sessions(self) -> None:
        """Without session_id, records of a second session are an error."""
        clock = StepClock()
        a, b = story(clock, number=1).history, story(clock, number=2).history
        with pytest.raises(AuditError) as caught:
            replay([*a[:2], b[0]])
        assert (caught.value.reason, caught.value.session_id, caught.value.position) == (
            "mixed_sessions",
            "ps_0002",
            2,
        )

    def test_bad_lines(self) -> None:
        """A bad line that may be one of the session's records stops the replay."""
        machine = story()
        history = machine.history
        torn = BadLine(1, "torn_line", "torn")
        other = BadLine(1, "malformed", "bad", "ps_0042")
        own = BadLine(1, "encoding", "bad", "ps_0001")
        data = machine.session.data
        assert replay([torn, other, *history], session_id="ps_0001", data=data) == machine.session
        assert replay([*history, other], session_id="ps_0001", data=data) == machine.session
        # story() ends canceled: nothing can follow, so a torn line after it is not its own.
        assert replay([*history, torn], session_id="ps_0001", data=data) == machine.session
        with pytest.raises(AuditError) as caught:
            replay([*history[:-1], torn], session_id="ps_0001", data=data)
        assert (caught.value.reason, caught.value.position) == ("torn_line", 6)
        for items, session_id, bad in (
            ([*history[:2], torn, *history[2:]], "ps_0001", torn),
            ([own, *history], "ps_0001", own),
            ([torn, *history], None, torn),
        ):
            with pytest.raises(AuditError) as caught:
                replay(items, session_id=session_id, data=data)
            assert (caught.value.reason, caught.value.position) == (
                bad.reason,
                items.index(bad),
            )

    def test_keyed(self) -> None:
        """Replay checks hashes with the key it is given."""
        machine = story(key=KEY)
        assert replay(machine.history, data=machine.session.data, key=KEY) == machine.session
        with pytest.raises(AuditError) as caught:
            replay(machine.history, data=machine.session.data)
        assert (caught.value.reason, caught.value.seq) == ("hash", 0)


class TestAuditError:
    def test_attributes_and_text(self) -> None:
        """AuditError keeps its facts and says them."""
        error = AuditError("link", "prev_hash is wrong", session_id="ps_1", seq=3, position=9)
        assert (error.reason, error.message, error.session_id, error.seq, error.position) == (
            "link",
            "prev_hash is wrong",
            "ps_1",
            3,
            9,
        )
        assert str(error) == (
            "audit trail of 'ps_1' at seq 3 (input position 9): link: prev_hash is wrong"
        )


amounts = st.integers(min_value=0, max_value=2**63 - 1)
steps = st.lists(
    st.tuples(
        st.sampled_from(TRIGGERS),
        st.none() | amounts,
        st.none() | json_objects,
        st.integers(min_value=-3_000, max_value=5_000),  # clock step in ms, may go back
    ),
    max_size=30,
)


class TestReplayProperty:
    @settings(max_examples=100, deadline=None)
    @given(session=sessions(), moves=steps, key=st.none() | st.binary(min_size=1, max_size=8))
    def test_replay_rebuilds_any_run(
        self,
        session: PaymentSession,
        moves: list[tuple[str, int | None, dict[str, object] | None, int]],
        key: bytes | None,
    ) -> None:
        """Any run of moves verifies, replays to the machine's session, and hit the sink."""
        clock = StepClock(start=session.updated_at)
        sink = MemorySink()
        machine = SessionMachine(session, clock=clock, sink=sink, key=key)
        for trigger, amount, data, step in moves:
            clock.step = timedelta(milliseconds=step)
            params: dict[str, object] = {}
            if trigger == "initiate":
                params["data"] = data or {}
            elif trigger == "update":
                params.update(
                    {k: v for k, v in (("amount", amount), ("data", data)) if v is not None}
                )
            with contextlib.suppress(PaySessionError):
                machine.fire(trigger, **params)
        history = machine.history
        assert verify(history, key=key) == AuditReport(
            ok=True, sessions=1, records=len(history), problems=()
        )
        rebuilt = replay(history, data=machine.session.data, cart=machine.session.cart, key=key)
        assert rebuilt == machine.session
        assert sink.records == history
