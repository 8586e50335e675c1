"""``paysession inspect`` as a user runs it: a real server in a subprocess, Ctrl-C, the
refusals (in this process: each is a line and an exit code), a missing extra, and the
line the demo ends with."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from paysession import PaymentSessions
from paysession.cli import build_parser
from paysession.cli._store import is_dsn
from paysession.cli.inspect import is_loopback
from paysession.store import SqliteStore

from .helpers import StepClock, cli, initiated, inspector_running, run_without

pytest.importorskip("uvicorn")


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    store = SqliteStore(path)
    sessions = PaymentSessions(store, clock=StepClock())
    session_id = initiated(sessions, "cart_1")
    sessions.fire(session_id, "authorize")
    store.close()
    return path


def _inspect(*argv: str) -> subprocess.CompletedProcess[str]:
    """``paysession inspect *argv`` refusing to start: what it says and its exit code,
    which ``main`` decides alone, so run in this process (``tests/helpers.py``'s ``cli``)."""
    done = cli("inspect", *argv)
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def _one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def server(database: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    with inspector_running(database) as running:
        yield running


class TestServing:
    def test_it_serves_the_store_and_says_where(
        self, server: tuple[subprocess.Popen[str], str], database: Path
    ) -> None:
        _, url = server
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:
            assert json.load(response)["ok"] is True
        with urllib.request.urlopen(f"{url}/api/sessions", timeout=10) as response:
            page = json.load(response)
        assert [s["status"] for s in page["sessions"]] == ["authorized"]
        with urllib.request.urlopen(f"{url}/", timeout=10) as response:
            assert response.headers["content-security-policy"].startswith("default-src 'none'")

    def test_ctrl_c_stops_it_with_130_and_one_line(
        self, server: tuple[subprocess.Popen[str], str]
    ) -> None:
        process, url = server
        with urllib.request.urlopen(f"{url}/healthz", timeout=10):
            pass
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130
        assert _one_line(stderr) == "paysession: interrupted"


def test_it_starts_on_a_store_with_a_row_edited_by_hand(database: Path) -> None:
    """A row that does not decode is the business of the pages that show it."""
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE paysession_records SET wire = 'garbage'")
    conn.close()
    with inspector_running(database) as (_, url):
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:
            assert json.load(response)["ok"] is True
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}/activity", timeout=10)
        assert refused.value.code == 503


class TestRefusals:
    def test_another_address_needs_a_token(self, database: Path) -> None:
        done = _inspect("--db", str(database), "--host", "0.0.0.0")
        assert done.returncode == 2
        assert "give --token" in _one_line(done.stderr)

    def test_an_empty_token_is_refused(self, database: Path) -> None:
        done = _inspect("--db", str(database), "--token", " ")
        assert done.returncode == 2
        assert "the token must be printable text, not empty" in _one_line(done.stderr)

    def test_a_missing_database_is_never_created(self, tmp_path: Path) -> None:
        done = _inspect("--db", str(tmp_path / "typo.db"))
        assert done.returncode == 2
        assert _one_line(done.stderr) == (
            f"paysession inspect: no database file {tmp_path / 'typo.db'}"
        )
        assert not (tmp_path / "typo.db").exists()

    def test_a_file_that_is_not_a_store(self, tmp_path: Path) -> None:
        other = tmp_path / "notes.db"
        other.write_text("not a database")
        done = _inspect("--db", str(other))
        assert done.returncode == 2
        assert _one_line(done.stderr) == (
            f"paysession inspect: {other} is not a SQLite database (nor a PostgreSQL DSN)"
        )

    def test_a_file_with_an_equals_sign_is_a_file(self, database: Path, tmp_path: Path) -> None:
        """A path with ``=`` in it is a DSN only when no such file is there."""
        named = tmp_path / "shop=main.db"
        database.rename(named)
        done = _inspect("--db", str(named), "--host", "0.0.0.0")
        # Reached the bind check: the file was taken for SQLite, not a DSN to wait on.
        assert done.returncode == 2
        assert "give --token" in _one_line(done.stderr)
        assert is_dsn(str(named)) is False
        assert is_dsn("host=db dbname=shop") is True
        assert is_dsn("postgresql://db/shop") is True

    def test_a_port_in_use(self, database: Path) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            done = _inspect("--db", str(database), "--port", str(port))
        assert done.returncode == 2
        assert f"cannot listen on 127.0.0.1:{port}" in _one_line(done.stderr)

    @pytest.mark.parametrize("port", ["http", "70000", "-1"])
    def test_a_bad_port(self, database: Path, port: str) -> None:
        done = _inspect("--db", str(database), "--port", port)
        assert done.returncode == 2
        assert "must be a port from 0 to 65535" in done.stderr
        assert "Traceback" not in done.stderr

    def test_a_missing_key_file(self, database: Path, tmp_path: Path) -> None:
        done = _inspect("--db", str(database), "--key-file", str(tmp_path / "none.key"))
        assert done.returncode == 2
        assert "cannot read key file" in _one_line(done.stderr)

    def test_without_the_extra_it_says_what_to_install(self, database: Path) -> None:
        done = run_without(
            "starlette",
            "from paysession.cli import main\n"
            f"raise SystemExit(main(['inspect', '--db', {str(database)!r}]))",
        )
        assert done.returncode == 2
        assert _one_line(done.stderr) == (
            "paysession inspect: the inspector needs the inspect extra (starlette): "
            "pip install 'paysession[inspect]'"
        )


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.com", False),
    ],
)
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_demo_ends_with_the_inspect_line(tmp_path: Path) -> None:
    db = tmp_path / "with space.db"
    done = subprocess.run(
        [sys.executable, "-m", "paysession", "demo", "--db", str(db), "--carts", "6"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert done.returncode == 0, done.stderr
    hints = done.stdout.splitlines()[-2:]
    ran = f"{shlex.quote(sys.executable)} -m paysession"  # the command as it was run
    assert hints == [
        f"see every session: {ran} inspect --db '{db}'",
        f"list them:         {ran} sessions --db '{db}'",
    ]


def test_the_demos_hints_use_the_script_it_was_run_as(tmp_path: Path) -> None:
    """Run as .venv/bin/paysession (the README's way), the hints say the same."""
    script = Path(sys.executable).with_name("paysession")
    relative = os.path.relpath(script, tmp_path)
    done = subprocess.run(
        [relative, "demo", "--db", "d.db", "--carts", "4", "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == [
        f"see every session: {relative} inspect --db d.db",
        f"list them:         {relative} sessions --db d.db",
    ]


def test_the_commands_in_the_docs_are_what_the_parser_takes() -> None:
    """Each ``paysession inspect`` line of docs/inspector.md parses, as written."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "inspector.md").read_text()
    lines = [
        shlex.split(line)
        for block in re.findall(r"```console\n(.*?)```", page, flags=re.S)
        for line in block.splitlines()
        if line.startswith("paysession ")
    ]
    assert len(lines) == 3
    parser = build_parser()
    for argv in lines:
        args = parser.parse_args(argv[1:])
        assert args.command == "inspect"
        assert args.db
