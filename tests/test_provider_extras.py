"""Each provider's module needs its extra, and says which when it is missing; paysession
itself imports none of them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import run_without


@pytest.mark.parametrize(
    ("module", "package", "extra"),
    [
        ("stripe", "stripe", "stripe"),
        ("adyen", "Adyen", "adyen"),
        ("paypal", "cryptography", "paypal"),
        ("paypal", "httpx", "paypal"),
        ("klarna", "httpx", "klarna"),
    ],
)
def test_a_missing_extra_is_named(module: str, package: str, extra: str) -> None:
    done = run_without(
        package,
        "from paysession.errors import MissingExtra\n"
        "try:\n"
        f"    import paysession.providers.{module}\n"
        "except MissingExtra as missing:\n"
        "    assert isinstance(missing, ImportError)\n"
        "    print(missing)\n",
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        f"paysession.providers.{module} needs the {extra} extra: pip install 'paysession[{extra}]'"
    ]


def test_paysession_imports_no_provider_library() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, paysession, paysession.providers\n"
            "print(sorted(m for m in ('stripe', 'Adyen', 'httpx', 'cryptography') "
            "if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "[]")


def test_the_extras_are_declared() -> None:
    text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    for line in (
        'stripe = ["stripe>=12"]',
        'adyen = ["Adyen>=12"]',
        'paypal = ["cryptography>=42", "httpx>=0.27"]',
        'klarna = ["httpx>=0.27"]',
    ):
        assert line in text
