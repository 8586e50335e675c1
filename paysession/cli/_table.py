"""Plain-text tables for the command line: aligned columns, one record a row."""

from __future__ import annotations

from collections.abc import Sequence

from paysession._text import printable
from paysession.record import TransitionRecord


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with aligned columns; every cell made :func:`printable`."""
    cells = [[str(h) for h in headers]] + [
        ["" if c is None else printable(c) for c in r] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def record_row(record: TransitionRecord) -> list[object]:
    source = "" if record.source is None else record.source.value
    return [
        record.session_id,
        record.seq,
        record.trigger,
        f"{source} -> {record.dest.value}" if source else f"-> {record.dest.value}",
        record.actor or "",
        record.reason or "",
    ]


RECORD_HEADERS = ("session", "seq", "move", "status", "actor", "reason")


__all__ = ["RECORD_HEADERS", "format_table", "printable", "record_row"]
