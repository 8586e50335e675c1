"""The README's promises: its examples run, its table is the code's, its commands are CI's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api as mypy_api

from paysession import TRANSITIONS

from .adyen_api import API_KEY as ADYEN_KEY
from .adyen_api import adyen_api
from .helpers import run_doc_page
from .paypal_api import CLIENT_ID as PAYPAL_ID
from .paypal_api import CLIENT_SECRET as PAYPAL_SECRET
from .paypal_api import paypal_api
from .stripe_api import stripe_api

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
OWN_PROCESS = {"transactions.md"}
"""Pages run by an interpreter of their own: their examples configure Django's settings,
which belong to the process and must not stay in this one."""


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, flags=re.S)


class TestReadme:
    def test_examples_run(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Every python block runs, in order, in one namespace, with its asserts holding."""
        monkeypatch.chdir(tmp_path)
        blocks = python_blocks()
        assert len(blocks) >= 4
        namespace: dict[str, object] = {"__name__": "readme"}
        for number, block in enumerate(blocks, 1):
            exec(compile(block, f"README.md python block {number}", "exec"), namespace)

    def test_the_tour_type_checks(self, tmp_path: Path) -> None:
        """The README's python blocks, as one module, pass mypy --strict.

        Incremental, with a cache of its own (its options are not those of the
        project's mypy run): mypy then checks the standard library and paysession again
        only when they changed, 0.5 s instead of 4. Its answers are those of a full run."""
        tour = tmp_path / "readme_tour.py"
        tour.write_text("\n\n".join(python_blocks()))
        cache = ROOT / ".mypy_cache" / "readme-tour"
        out, err, status = mypy_api.run(
            ["--strict", "--python-version", "3.10", "--cache-dir", str(cache), str(tour)]
        )
        assert (status, err) == (0, ""), out

    def test_docs_examples_run(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Every python block of docs/*.md runs, in order, one namespace per file (Stripe's
        API, Adyen's Checkout API and PayPal's REST API answered by local servers that
        answer as theirs do)."""
        monkeypatch.chdir(tmp_path)
        with (
            stripe_api() as (_, base),
            adyen_api() as (_, adyen_base),
            paypal_api() as (paypal, paypal_base),
        ):
            monkeypatch.setenv("STRIPE_API_BASE", base)
            monkeypatch.setenv("ADYEN_CHECKOUT_BASE", adyen_base)
            monkeypatch.setenv("ADYEN_API_KEY", ADYEN_KEY)
            monkeypatch.setenv("PAYPAL_API_BASE", paypal_base)
            monkeypatch.setenv("PAYPAL_CLIENT_ID", PAYPAL_ID)
            monkeypatch.setenv("PAYPAL_CLIENT_SECRET", PAYPAL_SECRET)
            paypal.approve_at_once = True  # the buyer's part, in PayPal's window
            self._run_docs()

    def _run_docs(self) -> None:
        pages = sorted((ROOT / "docs").glob("*.md"))
        assert pages
        ran = 0
        for page in pages:
            if page.name in OWN_PROCESS:
                done = run_doc_page(page, Path.cwd())
                assert done.returncode == 0, done.stderr
                ran += int(done.stdout.splitlines()[-1])
                continue
            namespace: dict[str, object] = {"__name__": "docs"}
            blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
            for number, block in enumerate(blocks, 1):
                exec(compile(block, f"{page.name} python block {number}", "exec"), namespace)
                ran += 1
        assert ran >= 1

    def test_guarantees_name_tests_that_exist(self) -> None:
        """Each test the Guarantees table names is defined where it says."""
        section = README.split("## Guarantees")[1].split("\n## ")[0]
        named = 0
        for row in section.splitlines():
            if not row.startswith("| **"):
                continue
            current = ""
            for reference in re.findall(r"`([^`]+)`", row.split("|")[2]):
                if reference.startswith("tests/"):
                    current, _, rest = reference.partition("::")
                elif reference.startswith("::") or "::" not in reference:
                    rest = reference.removeprefix("::")
                else:
                    rest = reference
                source = (ROOT / current).read_text()
                for name in filter(None, rest.split("::")):
                    assert re.search(rf"(class|def) {name}\b|^{name} = ", source, re.M), (
                        current,
                        name,
                    )
                    named += 1
        assert named >= 20

    def test_each_kind_of_tampering_names_what_it_needs_and_its_tests(self) -> None:
        """Each line of the table of cuts, insertions and rollbacks says what finding it
        needs (nothing, a key, outside heads) and names tests that exist."""
        section = README.split("What each kind of cut, insertion and rollback")[1]
        rows = [row for row in section.split("\n\n")[1].splitlines() if row.startswith("| ")]
        assert rows[0] == "| Tampering | Needs | Proved by |"
        lines = rows[1:]
        assert len(lines) >= 15
        for row in lines:
            _, what, needs, proved, _ = row.split("|")
            assert needs.strip().startswith(("nothing", "a key", "outside heads")), what
            current = ""
            references = re.findall(r"`([^`]+)`", proved)
            assert references, what
            for reference in references:
                if reference.startswith("tests/"):
                    current, _, rest = reference.partition("::")
                else:
                    rest = reference.removeprefix("::")
                source = (ROOT / current).read_text()
                for name in filter(None, rest.split("::")):
                    assert re.search(rf"(class|def) {name}\b", source), (current, name)

    def test_transition_table_is_the_code(self) -> None:
        """The table printed in the README is rendered from TRANSITIONS."""
        rows = ["| trigger | from | to | guards |", "|---|---|---|---|"]
        for move in TRANSITIONS:
            rows.append(
                f"| {move.trigger} | {', '.join(s.value for s in move.sources)} | "
                f"{'(stays)' if move.dest is None else move.dest.value} | "
                f"{', '.join(move.guards) or '—'} |"
            )
        section = README.split("<!-- transition-table:start -->\n")[1].split("<!--")[0]
        assert section.strip() == "\n".join(rows)

    def test_quick_start_is_what_ci_runs(self) -> None:
        """The quick start is two commands, and .ci/run runs each exactly as written."""
        quick = README.split("## Quick start")[1].split("\n## ")[0]
        commands = [b.strip() for b in re.findall(r"```sh\n(.*?)```", quick, flags=re.S)]
        assert len(commands) == 2
        assert "paysession demo" in commands[0] and commands[1] == ".venv/bin/pytest"
        ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
        for command in commands:
            assert command in ci_lines

    def test_mermaid_diagram_is_current(self) -> None:
        """The diagram shown in docs/diagrams.md is the committed (freshly rendered) one."""
        page = (ROOT / "docs" / "diagrams.md").read_text()
        (shown,) = re.findall(r"```mermaid\n(.*?)```", page, flags=re.S)
        assert shown == (ROOT / "diagrams" / "payment_session.mmd").read_text()
