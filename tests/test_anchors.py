"""Anchored JSON Lines trails: checkpoints and outside heads find cuts a chain cannot.

Without anchors, removing a session's last lines, or a whole session, leaves chains that
verify. Each test cuts or edits an anchored trail the way an attacker with write access
to the file would, and shows what ``verify`` (and ``paysession audit verify``) finds,
with and without heads from outside.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paysession import PaymentSession, PaymentSessions, SessionMachine
from paysession.audit import Checkpoint, JsonlSink, read_jsonl, verify
from paysession.cli import main
from paysession.store import SqliteStore

from .helpers import StepClock

KEY = b"anchor-key-for-tests"


def anchored(tmp_path: Path, *, key: bytes | None = None, every: int = 4) -> Path:
    """Three sessions of four records each, interleaved, checkpointed every ``every``."""
    path = tmp_path / "trail.jsonl"
    clock = StepClock()
    with JsonlSink(path, fsync=False, checkpoint_every=every, key=key) as sink:
        machines = [
            SessionMachine(
                PaymentSession.new(cart_id=f"c{n}", provider_id="p", amount=5, clock=clock),
                sink=sink,
                clock=clock,
                key=key,
            )
            for n in range(3)
        ]
        for trigger in ("initiate", "update", "cancel"):
            for machine in machines:
                if trigger == "initiate":
                    machine.initiate({"id": "pi"})
                elif trigger == "update":
                    machine.update(amount=7)
                else:
                    machine.cancel()
    return path


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def checkpoints_in(kept: list[bytes]) -> list[int]:
    return [index for index, line in enumerate(kept) if line.startswith(b'{"checkpoint"')]


def reasons(path: Path, **options: object) -> list[str]:
    return [p.reason for p in verify(read_jsonl(path), **options).problems]  # type: ignore[arg-type]


def last_line_of(path: Path, session_id: str) -> int:
    for index in reversed(range(len(lines(path)))):
        if f'"session_id":"{session_id}"'.encode() in lines(path)[index]:
            return index
    raise AssertionError(session_id)


def sessions_in(path: Path) -> list[str]:
    return sorted({r.session_id for r in read_jsonl(path) if hasattr(r, "session_id")})  # type: ignore[union-attr]


class TestAnchoredTrail:
    @pytest.mark.parametrize("key", [None, KEY])
    def test_clean_trail_verifies_and_ends_with_its_closing_checkpoint(
        self, tmp_path: Path, key: bytes | None
    ) -> None:
        path = anchored(tmp_path, key=key)
        items = list(read_jsonl(path))
        checkpoints = [i for i in items if isinstance(i, Checkpoint)]
        assert [c.final for c in checkpoints] == [False, False, False, False, True]
        assert (checkpoints[0].records, checkpoints[0].heads) == (0, {})  # the opening one
        assert items[-1] is checkpoints[-1]
        assert verify(items, key=key).ok

    def test_last_line_of_a_session_cut(self, tmp_path: Path) -> None:
        path = anchored(tmp_path)
        victim = sessions_in(path)[0]
        kept = lines(path)
        del kept[last_line_of(path, victim)]
        path.write_bytes(b"".join(kept))
        report = verify(read_jsonl(path))
        assert [(p.session_id, p.reason) for p in report.problems] == [(victim, "anchor")]

    def test_whole_session_removed(self, tmp_path: Path) -> None:
        path = anchored(tmp_path)
        victim = sessions_in(path)[1]
        kept = [line for line in lines(path) if f'"session_id":"{victim}"'.encode() not in line]
        path.write_bytes(b"".join(kept))
        report = verify(read_jsonl(path))
        assert [(p.session_id, p.reason) for p in report.problems] == [(victim, "anchor")]
        assert "records are missing" in report.problems[0].message

    def test_truncated_after_a_checkpoint(self, tmp_path: Path) -> None:
        path = anchored(tmp_path)
        kept = lines(path)
        first_checkpoint = next(
            i for i, line in enumerate(kept) if line.startswith(b'{"checkpoint"')
        )
        path.write_bytes(b"".join(kept[: first_checkpoint + 1]))
        report = verify(read_jsonl(path))
        assert [(p.session_id, p.reason) for p in report.problems] == [(None, "anchor")]
        assert "not its closing one" in report.problems[0].message

    def test_checkpoint_removed_breaks_the_chain(self, tmp_path: Path) -> None:
        path = anchored(tmp_path)
        kept = lines(path)
        first_checkpoint = next(
            i for i, line in enumerate(kept) if line.startswith(b'{"checkpoint"')
        )
        del kept[first_checkpoint]
        path.write_bytes(b"".join(kept))
        assert "anchor" in reasons(path)

    def test_keyed_checkpoint_edited_without_the_key(self, tmp_path: Path) -> None:
        """Rewriting a checkpoint needs the key: an edit is found by its seal."""
        path = anchored(tmp_path, key=KEY)
        kept = lines(path)
        index = checkpoints_in(kept)[1]  # the first that names sessions
        wire = json.loads(kept[index])
        wire["checkpoint"]["heads"] = {}
        kept[index] = (json.dumps(wire, sort_keys=True, separators=(",", ":")) + "\n").encode()
        path.write_bytes(b"".join(kept))
        assert reasons(path, key=KEY) == ["anchor"]


class TestOutsideHeads:
    def test_store_heads_find_what_rewritten_checkpoints_hide(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A trail whose cut session was also struck from its (unkeyed) checkpoints."""
        db = tmp_path / "shop.db"
        path = tmp_path / "trail.jsonl"
        sessions = PaymentSessions(SqliteStore(db), clock=StepClock())
        made = [sessions.create(cart_id=f"c{n}", provider_id="p", amount=5) for n in range(2)]
        for session in made:
            sessions.fire(session.id, "cancel")
        with JsonlSink(path, fsync=False, checkpoint_every=None) as sink:
            for session in made:
                for record in sessions.history(session.id):
                    sink.append(record)
        sessions.store.close()
        # The attacker removes session 1 entirely; an unanchored file has nothing to say.
        victim = made[1].id
        kept = [line for line in lines(path) if victim.encode() not in line]
        path.write_bytes(b"".join(kept))
        assert verify(read_jsonl(path)).ok
        assert main(["audit", "heads", "--db", str(db)]) == 0
        heads = {
            sid: (seq, head) for sid, (seq, head) in json.loads(capsys.readouterr().out).items()
        }
        report = verify(read_jsonl(path), heads=heads)
        assert [(p.session_id, p.seq, p.reason) for p in report.problems] == [(victim, 1, "anchor")]
        assert "records are missing" in report.problems[0].message

    def test_heads_from_the_command_line(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        db = tmp_path / "shop.db"
        path = tmp_path / "trail.jsonl"
        sessions = PaymentSessions(SqliteStore(db), clock=StepClock())
        made = [sessions.create(cart_id=f"c{n}", provider_id="p", amount=5) for n in range(2)]
        with JsonlSink(path, fsync=False, checkpoint_every=None) as sink:
            for session in made:
                sessions.fire(session.id, "cancel")
                for record in sessions.history(session.id):
                    sink.append(record)
        sessions.store.close()
        assert main(["audit", "heads", "--db", str(db)]) == 0
        heads_file = tmp_path / "heads.json"
        heads_file.write_text(capsys.readouterr().out)
        assert main(["audit", "verify", str(path), "--heads", str(heads_file)]) == 0
        capsys.readouterr()
        victim = made[0].id
        kept = lines(path)[:-1]  # the last line: session 1's cancel
        path.write_bytes(b"".join(kept))
        assert verify(read_jsonl(path)).ok  # the chain alone cannot tell
        assert main(["audit", "verify", str(path), "--heads", str(heads_file)]) == 1
        out = capsys.readouterr().out
        assert "anchor" in out and made[1].id in out and victim not in out

    def test_heads_of_a_missing_database_is_a_usage_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        missing = tmp_path / "typo.db"
        assert main(["audit", "heads", "--db", str(missing)]) == 2
        assert capsys.readouterr().err == f"paysession audit: no database file {missing}\n"
        assert not missing.exists()

    def test_a_heads_file_of_the_wrong_shape_is_a_usage_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = anchored(tmp_path)
        heads_file = tmp_path / "heads.json"
        heads_file.write_text('{"ps_1": [1]}')
        assert main(["audit", "verify", str(path), "--heads", str(heads_file)]) == 2
        assert capsys.readouterr().err == (
            f"paysession audit: heads file {heads_file}: each value must be [seq, hash]\n"
        )
