"""`paysession audit verify|show|export --db`: a store audited straight from the command
line, and `-` for standard input; each test runs the command's ``main`` in this process
(``helpers.cli``), with its own standard streams, and reads its exit code and output."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from paysession import PaymentSessions
from paysession.store import PostgresStore, SessionStore, SqliteStore

from .helpers import KEY, cli
from .test_migrations import PG_TO_VERSION_4


def paysession(*argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return cli(*argv, stdin=stdin)


def fill(store: SessionStore, key: bytes | None = None) -> list[str]:
    """Three sessions with a few moves each; returns their ids."""
    sessions = PaymentSessions(store, key=key)
    ids = []
    for n in range(3):
        made = sessions.create(cart_id=f"cart_{n}", provider_id="stripe", amount=500 + n)
        sessions.fire(made.id, "initiate", data={"id": f"pi_{n}"})
        sessions.fire(made.id, "authorize" if n else "cancel")
        ids.append(made.id)
    store.close()
    return ids


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "shop.db")
    else:
        yield request.getfixturevalue("postgres_dsn")


def open_store(db: str) -> SessionStore:
    return SqliteStore(db) if db.endswith(".db") else PostgresStore(db)


def run_sql(db: str, query: str) -> int:
    """Run ``query`` on the database behind the store's back; the rows it changed."""
    if db.endswith(".db"):
        with sqlite3.connect(db) as conn:
            changed = conn.execute(query).rowcount
        conn.close()
        return changed
    with psycopg.connect(db) as pg:
        return pg.execute(query).rowcount


def tamper(db: str, session_id: str) -> None:
    """Change the amount inside a stored record, behind the store's back."""
    query = (
        "UPDATE paysession_records SET wire = replace(wire, '[null,501]', '[null,9]')"
        f" WHERE session_id = '{session_id}' AND seq = 0"
    )
    assert run_sql(db, query) == 1


class TestVerifyStore:
    def test_a_clean_store_verifies(self, db: str) -> None:
        fill(open_store(db))
        done = paysession("audit", "verify", "--db", db)
        assert (done.returncode, done.stdout, done.stderr) == (
            0,
            b"ok: 3 sessions, 9 records verified\n",
            b"",
        )

    def test_an_edited_record_is_named(self, db: str) -> None:
        ids = fill(open_store(db))
        tamper(db, ids[1])
        done = paysession("audit", "verify", "--db", db)
        assert done.returncode == 1
        lines = done.stdout.decode().splitlines()
        assert lines[0].startswith(f"session {ids[1]} seq 0: ")
        assert lines[-1] == "FAILED: 1 of 3 sessions bad, in 9 records"

    def test_a_record_that_is_not_ours_is_a_failure_not_a_crash(self, db: str) -> None:
        ids = fill(open_store(db))
        query = (
            "UPDATE paysession_records SET wire = 'not json'"
            f" WHERE session_id = '{ids[2]}' AND seq = 1"
        )
        assert run_sql(db, query) == 1
        run_sql(db, f"UPDATE paysession_records SET wire = '[]' WHERE session_id = '{ids[0]}'")
        done = paysession("audit", "verify", "--db", db)
        assert (done.returncode, done.stderr) == (1, b"")
        first, second, summary = done.stdout.decode().splitlines()
        # Each is named, the audit goes on past it, and the summary counts both.
        assert first.startswith(f"session {ids[0]} seq 0: unreadable: record 0 of session ")
        assert second.startswith(f"session {ids[2]} seq 1: unreadable: record 1 of session ")
        assert second.endswith("): it was not written by paysession")
        assert summary == "FAILED: 2 of 3 sessions bad, in 3 records"

    def test_a_keyed_store_needs_its_key(self, db: str, tmp_path: Path) -> None:
        fill(open_store(db), key=KEY)
        key_file = tmp_path / "key"
        key_file.write_bytes(KEY)
        assert paysession("audit", "verify", "--db", db).returncode == 1
        assert (
            paysession("audit", "verify", "--db", db, "--key-file", str(key_file)).returncode == 0
        )

    def test_heads_kept_elsewhere_find_a_session_gone_back_or_gone(
        self, db: str, tmp_path: Path
    ) -> None:
        ids = fill(open_store(db))
        taken = paysession("audit", "heads", "--db", db)
        heads = tmp_path / "heads.json"
        heads.write_bytes(taken.stdout)
        assert paysession("audit", "verify", "--db", db, "--heads", str(heads)).returncode == 0
        # ids[1] rolled back to before its authorize, the record removed with it.
        run_sql(
            db,
            "UPDATE paysession_sessions SET version = 1, status = 'pending', "
            "payment_authorized_at = NULL, "
            f"updated_at = (SELECT at FROM paysession_records WHERE session_id = '{ids[1]}' "
            "AND seq = 1), "
            f"head = (SELECT hash FROM paysession_records WHERE session_id = '{ids[1]}' "
            f"AND seq = 1) WHERE id = '{ids[1]}'",
        )
        run_sql(db, f"DELETE FROM paysession_records WHERE session_id = '{ids[1]}' AND seq = 2")
        run_sql(db, f"DELETE FROM paysession_records WHERE session_id = '{ids[2]}'")
        run_sql(db, f"DELETE FROM paysession_sessions WHERE id = '{ids[2]}'")
        assert paysession("audit", "verify", "--db", db).returncode == 0  # alone: clean
        done = paysession("audit", "verify", "--db", db, "--heads", "-", stdin=taken.stdout)
        assert (done.returncode, done.stderr) == (1, b"")
        back, gone, summary = done.stdout.decode().splitlines()
        assert back.startswith(f"session {ids[1]} seq 2: anchor: the outside head names seq 2")
        assert gone == (
            f"session {ids[2]} seq 2: vanished: the outside head names seq 2 of a session "
            "the store no longer holds"
        )
        assert summary == "FAILED: 1 of 2 sessions bad, 1 named by the heads gone, in 5 records"

    def test_an_empty_store_proves_nothing(self, db: str) -> None:
        open_store(db).migrate()
        done = paysession("audit", "verify", "--db", db)
        assert done.returncode == 1 and b"holds no sessions" in done.stdout


class TestExport:
    def test_an_export_verifies_as_a_file_and_on_stdin(self, db: str, tmp_path: Path) -> None:
        ids = fill(open_store(db))
        out = tmp_path / "trail.jsonl"
        assert paysession("audit", "export", "--db", db, "-o", str(out)).returncode == 0
        to_stdout = paysession("audit", "export", "--db", db)
        assert to_stdout.returncode == 0 and to_stdout.stdout == out.read_bytes()
        assert paysession("audit", "verify", str(out)).stdout == (
            b"ok: 3 sessions, 9 records verified\n"
        )
        piped = paysession("audit", "verify", "-", stdin=out.read_bytes())
        assert (piped.returncode, piped.stdout) == (0, b"ok: 3 sessions, 9 records verified\n")
        shown = paysession("audit", "show", "-", "--session", ids[0], stdin=out.read_bytes())
        assert shown.returncode == 0 and shown.stdout.count(ids[0].encode()) == 3
        replayed = paysession("audit", "replay", "-", "--session", ids[2], stdin=out.read_bytes())
        assert replayed.returncode == 2 and b"--data-json" in replayed.stderr  # data needed

    def test_a_cut_stdin_trail_names_stdin(self) -> None:
        done = paysession("audit", "verify", "-", stdin=b'{"not": "a record"}\n')
        assert done.returncode == 1 and done.stdout.startswith(b"<stdin>:1: ")

    def test_an_unwritable_output_leaves_nothing(self, db: str, tmp_path: Path) -> None:
        fill(open_store(db))
        target = tmp_path / "missing-dir" / "trail.jsonl"
        done = paysession("audit", "export", "--db", db, "-o", str(target))
        assert done.returncode == 2 and done.stderr.count(b"\n") == 1
        assert b"cannot write" in done.stderr and not target.parent.exists()


class TestShowStore:
    def test_one_sessions_trail(self, db: str) -> None:
        ids = fill(open_store(db))
        done = paysession("audit", "show", "--db", db, "--session", ids[1])
        table = done.stdout.decode().splitlines()
        assert done.returncode == 0 and len(table) == 2 + 3
        assert [row.split()[2] for row in table[2:]] == ["create", "initiate", "authorize"]

    def test_a_record_past_the_version_is_not_shown_as_verified(self, db: str) -> None:
        ids = fill(open_store(db))
        # The row of ids[1] rolled back to before its last move; the record stays.
        run_sql(
            db,
            "UPDATE paysession_sessions SET version = 1, status = 'pending', "
            "payment_authorized_at = NULL, "
            f"updated_at = (SELECT at FROM paysession_records WHERE session_id = '{ids[1]}' "
            "AND seq = 1), "
            f"head = (SELECT hash FROM paysession_records WHERE session_id = '{ids[1]}' "
            f"AND seq = 1) WHERE id = '{ids[1]}'",
        )
        done = paysession("audit", "show", "--db", db, "--session", ids[1])
        lines = done.stdout.decode().splitlines()
        assert done.returncode == 1 and len(lines) == 2 + 3 + 1
        assert lines[-1].startswith("NOT VERIFIED from seq 2: past_version: record at seq 2")

    def test_a_keyed_store_is_shown_verified_with_its_key(self, db: str, tmp_path: Path) -> None:
        ids = fill(open_store(db), key=KEY)
        key_file = tmp_path / "key"
        key_file.write_bytes(KEY)
        argv = ("audit", "show", "--db", db, "--session", ids[0])
        assert paysession(*argv, "--key-file", str(key_file)).returncode == 0
        without = paysession(*argv)
        assert without.returncode == 1
        assert without.stdout.decode().splitlines()[-1].endswith("(a keyed store needs --key-file)")

    @pytest.mark.parametrize(
        ("argv", "said"),
        [
            (["show", "--db", "{db}"], b"needs --session"),
            (["show", "--db", "{db}", "--session", "ps_nope"], b"no session ps_nope"),
            (["verify", "--db", "{db}", "--heads", "x.json"], b"cannot read heads file x.json"),
        ],
    )
    def test_usage_errors_are_one_line_and_exit_2(
        self, db: str, argv: list[str], said: bytes
    ) -> None:
        fill(open_store(db))
        done = paysession("audit", *(part.format(db=db) for part in argv))
        assert done.returncode == 2 and said in done.stderr
        assert done.stderr.count(b"\n") == 1 and b"Traceback" not in done.stderr


class TestNoSuchDatabase:
    def test_a_missing_sqlite_file_is_named_and_not_created(self, tmp_path: Path) -> None:
        missing = tmp_path / "typo.db"
        for command in ("verify", "export", "heads"):
            done = paysession("audit", command, "--db", str(missing))
            assert (done.returncode, done.stderr) == (
                2,
                f"paysession audit: no database file {missing}\n".encode(),
            )
        assert not missing.exists()

    def test_a_dsns_password_is_never_shown(self) -> None:
        done = paysession(
            "audit", "verify", "--db", "host=127.0.0.1 port=1 dbname=x password=s3cret-pw"
        )
        assert done.returncode == 2 and done.stderr.count(b"\n") == 1
        assert b"s3cret-pw" not in done.stderr and b"dbname=x" in done.stderr


class TestStdinForEveryFile:
    def test_a_key_and_heads_and_data_from_stdin(self, tmp_path: Path) -> None:
        db = str(tmp_path / "shop.db")
        ids = fill(SqliteStore(db), key=KEY)
        trail = tmp_path / "trail.jsonl"
        assert paysession("audit", "export", "--db", db, "-o", str(trail)).returncode == 0
        keyed = paysession("audit", "verify", str(trail), "--key-file", "-", stdin=KEY)
        assert (keyed.returncode, keyed.stdout) == (0, b"ok: 3 sessions, 9 records verified\n")
        heads = paysession("audit", "heads", "--db", db).stdout
        anchored = paysession(
            "audit",
            "verify",
            str(trail),
            "--heads",
            "-",
            "--key-file",
            str(self.key(tmp_path)),
            stdin=heads,
        )
        assert anchored.returncode == 0, anchored.stderr
        replayed = paysession(
            "audit",
            "replay",
            str(trail),
            "--session",
            ids[0],
            "--data-json",
            "-",
            "--key-file",
            str(self.key(tmp_path)),
            stdin=b'{"id": "pi_0"}',
        )
        assert replayed.returncode == 0 and ids[0].encode() in replayed.stdout

    def test_two_inputs_cannot_both_be_stdin(self, tmp_path: Path) -> None:
        for argv in (
            ["audit", "verify", "-", "--key-file", "-"],
            ["audit", "replay", "-", "--session", "ps_1", "--data-json", "-"],
            ["diagram", "--session-json", "-", "--history-json", "-"],
        ):
            done = paysession(*argv, stdin=b"")
            assert done.returncode == 2 and done.stderr.count(b"\n") == 1, argv
            assert b"- (stdin)" in done.stderr, argv

    @staticmethod
    def key(tmp_path: Path) -> Path:
        path = tmp_path / "key"
        path.write_bytes(KEY)
        return path


class TestAuditNeverMigrates:
    def test_an_older_schema_is_refused_and_left_as_it_is(self, db: str) -> None:
        """Auditing is reading: a database behind this paysession's schema is not upgraded."""
        fill(open_store(db))
        if db.endswith(".db"):
            with sqlite3.connect(db) as conn:
                conn.execute("UPDATE paysession_schema SET version = 3")
            conn.close()
        else:
            with psycopg.connect(db) as pg:
                for statement in PG_TO_VERSION_4:
                    pg.execute(statement)
        before = schema_version(db)
        for argv in (["verify", "--db", db], ["heads", "--db", db], ["export", "--db", db]):
            done = paysession("audit", *argv)
            assert done.returncode == 2 and done.stderr.count(b"\n") == 1, argv
            assert b"schema version" in done.stderr and b"not to migrate" in done.stderr
        assert schema_version(db) == before


def schema_version(db: str) -> int:
    query = "SELECT version FROM paysession_schema"
    if db.endswith(".db"):
        with sqlite3.connect(db) as conn:
            (version,) = conn.execute(query).fetchone()
        conn.close()
        return int(version)
    with psycopg.connect(db) as pg:
        row = pg.execute(query).fetchone()
        assert row is not None
        return int(row[0])
