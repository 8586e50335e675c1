"""Deep read-only views of JSON data, so a snapshot's ``data`` cannot change under it.

``FrozenDict`` and ``FrozenList`` subclass ``dict`` and ``list`` so that equality,
``json.dumps`` and ``isinstance`` behave as users expect; every mutator raises.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NoReturn

MAX_DEPTH = 64
"""How deep JSON data may nest; deeper input is refused rather than recursed into."""


def _refuse(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError(f"{type(self).__name__} is read-only: a session's data changes only by a move")


class FrozenDict(dict[str, Any]):
    """A read-only JSON object."""

    __slots__ = ()
    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse
    __ior__ = _refuse

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_dict, (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: object) -> FrozenDict:
        return self


class FrozenList(list[Any]):
    """A read-only JSON array."""

    __slots__ = ()
    __setitem__ = __delitem__ = append = extend = insert = pop = remove = _refuse
    clear = sort = reverse = __iadd__ = __imul__ = _refuse

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_list, (list(self),))

    def __copy__(self) -> FrozenList:
        return self

    def __deepcopy__(self, memo: object) -> FrozenList:
        return self


def _rebuild_dict(items: dict[str, Any]) -> FrozenDict:
    return FrozenDict(items)


def _rebuild_list(items: list[Any]) -> FrozenList:
    return FrozenList(items)


def freeze(value: object, path: str, problems: dict[str, str], depth: int = 0) -> Any:
    """Return a deep read-only copy of JSON ``value``; record what is not JSON in ``problems``.

    Values are never quoted in a problem: data can hold provider secrets.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            problems[path] = "must be a finite number (NaN and Infinity are not JSON)"
        return value
    if depth >= MAX_DEPTH:
        problems[path] = f"nests deeper than {MAX_DEPTH} levels"
        return None
    if isinstance(value, FrozenDict | FrozenList):
        # Built only by this function, so already deep-frozen and checked.
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                problems[f"{path}.<key>"] = f"object keys must be strings, got {type(key).__name__}"
                continue
            out[key] = freeze(item, f"{path}.{key}", problems, depth + 1)
        return FrozenDict(out)
    if isinstance(value, (list, tuple)):
        return FrozenList(
            freeze(item, f"{path}[{i}]", problems, depth + 1) for i, item in enumerate(value)
        )
    problems[path] = (
        f"must be JSON (object, array, string, number, bool or null), got {type(value).__name__}"
    )
    return None


def thaw(value: Any) -> Any:
    """A plain, mutable deep copy of frozen JSON."""
    if isinstance(value, dict):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, list):
        return [thaw(item) for item in value]
    return value
