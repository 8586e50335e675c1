"""Medusa's wire JSON for payment sessions, through a cattrs converter of our own."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import attrs
import cattrs
from cattrs.errors import ForbiddenExtraKeysError
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn

from paysession._frozen import thaw
from paysession._wire import JsonRefused, format_datetime, parse_datetime, read_json
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
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_JSON_OBJECT = Mapping[str, object]
_FIELD_TYPES: dict[str, Any] = {
    field.name: field.type for field in attrs.fields(attrs.resolve_types(PaymentSession))
}


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


def _as_given(value: object, _: object) -> object:
    return value


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
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    # cattrs would coerce these (str(5), bool("no")); PaymentSession checks them itself
    # and names what is wrong, so they reach it as they came.
    for kind in (str, bool, int):
        converter.register_structure_hook(kind, _as_given)
    converter.register_structure_hook_func(lambda kind: kind == _JSON_OBJECT, _as_given)
    converter.register_unstructure_hook(datetime, format_datetime)
    converter.register_structure_hook(datetime, _structure_datetime)
    converter.register_unstructure_hook(PaymentSessionStatus, lambda status: status.value)
    converter.register_structure_hook(PaymentSessionStatus, _structure_status)
    converter.register_unstructure_hook(
        PaymentSession, make_dict_unstructure_fn(PaymentSession, converter)
    )
    # cattrs reads the fields: unknown keys, missing ones, each field's hook, and every
    # failure collected with the field it belongs to (detailed validation).
    structure_fields = make_dict_structure_fn(PaymentSession, converter)

    def structure_session(payload: object, _: type) -> PaymentSession:
        return _structure_session(converter, structure_fields, payload)

    converter.register_structure_hook(PaymentSession, structure_session)
    return converter


def _structure_session(
    converter: cattrs.Converter,
    structure_fields: Callable[[Mapping[str, Any], Any], PaymentSession],
    payload: object,
) -> PaymentSession:
    if not isinstance(payload, Mapping):
        raise InvalidSessionData({"$": f"must be a JSON object, got {type(payload).__name__}"})
    problems: dict[str, str] = {}
    # The Java client's names are aliases, not a second format: a payload may mix them,
    # which one cattrs rename per field cannot read, so they are mapped here first.
    fields: dict[str, Any] = {}
    for raw_key, value in payload.items():
        key = raw_key if isinstance(raw_key, str) else repr(raw_key)[:40]
        name = CAMEL_CASE.get(key, key)
        if name in fields:
            problems[key] = f"gives {name} a second time"
        else:
            fields[name] = value
    for name, default in _DEFAULTS.items():
        if fields.get(name) is None:
            fields[name] = default
    try:
        session = structure_fields(fields, PaymentSession)
    except cattrs.ClassValidationError as error:
        problems.update(_field_problems(error))
        # Report what the session itself finds wrong with the fields that read, too.
        usable = _readable(converter, {n: v for n, v in fields.items() if n not in problems})
        problems.update(_session_problems(usable, skip=problems))
        raise InvalidSessionData(problems) from None
    except InvalidSessionData as error:  # the session's own checks, after cattrs read it
        raise InvalidSessionData({**problems, **error.problems}) from None
    if problems:
        raise InvalidSessionData(problems)
    return session


def _field_problems(error: cattrs.ClassValidationError) -> dict[str, str]:
    """Our field-path messages for what cattrs collected."""
    problems: dict[str, str] = {}
    with_field, without = error.group_exceptions()
    for cause, note in with_field:
        problems[note.name] = "is required" if isinstance(cause, KeyError) else str(cause)
    for cause in without:
        if isinstance(cause, InvalidSessionData):  # the session's own checks
            problems.update(cause.problems)
        elif isinstance(cause, ForbiddenExtraKeysError):
            for key in sorted(cause.extra_fields):
                problems[key[:80]] = "is not a field of a payment session"
        else:
            raise cause
    return problems


def _readable(converter: cattrs.Converter, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields read through their hooks, leaving out those that do not read."""
    usable: dict[str, Any] = {}
    for name, value in fields.items():
        if name in _FIELD_TYPES:
            try:
                usable[name] = converter.structure(value, _FIELD_TYPES[name])
            except (TypeError, ValueError):
                continue
    return usable


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


def from_json(text: str | bytes) -> PaymentSession:
    """A session from wire JSON text; InvalidSessionData for anything else."""
    longest = current().document_chars
    if not isinstance(text, str | bytes | bytearray):
        raise InvalidSessionData({"$": f"must be JSON text, got {type(text).__name__}"})
    if len(text) > longest:
        raise InvalidSessionData({"$": f"is longer than {longest} characters"})
    try:
        payload = read_json(bytes(text) if isinstance(text, bytearray) else text)
    except JsonRefused as refused:
        # A field's name may be quoted; a key inside data or cart may be a secret.
        if refused.key in FIELDS or refused.key in CAMEL_CASE:
            raise InvalidSessionData({str(refused.key): "is given twice"}) from None
        if refused.key is not None:
            raise InvalidSessionData({"$": "an object in it gives one key twice"}) from None
        raise InvalidSessionData({"$": refused.why}) from None
    return from_dict(payload)


__all__ = ["from_dict", "from_json", "make_converter", "to_dict", "to_json"]
