"""The paysession command line, called as a function."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

from paysession import PaymentSession, SessionMachine, __version__
from paysession.audit import encode_line
from paysession.cli import diagram as diagram_command
from paysession.cli import format_table, main

from .helpers import cli


class TestConsoleScript:
    def test_the_installed_command_runs(self, tmp_path: Path) -> None:
        """The `paysession` console script beside this interpreter (in .venv/bin, say)."""
        script = Path(sys.executable).with_name("paysession")
        assert script.exists(), "paysession is not installed beside this interpreter"
        version = subprocess.run(
            [str(script), "--version"], capture_output=True, text=True, timeout=60, check=False
        )
        assert (version.returncode, version.stdout) == (0, f"paysession {__version__}\n")
        missing = subprocess.run(
            [str(script), "audit", "verify", str(tmp_path / "missing.jsonl")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert missing.returncode == 2 and missing.stderr.count("\n") == 1
        assert missing.stderr.startswith("paysession audit: cannot read")


class TestDemo:
    def test_walkthrough_prints_every_status(self, capsys: pytest.CaptureFixture[str]) -> None:
        """demo --walkthrough drives sessions through every status and prints the moves."""
        assert main(["demo", "--walkthrough"]) == 0
        out = capsys.readouterr().out
        for status in ("pending", "requires_more", "authorized", "error", "canceled"):
            assert f"-> {status}" in out
        assert "IllegalTransition" in out and "GuardRejected" in out
        assert "pi_demo" not in out  # provider data stays out of the output

    @pytest.mark.slow
    def test_a_closed_output_does_not_hang_the_demo(self, tmp_path: Path) -> None:
        """Like `paysession demo | head -n 1`: the demo and its processes end once it dies."""
        demo = subprocess.Popen(
            [sys.executable, "-m", "paysession", "demo", "--db", str(tmp_path / "d.db")],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert demo.stdout is not None
        assert demo.stdout.readline().startswith(b"paysession demo: ")
        demo.stdout.close()  # what head does after its first line
        try:
            demo.wait(timeout=120)  # a guard against a hang, not a measure of speed
        except subprocess.TimeoutExpired:
            demo.kill()
            pytest.fail("the demo did not end after its output was closed")

    @pytest.mark.slow
    def test_demo_as_a_process(self, tmp_path: Path) -> None:
        """python -m paysession demo runs the simulation in the working directory, exit 0."""
        done = subprocess.run(
            [sys.executable, "-m", "paysession", "demo", "--carts", "20"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        assert re.search(r"trails verified: \d+ sessions, \d+ records: ok", done.stdout)
        assert re.search(r"\ncarts authorized twice +0\n", done.stdout)
        assert (tmp_path / "paysession-demo.db").exists()

    @pytest.mark.parametrize("flag", ["--carts", "--workers"])
    def test_counts_must_be_positive(self, flag: str) -> None:
        """--carts and --workers take a number of at least 1 (a usage error otherwise)."""
        with pytest.raises(SystemExit) as caught:
            main(["demo", flag, "0"])
        assert caught.value.code == 2

    def test_no_command(self, capsys: pytest.CaptureFixture[str]) -> None:
        """No subcommand is a usage error (exit 2)."""
        with pytest.raises(SystemExit) as caught:
            main([])
        assert caught.value.code == 2


class TestFormatTable:
    def test_aligned(self) -> None:
        """Columns are aligned under a rule."""
        assert format_table(("a", "bb"), [("xxx", 1), (None, "y")]) == (
            "a    bb\n---  --\nxxx  1\n     y"
        )


class TestConventions:
    def test_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as done:
            main(["--version"])
        assert done.value.code == 0
        assert capsys.readouterr().out == f"paysession {__version__}\n"
        # The installed distribution's version is the one the package says.
        assert importlib.metadata.version("paysession") == __version__

    def test_interrupted_is_130_and_one_line(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        def interrupted(args: object) -> int:
            raise KeyboardInterrupt

        monkeypatch.setattr(diagram_command, "run", interrupted)
        assert main(["diagram"]) == 130
        assert capsys.readouterr() == ("", "paysession: interrupted\n")

    def test_unexpected_error_is_one_line_and_debug_shows_it(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        def broken(args: object) -> int:
            raise ZeroDivisionError("a bug\nwith a second line")

        monkeypatch.setattr(diagram_command, "run", broken)
        assert main(["diagram"]) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and "ZeroDivisionError: a bug\\x0a" in err
        assert "--debug" in err and "Traceback" not in err
        with pytest.raises(ZeroDivisionError):
            main(["--debug", "diagram"])

    def test_a_closed_pipe_ends_quietly(self, tmp_path: Path) -> None:
        """`paysession audit show big.jsonl | head -1`: no traceback, exit 0."""
        path = tmp_path / "big.jsonl"
        machine = SessionMachine(PaymentSession.new(cart_id="c", provider_id="p", amount=1))
        for n in range(2000):
            machine.update(amount=n + 1, reason="r" * 40)
        path.write_bytes(b"".join(encode_line(record) for record in machine.history))
        shown = subprocess.Popen(
            [sys.executable, "-m", "paysession", "audit", "show", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert shown.stdout is not None and shown.stderr is not None
        assert shown.stdout.read(100)
        shown.stdout.close()  # what head does once it has its lines
        err = shown.stderr.read()
        assert shown.wait(timeout=60) == 0
        assert err == b""


class TestDemoUsage:
    def test_a_database_that_cannot_be_opened_is_named(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        place = tmp_path / "no-such-dir" / "x.db"
        assert main(["demo", "--db", str(place), "--carts", "1", "--workers", "1"]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and str(place) in err

    def test_walkthrough_refuses_the_options_it_ignores(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["demo", "--walkthrough", "--db", "x.db"]) == 2
        assert capsys.readouterr().err == (
            "paysession demo: --walkthrough takes no --db, --carts or --workers\n"
        )

    def test_too_many_workers(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["demo", "--workers", "1000", "--carts", "5"]) == 2
        assert "--workers must be at most 64" in capsys.readouterr().err

    def test_a_count_that_is_not_a_number_says_so(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as caught:
            main(["demo", "--carts", "abc"])
        assert caught.value.code == 2
        assert "--carts: must be a whole number, got 'abc'" in capsys.readouterr().err


class TestPlainUsage:
    @pytest.mark.parametrize(
        ("argv", "usage", "said"),
        [
            (
                [],
                "usage: paysession [",
                "paysession: error: choose a command: "
                "demo, diagram, audit, inspect, sessions, migrate",
            ),
            (
                ["audit"],
                "usage: paysession audit [",
                "paysession audit: error: choose a command: "
                "verify, heads, holds, show, replay, export",
            ),
            (
                ["demo", "--bogus"],
                "usage: paysession demo [",
                "paysession demo: error: unrecognized arguments: --bogus",
            ),
            (
                ["audit", "show", "x.jsonl", "--bogus"],
                "usage: paysession audit show [",
                "paysession audit show: error: unrecognized arguments: --bogus",
            ),
        ],
    )
    def test_errors_name_the_command_and_its_choices(
        self, argv: list[str], usage: str, said: str
    ) -> None:
        """The command the mistake was made in shows its own usage; choices are named."""
        done = cli(*argv)
        lines = done.stderr.decode().splitlines()
        assert (done.returncode, done.stdout) == (2, b"")
        assert lines[0].startswith(usage) and lines[-1] == said


class TestEveryRowAsAUserTypesIt:
    """The first-hour findings, each as a user types it: what the command says and its
    exit code, which ``main`` decides alone (run in this process by tests/helpers.py's
    ``cli``, with standard streams of its own and an empty stdin). The installed
    command itself is TestConsoleScript's."""

    @pytest.mark.parametrize(
        ("argv", "code", "said"),
        [
            (["demo", "--db", "{tmp}/nodir/x.db", "--carts", "1"], 2, "{tmp}/nodir/x.db"),
            (["demo", "--workers", "1000", "--carts", "5"], 2, "--workers must be at most 64"),
            (["demo", "--carts", "abc"], 2, "--carts: must be a whole number, got 'abc'"),
            (["demo", "--walkthrough", "--db", "x.db"], 2, "--walkthrough takes no --db"),
            (["demo", "--bogus"], 2, "paysession demo: error: unrecognized arguments: --bogus"),
            (["audit"], 2, "choose a command: verify, heads, holds, show, replay, export"),
            (["audit", "verify", "{tmp}/missing.jsonl"], 2, "cannot read {tmp}/missing.jsonl"),
            (["audit", "verify", "--db", "{tmp}/typo.db"], 2, "no database file {tmp}/typo.db"),
            (["audit", "verify", "-"], 1, "holds no records"),
            (["diagram", "--session-json", "{tmp}/missing.json"], 2, "{tmp}/missing.json"),
        ],
    )
    def test_each_mistake_is_one_clear_line(
        self, tmp_path: Path, argv: list[str], code: int, said: str
    ) -> None:
        done = cli(*(part.format(tmp=tmp_path) for part in argv), cwd=tmp_path)
        shown = (done.stdout + done.stderr).decode()
        assert done.returncode == code, shown
        assert said.format(tmp=tmp_path) in shown
        assert "Traceback" not in shown
        assert not (tmp_path / "typo.db").exists()
