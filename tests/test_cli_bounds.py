"""Every file and stdin the command line reads is read with a bound: past it, one line on
stderr and exit 2 (an input error), never a MemoryError, a traceback or exit 1 (which says
"tampered"). Each test runs the real command in a subprocess."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from paysession.cli._input import TooLarge, _lines

from .helpers import write_trail

ROOT = Path(__file__).resolve().parent.parent


def paysession(*argv: str, stdin: object = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "paysession", *argv],
        stdin=stdin,  # type: ignore[arg-type]
        capture_output=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def refused(done: subprocess.CompletedProcess[bytes], said: bytes) -> None:
    assert done.returncode == 2, done.stderr
    assert done.stdout == b"" and said in done.stderr
    assert done.stderr.count(b"\n") == 1
    assert b"Traceback" not in done.stderr and b"MemoryError" not in done.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ("audit", "verify", "-"),
        ("audit", "show", "-"),
        ("audit", "replay", "-", "--session", "ps_x"),
    ],
)
def test_an_endless_line_on_stdin_is_refused(argv: tuple[str, ...]) -> None:
    with open("/dev/zero", "rb") as zero:
        refused(paysession(*argv, stdin=zero), b"<stdin>: line 1 is longer than 16 MiB")


def test_an_endless_line_in_a_file_is_refused_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "trail.jsonl"
    write_trail(path, sessions=2, moves=10)
    lines = len(path.read_bytes().splitlines())
    with path.open("ab") as out:
        out.write(b"x" * (16 * 2**20 + 1))
    done = paysession("audit", "verify", str(path))
    refused(done, f"{path}: line {lines + 1} is longer than 16 MiB".encode())


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (("audit", "verify", "{trail}", "--key-file", "-"), b"key file <stdin> is larger than"),
        (("audit", "verify", "{trail}", "--heads", "-"), b"heads file <stdin> is larger than"),
        (
            ("audit", "replay", "{trail}", "--session", "ps_x", "--data-json", "-"),
            b"data file <stdin> is larger than 64 MiB",
        ),
        (("inspect", "--db", "{trail}", "--key-file", "-"), b"key file <stdin> is larger than"),
        (("diagram", "--history-json", "-"), b"is larger than 64 MiB"),
    ],
)
def test_an_endless_option_file_is_refused(
    tmp_path: Path, argv: tuple[str, ...], said: bytes
) -> None:
    trail = tmp_path / "trail.jsonl"
    write_trail(trail, sessions=1, moves=3)
    with open("/dev/zero", "rb") as zero:
        done = paysession(*(part.format(trail=trail) for part in argv), stdin=zero)
    refused(done, said)


def test_a_trail_past_its_total_bound_is_refused() -> None:
    """The total bound, shown at a small size: 4 GiB of lines cannot be read here."""
    stream = io.BytesIO(b"{}\n" * 10)
    lines = _lines(stream, "<stdin>", longest=100, largest=25)
    assert [next(lines) for _ in range(8)] == [b"{}\n"] * 8
    with pytest.raises(TooLarge, match=r"^<stdin> is larger than 25 bytes: verify it in parts"):
        next(lines)
