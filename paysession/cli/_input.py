"""Every file and stdin the command line reads, read with a bound.

A whole file (a key, a JSON option) is read up to its bound and refused past it; a trail
is read a line at a time, each line up to ``LONGEST_LINE`` and all of it up to
``LARGEST_TRAIL``. Past a bound the read stops at once with :class:`TooLarge`, which the
commands report in one line with exit 2 (an input error, not evidence of tampering):
``/dev/zero`` on stdin never becomes a MemoryError.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

LONGEST_LINE = 16 * 2**20
"""The longest line of a trail: a record is a few KiB; a checkpoint naming 100,000
sessions is about 10 MiB."""

LARGEST_TRAIL = 4 * 2**30
"""The largest trail read from a file or stdin; a larger archive is verified in parts,
or straight from its store (``--db``)."""


class TooLarge(Exception):
    """An input past its bound; the message says which and how far it may go."""


def is_stdin(path: Path) -> bool:
    return str(path) == "-"


def name_of(path: Path) -> str:
    return "<stdin>" if is_stdin(path) else str(path)


def _size(limit: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if limit >= size and limit % size == 0:
            return f"{limit // size} {unit}"
    return f"{limit} bytes"


def read_bounded(path: Path, what: str, largest: int) -> bytes:
    """The bytes of ``path`` (stdin for ``-``), at most ``largest``; TooLarge past it.
    OSError when the file cannot be read."""
    if is_stdin(path):
        raw = sys.stdin.buffer.read(largest + 1)
    else:
        with path.open("rb") as stream:
            raw = stream.read(largest + 1)
    if len(raw) > largest:
        raise TooLarge(f"{what} {name_of(path)} is larger than {_size(largest)}")
    return raw


def bounded_lines(
    path: Path, *, longest: int = LONGEST_LINE, largest: int = LARGEST_TRAIL
) -> Iterator[bytes]:
    """The lines of ``path`` (stdin for ``-``), newline included; TooLarge at the first
    line longer than ``longest`` or once more than ``largest`` bytes were read."""
    if is_stdin(path):
        yield from _lines(sys.stdin.buffer, name_of(path), longest, largest)
        return
    with path.open("rb") as stream:
        yield from _lines(stream, name_of(path), longest, largest)


def _lines(stream: BinaryIO, name: str, longest: int, largest: int) -> Iterator[bytes]:
    total = 0
    number = 0
    while raw := stream.readline(longest + 1):
        number += 1
        total += len(raw)
        if len(raw) > longest:
            raise TooLarge(
                f"{name}: line {number} is longer than {_size(longest)}: "
                "not a trail paysession wrote"
            )
        if total > largest:
            raise TooLarge(
                f"{name} is larger than {_size(largest)}: verify it in parts, or from its store"
            )
        yield raw


__all__ = [
    "LARGEST_TRAIL",
    "LONGEST_LINE",
    "TooLarge",
    "bounded_lines",
    "is_stdin",
    "name_of",
    "read_bounded",
]
