"""The public surface is complete and honest, and privacy means something.

Every error paysession raises and every value a public call takes or returns can be
imported from ``paysession``; no module imports another module's ``_private`` name
(a private module's names are the package's to share); no service is built from a
chain of paysession base classes.
"""

from __future__ import annotations

import ast
import inspect
import typing
from pathlib import Path

import paysession
from paysession import errors

PACKAGE = Path(paysession.__file__).parent


def _classes_in(annotation: object, found: set[type]) -> None:
    if isinstance(annotation, type):
        found.add(annotation)
    origin = typing.get_origin(annotation)
    if isinstance(origin, type):
        found.add(origin)
    for argument in typing.get_args(annotation):
        _classes_in(argument, found)


def _public_callables() -> list[tuple[str, object]]:
    """Every public function and method reachable from ``paysession.__all__``."""
    callables: list[tuple[str, object]] = []
    for name in paysession.__all__:
        value = getattr(paysession, name)
        if inspect.isclass(value):
            callables.extend(
                (f"{name}.{method}", function)
                for method, function in inspect.getmembers(value, inspect.isfunction)
                if not method.startswith("_")
            )
        elif inspect.isfunction(value):
            callables.append((name, value))
    return callables


def test_every_error_is_importable_from_the_package() -> None:
    missing = {
        name for name in errors.__all__ if name != "REFUSALS" and not hasattr(paysession, name)
    }
    assert missing == set()


def test_every_error_class_of_the_errors_module_is_listed() -> None:
    defined = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value)
        and issubclass(value, errors.PaySessionError)
        and value.__module__ == errors.__name__
        and not name.startswith("_")
    }
    assert defined - set(errors.__all__) == set()


def test_every_value_a_public_call_takes_or_returns_is_importable() -> None:
    missing: set[str] = set()
    checked = 0
    for label, function in _public_callables():
        try:
            hints = typing.get_type_hints(function)
        except NameError:  # annotations only a type checker can resolve (Unpack[...])
            continue
        checked += 1
        found: set[type] = set()
        for annotation in hints.values():
            _classes_in(annotation, found)
        missing.update(
            f"{kind.__name__} (from {label})"
            for kind in found
            if kind.__module__.startswith("paysession") and not hasattr(paysession, kind.__name__)
        )
    assert checked > 50  # the service, its asyncio twin and the checkout flows were read
    assert missing == set()


def test_a_missing_selection_is_not_a_data_error() -> None:
    """A generic handler of bad input (InvalidSessionData, ValueError) must not swallow it."""
    assert not issubclass(paysession.NoSelectedSession, paysession.InvalidSessionData)
    assert not issubclass(paysession.NoSelectedSession, ValueError)
    assert issubclass(paysession.CartNotFound, paysession.NoSelectedSession)
    error = paysession.CartNotFound("cart_9")
    assert error.cart_id == "cart_9" and "cart_9" in str(error)


def _private_imports(source: str) -> list[str]:
    """``module.name`` for each ``_private`` name ``source`` imports from a public module."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.ImportFrom) and node.module):
            continue
        parts = node.module.split(".")
        if parts[0] != "paysession" or any(p.startswith("_") for p in parts[1:]):
            continue  # another library, or a private module: its names are shared
        for alias in node.names:
            name = alias.name
            if not name.startswith("_") or name.startswith("__"):
                continue
            as_module = PACKAGE.parent.joinpath(*parts, name)
            if as_module.with_suffix(".py").exists() or as_module.is_dir():
                continue  # a private module imported whole, not a private name of one
            found.append(f"{node.module}.{name}")
    return found


def test_no_module_imports_another_modules_private_name() -> None:
    offences = [
        f"{path.relative_to(PACKAGE.parent)}: {offence}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for offence in _private_imports(path.read_text(encoding="utf-8"))
    ]
    assert offences == []


def test_the_scan_finds_what_it_looks_for() -> None:
    source = (
        "from paysession.planning import _STATUS_BY_VALUE, plan\n"
        "from paysession import _log\n"
        "from paysession._wire import _private_but_shared\n"
    )
    assert _private_imports(source) == ["paysession.planning._STATUS_BY_VALUE"]


def test_the_service_has_no_paysession_base_class() -> None:
    for service in (paysession.PaymentSessions, paysession.AsyncPaymentSessions):
        bases = [base for base in service.__mro__[1:] if base.__module__.startswith("paysession")]
        assert bases == []
