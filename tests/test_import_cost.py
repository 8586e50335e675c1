"""`import paysession` loads nothing a caller does not touch: every public name comes
on first use (PEP 562), the same objects as before, and a synchronous caller never
loads asyncio, the simulation, the checkout flows or the inspector."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import paysession

HEAVY = (
    "asyncio",
    "paysession.aio",
    "paysession.simulation",
    "paysession.inspector",
    "paysession.checkout",
    "opentelemetry",
)


def _loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def _heavy(modules: set[str]) -> set[str]:
    return {name for name in modules if name.split(".")[0] in HEAVY or name.startswith(HEAVY)}


def test_import_paysession_loads_no_part_of_it() -> None:
    loaded = _loaded_after("import paysession")
    assert {name for name in loaded if name.startswith("paysession.")} == set()
    assert _heavy(loaded) == set()


def test_a_synchronous_caller_never_loads_asyncio_or_the_simulation() -> None:
    loaded = _loaded_after(
        "from paysession import PaymentSessions, SessionMachine, to_json\n"
        "from paysession.store import SqliteStore\n"
        "sessions = PaymentSessions(SqliteStore(':memory:'))\n"
        "made = sessions.create(cart_id='c', provider_id='stripe', amount=1)\n"
        "sessions.fire(made.id, 'initiate', data={'id': 'pi_1'})\n"
        "to_json(sessions.get(made.id))"
    )
    assert "paysession.service" in loaded
    assert _heavy(loaded) == set()


def test_every_public_name_is_the_object_its_module_defines() -> None:
    import importlib

    for name in paysession.__all__:
        if name == "__version__":
            continue
        value = getattr(paysession, name)
        home = importlib.import_module(paysession._LAZY[name])
        assert value is getattr(home, name), name
    assert set(paysession.__all__) <= set(dir(paysession))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'PaymentSesions'"):
        getattr(paysession, "PaymentSesions")  # noqa: B009
