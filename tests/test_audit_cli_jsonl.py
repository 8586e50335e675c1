"""`paysession audit verify|show|replay`: output and exit codes (0 ok, 1 bad trail, 2 usage)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from paysession import SessionMachine, TransitionRecord, to_json
from paysession._wire import format_datetime
from paysession.audit import encode_line, read_jsonl, verify
from paysession.cli import RECORD_HEADERS, format_table, main, record_row

from .helpers import KEY, StepClock, numbered_session, story, write_trail

Capture = pytest.CaptureFixture[str]


@pytest.fixture
def trail(tmp_path: Path) -> tuple[Path, list[SessionMachine]]:
    path = tmp_path / "trail.jsonl"
    return path, write_trail(path, sessions=6, moves=40, seed=3)


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def records_of(path: Path) -> list[TransitionRecord]:
    records = list(read_jsonl(path))
    assert all(isinstance(r, TransitionRecord) for r in records)
    return records  # type: ignore[return-value]


def write_json(path: Path, value: object) -> Path:
    path.write_text(json.dumps(value))
    return path


class TestAuditVerifyCommand:
    def test_ok(self, trail: tuple[Path, list[SessionMachine]], capsys: Capture) -> None:
        """A clean trail: exit 0 and a one-line summary."""
        path, _ = trail
        assert main(["audit", "verify", str(path)]) == 0
        count = len(lines_of(path))
        assert capsys.readouterr() == (f"ok: 6 sessions, {count} records verified\n", "")

    def test_bad_sessions_named_with_their_first_bad_line(
        self, trail: tuple[Path, list[SessionMachine]], capsys: Capture
    ) -> None:
        """Exit 1, naming each bad session's first bad line (1-based) and reason."""
        path, _ = trail
        records = records_of(path)
        lines = lines_of(path)
        own = [i for i, r in enumerate(records) if r.session_id == "ps_0002"]
        gone = [i for i, r in enumerate(records) if r.session_id == "ps_0004"]
        assert len(own) >= 2 and len(gone) >= 3
        seq = records[own[1]].seq
        lines[own[1]] = lines[own[1]].replace(b'"seq":', b'"seq":1', 1)  # seq k -> 1k
        del lines[gone[1]]
        path.write_bytes(b"".join(lines) + lines[-1][:30])
        # 1-based line numbers once line gone[1] is deleted
        edited_line = own[1] + (0 if own[1] > gone[1] else 1)
        next_line = gone[2]
        torn_line = len(lines) + 1
        found = {
            (p.session_id, p.position + 1): p.message for p in verify(read_jsonl(path)).problems
        }
        expected = sorted(
            [
                (edited_line, f"session ps_0002 seq 1{seq}: hash: {found['ps_0002', edited_line]}"),
                (next_line, f"session ps_0004 seq 2: sequence: {found['ps_0004', next_line]}"),
                (torn_line, f"unreadable line: torn_line: {found[None, torn_line]}"),
            ]
        )
        out = [f"{path}:{line}: {text}" for line, text in expected]
        out.append(f"FAILED: 2 of 6 sessions bad, 3 problems in {torn_line} records")
        assert main(["audit", "verify", str(path)]) == 1
        assert capsys.readouterr() == ("\n".join(out) + "\n", "")

    def test_key_file(self, tmp_path: Path, capsys: Capture) -> None:
        """--key-file verifies an HMAC trail; another key, or none, fails (exit 1)."""
        path = tmp_path / "keyed.jsonl"
        write_trail(path, sessions=3, moves=20, seed=2, key=KEY)
        good = tmp_path / "key"
        good.write_bytes(KEY + b"\n")
        bad = tmp_path / "other"
        bad.write_bytes(b"other key")
        assert main(["audit", "verify", str(path), "--key-file", str(good)]) == 0
        assert main(["audit", "verify", str(path), "--key-file", str(bad)]) == 1
        assert main(["audit", "verify", str(path)]) == 1

    @pytest.mark.parametrize(
        ("setup", "message"),
        [
            pytest.param(
                lambda d: ([str(d / "missing.jsonl")], None),
                "cannot read {d}/missing.jsonl: No such file or directory",
                id="missing file",
            ),
            pytest.param(
                lambda d: ([str(d)], None), "cannot read {d}: Is a directory", id="a directory"
            ),
            pytest.param(
                lambda d: ([str(d / "t.jsonl"), "--key-file", str(d / "nokey")], None),
                "cannot read key file {d}/nokey: No such file or directory",
                id="missing key file",
            ),
            pytest.param(
                lambda d: ([str(d / "t.jsonl"), "--key-file", str(d / "empty")], b" \n"),
                "key file {d}/empty is empty",
                id="empty key file",
            ),
        ],
    )
    def test_usage_errors(
        self, tmp_path: Path, capsys: Capture, setup: object, message: str
    ) -> None:
        """Unreadable input is exit 2 with one clear line on stderr, never a traceback."""
        (tmp_path / "t.jsonl").write_bytes(b"")
        (tmp_path / "empty").write_bytes(b" \n")
        args, _ = setup(tmp_path)  # type: ignore[operator]
        assert main(["audit", "verify", *args]) == 2
        expected = "paysession audit: " + message.format(d=tmp_path) + "\n"
        assert capsys.readouterr() == ("", expected)

    def test_missing_argument(self, capsys: Capture) -> None:
        """No FILE is an argparse usage error (exit 2)."""
        with pytest.raises(SystemExit) as caught:
            main(["audit", "verify"])
        assert caught.value.code == 2


class TestAuditShowCommand:
    def expected(self, path: Path, session: str | None = None) -> str:
        rows: list[list[object]] = [
            [line, *record_row(r), format_datetime(r.at)]
            for line, r in enumerate(records_of(path), 1)
            if session in (None, r.session_id)
        ]
        return format_table(("line", *RECORD_HEADERS, "at"), rows) + "\n"

    def test_table(self, trail: tuple[Path, list[SessionMachine]], capsys: Capture) -> None:
        """Every move of every session, one row each, with its line and time."""
        path, _ = trail
        assert main(["audit", "show", str(path)]) == 0
        assert capsys.readouterr() == (self.expected(path), "")

    def test_one_session(self, trail: tuple[Path, list[SessionMachine]], capsys: Capture) -> None:
        """--session shows that session's moves only."""
        path, _ = trail
        assert main(["audit", "show", str(path), "--session", "ps_0003"]) == 0
        assert capsys.readouterr() == (self.expected(path, "ps_0003"), "")

    def test_unknown_session(
        self, trail: tuple[Path, list[SessionMachine]], capsys: Capture
    ) -> None:
        """A session with no record is exit 2."""
        path, _ = trail
        assert main(["audit", "show", str(path), "--session", "ps_9999"]) == 2
        assert capsys.readouterr() == (
            "",
            f"paysession audit: no record of session ps_9999 in {path}\n",
        )

    def test_unreadable_lines(self, tmp_path: Path, capsys: Capture) -> None:
        """Unreadable lines get a row of their own, and the exit code is 1."""
        path = tmp_path / "trail.jsonl"
        history = story().history
        path.write_bytes(b"".join(_line(r) for r in history[:2]) + b"{torn\n")
        assert main(["audit", "show", str(path)]) == 1
        rows: list[list[object]] = [
            [n, *record_row(r), format_datetime(r.at)] for n, r in enumerate(history[:2], 1)
        ]
        rows.append([3, "?", "", "(torn_line)", "", "", "", ""])
        table = format_table(("line", *RECORD_HEADERS, "at"), rows)
        note = f"1 unreadable line; run `paysession audit verify {path}`"
        assert capsys.readouterr() == (f"{table}\n{note}\n", "")


def _line(record: TransitionRecord) -> bytes:
    from paysession.audit import encode_line

    return encode_line(record)


class TestAuditReplayCommand:
    def test_prints_the_session(
        self, tmp_path: Path, trail: tuple[Path, list[SessionMachine]], capsys: Capture
    ) -> None:
        """The rebuilt session, as the wire JSON of the stored one."""
        path, machines = trail
        for machine in machines:
            session = machine.session
            data = write_json(tmp_path / "data.json", session.data)
            argv = ["audit", "replay", str(path), "--session", session.id, "--data-json", str(data)]
            assert main(argv) == 0
            assert capsys.readouterr() == (to_json(session) + "\n", "")

    def test_no_data_needed_for_empty_data(self, tmp_path: Path, capsys: Capture) -> None:
        """A session whose data is {} replays without --data-json; a cart needs its file."""
        path = tmp_path / "trail.jsonl"
        clock = StepClock()
        cart = {"id": "cart_1"}
        machine = SessionMachine(numbered_session(1, clock, cart=cart), clock=clock)
        machine.select()
        path.write_bytes(b"".join(_line(r) for r in machine.history))
        cart_file = write_json(tmp_path / "cart.json", cart)
        argv = ["audit", "replay", str(path), "--session", "ps_0001", "--cart-json", str(cart_file)]
        assert main(argv) == 0
        assert capsys.readouterr() == (to_json(machine.session) + "\n", "")

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            pytest.param(
                None,
                "the trail holds only a digest of session {id}'s data: pass --data-json FILE",
                id="no data",
            ),
            pytest.param(
                {"id": "wrong"},
                "the data given does not match the trail's digest of session {id}'s data",
                id="wrong data",
            ),
            pytest.param([1, 2], "data file {data} must hold a JSON object", id="not an object"),
            pytest.param(
                "{",
                "data file {data} is not valid JSON (Expecting property name enclosed in"
                " double quotes at character 1)",
                id="not JSON",
            ),
            pytest.param(
                {"k": json.loads("[" * 80 + "]" * 80)},
                "the data or cart given is not JSON data a session can hold",
                id="too deep",
            ),
        ],
    )
    def test_data_problems(
        self,
        tmp_path: Path,
        trail: tuple[Path, list[SessionMachine]],
        capsys: Capture,
        data: object,
        message: str,
    ) -> None:
        """Data that is missing or does not match the trail is a usage error (exit 2)."""
        path, machines = trail
        session = next(m.session for m in machines if m.session.data)
        argv = ["audit", "replay", str(path), "--session", session.id]
        data_file = tmp_path / "data.json"
        if isinstance(data, str):
            data_file.write_text(data)
        elif data is not None:
            write_json(data_file, data)
        if data is not None:
            argv += ["--data-json", str(data_file)]
        assert main(argv) == 2
        expected = "paysession audit: " + message.format(data=data_file, id=session.id) + "\n"
        assert capsys.readouterr() == ("", expected)

    def test_unknown_session_and_missing_file(
        self, tmp_path: Path, trail: tuple[Path, list[SessionMachine]], capsys: Capture
    ) -> None:
        """No record of the session, or no file: exit 2."""
        path, _ = trail
        assert main(["audit", "replay", str(path), "--session", "ps_9999"]) == 2
        missing = tmp_path / "missing.jsonl"
        assert main(["audit", "replay", str(missing), "--session", "ps_0001"]) == 2
        assert capsys.readouterr() == (
            "",
            f"paysession audit: no record of session ps_9999 in {path}\n"
            f"paysession audit: cannot read {missing}: No such file or directory\n",
        )

    def test_tampered_trail(self, tmp_path: Path, capsys: Capture) -> None:
        """A trail that cannot be replayed is exit 1, naming the line and the reason."""
        path = tmp_path / "trail.jsonl"
        machine = story()
        lines = [_line(r) for r in machine.history]
        del lines[3]
        path.write_bytes(b"".join(lines))
        data = write_json(tmp_path / "data.json", machine.session.data)
        argv = ["audit", "replay", str(path), "--session", "ps_0001", "--data-json", str(data)]
        assert main(argv) == 1
        assert capsys.readouterr() == (
            "",
            f"{path}:4: session ps_0001 seq 4: sequence: expected seq 3, got 4 (a gap)\n",
        )

    def test_key_file(self, tmp_path: Path, capsys: Capture) -> None:
        """An HMAC trail replays with its key file, and fails its hash check without it."""
        path = tmp_path / "trail.jsonl"
        machine = story(key=KEY)
        path.write_bytes(b"".join(_line(r) for r in machine.history))
        key = tmp_path / "key"
        key.write_bytes(KEY)
        data = write_json(tmp_path / "data.json", machine.session.data)
        argv = ["audit", "replay", str(path), "--session", "ps_0001", "--data-json", str(data)]
        assert main([*argv, "--key-file", str(key)]) == 0
        assert capsys.readouterr().out == to_json(machine.session) + "\n"
        assert main(argv) == 1


class TestAuditSubprocess:
    def test_exit_codes_as_a_process(
        self, tmp_path: Path, trail: tuple[Path, list[SessionMachine]]
    ) -> None:
        """python -m paysession audit verify: 0 clean, 1 tampered, 2 missing; no traceback."""
        path, _ = trail
        tampered = tmp_path / "tampered.jsonl"
        lines = lines_of(path)
        tampered.write_bytes(b"".join(lines[:5] + lines[6:]))

        def run(file: Path) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "paysession", "audit", "verify", str(file)],
                capture_output=True,
                text=True,
                timeout=60,
            )

        clean, bad, missing = run(path), run(tampered), run(tmp_path / "missing.jsonl")
        assert (clean.returncode, clean.stdout) == (
            0,
            f"ok: 6 sessions, {len(lines)} records verified\n",
        )
        assert bad.returncode == 1 and bad.stdout.startswith(f"{tampered}:")
        assert missing.returncode == 2 and "Traceback" not in missing.stderr
        assert missing.stderr.startswith("paysession audit: cannot read")


class TestHostileTrails:
    def test_show_escapes_control_characters(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A reason from a webhook cannot forge a row or colour the terminal."""
        clock = StepClock()
        machine = SessionMachine(numbered_session(1, clock), clock=clock)
        machine.cancel(actor="wh\u202eevil", reason="x\n9  ps_forged  0  create\x1b[31m")
        path = tmp_path / "t.jsonl"
        path.write_bytes(b"".join(_encoded(machine.history)))
        assert main(["audit", "show", str(path)]) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\u202e" not in out
        assert len(out.splitlines()) == 2 + len(machine.history)
        assert "x\\x0a9  ps_forged  0  create\\x1b[31m" in out and "wh\\u202eevil" in out

    def test_an_empty_trail_is_not_ok(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "empty.jsonl"
        path.write_bytes(b"")
        assert main(["audit", "verify", str(path)]) == 1
        assert capsys.readouterr().out == (
            f"FAILED: {path} holds no records; an empty trail proves nothing\n"
        )

    def test_one_line_off_the_calendar_leaves_the_rest_verified(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A record stamped at year 1 is a bad line with its number; other sessions pass."""
        clock = StepClock()
        machines = [SessionMachine(numbered_session(n, clock), clock=clock) for n in (1, 2)]
        for machine in machines:
            machine.cancel()
        lines = [line for m in machines for line in _encoded(m.history)]
        at = format_datetime(machines[0].history[1].at).encode()
        lines[1] = lines[1].replace(at, b"0001-01-01T00:00:00.000Z")
        path = tmp_path / "t.jsonl"
        path.write_bytes(b"".join(lines))
        assert main(["audit", "verify", str(path)]) == 1
        out, err = capsys.readouterr()
        assert err == "" and out.splitlines()[0].startswith(f"{path}:2: session ps_0001: malformed")
        assert out.splitlines()[-1] == "FAILED: 1 of 2 sessions bad, 1 problem in 4 records"
        assert main(["audit", "show", str(path)]) == 1
        assert "(malformed)" in capsys.readouterr().out


def _encoded(history: tuple[TransitionRecord, ...]) -> list[bytes]:
    return [encode_line(record) for record in history]


class TestHostileFileOptions:
    @pytest.mark.parametrize(
        ("content", "says"),
        [
            ('{"a": "caf\u00e9"}'.encode("latin-1"), "is not UTF-8 text"),
            (b"[" * 100_000, "nests too deeply"),
            (b'{"a": 1, "a": 2}', "gives a key twice"),
        ],
        ids=["latin-1", "deep", "key-twice"],
    )
    def test_a_bad_data_file_is_one_line_and_exit_2(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, says: str
    ) -> None:
        path = tmp_path / "trail.jsonl"
        path.write_bytes(b"".join(encode_line(r) for r in story().history))
        data = tmp_path / "data.json"
        data.write_bytes(content)
        argv = ["audit", "replay", str(path), "--session", "ps_0001", "--data-json", str(data)]
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and says in err
