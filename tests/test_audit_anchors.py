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
from paysession.audit import Checkpoint, JsonlSink, SinkError, read_jsonl, verify
from paysession.audit.anchors import make_checkpoint
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


def three_runs(tmp_path: Path, *, key: bytes | None = None) -> tuple[Path, list[list[bytes]]]:
    """Three runs of the application appended to one file, each its own sink with two
    sessions; returns the file and each run's lines (opening to closing checkpoint)."""
    path = tmp_path / "runs.jsonl"
    clock = StepClock()
    for run in range(3):
        with JsonlSink(path, fsync=False, checkpoint_every=3, key=key) as sink:
            for n in range(2):
                machine = SessionMachine(
                    PaymentSession.new(
                        cart_id=f"c{run}{n}", provider_id="p", amount=5, clock=clock
                    ),
                    sink=sink,
                    clock=clock,
                    key=key,
                )
                machine.initiate({"id": "pi"})
                machine.cancel()
    runs: list[list[bytes]] = []
    for line in lines(path):
        if line.startswith(b'{"checkpoint"') and b'"records":0,' in line:
            runs.append([])
        runs[-1].append(line)
    assert len(runs) == 3
    return path, runs


class TestRuns:
    """Runs of the application appended to one anchored file chain: each sink's opening
    checkpoint continues the file's last one."""

    @pytest.mark.parametrize("key", [None, KEY])
    def test_three_runs_verify_and_chain(self, tmp_path: Path, key: bytes | None) -> None:
        path, runs = three_runs(tmp_path, key=key)
        assert verify(read_jsonl(path), key=key).ok
        openings = [json.loads(run[0])["checkpoint"] for run in runs]
        closings = [json.loads(run[-1]) for run in runs]
        assert openings[0]["prev"] == "0" * 64
        assert [o["prev"] for o in openings[1:]] == [c["seal"] for c in closings[:2]]

    @pytest.mark.parametrize("key", [None, KEY])
    def test_a_middle_run_removed_is_found(self, tmp_path: Path, key: bytes | None) -> None:
        path, runs = three_runs(tmp_path, key=key)
        path.write_bytes(b"".join(runs[0] + runs[2]))
        report = verify(read_jsonl(path), key=key)
        assert [(p.session_id, p.reason) for p in report.problems] == [(None, "anchor")]
        assert "continues a run that is not before it" in report.problems[0].message

    @pytest.mark.parametrize("key", [None, KEY])
    def test_reordered_runs_are_found(self, tmp_path: Path, key: bytes | None) -> None:
        path, runs = three_runs(tmp_path, key=key)
        path.write_bytes(b"".join(runs[1] + runs[0] + runs[2]))
        assert reasons(path, key=key)[:1] == ["anchor"]
        path.write_bytes(b"".join(runs[0] + runs[2] + runs[1]))
        assert reasons(path, key=key)[:1] == ["anchor"]

    @pytest.mark.parametrize("key", [None, KEY])
    def test_a_duplicated_run_is_found(self, tmp_path: Path, key: bytes | None) -> None:
        path, runs = three_runs(tmp_path, key=key)
        path.write_bytes(b"".join(runs[0] + runs[1] + runs[1] + runs[2]))
        found = verify(read_jsonl(path), key=key).problems
        assert "a checkpoint after its sink's closing one" in [p.message for p in found]

    def test_the_first_run_removed_is_found(self, tmp_path: Path) -> None:
        path, runs = three_runs(tmp_path, key=KEY)
        path.write_bytes(b"".join(runs[1] + runs[2]))
        assert reasons(path, key=KEY) == ["anchor"]

    def test_a_cut_at_a_runs_end_needs_outside_heads(self, tmp_path: Path) -> None:
        """Cut after run 2's closing checkpoint, the file is byte for byte the genuine
        file of that day: only heads kept elsewhere show run 3 is gone."""
        path, runs = three_runs(tmp_path, key=KEY)
        heads = {
            r.session_id: (r.seq, r.hash)
            for r in read_jsonl(path)
            if not isinstance(r, Checkpoint) and hasattr(r, "hash")
        }
        path.write_bytes(b"".join(runs[0] + runs[1]))
        assert verify(read_jsonl(path), key=KEY).ok
        found = verify(read_jsonl(path), key=KEY, heads=heads).problems
        assert [p.reason for p in found] == ["anchor", "anchor"]

    def test_an_unkeyed_rewrite_of_the_checkpoints_hides_a_removed_run(
        self, tmp_path: Path
    ) -> None:
        """Without a key anyone can reseal: the README's table says so; with it, no."""
        path, runs = three_runs(tmp_path)
        kept = runs[0] + runs[2]
        prev = json.loads(runs[0][-1])["seal"]
        resealed = []
        for line in kept[len(runs[0]) :]:
            if line.startswith(b'{"checkpoint"'):
                body = json.loads(line)["checkpoint"]
                checkpoint = make_checkpoint(
                    body["sink"],
                    prev,
                    body["records"],
                    body["final"],
                    {sid: (h[0], h[1]) for sid, h in body["heads"].items()},
                    None,
                )
                prev = checkpoint.seal
                line = (checkpoint.line() + "\n").encode()
            resealed.append(line)
        path.write_bytes(b"".join(runs[0] + resealed))
        assert verify(read_jsonl(path)).ok

    def test_a_sink_refuses_a_file_whose_last_checkpoint_it_cannot_vouch_for(
        self, tmp_path: Path
    ) -> None:
        path, runs = three_runs(tmp_path, key=KEY)
        for other_key in (None, b"another key"):
            with pytest.raises(SinkError) as refused:
                JsonlSink(path, fsync=False, checkpoint_every=3, key=other_key)
            assert refused.value.operation == "open"
        edited = runs[2][-1].replace(b'"final":true', b'"final":false')
        path.write_bytes(b"".join(runs[0] + runs[1] + runs[2][:-1] + [edited]))
        with pytest.raises(SinkError, match="last checkpoint does not verify under"):
            JsonlSink(path, fsync=False, checkpoint_every=3, key=KEY)

    def test_a_torn_last_line_does_not_stop_the_next_run(self, tmp_path: Path) -> None:
        path, _ = three_runs(tmp_path, key=KEY)
        with path.open("ab") as out:
            out.write(b'{"checkpoint":{"fin')  # a crash in the middle of a line
        with JsonlSink(path, fsync=False, checkpoint_every=3, key=KEY):
            pass
        assert reasons(path, key=KEY) == ["torn_line"]

    def test_sinks_sharing_a_file_at_once_still_verify(self, tmp_path: Path) -> None:
        """Several writers may share a file: a sink opening it while another is open
        continues whatever checkpoint is last, and the trail verifies."""
        path = tmp_path / "shared.jsonl"
        clock = StepClock()
        first = JsonlSink(path, fsync=False, checkpoint_every=2, key=KEY)
        second = JsonlSink(path, fsync=False, checkpoint_every=2, key=KEY)
        machines = [
            SessionMachine(
                PaymentSession.new(cart_id=f"s{n}", provider_id="p", amount=5, clock=clock),
                sink=sink,
                clock=clock,
                key=KEY,
            )
            for n, sink in enumerate((first, second, first))
        ]
        for machine in machines:
            machine.initiate({"id": "pi"})
        third = JsonlSink(path, fsync=False, checkpoint_every=2, key=KEY)
        for machine in machines:
            machine.cancel()
        for sink in (second, first, third):
            sink.close()
        assert verify(read_jsonl(path), key=KEY).ok
