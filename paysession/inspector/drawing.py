"""The inspector's pictures, as inline SVG drawn here, in Python: no Graphviz, no script.

:func:`chart_svg` draws a :class:`~paysession.diagrams.Chart` (the table, and a session's
path and status on it): statuses on a ring, ordered so that the statuses with the most
moves between them stand side by side, arrows bent to the right of their direction so
that two opposite moves never overlap, and a move into its own status as a loop outside
the ring. The layout is a function of the chart alone, so a page is the same on every
load. :func:`status_bars` draws the counts per status above the sessions table.

Every text is escaped here, even the table's own names: the drawing is pasted into a
page as it is. Colours come from the stylesheet, by class (the page's policy forbids
inline styles).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

from paysession.diagrams import Chart, Edge

_WIDTH, _HEIGHT = 820, 560
_RX, _RY = 290, 200
_BOX_W, _BOX_H = 136, 38
_BEND = 0.22  # how far an arrow bows out, as a share of its length


def _ring_order(chart: Chart) -> list[str]:
    """The statuses around the ring: the initial one, then each time the status with the
    most moves to and from the last one placed (the chart's order breaks ties)."""
    links: dict[frozenset[str], int] = {}
    for edge in chart.edges:
        if edge.source != edge.dest:
            pair = frozenset((edge.source, edge.dest))
            links[pair] = links.get(pair, 0) + 1
    order = [chart.initial]
    rest = [state for state in chart.states if state != chart.initial]
    while rest:
        last = order[-1]
        best = max(rest, key=lambda state: links.get(frozenset((last, state)), 0))
        order.append(best)
        rest.remove(best)
    return order


def _positions(order: Sequence[str]) -> dict[str, tuple[float, float]]:
    cx, cy = _WIDTH / 2, _HEIGHT / 2
    count = len(order)
    return {
        state: (
            cx - _RX * math.cos(2 * math.pi * index / count),
            cy - _RY * math.sin(2 * math.pi * index / count),
        )
        for index, state in enumerate(order)
    }


def _to_box_edge(centre: tuple[float, float], toward: tuple[float, float]) -> tuple[float, float]:
    """Where the line from a box's centre toward a point leaves the box."""
    dx, dy = toward[0] - centre[0], toward[1] - centre[1]
    scale = min(
        (_BOX_W / 2) / abs(dx) if dx else math.inf,
        (_BOX_H / 2) / abs(dy) if dy else math.inf,
    )
    return centre[0] + dx * scale, centre[1] + dy * scale


_LINE = 14  # px between the lines of a label
_CHAR = 6.6  # px, about, per character of a label: enough to keep it inside the view


class _Bounds:
    """The box around everything drawn, so that the view never clips a loop or a label."""

    def __init__(self) -> None:
        self.left = self.top = math.inf
        self.right = self.bottom = -math.inf

    def take(self, x: float, y: float) -> None:
        self.left, self.right = min(self.left, x), max(self.right, x)
        self.top, self.bottom = min(self.top, y), max(self.bottom, y)

    def view_box(self, margin: float = 12.0) -> str:
        return (
            f"{self.left - margin:.0f} {self.top - margin:.0f} "
            f"{self.right - self.left + 2 * margin:.0f} {self.bottom - self.top + 2 * margin:.0f}"
        )


def _text(
    x: float, y: float, lines: Sequence[str], css: str, bounds: _Bounds, anchor: str = "middle"
) -> str:
    """Lines of text whose block is centred on (x, y) vertically; ``anchor`` says where x
    is along each line (its middle, start or end)."""
    first = y - (len(lines) - 1) * _LINE / 2 + 4
    widest = max(len(line) for line in lines) * _CHAR
    left = {"middle": x - widest / 2, "start": x, "end": x - widest}[anchor]
    bounds.take(left, first - _LINE)
    bounds.take(left + widest, first + _LINE * (len(lines) - 1) + 4)
    spans = "".join(
        f'<tspan x="{x:.1f}" y="{first + _LINE * index:.1f}">{escape(line)}</tspan>'
        for index, line in enumerate(lines)
    )
    return f'<text class="{css}" text-anchor="{anchor}">{spans}</text>'


def _loop(
    centre: tuple[float, float], outward: tuple[float, float], bounds: _Bounds
) -> tuple[str, tuple[float, float], str]:
    """A loop from a box back to itself, on its side away from the ring's centre: its
    path, where its label goes, and how the label is anchored there."""
    (sx, sy), (ux, uy) = centre, outward
    # Leave the box from the side that faces outward, mostly up, down, left or right.
    reach = _BOX_W / 2 if abs(ux) > abs(uy) else _BOX_H / 2
    foot = (sx + ux * reach, sy + uy * reach)
    start = (foot[0] - uy * 20, foot[1] + ux * 20)
    end = (foot[0] + uy * 20, foot[1] - ux * 20)
    apex = (foot[0] + ux * 48, foot[1] + uy * 48)
    path = (
        f"M{start[0]:.1f},{start[1]:.1f} "
        f"C{apex[0] - uy * 40:.1f},{apex[1] + ux * 40:.1f} "
        f"{apex[0] + uy * 40:.1f},{apex[1] - ux * 40:.1f} {end[0]:.1f},{end[1]:.1f}"
    )
    for point in (start, end, apex):
        bounds.take(*point)
    if abs(ux) > abs(uy):
        return path, (apex[0] + ux * 6, apex[1]), "end" if ux < 0 else "start"
    return path, (apex[0], apex[1] + uy * 10), "middle"


def chart_svg(chart: Chart, *, label: str = "State diagram") -> str:
    """``chart`` as an ``<svg>`` element: taken moves and the current status marked."""
    where = _positions(_ring_order(chart))
    cx, cy = _WIDTH / 2, _HEIGHT / 2
    bounds = _Bounds()
    grouped: dict[tuple[str, str], list[Edge]] = {}
    for edge in chart.edges:
        grouped.setdefault((edge.source, edge.dest), []).append(edge)
    arrows: list[str] = []
    labels: list[str] = []
    for (source, dest), edges in grouped.items():
        lines = [edge.label for edge in edges]
        css = "move taken" if any(edge.steps for edge in edges) else "move"
        (sx, sy), (dx, dy) = where[source], where[dest]
        if source == dest:
            norm = math.hypot(sx - cx, sy - cy) or 1.0
            path, at, anchor = _loop((sx, sy), ((sx - cx) / norm, (sy - cy) / norm), bounds)
            if anchor == "middle":
                # The block of lines sits beyond the loop, growing away from the ring.
                at = (at[0], at[1] + math.copysign((len(lines) - 1) * _LINE / 2, sy - cy))
            labels.append(_text(at[0], at[1], lines, f"{css} label", bounds, anchor))
        else:
            length = math.hypot(dx - sx, dy - sy)
            # The control point sits to the right of the direction of travel.
            nx, ny = (dy - sy) / length, -(dx - sx) / length
            control = (
                (sx + dx) / 2 + nx * length * _BEND,
                (sy + dy) / 2 + ny * length * _BEND,
            )
            start = _to_box_edge((sx, sy), control)
            end = _to_box_edge((dx, dy), control)
            path = (
                f"M{start[0]:.1f},{start[1]:.1f} "
                f"Q{control[0]:.1f},{control[1]:.1f} {end[0]:.1f},{end[1]:.1f}"
            )
            mid = (
                0.25 * start[0] + 0.5 * control[0] + 0.25 * end[0],
                0.25 * start[1] + 0.5 * control[1] + 0.25 * end[1],
            )
            labels.append(_text(mid[0], mid[1], lines, f"{css} label", bounds))
        arrows.append(f'<path class="{css}" d="{path}" marker-end="url(#arrow)"/>')
    boxes: list[str] = []
    for state in chart.states:
        x, y = where[state]
        bounds.take(x - _BOX_W / 2, y - _BOX_H / 2)
        bounds.take(x + _BOX_W / 2, y + _BOX_H / 2)
        classes = ["status"]
        if state == chart.current:
            classes.append("current")
        if state in chart.finals:
            classes.append("final")
        if state == chart.initial:
            classes.append("initial")
        boxes.append(
            f'<g class="{" ".join(classes)}" data-status="{escape(state)}">'
            f'<rect x="{x - _BOX_W / 2:.1f}" y="{y - _BOX_H / 2:.1f}" '
            f'width="{_BOX_W}" height="{_BOX_H}" rx="8"/>'
            + _text(x, y, [state], "name", _Bounds())
            + "</g>"
        )
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-label="{escape(label)}" viewBox="{bounds.view_box()}">'
        "<defs>"
        '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker>'
        "</defs>" + "".join(arrows) + "".join(boxes) + "".join(labels) + "</svg>"
    )


def status_bars(counts: Mapping[str, int], link: Mapping[str, str]) -> str:
    """A bar per status, its length the status's share of the largest count; each bar a
    link (``link[status]``) to the sessions in it."""
    width, row, left = 560, 24, 130
    most = max(counts.values(), default=0) or 1
    parts = []
    for index, (status, count) in enumerate(counts.items()):
        y = index * row
        length = max(2.0, (width - left - 90) * count / most) if count else 0.0
        parts.append(
            f'<a href="{escape(link[status])}" class="bar" data-status="{escape(status)}">'
            f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{escape(status)}</text>'
            f'<rect x="{left}" y="{y + 4}" width="{length:.1f}" height="{row - 8}" rx="3"/>'
            f'<text class="count" x="{left + length + 6:.1f}" y="{y + 16}">{count:,}</text>'
            "</a>"
        )
    return (
        f'<svg class="bars" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-label="Sessions per status" viewBox="0 0 {width} {row * len(counts)}">'
        + "".join(parts)
        + "</svg>"
    )


__all__ = ["chart_svg", "status_bars"]
