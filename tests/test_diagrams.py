"""State diagrams: the chart read from the table, its renderers, the committed files, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import attrs
import pytest
import transitions.extensions.diagrams_graphviz

from paysession import PaymentSession, SessionMachine, to_json
from paysession.cli import main
from paysession.diagrams import (
    FILES,
    INSTALL_DOT,
    INSTALL_GRAPHVIZ_PACKAGE,
    Chart,
    DiagramError,
    Edge,
    MissingRenderer,
    chart,
    render,
    to_dot,
    to_mermaid,
    to_svg,
)
from paysession.lifecycle import Move
from paysession.status import PaymentSessionStatus

S = PaymentSessionStatus
DIAGRAMS = Path(__file__).resolve().parents[1] / "diagrams"
SVG = "{http://www.w3.org/2000/svg}"

MERMAID_HEAD = """\
---
title: PaymentSession
---
stateDiagram-v2
  direction LR
  classDef s_default fill:white,color:black
  classDef s_inactive fill:white,color:black
  classDef s_parallel color:black,fill:white
  classDef s_active color:red,fill:darksalmon
  classDef s_previous color:blue,fill:azure
"""

MERMAID = (
    MERMAID_HEAD
    + """
  state "pending" as pending
  class pending s_default
  state "authorized" as authorized
  class authorized s_default
  state "requires_more" as requires_more
  class requires_more s_default
  state "error" as error
  class error s_default
  state "canceled" as canceled
  class canceled s_default

  pending --> authorized: authorize [is_initiated, amount_positive]
  pending --> requires_more: require_more
  pending --> error: fail
  pending --> canceled: cancel
  requires_more --> authorized: authorize [is_initiated, amount_positive]
  requires_more --> requires_more: require_more
  requires_more --> error: fail
  requires_more --> pending: retry
  requires_more --> canceled: cancel
  error --> pending: retry
  error --> canceled: cancel
  authorized --> canceled: cancel
  [*] --> pending
  canceled --> [*]
"""
)

FULL_EDGES = """\
  pending --> authorized: authorize [is_initiated, amount_positive]
  pending --> requires_more: require_more
  pending --> error: fail
  pending --> canceled: cancel
  pending --> pending: initiate [internal] | update [internal] | select [internal] | deselect [internal]
  requires_more --> authorized: authorize [is_initiated, amount_positive]
  requires_more --> requires_more: require_more | update [internal] | select [internal] | deselect [internal]
  requires_more --> error: fail
  requires_more --> pending: retry
  requires_more --> canceled: cancel
  error --> pending: retry
  error --> canceled: cancel
  error --> error: select [internal] | deselect [internal]
  authorized --> canceled: cancel
  [*] --> pending
  canceled --> [*]
"""  # noqa: E501

DOT = r"""digraph PaymentSession {
	graph [color=black directed=true fillcolor=white label=PaymentSession rankdir=LR "strict"=false style=solid]
	node [color=black fillcolor=white peripheries=1 shape=rectangle style="rounded,filled"]
	edge [color=black]
	pending [label="pending\l"]
	authorized [label="authorized\l"]
	requires_more [label="requires_more\l"]
	error [label="error\l"]
	canceled [label="canceled\l"]
	pending -> authorized [label="authorize [is_initiated, amount_positive]"]
	pending -> requires_more [label=require_more]
	pending -> error [label=fail]
	pending -> canceled [label=cancel]
	requires_more -> authorized [label="authorize [is_initiated, amount_positive]"]
	requires_more -> requires_more [label=require_more]
	requires_more -> error [label=fail]
	requires_more -> pending [label=retry]
	requires_more -> canceled [label=cancel]
	error -> pending [label=retry]
	error -> canceled [label=cancel]
	authorized -> canceled [label=cancel]
	_initial [label="" fillcolor=black fixedsize=true shape=point style=filled width=0.15]
	_initial -> pending
	_final [label="" fillcolor=black fixedsize=true shape=doublecircle style=filled width=0.2]
	canceled -> _final
}
"""  # noqa: E501

DOOR = Chart(
    states=("open", "shut"),
    initial="open",
    finals=("shut",),
    edges=(
        Edge("open", "shut", "close", ("is_idle",)),
        Edge("open", "open", "poke", internal=True, steps=(1,)),
        Edge("open", "open", "tick"),
    ),
    current="open",
    title="Door",
)
"""A hand-built chart: a guard, an internal move taken once, a shared self-loop."""


def reviewed_session() -> SessionMachine:
    """A session that went pending -> requires_more -> authorized -> canceled."""
    machine = SessionMachine(PaymentSession.new(cart_id="c", provider_id="stripe", amount=100))
    machine.initiate({})
    machine.require_more()
    machine.authorize()
    machine.cancel()
    return machine


@pytest.fixture
def dot_program() -> None:
    """Skip without Graphviz's dot, except under CI=true where it must be installed."""
    if shutil.which("dot") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but Graphviz's dot program is not installed")
        pytest.skip("Graphviz's dot program is not installed")


def svg_nodes(svg: str) -> list[str]:
    """The title of every node group of an SVG drawn by dot, in document order."""
    root = ET.fromstring(svg)
    return [
        group.findtext(f"{SVG}title", "")
        for group in root.iter(f"{SVG}g")
        if group.get("class") == "node"
    ]


class TestChart:
    def test_table_chart(self) -> None:
        """The bare table: pending first, canceled final, one edge per (move, source)."""
        drawn = chart()
        assert (drawn.states, drawn.initial, drawn.finals, drawn.current) == (
            ("pending", "authorized", "requires_more", "error", "canceled"),
            "pending",
            ("canceled",),
            None,
        )
        assert drawn.edges[:2] == (
            Edge("pending", "authorized", "authorize", ("is_initiated", "amount_positive")),
            Edge("requires_more", "authorized", "authorize", ("is_initiated", "amount_positive")),
        )
        assert len(drawn.edges) == 12

    def test_with_internal_adds_self_loops(self) -> None:
        """The moves whose dest is None come in as internal self-loops."""
        internal = [edge for edge in chart(with_internal=True).edges if edge.internal]
        assert internal == [
            Edge("pending", "pending", "initiate", internal=True),
            Edge("pending", "pending", "update", internal=True),
            Edge("requires_more", "requires_more", "update", internal=True),
            Edge("pending", "pending", "select", internal=True),
            Edge("requires_more", "requires_more", "select", internal=True),
            Edge("error", "error", "select", internal=True),
            Edge("pending", "pending", "deselect", internal=True),
            Edge("requires_more", "requires_more", "deselect", internal=True),
            Edge("error", "error", "deselect", internal=True),
        ]

    def test_any_table(self) -> None:
        """The chart is read from the table it is given."""
        table = (Move("cancel", (S.PENDING,), S.CANCELED),)
        assert chart(table).edges == (Edge("pending", "canceled", "cancel"),)

    def test_history_marks_the_moves_taken(self) -> None:
        """Each record after record 0 marks the edge it took with its seq."""
        machine = reviewed_session()
        drawn = chart(session=machine.session, history=machine.history, with_internal=True)
        assert drawn.current == "canceled"
        assert [edge for edge in drawn.edges if edge.steps] == [
            Edge(
                "requires_more",
                "authorized",
                "authorize",
                ("is_initiated", "amount_positive"),
                steps=(3,),
            ),
            Edge("pending", "requires_more", "require_more", steps=(2,)),
            Edge("authorized", "canceled", "cancel", steps=(4,)),
            Edge("pending", "pending", "initiate", internal=True, steps=(1,)),
        ]

    def test_history_needs_its_session(self) -> None:
        """A history alone has no current status to draw."""
        with pytest.raises(DiagramError) as caught:
            chart(history=reviewed_session().history)
        assert str(caught.value) == "a history is drawn on its session: pass the session too"

    def test_history_of_another_session(self) -> None:
        """Records of another session are refused."""
        machine, other = reviewed_session(), reviewed_session()
        with pytest.raises(DiagramError) as caught:
            chart(session=other.session, history=machine.history)
        assert str(caught.value) == (
            f"record 0 belongs to session {machine.session.id}, not {other.session.id}"
        )

    def test_history_with_a_move_the_table_lacks(self) -> None:
        """A record the table cannot draw is named, not skipped."""
        machine = reviewed_session()
        history = list(machine.history)
        history[3] = attrs.evolve(history[3], trigger="fail")
        with pytest.raises(DiagramError) as caught:
            chart(session=machine.session, history=history)
        assert str(caught.value) == (
            f"record 3 of {machine.session.id} (fail from requires_more to authorized) "
            "is not a move of the table"
        )

    def test_history_ending_elsewhere(self) -> None:
        """A history must end in the session's status."""
        machine = reviewed_session()
        with pytest.raises(DiagramError) as caught:
            chart(session=machine.session, history=machine.history[:3])
        assert str(caught.value) == (
            f"the history of {machine.session.id} ends in requires_more, "
            "but the session is canceled"
        )


class TestEdge:
    def test_label(self) -> None:
        """The label is the trigger, its guards in brackets, the steps taken in front."""
        edge = Edge("a", "b", "go", ("g1", "g2"), steps=(2, 5))
        assert edge.label == "(2, 5) go [g1, g2]"

    def test_label_without_guards(self) -> None:
        """A move without guards is labelled by its trigger alone."""
        assert Edge("a", "b", "go").label == "go"


class TestMermaid:
    def test_table(self) -> None:
        """The table as stateDiagram-v2, initial arrow to pending, canceled final."""
        assert render("mermaid") == MERMAID

    def test_with_internal(self) -> None:
        """The full variant adds the in-status moves as self-loops, marked internal."""
        text = render("mermaid", with_internal=True)
        assert text.split("\n\n")[2] == FULL_EDGES

    def test_hand_built_chart(self) -> None:
        """The renderer draws whatever chart it is given."""
        assert to_mermaid(DOOR) == (
            "---\n"
            "title: Door\n"
            "---\n"
            "stateDiagram-v2\n"
            "  direction LR\n"
            "  classDef s_default fill:white,color:black\n"
            "  classDef s_inactive fill:white,color:black\n"
            "  classDef s_parallel color:black,fill:white\n"
            "  classDef s_active color:red,fill:darksalmon\n"
            "  classDef s_previous color:blue,fill:azure\n"
            "\n"
            '  state "open" as open\n'
            "  class open s_active\n"
            '  state "shut" as shut\n'
            "  class shut s_default\n"
            "\n"
            "  open --> shut: close [is_idle]\n"
            "  open --> open: (1) poke [internal] | tick\n"
            "  [*] --> open\n"
            "  shut --> [*]\n"
        )

    def test_session_highlight(self) -> None:
        """The current status is active, visited ones previous, taken moves numbered."""
        machine = reviewed_session()
        text = render("mermaid", session=machine.session, history=machine.history)
        assert text == MERMAID_HEAD + (
            "\n"
            '  state "pending" as pending\n'
            "  class pending s_previous\n"
            '  state "authorized" as authorized\n'
            "  class authorized s_previous\n"
            '  state "requires_more" as requires_more\n'
            "  class requires_more s_previous\n"
            '  state "error" as error\n'
            "  class error s_default\n"
            '  state "canceled" as canceled\n'
            "  class canceled s_active\n"
            "\n"
            "  pending --> authorized: authorize [is_initiated, amount_positive]\n"
            "  pending --> requires_more: (2) require_more\n"
            "  pending --> error: fail\n"
            "  pending --> canceled: cancel\n"
            "  requires_more --> authorized: (3) authorize [is_initiated, amount_positive]\n"
            "  requires_more --> requires_more: require_more\n"
            "  requires_more --> error: fail\n"
            "  requires_more --> pending: retry\n"
            "  requires_more --> canceled: cancel\n"
            "  error --> pending: retry\n"
            "  error --> canceled: cancel\n"
            "  authorized --> canceled: (4) cancel\n"
            "  [*] --> pending\n"
            "  canceled --> [*]\n"
        )

    def test_session_without_history(self) -> None:
        """A session alone highlights its status and nothing else."""
        machine = SessionMachine(PaymentSession.new(cart_id="c", provider_id="stripe", amount=1))
        machine.require_more()
        text = render("mermaid", session=machine.session)
        assert text == MERMAID.replace(
            "class requires_more s_default", "class requires_more s_active"
        )


class TestDot:
    def test_table(self) -> None:
        """The table as DOT: start point to pending, canceled into a double circle."""
        assert render("dot") == DOT

    def test_with_internal(self) -> None:
        """Self-loop labels carry one move a line."""
        lines = render("dot", with_internal=True).splitlines()
        assert [line for line in lines if "[internal]" in line] == [
            '\tpending -> pending [label="initiate [internal]\\nupdate [internal]'
            '\\nselect [internal]\\ndeselect [internal]"]',
            '\trequires_more -> requires_more [label="require_more\\nupdate [internal]'
            '\\nselect [internal]\\ndeselect [internal]"]',
            '\terror -> error [label="select [internal]\\ndeselect [internal]"]',
        ]

    def test_hand_built_chart(self) -> None:
        """The renderer draws whatever chart it is given, highlights included."""
        assert to_dot(DOOR) == (
            "digraph Door {\n"
            "\tgraph [color=black directed=true fillcolor=white label=Door rankdir=LR"
            ' "strict"=false style=solid]\n'
            "\tnode [color=black fillcolor=white peripheries=1 shape=rectangle"
            ' style="rounded,filled"]\n'
            "\tedge [color=black]\n"
            '\topen [label="open\\l" color=red fillcolor=darksalmon peripheries=2]\n'
            '\tshut [label="shut\\l"]\n'
            '\topen -> shut [label="close [is_idle]"]\n'
            '\topen -> open [label="(1) poke [internal]\\ntick" color=blue]\n'
            '\t_initial [label="" fillcolor=black fixedsize=true shape=point style=filled'
            " width=0.15]\n"
            "\t_initial -> open\n"
            '\t_final [label="" fillcolor=black fixedsize=true shape=doublecircle style=filled'
            " width=0.2]\n"
            "\tshut -> _final\n"
            "}\n"
        )

    def test_session_highlight(self) -> None:
        """Current status red, visited ones blue, taken moves blue and numbered."""
        machine = reviewed_session()
        lines = render("dot", session=machine.session, history=machine.history).splitlines()
        assert [line for line in lines if "color=" in line and "[label=" in line] == [
            '\tpending [label="pending\\l" color=blue fillcolor=azure peripheries=1]',
            '\tauthorized [label="authorized\\l" color=blue fillcolor=azure peripheries=1]',
            '\trequires_more [label="requires_more\\l" color=blue fillcolor=azure peripheries=1]',
            '\tcanceled [label="canceled\\l" color=red fillcolor=darksalmon peripheries=2]',
            '\tpending -> requires_more [label="(2) require_more" color=blue]',
            '\trequires_more -> authorized [label="(3) authorize [is_initiated, amount_positive]"'
            " color=blue]",
            '\tauthorized -> canceled [label="(4) cancel" color=blue]',
            '\t_initial [label="" fillcolor=black fixedsize=true shape=point style=filled'
            " width=0.15]",
            '\t_final [label="" fillcolor=black fixedsize=true shape=doublecircle style=filled'
            " width=0.2]",
        ]


@pytest.mark.usefixtures("dot_program")
class TestSvg:
    def test_one_node_per_status(self) -> None:
        """Well-formed XML with one node per status, plus the start and end markers."""
        assert sorted(svg_nodes(render("svg"))) == [
            "_final",
            "_initial",
            "authorized",
            "canceled",
            "error",
            "pending",
            "requires_more",
        ]

    def test_no_graphviz_version(self) -> None:
        """The Graphviz version comment is stripped; the rest is dot's output."""
        svg = render("svg", with_internal=True)
        assert ("Generated by" in svg, svg.startswith("<?xml"), svg.endswith("</svg>\n")) == (
            False,
            True,
            True,
        )

    def test_same_bytes_every_time(self) -> None:
        """Two renders give the same text."""
        assert render("svg") == render("svg")

    def test_hand_built_chart(self) -> None:
        """The SVG renderer draws a hand-built chart too."""
        assert sorted(svg_nodes(to_svg(DOOR))) == ["_final", "_initial", "open", "shut"]

    def test_session_highlight(self) -> None:
        """Visited statuses are filled azure, the current one darksalmon with a second outline."""
        machine = reviewed_session()
        root = ET.fromstring(render("svg", session=machine.session, history=machine.history))
        fills = {
            group.findtext(f"{SVG}title"): [path.get("fill") for path in group.iter(f"{SVG}path")]
            for group in root.iter(f"{SVG}g")
            if group.get("class") == "node"
        }
        assert fills == {
            "pending": ["azure"],
            "authorized": ["azure"],
            "requires_more": ["azure"],
            "error": ["white"],
            "canceled": ["darksalmon", "none"],
            "_initial": [],
            "_final": [],
        }


class TestRender:
    def test_unknown_format(self) -> None:
        """A format that is not mermaid, dot or svg is refused by name."""
        with pytest.raises(DiagramError) as caught:
            render("png")
        assert str(caught.value) == "unknown diagram format 'png'; use one of mermaid, dot, svg"

    def test_nothing_machine_specific(self) -> None:
        """No absolute path of this checkout appears in the text."""
        root = str(Path(__file__).resolve().parents[1])
        assert [root in render(fmt) for fmt in ("mermaid", "dot")] == [False, False]


class TestMissingTools:
    def test_without_graphviz_package(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """DOT needs the graphviz package and says how to install it."""
        monkeypatch.setitem(sys.modules, "graphviz", None)
        with pytest.raises(MissingRenderer) as caught:
            render("dot")
        error = caught.value
        assert (error.fmt, error.tool, error.install, str(error)) == (
            "dot",
            "the graphviz Python package",
            INSTALL_GRAPHVIZ_PACKAGE,
            "dot diagrams need the graphviz Python package, which is missing; "
            "install it: pip install 'paysession[diagrams]'",
        )

    def test_mermaid_needs_no_graphviz(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Mermaid is drawn without the graphviz package."""
        monkeypatch.setitem(sys.modules, "graphviz", None)
        assert render("mermaid") == MERMAID

    def test_transitions_fallback_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """When transitions' graphviz backend is unusable, DOT is an error, not mermaid."""
        monkeypatch.setattr(transitions.extensions.diagrams_graphviz, "pgv", None)
        with pytest.raises(MissingRenderer) as caught:
            render("svg")
        assert (caught.value.fmt, caught.value.tool) == ("svg", "the graphviz Python package")

    def test_without_dot(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """SVG needs Graphviz's dot program and says how to install it."""
        monkeypatch.setenv("PATH", str(tmp_path))
        with pytest.raises(MissingRenderer) as caught:
            render("svg")
        assert (caught.value.fmt, caught.value.tool, caught.value.install) == (
            "svg",
            "Graphviz's dot program",
            INSTALL_DOT,
        )

    def test_cli_without_dot(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The CLI prints one line saying how to install Graphviz, no traceback."""
        monkeypatch.setenv("PATH", str(tmp_path))
        code = main(["diagram", "--format", "svg"])
        assert (code, capsys.readouterr()) == (
            2,
            (
                "",
                "paysession diagram: svg diagrams need Graphviz's dot program, which is missing;"
                " install it: apt-get install graphviz (Debian, Ubuntu), brew install graphviz"
                " (macOS), or see https://graphviz.org/download/\n",
            ),
        )


class TestCommittedFiles:
    @pytest.mark.parametrize("name", [name for name in FILES if not name.endswith(".svg")])
    def test_text_file_is_current(self, name: str) -> None:
        """Each committed mermaid and DOT file equals a fresh render."""
        fmt, with_internal = FILES[name]
        expected = render(fmt, with_internal=with_internal).encode("utf-8")
        assert (DIAGRAMS / name).read_bytes() == expected

    @pytest.mark.usefixtures("dot_program")
    @pytest.mark.parametrize("name", [name for name in FILES if name.endswith(".svg")])
    def test_svg_file_is_current(self, name: str) -> None:
        """Each committed SVG equals a fresh render."""
        fmt, with_internal = FILES[name]
        expected = render(fmt, with_internal=with_internal).encode("utf-8")
        assert (DIAGRAMS / name).read_bytes() == expected


class TestCli:
    def test_write_without_graphviz_writes_nothing(self, tmp_path: Path) -> None:
        """Without the dot program, --write fails before it writes a single file."""
        target = tmp_path / "out"
        done = subprocess.run(
            [sys.executable, "-m", "paysession", "diagram", "--write", str(target)],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, "PATH": os.path.dirname(sys.executable)},
            timeout=60,
            check=False,
        )
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.count("\n") == 1 and "install it: apt-get install graphviz" in (
            done.stderr
        )
        assert not target.exists()

    def test_mermaid_to_stdout(self, capsys: pytest.CaptureFixture[str]) -> None:
        """With no option the table's mermaid goes to stdout."""
        assert (main(["diagram"]), capsys.readouterr()) == (0, (MERMAID, ""))

    def test_output_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--output writes the chosen format to a file and nothing to stdout."""
        target = tmp_path / "full.dot"
        code = main(["diagram", "--format", "dot", "--with-internal", "--output", str(target)])
        assert (code, capsys.readouterr(), target.read_text("utf-8")) == (
            0,
            ("", ""),
            render("dot", with_internal=True),
        )

    def test_session_and_history(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--session-json and --history-json highlight a session's status and moves."""
        machine = reviewed_session()
        session_file = tmp_path / "session.json"
        session_file.write_text(to_json(machine.session), "utf-8")
        history_file = tmp_path / "trail.jsonl"
        history_file.write_text(
            "".join(json.dumps(record.to_dict()) + "\n" for record in machine.history), "utf-8"
        )
        code = main(
            [
                "diagram",
                "--session-json",
                str(session_file),
                "--history-json",
                str(history_file),
            ]
        )
        expected = render("mermaid", session=machine.session, history=machine.history)
        assert (code, capsys.readouterr()) == (0, (expected, ""))

    def test_shared_trail(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """From a JSON array of many sessions' records, only the session's own are drawn."""
        machine, other = reviewed_session(), reviewed_session()
        session_file = tmp_path / "session.json"
        session_file.write_text(to_json(machine.session), "utf-8")
        trail = [record.to_dict() for record in (*other.history, *machine.history)]
        history_file = tmp_path / "trail.json"
        history_file.write_text(json.dumps(trail), "utf-8")
        code = main(
            ["diagram", "--session-json", str(session_file), "--history-json", str(history_file)]
        )
        expected = render("mermaid", session=machine.session, history=machine.history)
        assert (code, capsys.readouterr()) == (0, (expected, ""))

    def test_trail_without_the_session(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A trail with no record of the session is an error naming both."""
        machine, other = reviewed_session(), reviewed_session()
        session_file = tmp_path / "session.json"
        session_file.write_text(to_json(machine.session), "utf-8")
        history_file = tmp_path / "trail.json"
        history_file.write_text(json.dumps([r.to_dict() for r in other.history]), "utf-8")
        code = main(
            ["diagram", "--session-json", str(session_file), "--history-json", str(history_file)]
        )
        assert (code, capsys.readouterr()) == (
            2,
            (
                "",
                f"paysession diagram: {history_file} holds no record of session "
                f"{machine.session.id}\n",
            ),
        )

    def test_bad_session_json(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A file that is not a session is an input error: one line on stderr and exit 2."""
        bad = tmp_path / "session.json"
        bad.write_text("{", "utf-8")
        code = main(["diagram", "--session-json", str(bad)])
        assert (code, capsys.readouterr()) == (
            2,
            (
                "",
                f"paysession diagram: --session-json: {bad}: invalid payment session data: $: "
                "is not valid JSON (Expecting property name enclosed in double quotes at "
                "character 1)\n",
            ),
        )

    def test_missing_session_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """An unreadable file is named on stderr, exit 2."""
        missing = tmp_path / "nope.json"
        code = main(["diagram", "--session-json", str(missing)])
        assert (code, capsys.readouterr()) == (
            2,
            (
                "",
                f"paysession diagram: --session-json: cannot read {missing}: "
                "No such file or directory\n",
            ),
        )

    @pytest.mark.parametrize(
        ("option", "content", "says"),
        [
            ("--session-json", '{"a": "caf\u00e9"}'.encode("latin-1"), "is not UTF-8 text"),
            ("--history-json", b"[" * 100_000, "nests too deeply"),
            ("--history-json", b"\xff\xfe[]", "is not UTF-8 text"),
        ],
    )
    def test_hostile_files_are_one_line_and_exit_2(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        option: str,
        content: bytes,
        says: str,
    ) -> None:
        path = tmp_path / "input.json"
        path.write_bytes(content)
        assert main(["diagram", option, str(path)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and says in err and "Traceback" not in err

    @pytest.mark.usefixtures("dot_program")
    def test_check_passes_on_the_committed_files(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--check exits 0 when every file is current."""
        copy = tmp_path / "diagrams"
        shutil.copytree(DIAGRAMS, copy)
        assert (main(["diagram", "--check", str(copy)]), capsys.readouterr()) == (
            0,
            (f"6 diagram files in {copy} are current\n", ""),
        )

    @pytest.mark.usefixtures("dot_program")
    def test_check_fails_on_a_tampered_file(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--check exits 1 naming a stale and a missing file; a fresh render fixes both."""
        copy = tmp_path / "diagrams"
        shutil.copytree(DIAGRAMS, copy)
        mmd = copy / "payment_session.mmd"
        mmd.write_text(mmd.read_text("utf-8").replace("retry", "retry_now"), "utf-8")
        (copy / "payment_session_full.svg").unlink()
        assert (main(["diagram", "--check", str(copy)]), capsys.readouterr()) == (
            1,
            (
                "",
                f"stale: {mmd}\n"
                f"missing: {copy / 'payment_session_full.svg'}\n"
                f"run: paysession diagram --write {copy}\n",
            ),
        )
        assert main(["diagram", "--write", str(copy)]) == 0
        assert main(["diagram", "--check", str(copy)]) == 0

    def test_check_takes_no_other_option(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--check with --format is a usage error, exit 2."""
        code = main(["diagram", "--check", str(tmp_path), "--format", "dot"])
        assert (code, capsys.readouterr()) == (
            2,
            ("", "paysession diagram: --check and --write take no other option\n"),
        )
