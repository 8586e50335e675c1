"""The paysession command line, called as a function."""

from __future__ import annotations

import subprocess
import sys

import pytest

from paysession.cli import format_table, main


class TestDemo:
    def test_demo_prints_every_status(self, capsys: pytest.CaptureFixture[str]) -> None:
        """demo drives sessions through every status and prints a table of moves."""
        assert main(["demo"]) == 0
        out = capsys.readouterr().out
        for status in ("pending", "requires_more", "authorized", "error", "canceled"):
            assert f"-> {status}" in out
        assert "IllegalTransition" in out and "GuardRejected" in out
        assert "pi_demo" not in out  # provider data stays out of the output

    def test_demo_as_a_process(self) -> None:
        """python -m paysession demo exits 0."""
        done = subprocess.run(
            [sys.executable, "-m", "paysession", "demo"], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "authorized" in done.stdout

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
