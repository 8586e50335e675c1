"""paysession demo: the checkout simulation on SQLite, its summary and its verdict."""

from __future__ import annotations

import io
import re
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from paysession import PaymentSessions, PaymentSessionStatus
from paysession.cli import main
from paysession.cli._demo_report import Progress, summary
from paysession.cli.demo import ledger_path
from paysession.providers import SimulatedProvider
from paysession.store import EventOutcome, SqliteStore

pytestmark = pytest.mark.slow


S = PaymentSessionStatus


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One small run (30 carts, 2 storefront processes), shared by the checks below."""
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    out = io.StringIO()
    from paysession.cli.demo import run

    assert run(path, carts=30, workers=2, seed=7, out=out) == 0, out.getvalue()
    return path, out.getvalue()


class TestDemo:
    def test_every_trail_verified(self, demo_run: tuple[Path, str]) -> None:
        """The run ends with every trail verified, and says so."""
        path, out = demo_run
        with SqliteStore(path) as store:
            count = len(store.find())
        assert f"trails verified: {count} sessions" in out and ": ok" in out
        assert "30/30 carts completed" in out  # plain progress lines: not a terminal

    def test_the_summary_counts(self, demo_run: tuple[Path, str]) -> None:
        """The table names each count the issue asks for."""
        _, out = demo_run
        for row in (
            "sessions authorized",
            "moves recorded",
            "storefront races lost",
            "webhook races lost",
            "duplicates ignored",
            "stale reports ignored",
            "anomalies caught",
        ):
            assert row in out
        assert re.search(r"\n  keys authorized twice +0\n", out)
        assert re.search(r"\ncarts authorized twice +0\n", out)
        assert re.search(r"\norphaned holds +0\n", out)
        for row in ("holds voided", "claims taken over after a crash", "abandoned sessions"):
            assert row in out

    def test_each_payment_authorized_once(self, demo_run: tuple[Path, str]) -> None:
        """Every cart ends authorized or canceled, with one authorize move at most."""
        path, _ = demo_run
        with SqliteStore(path) as store:
            sessions = PaymentSessions(store)
            found = sessions.find()
            assert len({s.cart_id for s in found}) == 30 <= len(found)
            assert {s.status for s in found} <= {S.AUTHORIZED, S.CANCELED}
            authorized = Counter(s.cart_id for s in found if s.status is S.AUTHORIZED)
            assert set(authorized.values()) <= {1}
            for session in found:
                moves = Counter(r.trigger for r in sessions.history(session.id))
                assert moves["authorize"] <= 1
                if session.status is S.AUTHORIZED:
                    assert moves["authorize"] == 1
            # Anomalies are about sessions canceled before (by the storefront) or after
            # (their extra hold voided): either way they end canceled.
            for anomaly in sessions.anomalies():
                assert sessions.get(anomaly.session_id).status is S.CANCELED
            provider = SimulatedProvider(ledger=ledger_path(path))
            keeps = {s.id for s in found if s.status is S.AUTHORIZED}
            assert {hold.session_id for hold in provider.holds()} <= keeps
            provider.close()
            assert sessions.provider_events(outcome=EventOutcome.APPLIED)

    def test_a_run_starts_from_a_fresh_file(self, tmp_path: Path) -> None:
        """A second run on the same path replaces the earlier demo database."""
        path = tmp_path / "again.db"
        for _ in range(2):
            assert main(["demo", "--db", str(path), "--carts", "6", "--workers", "1"]) == 0
        with SqliteStore(path) as store:
            assert len({session.cart_id for session in store.find()}) == 6

    def test_a_ledger_left_without_its_database_is_replaced(self, tmp_path: Path) -> None:
        """The database deleted by hand, its ledger left: the next run starts clean
        (the old ledger's webhooks would name sessions that no longer exist)."""
        path = tmp_path / "again.db"
        for _ in range(3):
            path.unlink(missing_ok=True)
            assert main(["demo", "--db", str(path), "--carts", "12", "--workers", "2"]) == 0
            with SqliteStore(path) as store:
                assert len({session.cart_id for session in store.find()}) == 12

    def test_a_foreign_file_where_the_ledger_goes_is_left_alone(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "shop.db"
        ledger = tmp_path / "shop.db-provider"
        ledger.write_bytes(b"not a ledger")
        assert main(["demo", "--db", str(path), "--carts", "3", "--workers", "1"]) == 2
        assert "shop.db-provider exists and is not a paysession demo ledger" in (
            capsys.readouterr().err
        )
        assert ledger.read_bytes() == b"not a ledger" and not path.exists()

    def test_another_file_is_left_alone(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A path holding anything but a demo database is refused (exit 2, on stderr)."""
        path = tmp_path / "shop.db"
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE orders (id INTEGER)")
        conn.close()
        before = path.read_bytes()
        out = io.StringIO()
        from paysession.cli.demo import run

        assert run(path, carts=3, workers=1, out=out) == 2
        assert out.getvalue() == ""
        assert "is not a paysession demo database" in capsys.readouterr().err
        assert path.read_bytes() == before

    def test_a_broken_trail_fails_the_run(self, demo_run: tuple[Path, str], tmp_path: Path) -> None:
        """The verdict is 'failed' (exit 1) when any trail does not verify."""
        source, _ = demo_run
        path = tmp_path / "copy.db"
        with sqlite3.connect(source) as original, sqlite3.connect(path) as copy:
            original.backup(copy)
            copy.execute(
                'UPDATE paysession_records SET wire = replace(wire, \'"actor":"storefront"\', '
                '\'"actor":"mallory"\') WHERE seq = 1 AND rowid = (SELECT min(rowid) FROM '
                "paysession_records WHERE seq = 1)"
            )
        original.close()
        copy.close()
        out = io.StringIO()
        with SqliteStore(path) as store:
            ledger = SimulatedProvider(ledger=tmp_path / "provider.db")
            assert summary(PaymentSessions(store), ledger, [], 0, out, 0.0) is False
        assert "FAILED (1 bad sessions)" in out.getvalue()


class TestProgress:
    def test_a_bar_on_a_terminal(self) -> None:
        """On a terminal the bar is redrawn in place and ends with a newline."""

        class Terminal(io.StringIO):
            def isatty(self) -> bool:
                return True

        out = Terminal()
        show = Progress(out, 40)
        show(10, 0.5)
        show.finish(40, 1.0)
        text = out.getvalue()
        assert text.startswith("\r  [#######.......................] 10/40 carts")
        assert text.endswith("] 40/40 carts   1.0 s\n")

    def test_plain_lines_otherwise(self) -> None:
        """Elsewhere, one line per quarter reached."""
        out = io.StringIO()
        show = Progress(out, 8)
        for done in range(9):
            show(done, float(done))
        show.finish(8, 8.0)
        assert [line.split(" (")[0].strip() for line in out.getvalue().splitlines()] == [
            "2/8 carts completed",
            "4/8 carts completed",
            "6/8 carts completed",
            "8/8 carts completed",
        ]
