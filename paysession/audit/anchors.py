"""Checkpoints: sealed lines that let a JSON Lines trail prove it was not cut.

A hash chain proves each record follows the one before; it cannot show that records
were removed from the end of a session, or a whole session from the file. So a sink
made with ``checkpoint_every=N`` also writes a checkpoint line when it opens the file
(so that a file cut back to before its first periodic one still shows it was anchored),
after every N records, and a closing one when it is closed::

    {"checkpoint":{"final":false,"heads":{"<session id>":[<seq>,"<hash>"]},
     "prev":"<seal of this sink's previous checkpoint>","records":<written so far>,
     "sink":"<id of the writing sink>"},"seal":"<seal>"}

``heads`` names the last record of every session the sink wrote since its previous
checkpoint; ``prev`` chains the sink's checkpoints, and a sink's opening checkpoint
continues the file: its ``prev`` is the seal of the last checkpoint in the file when the
sink opened it (GENESIS for the file's first), so runs of the application appended to one
file chain, and a run removed, moved or copied is found; ``seal`` is the SHA-256 of the
checkpoint's canonical JSON (after a fixed label), or its HMAC-SHA-256 under the
trail's key. ``verify`` checks, at each checkpoint, that every session it names has
reached exactly that record, that the chain is unbroken, and, at the end, that each
sink's chain ends with its closing checkpoint. Heads exported from a store (or
written down elsewhere) can be given to ``verify`` too: they catch what an attacker
who rewrote the checkpoints themselves would hide, which a trail without a key cannot
catch alone. What each check finds is listed in ``docs/audit-format.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from paysession._wire import canonical_json, same_digest
from paysession.record import GENESIS, seal

_LABEL = "paysession checkpoint\n"
_HASH_LENGTH = 64


@attrs.frozen
class Checkpoint:
    """A checkpoint line of a JSON Lines trail (see the module notes)."""

    sink: str
    prev: str
    records: int
    final: bool
    heads: Mapping[str, tuple[int, str]]
    seal: str

    def body(self) -> dict[str, Any]:
        return {
            "final": self.final,
            "heads": {sid: [seq, head] for sid, (seq, head) in self.heads.items()},
            "prev": self.prev,
            "records": self.records,
            "sink": self.sink,
        }

    def line(self) -> str:
        """The checkpoint as one canonical JSON line (without its newline)."""
        return canonical_json({"checkpoint": self.body(), "seal": self.seal})


def make_checkpoint(
    sink: str,
    prev: str,
    records: int,
    final: bool,
    heads: Mapping[str, tuple[int, str]],
    key: bytes | None,
) -> Checkpoint:
    """A checkpoint, sealed (under ``key`` when given)."""
    unsealed = Checkpoint(sink, prev, records, final, dict(heads), "")
    return attrs.evolve(unsealed, seal=_seal(unsealed, key))


def _seal(checkpoint: Checkpoint, key: bytes | None) -> str:
    return seal(_LABEL + canonical_json(checkpoint.body()), key)


def seal_holds(checkpoint: Checkpoint, key: bytes | None) -> bool:
    """Whether the checkpoint's seal is that of its contents (under ``key``)."""
    return same_digest(_seal(checkpoint, key), checkpoint.seal)


def checkpoint_from_wire(wire: Mapping[str, Any]) -> Checkpoint | None:
    """The checkpoint a decoded line holds, or None when it is not a well-formed one."""
    body, sealed = wire.get("checkpoint"), wire.get("seal")
    if set(wire) != {"checkpoint", "seal"} or not isinstance(body, dict):
        return None
    if set(body) != {"final", "heads", "prev", "records", "sink"}:
        return None
    heads, prev, records = body["heads"], body["prev"], body["records"]
    if not (
        isinstance(sealed, str)
        and isinstance(body["sink"], str)
        and isinstance(prev, str)
        and type(records) is int
        and records >= 0
        and type(body["final"]) is bool
        and isinstance(heads, dict)
    ):
        return None
    parsed = heads_from_wire(heads)
    if parsed is None:
        return None
    return Checkpoint(body["sink"], prev, records, body["final"], parsed, sealed)


def heads_from_wire(heads: Mapping[str, Any]) -> dict[str, tuple[int, str]] | None:
    """``{session id: [seq, hash]}`` as read from JSON, or None if any value is not that."""
    parsed: dict[str, tuple[int, str]] = {}
    for session_id, head in heads.items():
        if not (
            isinstance(head, list)
            and len(head) == 2
            and type(head[0]) is int
            and head[0] >= 0
            and isinstance(head[1], str)
        ):
            return None
        parsed[session_id] = (head[0], head[1])
    return parsed


class AnchorCheck:
    """What ``verify`` learns from checkpoints and outside heads as it reads a trail.

    ``key`` is the trail's key; ``heads`` maps session ids to the ``(seq, hash)`` of a
    record each session must hold (heads exported from a store, say).
    """

    def __init__(self, key: bytes | None, heads: Mapping[str, tuple[int, str]] | None) -> None:
        self.key = key
        self.outside = dict(heads or {})
        # Per sink: its last checkpoint's seal, whether that one closed it, and where.
        self.chains: dict[str, tuple[str, bool, int]] = {}
        # The seal of every checkpoint read so far: a sink's opening checkpoint names one.
        self.seen: set[str] = set()

    def seal_problem(self, checkpoint: Checkpoint) -> str | None:
        """Why the checkpoint itself cannot be trusted, or None."""
        if not same_digest(_seal(checkpoint, self.key), checkpoint.seal):
            keyed = "" if self.key is None else " under the key"
            return f"the checkpoint's seal does not match its contents{keyed} (edited)"
        chain = self.chains.get(checkpoint.sink)
        if chain is None:
            return self._opening_problem(checkpoint)
        if chain[1]:
            return "a checkpoint after its sink's closing one"
        if not same_digest(checkpoint.prev, chain[0]):
            return (
                "the checkpoint does not follow its sink's previous one (one was removed or edited)"
            )
        return None

    def _opening_problem(self, checkpoint: Checkpoint) -> str | None:
        """A sink's first checkpoint continues the file: the first of all names none
        (GENESIS); every later one names a checkpoint read before it, the last one in
        the file when its sink opened it. A run removed, moved or copied breaks that."""
        if not self.seen:
            if same_digest(checkpoint.prev, GENESIS):
                return None
            return (
                "the first checkpoint continues a run that is not in the file (the runs "
                "before it were removed, or the runs reordered)"
            )
        if same_digest(checkpoint.prev, GENESIS):
            return (
                "a sink's opening checkpoint starts a new chain after other runs (a run "
                "inserted, or the runs before it reordered)"
            )
        if checkpoint.prev not in self.seen:
            return (
                "a sink's opening checkpoint continues a run that is not before it in the "
                "file (a run removed, or the runs reordered)"
            )
        return None

    def passed(self, checkpoint: Checkpoint, position: int) -> None:
        self.chains[checkpoint.sink] = (checkpoint.seal, checkpoint.final, position)
        self.seen.add(checkpoint.seal)

    def open_chains(self) -> list[tuple[str, int]]:
        """Each sink whose last checkpoint is not its closing one, with its position."""
        return [(sink, at) for sink, (_, final, at) in self.chains.items() if not final]


def head_problem(
    expected: tuple[int, str], reached: tuple[int, str] | None, *, at_most: bool
) -> str | None:
    """Why a session's trail does not hold the record ``expected`` names, or None.

    ``reached`` is the ``(seq, hash)`` of the session's last record read so far. A
    checkpoint names the very last record (``at_most``: nothing may be missing after
    it); outside heads name one the trail must have got to, and may have moved past.
    """
    seq, head = expected
    if reached is None:
        return f"names seq {seq} of the session, whose records are missing"
    last, last_hash = reached
    if last < seq:
        return f"names seq {seq}, but the session's trail ends at seq {last} (records removed)"
    if last == seq and not same_digest(last_hash, head):
        return f"names another record as seq {seq} (the trail's was replaced)"
    if at_most and last > seq:
        return f"names seq {seq} as the session's last, but the trail is at seq {last}"
    return None


__all__ = [
    "AnchorCheck",
    "Checkpoint",
    "checkpoint_from_wire",
    "head_problem",
    "heads_from_wire",
    "make_checkpoint",
    "seal_holds",
]
