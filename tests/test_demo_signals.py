"""The demo's processes belong to it: they end with it, whatever ends it, and quietly.

Each test starts ``paysession demo`` as a process of its own group (as a shell starts a
pipeline), ends it one way, and then checks the group: once the demo has exited, no
process of its group may be left (no storefront, no webhook process, no crashing
completion), and nothing but the demo's one line may reach stderr.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

from .helpers import as_a_terminal_job

pytestmark = [
    pytest.mark.slow,  # each starts a demo: processes, imports, a database
    pytest.mark.skipif(sys.platform != "linux", reason="reads /proc for the group"),
]


def _group(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` still there (zombies included)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


def _left_behind(pgid: int, wait: float = 15.0) -> list[int]:
    """The group's processes that outlive the demo (a guard against a slow exit)."""
    deadline = time.monotonic() + wait
    while (left := _group(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@contextmanager
def _demo(tmp_path: Path, *extra: str, carts: int = 400) -> Iterator[subprocess.Popen[bytes]]:
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "paysession",
            "demo",
            "--db",
            str(tmp_path / "demo.db"),
            "--carts",
            str(carts),
            "--workers",
            "2",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own group, as a shell's job
        preexec_fn=as_a_terminal_job,
    )
    try:
        assert demo.stdout is not None
        assert demo.stdout.readline().startswith(b"paysession demo: ")
        yield demo
    finally:
        if demo.poll() is None:
            demo.kill()
        demo.wait(timeout=60)
        for pid in _group(demo.pid):
            os.kill(pid, signal.SIGKILL)  # only this test's own processes
        for stream in (demo.stdout, demo.stderr):
            if stream is not None:
                stream.close()


def _running(pgid: int, processes: int) -> None:
    """Wait until the demo's processes have started (the demo, its workers, and the
    resource tracker): a signal then finds them at work, not starting."""
    deadline = time.monotonic() + 60
    while len(_group(pgid)) < processes and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # and let them import and open the database


def _ended(demo: subprocess.Popen[bytes]) -> tuple[int, str]:
    """The demo's exit code and stderr. A process it left behind holds stderr open: that
    fails here rather than hanging the test."""
    assert demo.stderr is not None
    code = demo.wait(timeout=60)
    return code, _all_of(demo.stderr).decode()


def _all_of(stream: IO[bytes], wait: float = 20.0) -> bytes:
    deadline = time.monotonic() + wait
    chunks = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.1)
        if ready:
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    pytest.fail("stderr is still open: a process the demo started outlives it")


CASES = [
    (signal.SIGTERM, 143, "paysession: stopped by SIGTERM\n"),
    (signal.SIGINT, 130, "paysession: interrupted\n"),
    (signal.SIGHUP, 129, "paysession: stopped by SIGHUP\n"),
]


@pytest.mark.parametrize(("signum", "code", "said"), CASES, ids=["SIGTERM", "SIGINT", "SIGHUP"])
@pytest.mark.parametrize("to", ["process", "group"])
@pytest.mark.parametrize("when", ["starting", "running"])
def test_a_signal_ends_the_demo_and_every_process_it_started(
    tmp_path: Path, signum: int, code: int, said: str, to: str, when: str
) -> None:
    """Sent to the demo alone (`kill PID`) or to its group (a terminal's Ctrl-C), while
    its processes are still starting or at work: the demo exits 128 + the signal's
    number with one line, and leaves no process behind, and no traceback."""
    with _demo(tmp_path) as demo:
        if when == "running":
            _running(demo.pid, 4)
        if to == "group":
            os.killpg(demo.pid, signum)
        else:
            os.kill(demo.pid, signum)
        assert _ended(demo) == (code, said)
        assert _left_behind(demo.pid) == []


def test_a_killed_demo_leaves_no_process_behind(tmp_path: Path) -> None:
    """kill -9 gives the demo no chance to stop anything: its processes notice on their
    own that it has gone, and end. (multiprocessing's resource tracker then frees the
    semaphores the demo left, and says so in a warning: no traceback.)"""
    with _demo(tmp_path) as demo:
        _running(demo.pid, 4)
        demo.kill()
        assert demo.wait(timeout=60) == -signal.SIGKILL
        assert _left_behind(demo.pid) == []
        assert demo.stderr is not None and b"Traceback" not in _all_of(demo.stderr)


def test_a_closed_output_ends_the_demo_with_0_and_no_process_behind(tmp_path: Path) -> None:
    """`paysession demo | head -n 1`: once the reader has gone, the demo ends at its next
    line with 0, quietly, and its processes end with it (none goes on writing the
    database, or re-creates it once deleted)."""
    with _demo(tmp_path, carts=40) as demo:
        assert demo.stdout is not None
        demo.stdout.close()  # what head does after its first line
        assert _ended(demo) == (0, "")
        assert _left_behind(demo.pid) == []
    database = tmp_path / "demo.db"
    database.unlink()
    time.sleep(0.5)
    assert not database.exists()
