"""Deep read-only views of JSON data, so a snapshot's ``data`` cannot change under it.

``FrozenDict`` and ``FrozenList`` subclass ``dict`` and ``list`` so that equality,
``json.dumps`` and ``isinstance`` behave as users expect; every mutator raises.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from typing import Any, NoReturn

from paysession.limits import current


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


_SURROGATE = re.compile("[\ud800-\udfff]")


def is_text(value: str) -> bool:
    """Whether ``value`` is valid Unicode text: no lone surrogate, so it encodes as UTF-8.

    Lone surrogates come from broken JSON escapes (``"\\ud800"``); no database or log
    can keep them, so they are refused at the boundary instead of failing later.
    """
    return value.isascii() or _SURROGATE.search(value) is None


class _TooBig(Exception):
    pass


def freeze(value: object, path: str, problems: dict[str, str]) -> Any:
    """Return a deep read-only copy of JSON ``value``; record what is not JSON in ``problems``.

    Refuses data deeper or larger (counted as JSON text, roughly) than the limits in
    force, stopping the walk as soon as the size is over. Neither values nor keys are
    quoted in a problem (data can hold provider secrets): a place inside an object is
    named by the key's position, ``data.<key 2>[0]`` for the first item of the list under
    the second key.
    """
    limits = current()
    budget = [limits.data_bytes]
    try:
        return _freeze(value, path, problems, 0, limits.depth, budget, limits.int_digits)
    except _TooBig:
        problems[path] = f"is larger than {limits.data_bytes} bytes as JSON"
        return None


def _freeze(
    value: object,
    path: str,
    problems: dict[str, str],
    depth: int,
    max_depth: int,
    budget: list[int],
    digits: int,
) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        budget[0] -= _measure(value)
        if type(value) is str and not is_text(value):
            problems[path] = "must be valid Unicode text (it holds a lone surrogate)"
        # 2**(3 * digits) < 10**digits: only a long int needs the exact comparison.
        elif (
            type(value) is int and value.bit_length() > 3 * digits and abs(value) >= _ten_to(digits)
        ):
            problems[path] = f"is an integer of more than {digits} digits"
    elif isinstance(value, float):
        budget[0] -= 24
        if not math.isfinite(value):
            problems[path] = "must be a finite number (NaN and Infinity are not JSON)"
    elif depth >= max_depth:
        problems[path] = f"nests deeper than {max_depth} levels"
        return None
    elif isinstance(value, FrozenDict | FrozenList):
        # Built only by this function, so already checked and not copied again; counted
        # all the same, by the same rules, since it may sit inside a larger whole.
        budget[0] -= _measure(value)
    elif isinstance(value, Mapping):
        out: dict[str, Any] = {}
        # A key is named by its place in the object, never spelled out: keys of provider
        # data can be secrets themselves (a card number used as a key).
        for number, (key, item) in enumerate(value.items(), 1):
            place = f"{path}.<key {number}>"
            if not isinstance(key, str) or not is_text(key):
                problems[place] = "object keys must be valid Unicode strings"
                continue
            budget[0] -= len(key) + 4
            out[key] = _freeze(item, place, problems, depth + 1, max_depth, budget, digits)
        value = FrozenDict(out)
    elif isinstance(value, (list, tuple)):
        items = []
        for i, item in enumerate(value):
            budget[0] -= 1
            items.append(
                _freeze(item, f"{path}[{i}]", problems, depth + 1, max_depth, budget, digits)
            )
        value = FrozenList(items)
    else:
        kind = type(value).__name__
        problems[path] = f"must be JSON (object, array, string, number, bool or null), got {kind}"
        return None
    if budget[0] < 0:
        raise _TooBig
    return value


@functools.cache
def _ten_to(digits: int) -> int:
    return int(10**digits)


def _measure(value: object) -> int:
    if isinstance(value, dict):
        return sum(len(key) + 4 + _measure(item) for key, item in value.items())
    if isinstance(value, list):
        return sum(1 + _measure(item) for item in value)
    if isinstance(value, str):
        return len(value) + 2
    if type(value) is int:
        return 2 + value.bit_length() // 3
    return 24 if isinstance(value, float) else 8


def thaw(value: Any) -> Any:
    """A plain, mutable deep copy of frozen JSON."""
    if isinstance(value, dict):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, list):
        return [thaw(item) for item in value]
    return value


__all__ = [
    "FrozenDict",
    "FrozenList",
    "freeze",
    "is_text",
    "thaw",
]
