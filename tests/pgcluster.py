"""A throwaway PostgreSQL cluster for the tests and the benchmarks.

``start_cluster()`` runs ``initdb`` and ``pg_ctl`` from PATH in a temporary directory,
on a free loopback port, with the socket in that directory. PostgreSQL refuses to run
as root, so as root the binaries run as the ``postgres`` user (through ``runuser``)
and the directory is handed to that user. ``Cluster.stop()`` stops it and deletes
everything.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg


def binaries_available() -> bool:
    """Whether ``initdb`` and ``pg_ctl`` are on PATH (and runuser, when root)."""
    needed = ["initdb", "pg_ctl"] + (["runuser"] if os.geteuid() == 0 else [])
    return all(shutil.which(name) for name in needed)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Cluster:
    """A running cluster; ``dsn(name)`` connects to database ``name`` as a superuser."""

    def __init__(self, directory: Path, port: int, as_user: list[str]) -> None:
        self.directory = directory
        self.port = port
        self._as_user = as_user

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def stop(self) -> None:
        subprocess.run(
            [
                *self._as_user,
                "pg_ctl",
                "-D",
                str(self.directory / "data"),
                "-m",
                "immediate",
                "stop",
            ],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.directory, ignore_errors=True)


def start_cluster(
    *, fsync: bool = False, max_connections: int = 200, settings: tuple[str, ...] = ()
) -> Cluster:
    """initdb and start a cluster; ``fsync=False`` trades crash safety for speed.

    ``settings`` are more server settings, each ``"name=value"``.
    """
    directory = Path(tempfile.mkdtemp(prefix="paysession-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = directory / "data"
    subprocess.run(
        [*as_user, "initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
        + ([] if fsync else ["--no-sync"]),
        check=True,
        capture_output=True,
    )
    options = [
        "-c listen_addresses=127.0.0.1",
        f"-k {directory}",
        f"-c max_connections={max_connections}",
        f"-c fsync={'on' if fsync else 'off'}",
    ]
    if not fsync:
        options += ["-c synchronous_commit=off", "-c full_page_writes=off"]
    options += [f"-c {setting}" for setting in settings]
    last_error = ""
    for _ in range(5):
        port = _free_port()
        started = subprocess.run(
            [
                *as_user,
                "pg_ctl",
                "-D",
                str(data),
                "-l",
                str(directory / "log"),
                "-w",
                "-o",
                " ".join([f"-p {port}", *options]),
                "start",
            ],
            check=False,
            capture_output=True,
            text=True,
        )
        if started.returncode == 0:
            return Cluster(directory, port, as_user)
        last_error = started.stdout + started.stderr
    shutil.rmtree(directory, ignore_errors=True)
    raise RuntimeError(f"could not start PostgreSQL: {last_error}")


def create_database(admin_dsn: str, template: str | None = None) -> str:
    """A new database on the server of ``admin_dsn``, empty or a copy of database
    ``template`` (which nobody may be connected to); returns its name."""
    name = f"paysession_{uuid.uuid4().hex[:16]}"
    copy = "" if template is None else f' TEMPLATE "{template}"'
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    return name


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def with_database(dsn: str, name: str) -> str:
    """``dsn`` with its database replaced by ``name``."""
    return psycopg.conninfo.make_conninfo(dsn, dbname=name)
