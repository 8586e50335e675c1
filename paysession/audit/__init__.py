"""The audit trail: sinks that keep it, a reader for JSON Lines, ``verify`` and ``replay``.

- ``paysession/audit/trail.py``: checking a trail (``verify``) and rebuilding a
  session from it (``replay``);
- ``paysession/audit/sinks.py``: where a machine sends its records (``MemorySink``,
  ``JsonlSink``) and the JSON Lines reader;
- ``paysession/audit/anchors.py``: the checkpoints that anchor a JSON Lines trail;
- ``paysession/audit/check.py``: ``verify``, with the anchors;
- ``paysession/audit/stored.py``: a store's trails checked against its rows.

The format of a record and of a trail is in ``docs/audit-format.md``.
"""

from paysession.audit.anchors import Checkpoint
from paysession.audit.check import Heads, verify
from paysession.audit.sinks import (
    BadLine,
    Item,
    JsonlSink,
    MemorySink,
    SinkError,
    decode_line,
    encode_line,
    read_jsonl,
)
from paysession.audit.trail import (
    EMPTY_DIGEST,
    REASONS,
    AuditError,
    AuditProblem,
    AuditReport,
    replay,
)
from paysession.record import AuditSink

__all__ = [
    "EMPTY_DIGEST",
    "REASONS",
    "AuditError",
    "AuditProblem",
    "AuditReport",
    "AuditSink",
    "BadLine",
    "Checkpoint",
    "Heads",
    "Item",
    "JsonlSink",
    "MemorySink",
    "SinkError",
    "decode_line",
    "encode_line",
    "read_jsonl",
    "replay",
    "verify",
]
