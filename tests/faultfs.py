"""Disks that fail on demand, for the fault tests: one that fills up, one that turns read-only.

Where this process may mount file systems (root in most containers), the faults are
real: a small tmpfs that a filler file fills to the last page (writes fail with ENOSPC),
and a read-only bind mount of a directory. Elsewhere they are approximated: the disk
"fills" when this process's RLIMIT_FSIZE is lowered to the size of the largest file on
it (writes past it fail with EFBIG; SIGXFSZ is ignored meanwhile), and a directory turns
read-only by chmod, which binds every user but root (as root without mount, the
read-only tests are skipped).
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

FULL = (errno.ENOSPC, errno.EFBIG)
"""The errnos of a write that a full disk (or the file size limit) refused."""


def _mount(*args: str) -> bool:
    done = subprocess.run(["mount", *args], capture_output=True, check=False)
    return done.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@functools.lru_cache(maxsize=1)
def can_mount() -> bool:
    """Whether this process may mount a tmpfs (tried once, on a scratch directory)."""
    if os.environ.get("PAYSESSION_FAULTS_NO_MOUNT") == "1" or not shutil.which("mount"):
        return False
    probe = Path(tempfile.mkdtemp(prefix="paysession-mount-"))
    try:
        if not _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)):
            return False
        _umount(probe)
        return True
    finally:
        probe.rmdir()


class SmallDisk:
    """A directory on a disk that is full after ``fill()`` and has room after ``free()``."""

    def __init__(self, path: Path, *, real: bool) -> None:
        self.path = path
        self.real = real
        self._filler = path / "filler"
        self._limit: tuple[int, int] | None = None
        self._signal: object = None

    def fill(self) -> None:
        """Leave no room: every later write that needs more space fails."""
        if self.real:
            fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                chunk = b"\0" * 65536
                while True:
                    os.write(fd, chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC
            finally:
                os.close(fd)
            return
        import resource

        largest = max((f.stat().st_size for f in self.path.iterdir() if f.is_file()), default=0)
        self._limit = resource.getrlimit(resource.RLIMIT_FSIZE)
        self._signal = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (largest, self._limit[1]))

    def free(self) -> None:
        """Make room again."""
        if self.real:
            self._filler.unlink(missing_ok=True)
            return
        if self._limit is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, self._limit)
            signal.signal(signal.SIGXFSZ, self._signal)  # type: ignore[arg-type]
            self._limit = None


@contextmanager
def small_disk(tmp_path: Path, size: str = "1m") -> Iterator[SmallDisk]:
    """A :class:`SmallDisk`: a tmpfs of ``size`` when mounting works, else ``tmp_path``."""
    if not can_mount():
        disk = SmallDisk(tmp_path, real=False)
        try:
            yield disk
        finally:
            disk.free()
        return
    place = tmp_path / "disk"
    place.mkdir()
    assert _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(place))
    try:
        yield SmallDisk(place, real=True)
    finally:
        _umount(place)


class ReadOnlyView:
    """``path`` shows the files of a directory; ``read_only()`` and ``writable()`` flip it."""

    def __init__(self, source: Path, path: Path, *, mounted: bool) -> None:
        self.source = source
        self.path = path
        self.mounted = mounted
        self._modes: dict[Path, int] = {}

    def read_only(self) -> None:
        if self.mounted:
            assert _mount("-o", "remount,bind,ro", str(self.path))
            return
        for item in [self.path, *self.path.iterdir()]:
            mode = item.stat().st_mode
            self._modes[item] = mode
            item.chmod(stat.S_IMODE(mode) & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))

    def writable(self) -> None:
        if self.mounted:
            assert _mount("-o", "remount,bind,rw", str(self.path))
            return
        for item, mode in self._modes.items():
            item.chmod(stat.S_IMODE(mode))
        self._modes.clear()


@contextmanager
def read_only_view(tmp_path: Path) -> Iterator[ReadOnlyView]:
    """A :class:`ReadOnlyView` of a new directory; skips where nothing can make one."""
    source = tmp_path / "rw"
    source.mkdir()
    if can_mount():
        view = tmp_path / "ro"
        view.mkdir()
        assert _mount("--bind", str(source), str(view))
        try:
            yield ReadOnlyView(source, view, mounted=True)
        finally:
            _umount(view)
        return
    if os.geteuid() == 0:
        pytest.skip("root ignores file modes, and this process may not mount")
    ro = ReadOnlyView(source, source, mounted=False)
    try:
        yield ro
    finally:
        ro.writable()
