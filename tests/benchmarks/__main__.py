"""The benchmark suite: ``python -m tests.benchmarks [--quick] [--markdown]``.

Run from the repository root. Prints one table of medians and ratios, each target with
PASS or FAIL, then the output of any benchmark module that only has a ``main()``.

- ``--quick``: fewer, shorter rounds and 100,000 sessions for the RSS run (a smoke run);
- ``--markdown``: the table as Markdown, headed by the machine (CPU, cores, Python, OS)
  and the date, for the README;
- ``--only NAME``: run only some parts (engine, memory, store, audit; repeatable);
- ``--strict``: exit with status 1 when a target is missed.

Benchmark modules: ``bench_engine`` (comparisons 1, 2, 3, 5), ``bench_memory`` (4), and,
when present, ``bench_store`` and ``bench_audit``: their ``collect(quick)`` rows join the
table; a module with only ``main()`` runs as ``python -m tests.benchmarks.<name>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import importlib.util
import inspect
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from tests.benchmarks.bench_engine import Row
from tests.benchmarks.machine import cpu_model

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("engine", "memory", "store", "audit")
_OWN = {"engine": "tests.benchmarks.bench_engine", "memory": "tests.benchmarks.bench_memory"}


# --------------------------------------------------------------------------------------
# The machine the figures were taken on.


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def machine_lines() -> list[str]:
    cores = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = cores
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"CPU: {cpu_model()}, {cores} cores ({usable} usable){load}",
        f"Python: {platform.python_implementation()} {platform.python_version()}",
        f"OS: {platform.platform()}",
        f"Date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        "Libraries: transitions {}, python-statemachine {}, attrs {}, cattrs {}".format(
            _version("transitions"),
            _version("python-statemachine"),
            _version("attrs"),
            _version("cattrs"),
        ),
    ]


# --------------------------------------------------------------------------------------
# Other modules' rows.

_GROUP_KEYS = ("group", "benchmark", "comparison", "section", "suite")
_NAME_KEYS = ("contender", "name", "label", "case", "operation", "what")
_VALUE_KEYS = ("value", "median", "median_ns", "ns", "per_op_ns", "median_us", "us", "seconds")
_UNIT_BY_KEY = {"median_us": "us", "us": "us", "seconds": "s"}


def _fields(row: object) -> dict[str, Any]:
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        return dataclasses.asdict(row)
    if hasattr(row, "_asdict"):
        return dict(row._asdict())
    if isinstance(row, Mapping):
        return dict(row)
    return {name: getattr(row, name) for name in dir(row) if not name.startswith("_")}


def adapt(row: object, default_group: str) -> Row:
    """A row from another module, read by its field names (best effort)."""
    if isinstance(row, Row):
        return row
    if isinstance(row, tuple) and not hasattr(row, "_asdict"):
        return Row(default_group, " ".join(map(str, row)), None, "")
    fields = _fields(row)
    if {f.name for f in dataclasses.fields(Row)} <= set(fields):
        return Row(**{f.name: fields[f.name] for f in dataclasses.fields(Row)})
    group = next((str(fields[k]) for k in _GROUP_KEYS if fields.get(k)), default_group)
    name = next((str(fields[k]) for k in _NAME_KEYS if fields.get(k)), "")
    value, unit = None, str(fields.get("unit", "ns"))
    for key in _VALUE_KEYS:
        if isinstance(fields.get(key), int | float):
            value = float(fields[key])
            unit = str(fields.get("unit", _UNIT_BY_KEY.get(key, unit)))
            break
    ratio = fields.get("ratio")
    passed = fields.get("passed", fields.get("ok"))
    return Row(
        group,
        name,
        value,
        unit,
        ratio=float(ratio) if isinstance(ratio, int | float) else None,
        target=str(fields.get("target") or ""),
        passed=passed if isinstance(passed, bool) else None,
        note=str(fields.get("note") or ""),
    )


def run_part(part: str, quick: bool) -> tuple[list[Row], str]:
    """The rows of one part, or the printed output of a module that has only ``main()``."""
    module_name = _OWN.get(part, f"tests.benchmarks.bench_{part}")
    if importlib.util.find_spec(module_name) is None:
        return [], ""
    module = importlib.import_module(module_name)
    collect = getattr(module, "collect", None)
    if callable(collect):
        parameters = inspect.signature(collect).parameters
        rows = collect(quick=quick) if "quick" in parameters else collect()
        return [adapt(row, f"6. {part}") for row in rows], ""
    if not callable(getattr(module, "main", None)):
        return [], f"{module_name}: neither collect() nor main(); skipped\n"
    command = [sys.executable, "-m", module_name]
    source = inspect.getsource(module)
    if quick and "--quick" in source:
        command.append("--quick")
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    text = f"$ {' '.join(['python', *command[1:]])}\n{result.stdout}"
    if result.returncode != 0:
        # A module may exit 1 for a missed target; show its stderr only when it broke.
        broken = not result.stdout.strip() or "Traceback" in result.stderr
        text += f"(exit status {result.returncode})\n" + (result.stderr if broken else "")
    return [], text


# --------------------------------------------------------------------------------------
# The table.


_TO_NS = {"us": 1e3, "\u00b5s": 1e3, "ms": 1e6, "s": 1e9}


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit in _TO_NS:
        value, unit = value * _TO_NS[unit], "ns"
    if unit == "ns":
        if value < 1_000:
            return f"{value:.0f} ns"
        if value < 1_000_000:
            us = value / 1_000
            return f"{us:.2f} us" if us < 10 else f"{us:.1f} us" if us < 100 else f"{us:.0f} us"
        return f"{value / 1_000_000:.2f} ms"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "x":
        return format_ratio(value)
    return f"{value:,.4g} {unit}"


def format_ratio(value: float | None) -> str:
    if value is None:
        return ""
    if value >= 100:
        return f"{value:.0f}x"
    if value >= 10:
        return f"{value:.1f}x"
    if value >= 0.1:
        return f"{value:.3f}x"
    return f"{value:.2g}x"


HEADERS = ("benchmark", "contender", "value", "ratio", "spread", "target", "result")


def table_cells(rows: Sequence[Row]) -> list[list[str]]:
    cells = []
    group = None
    for row in rows:
        result = "" if row.passed is None else ("PASS" if row.passed else "FAIL")
        cells.append(
            [
                row.group if row.group != group else "",
                row.contender,
                format_value(row.value, row.unit),
                format_ratio(row.ratio),
                "" if row.spread is None else f"+-{row.spread / 2:.0f}%",
                row.target,
                result,
            ]
        )
        group = row.group
    return cells


def render_text(rows: Sequence[Row]) -> str:
    cells = [list(HEADERS), *table_cells(rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADERS))]
    right = {2, 3, 4}
    lines = []
    for n, line in enumerate(cells):
        if n > 0 and line[0]:
            lines.append("")
        lines.append(
            "  ".join(
                c.rjust(w) if i in right and n else c.ljust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(rows: Sequence[Row]) -> str:
    lines = [
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join([":--", ":--", "--:", "--:", "--:", ":--", ":--"]) + "|",
    ]
    for line in table_cells(rows):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in line) + " |")
    return "\n".join(lines)


LEGEND = (
    "value: a time is per operation (in comparisons 1-5, the median over interleaved rounds);\n"
    "ratio: against the group's reference contender (the one at 1x), the median of per-round\n"
    "ratios; spread: half the interquartile range of the rounds, over the median."
)


def notes(rows: Sequence[Row]) -> list[str]:
    lines = [f"{row.group}, {row.contender.strip()}: {row.note}" for row in rows if row.note]
    cores = os.cpu_count() or 1
    load = max(os.getloadavg()[:2]) if hasattr(os, "getloadavg") else 0.0
    if load > cores * 0.75:
        lines.append(
            f"The machine was busy (load average up to {load:.1f} on {cores} cores): "
            "absolute times are inflated and noisy; the paired ratios are the figures to trust."
        )
    return lines


def summary(rows: Sequence[Row], outputs: Sequence[str] = ()) -> list[str]:
    checks = [row for row in rows if row.passed is not None]
    passed = sum(1 for row in checks if row.passed)
    lines = [f"Targets: {passed} of {len(checks)} met"]
    for row in checks:
        verdict = "PASS" if row.passed else "FAIL"
        measured = format_value(row.value, row.unit)
        lines.append(f"  {verdict}  {row.group}: {row.contender} = {measured} ({row.target})")
    for output in outputs:
        words = output.split()
        if "PASS" in words or "FAIL" in words:
            command = output.splitlines()[0].removeprefix("$ ")
            lines.append(
                f"  ({command}: {words.count('PASS')} PASS, {words.count('FAIL')} FAIL"
                " in its own output below)"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks",
        description="paysession against transitions, python-statemachine and a hand FSM.",
    )
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--only", action="append", choices=PARTS, help="run only these parts")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if Path.cwd().resolve() != ROOT:
        os.chdir(ROOT)
    parts = args.only or list(PARTS)
    rows: list[Row] = []
    outputs: list[str] = []
    print(f"running {', '.join(parts)}{' (quick)' if args.quick else ''}", file=sys.stderr)
    for part in parts:
        part_rows, output = run_part(part, args.quick)
        rows += part_rows
        if output:
            outputs.append(output)
    rows.sort(key=lambda row: row.group.split(".")[0].zfill(3) if row.group[:1].isdigit() else "~")
    mode = "quick run" if args.quick else "full run"
    command = "python -m tests.benchmarks" + (" --quick" if args.quick else "")
    if args.markdown:
        print(f"### Benchmarks ({mode}: `{command}`)\n")
        for line in machine_lines():
            print(f"- {line}")
        print()
        print(render_markdown(rows))
        print(f"\n{LEGEND}\n")
        for line in notes(rows):
            print(f"- {line}")
        if notes(rows):
            print()
        head, *checks = summary(rows, outputs)
        print(f"{head}:\n")
        for line in checks:
            print(f"- {line.strip()}")
        for output in outputs:
            print(f"\n```\n{output.rstrip()}\n```")
    else:
        print(f"paysession benchmarks, {mode} ({command})")
        for line in machine_lines():
            print(f"  {line}")
        print()
        print(render_text(rows))
        print(f"\n{LEGEND}\n")
        for line in notes(rows):
            print(line)
        if notes(rows):
            print()
        print("\n".join(summary(rows, outputs)))
        for output in outputs:
            print(f"\n{output.rstrip()}")
    failed = any(row.passed is False for row in rows)
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
