"""Wire forms shared by the codec and the audit trail: timestamps, digests, canonical JSON."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import datetime, timedelta, timezone
from json.encoder import encode_basestring_ascii
from typing import Any

_WIRE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}(?:[0-9]{3})?Z")
_ISO = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:[.,]([0-9]{1,9}))?"
    r"(?:([Zz])|([+-])([0-9]{2}):?([0-9]{2}))"
)  # ASCII digits only: \d would take full-width and other scripts' digits too

EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
"""The earliest instant a session or record may carry."""
LATEST = datetime(9999, 1, 1, tzinfo=timezone.utc)
"""The first instant past the range: a year short of the calendar's end, so that no
time zone a database or a reader converts to can carry an instant off the calendar."""
RANGE = "from 1970-01-01T00:00:00Z up to, not including, 9999-01-01T00:00:00Z"


def in_range(value: datetime) -> bool:
    """Whether an aware datetime lies in the range every timestamp must keep to."""
    return EARLIEST <= value < LATEST


# Recently formatted instants. A move formats its own instant several times (its
# record's time, updated_at, a stamp) and the instant of the session's previous move,
# which checkout code made moments before: a session's moves come in bursts. Keyed by
# value: equal aware datetimes are one instant, hence one UTC text.
_formatted: dict[datetime, str] = {}
_FORMATTED_MAX = 1024
# And the very last one, by identity: the instant a move has just formatted is, object
# for object, the one its record and the session's next move format again, and an
# identity test spares hashing an aware datetime. One tuple, so that a thread switch
# never pairs an instant with another's text; it holds the instant, so its id cannot
# be reused while it is here.
_last: tuple[datetime, str] = (EARLIEST, "1970-01-01T00:00:00.000Z")


def format_datetime(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``: milliseconds when they say it all, else microseconds.

    ``2024-04-21T14:50:24.077Z`` is Medusa's form; a reading with sub-millisecond
    precision keeps all six digits so that decoding gives back the same instant.
    """
    global _last
    last = _last
    if last[0] is value:
        return last[1]
    text = _formatted.get(value)
    if text is None:
        utc = value if value.tzinfo is timezone.utc else value.astimezone(timezone.utc)
        # isoformat() is C code; slicing its fixed-width output is the fast way on a hot
        # path.
        text = utc.isoformat()
        micro = utc.microsecond
        if micro == 0:
            text = text[:19] + ".000Z"
        elif micro % 1000 == 0:
            text = text[:23] + "Z"
        else:
            text = text[:26] + "Z"
        if len(_formatted) >= _FORMATTED_MAX:
            # Dropped whole rather than one by one: cheaper, and a burst refills it at
            # once. Dict operations are atomic under the GIL, so threads need no lock.
            _formatted.clear()
        _formatted[value] = text
    _last = (value, text)
    return text


def parse_datetime(text: str) -> datetime:
    """Parse an ISO 8601 timestamp that names its offset; normalize to UTC.

    Raises ValueError for a naive or malformed timestamp, for one written with other than
    ASCII digits, and for one outside :data:`RANGE` once in UTC. Fractions beyond
    microseconds (Java's nanoseconds) are truncated.
    """
    if _WIRE.fullmatch(text):
        # The form this library and Medusa write: the C parser, then UTC.
        value = datetime.fromisoformat(text[:-1]).replace(tzinfo=timezone.utc)
        if not in_range(value):
            raise ValueError(f"must be an instant {RANGE}")
        return value
    match = _ISO.fullmatch(text)
    if match is None:
        raise ValueError("must be an ISO 8601 timestamp with a UTC offset or Z")
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = match.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    if zulu:
        tz = timezone.utc
    else:
        delta = timedelta(hours=int(off_h), minutes=int(off_m))
        if delta >= timedelta(hours=24):
            raise ValueError("has an offset of 24 hours or more")
        tz = timezone(-delta if sign == "-" else delta)
    value = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=tz
    )
    try:
        utc = value if tz is timezone.utc else value.astimezone(timezone.utc)
    except OverflowError:  # the offset carries it off the calendar
        raise ValueError(f"must be an instant {RANGE}") from None
    if not in_range(utc):
        raise ValueError(f"must be an instant {RANGE}")
    return utc


def canonical_json(value: object) -> str:
    """One spelling per value: sorted keys, no spaces, ASCII only, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def json_scalar(value: object) -> str:
    """The canonical JSON of a string, int, bool or None (what ``canonical_json`` writes)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is str:
        return encode_basestring_ascii(value)
    return canonical_json(value)


# Keeps a data digest from ever equalling a record's hash under the same key.
_DIGEST_LABEL = b"paysession digest of data or cart\x00"


def digest(value: object, key: bytes | None = None) -> str:
    """How ``data`` and ``cart`` appear in the audit: a digest of their canonical JSON.

    ``sha256:<hex>`` without a key. With the trail's key, ``hmac-sha256:<hex>``: a plain
    hash of low-entropy data (a CVC, a postcode) can be found by trying every value,
    an HMAC cannot without the key.
    """
    payload = canonical_json(value).encode()
    if key is None:
        return "sha256:" + hashlib.sha256(payload).hexdigest()
    return "hmac-sha256:" + hmac.new(key, _DIGEST_LABEL + payload, hashlib.sha256).hexdigest()


def same_digest(a: str, b: str) -> bool:
    """Whether two hashes, HMACs or digests are equal, in time that does not tell where
    they differ (``hmac.compare_digest``); any text, not only ASCII, may be compared."""
    return hmac.compare_digest(
        a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
    )


class JsonRefused(ValueError):
    """Text that is not JSON as paysession reads it; ``why`` says how, ``key`` which key
    was given twice (None for the other refusals)."""

    def __init__(self, why: str, key: str | None = None) -> None:
        super().__init__(why)
        self.why = why
        self.key = key


def _one_value_per_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JsonRefused("gives a key twice", key)
            seen.add(key)
    return found


def _no_constant(name: str) -> object:
    raise JsonRefused(f"holds {name}, which is not JSON")


_STRICT = json.JSONDecoder(parse_constant=_no_constant, object_pairs_hook=_one_value_per_key)


def read_json(text: str | bytes) -> Any:
    """Parse JSON text (bytes must be UTF-8) as strictly as the wire format is written.

    A key given twice in one object, NaN or Infinity, bytes that are not UTF-8 and
    nesting deeper than the parser can follow each raise :class:`JsonRefused`, like
    malformed text: JSON leaves a repeated key's meaning open, and "the last one wins"
    would let two readers see two different documents.
    """
    try:
        return _STRICT.decode(text if isinstance(text, str) else text.decode("utf-8"))
    except JsonRefused:
        raise
    except UnicodeDecodeError:
        raise JsonRefused("is not UTF-8 text") from None
    except RecursionError:
        raise JsonRefused("nests too deeply") from None
    except json.JSONDecodeError as error:
        raise JsonRefused(f"is not valid JSON ({error.msg} at character {error.pos})") from None
    except ValueError:  # Python's own limit on the digits of an int it converts
        raise JsonRefused("holds a number with too many digits") from None


__all__ = [
    "EARLIEST",
    "LATEST",
    "RANGE",
    "JsonRefused",
    "canonical_json",
    "digest",
    "format_datetime",
    "in_range",
    "json_scalar",
    "parse_datetime",
    "read_json",
    "same_digest",
]
