"""Medusa's wire JSON for payment sessions, through a cattrs converter of our own."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import cattrs
from cattrs.gen import make_dict_unstructure_fn

from paysession._frozen import thaw
from paysession._wire import format_datetime, parse_datetime
from paysession.errors import InvalidSessionData
from paysession.limits import current
from paysession.session import FIELDS, PaymentSession
from paysession.status import PaymentSessionStatus

CAMEL_CASE: Mapping[str, str] = {
    "cartId": "cart_id",
    "providerId": "provider_id",
    "isSelected": "is_selected",
    "isInitiated": "is_initiated",
    "idempotencyKey": "idempotency_key",
    "paymentAuthorizedAt": "payment_authorized_at",
    "createdAt": "created_at",
    "updatedAt": "updated_at",
}
"""The generated Java client's names for the fields, accepted on input."""

REQUIRED: tuple[str, ...] = ("id", "provider_id", "status", "data", "created_at", "updated_at")
"""Keys every payload must carry; the others read as null (or False) when absent."""

_DEFAULTS: Mapping[str, object] = {
    "cart_id": None,
    "cart": None,
    "is_selected": False,
    "is_initiated": False,
    "idempotency_key": None,
    "amount": None,
    "payment_authorized_at": None,
}
_DATETIMES = ("created_at", "updated_at", "payment_authorized_at")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _structure_datetime(value: object, _: type) -> datetime:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise TypeError(f"must be an ISO 8601 string, got {type(value).__name__}")
    return parse_datetime(value)


def _structure_status(value: object, _: type) -> PaymentSessionStatus:
    if isinstance(value, str):
        try:
            return PaymentSessionStatus(value)
        except ValueError:
            pass
    shown = repr(value) if isinstance(value, str) and len(value) <= 40 else type(value).__name__
    raise ValueError(
        f"must be one of {', '.join(s.value for s in PaymentSessionStatus)}; got {shown}"
    )


def make_converter() -> cattrs.Converter:
    """A converter for :class:`PaymentSession` and Medusa's wire format.

    - datetimes are ISO 8601 in UTC with a ``Z`` (milliseconds, or microseconds when the
      value has them); on input any UTC offset is read and normalized to UTC, and a
      timestamp without an offset is refused;
    - the status is its wire string;
    - unstructuring keeps ``data`` and ``cart`` as read-only JSON (``to_dict`` copies
      them out);
    - structuring accepts snake_case or the Java client's camelCase keys, reads an
      absent or null ``is_selected``/``is_initiated`` as False and the other absent
      optional fields as null, refuses unknown keys, and raises
      :class:`InvalidSessionData` naming every bad field.
    """
    converter = cattrs.Converter()
    converter.register_unstructure_hook(datetime, format_datetime)
    converter.register_structure_hook(datetime, _structure_datetime)
    converter.register_unstructure_hook(PaymentSessionStatus, lambda status: status.value)
    converter.register_structure_hook(PaymentSessionStatus, _structure_status)
    converter.register_unstructure_hook(
        PaymentSession, make_dict_unstructure_fn(PaymentSession, converter)
    )

    def structure_session(payload: object, _: type) -> PaymentSession:
        return _structure_session(converter, payload)

    converter.register_structure_hook(PaymentSession, structure_session)
    return converter


def _structure_session(converter: cattrs.Converter, payload: object) -> PaymentSession:
    structure_datetime = converter.get_structure_hook(datetime)
    structure_status = converter.get_structure_hook(PaymentSessionStatus)
    if not isinstance(payload, Mapping):
        raise InvalidSessionData({"$": f"must be a JSON object, got {type(payload).__name__}"})
    problems: dict[str, str] = {}
    fields: dict[str, Any] = {}
    for raw_key, value in payload.items():
        key = raw_key if isinstance(raw_key, str) else repr(raw_key)[:40]
        name = key if key in FIELDS else CAMEL_CASE.get(key)
        if name is None:
            problems[key[:80]] = "is not a field of a payment session"
        elif name in fields:
            problems[key] = f"gives {name} a second time"
        else:
            fields[name] = value
    for name in REQUIRED:
        if name not in fields:
            problems[name] = "is required"
    for name, default in _DEFAULTS.items():
        if fields.get(name) is None and name not in problems:
            fields[name] = default
    for name in _DATETIMES:
        value = fields.get(name)
        if value is not None:
            try:
                fields[name] = structure_datetime(value, datetime)
            except (TypeError, ValueError) as error:
                problems[name] = str(error)
    if "status" in fields:
        try:
            fields["status"] = structure_status(fields["status"], PaymentSessionStatus)
        except ValueError as error:
            problems["status"] = str(error)
    if problems:
        # Report what the session itself finds wrong with the fields that parsed, too.
        usable = {n: v for n, v in fields.items() if n not in problems}
        problems.update(_session_problems(usable, skip=problems))
        raise InvalidSessionData(problems)
    return PaymentSession(**fields)


def _session_problems(fields: dict[str, Any], skip: Mapping[str, str]) -> dict[str, str]:
    placeholders: dict[str, Any] = {
        "id": "x",
        "provider_id": "x",
        "status": PaymentSessionStatus.PENDING,
        "data": {},
        "created_at": _EPOCH,
        "updated_at": _EPOCH,
    }
    try:
        PaymentSession(**{**_DEFAULTS, **placeholders, **fields})
    except InvalidSessionData as error:
        return {
            path: why
            for path, why in error.problems.items()
            if path not in skip and path.split(".")[0].split("[")[0] in fields
        }
    return {}


_CONVERTER = make_converter()


def to_dict(session: PaymentSession) -> dict[str, Any]:
    """The session as Medusa's snake_case wire mapping (a fresh, mutable dict)."""
    out: dict[str, Any] = _CONVERTER.unstructure(session, PaymentSession)
    out["data"] = thaw(out["data"])
    if out["cart"] is not None:
        out["cart"] = thaw(out["cart"])
    return out


def from_dict(payload: Mapping[str, object]) -> PaymentSession:
    """A session from a wire mapping (snake_case or camelCase); InvalidSessionData if bad."""
    return _CONVERTER.structure(payload, PaymentSession)


def to_json(session: PaymentSession) -> str:
    """The session as Medusa's wire JSON."""
    return json.dumps(_CONVERTER.unstructure(session, PaymentSession), separators=(",", ":"))


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def from_json(text: str | bytes) -> PaymentSession:
    """A session from wire JSON text; InvalidSessionData for anything else."""
    longest = current().document_chars
    if not isinstance(text, str | bytes | bytearray):
        raise InvalidSessionData({"$": f"must be JSON text, got {type(text).__name__}"})
    if len(text) > longest:
        raise InvalidSessionData({"$": f"is longer than {longest} characters"})
    try:
        payload = (
            _DECODER.decode(text)
            if isinstance(text, str)
            else json.loads(text, parse_constant=_no_constant)
        )
    except RecursionError:
        raise InvalidSessionData({"$": "nests too deeply"}) from None
    except (ValueError, TypeError) as error:
        raise InvalidSessionData({"$": f"is not valid JSON ({type(error).__name__})"}) from None
    return from_dict(payload)


__all__ = ["from_dict", "from_json", "make_converter", "to_dict", "to_json"]
