"""The audit trail: sinks that keep it, a reader for JSON Lines, ``verify`` and ``replay``.

- ``paysession/audit/trail.py``: checking a trail (``verify``) and rebuilding a
  session from it (``replay``);
- ``paysession/audit/sinks.py``: where a machine sends its records (``MemorySink``,
  ``JsonlSink``) and the JSON Lines reader.

The format of a record and of a trail is in ``docs/audit-format.md``.
"""

from paysession.audit.sinks import (
    BadLine,
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
    verify,
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
    "JsonlSink",
    "MemorySink",
    "SinkError",
    "decode_line",
    "encode_line",
    "read_jsonl",
    "replay",
    "verify",
]
