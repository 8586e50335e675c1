"""docs/cli.md's exit codes, walked row by row: each command, as written there, ends
with the code the table says, and an error is one line on stderr."""

from __future__ import annotations

import contextlib
import re
import shlex
import sqlite3
from pathlib import Path

import pytest

from paysession import PaymentSessions, ReconciliationAnomaly
from paysession.audit import encode_line
from paysession.cli import main
from paysession.diagrams import write_files
from paysession.store import SqliteStore

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs" / "cli.md").read_text()
ROWS = re.findall(r"^\| `paysession ?([^`]*)` \| (\d+) \|", PAGE, flags=re.M)


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    where = tmp_path_factory.mktemp("exit-codes")
    db = where / "shop.db"
    store = SqliteStore(db)
    sessions = PaymentSessions(store)
    made = sessions.create(cart_id="cart_1", provider_id="stripe", amount=500)
    sessions.fire(made.id, "initiate", data={"id": "pi_1"})
    sessions.fire(made.id, "authorize")
    for n in (2, 3):
        sessions.create(cart_id=f"cart_{n}", provider_id="stripe", amount=n)
    # Canceled here, then authorized there: a hold not released, for `audit holds`.
    late = sessions.create(cart_id="cart_4", provider_id="stripe", amount=700)
    sessions.fire(late.id, "initiate", data={"id": "pi_4"})
    sessions.fire(late.id, "cancel")
    with contextlib.suppress(ReconciliationAnomaly):
        sessions.reconcile(late.id, "requires_capture", event_id="evt_late")
    trail = where / "trail.jsonl"
    trail.write_bytes(b"".join(encode_line(record) for record in sessions.history(made.id)))
    store.close()
    bad = where / "bad.jsonl"
    bad.write_bytes(trail.read_bytes()[:-20])  # its last line torn
    empty = where / "empty"
    empty.write_bytes(b"")
    other = where / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER)")
    conn.close()
    stale = where / "stale"
    write_files(stale)
    next(stale.glob("*.mmd")).write_text("stale\n")
    return {
        "db": str(db),
        "trail": str(trail),
        "bad": str(bad),
        "empty": str(empty),
        "other": str(other),
        "missing": str(where / "missing"),
        "stale": str(stale),
        "session": made.id,
    }


def test_the_table_covers_every_command_and_code() -> None:
    commands = {row.split()[0] for row, _ in ROWS if row}
    assert commands == {"demo", "audit", "sessions", "diagram", "inspect", "migrate", "--version"}
    assert {code for _, code in ROWS} == {"0", "1", "2"}
    for code in ("| 130 |", "| 143 |"):
        assert code in PAGE  # the signals: tests/test_demo_signals.py sends them


@pytest.mark.parametrize(("command", "code"), ROWS, ids=[row for row, _ in ROWS])
def test_each_row(
    command: str,
    code: str,
    places: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(ROOT)
    argv = [part.format_map(places) for part in shlex.split(command)]
    try:
        got = main(argv)
    except SystemExit as exit_:  # argparse: --version, or a usage error
        got = int(exit_.code or 0)
    err = capsys.readouterr().err
    assert got == int(code), err
    if got == 2:
        assert err.count("\n") == 1 or err.startswith("usage:"), err
        assert "Traceback" not in err
    if argv[:1] == ["migrate"] and "--dry-run" in argv:
        assert not Path(places["missing"]).exists()
