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


def _label_lines(edges: Sequence[Edge]) -> list[str]:
    return [edge.label for edge in edges]


def _text(x: float, y: float, lines: Sequence[str], css: str) -> str:
    first = y - (len(lines) - 1) * 7
    spans = "".join(
        f'<tspan x="{x:.1f}" y="{first + 14 * index:.1f}">{escape(line)}</tspan>'
        for index, line in enumerate(lines)
    )
    return f'<text class="{css}" text-anchor="middle">{spans}</text>'


def chart_svg(chart: Chart, *, label: str = "State diagram") -> str:
    """``chart`` as an ``<svg>`` element: taken moves and the current status marked."""
    where = _positions(_ring_order(chart))
    cx, cy = _WIDTH / 2, _HEIGHT / 2
    grouped: dict[tuple[str, str], list[Edge]] = {}
    for edge in chart.edges:
        grouped.setdefault((edge.source, edge.dest), []).append(edge)
    arrows: list[str] = []
    labels: list[str] = []
    for (source, dest), edges in grouped.items():
        taken = any(edge.steps for edge in edges)
        css = "move taken" if taken else "move"
        (sx, sy), (dx, dy) = where[source], where[dest]
        if source == dest:
            # A loop outside the ring, on the side away from the centre.
            ux, uy = sx - cx, sy - cy
            norm = math.hypot(ux, uy) or 1.0
            ux, uy = ux / norm, uy / norm
            top = (sx + ux * (_BOX_H / 2 + 4), sy + uy * (_BOX_H / 2 + 4))
            far = (sx + ux * 95, sy + uy * 95)
            start = (top[0] - uy * 22, top[1] + ux * 22)
            end = (top[0] + uy * 22, top[1] - ux * 22)
            path = (
                f"M{start[0]:.1f},{start[1]:.1f} "
                f"C{far[0] - uy * 60:.1f},{far[1] + ux * 60:.1f} "
                f"{far[0] + uy * 60:.1f},{far[1] - ux * 60:.1f} {end[0]:.1f},{end[1]:.1f}"
            )
            mid = (sx + ux * 88, sy + uy * 88)
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
        arrows.append(f'<path class="{css}" d="{path}" marker-end="url(#arrow)"/>')
        labels.append(_text(mid[0], mid[1] + 4, _label_lines(edges), f"{css} label"))
    boxes: list[str] = []
    for state in chart.states:
        x, y = where[state]
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
            + _text(x, y + 5, [state], "name")
            + "</g>"
        )
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-label="{escape(label)}" viewBox="0 0 {_WIDTH} {_HEIGHT}">'
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
