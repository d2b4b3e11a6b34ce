"""Line charts as inline SVG text: the live status page's plots, with no plotting library.

`line_chart` draws one or more series of (round, value) points on shared axes, with the
axis ranges written as labels. Every name is escaped, so the SVG is safe to inline in HTML.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")
WIDTH, HEIGHT = 360, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 28, 34


def line_chart(title: str, series: Mapping[str, Sequence[tuple[float, float]]]) -> str:
    """An SVG chart titled `title` with a polyline per named series of (x, y) points.

    Non-finite points are left out; with no point at all the chart says "no data yet".
    """
    clean = {name: [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
             for name, points in series.items()}
    clean = {name: points for name, points in clean.items() if points}
    parts = [
        (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{html.escape(title)}">'),
        (f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" font-size="13" '
        f'font-weight="bold">{html.escape(title)}</text>'),
    ]
    if not clean:
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" '
                     'font-size="12" fill="#666">no data yet</text></svg>')
        return "".join(parts)
    xs = [x for points in clean.values() for x, _ in points]
    ys = [y for points in clean.values() for _, y in points]
    x0, x1 = _span(min(xs), max(xs))
    y0, y1 = _span(min(ys), max(ys))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return TOP + (1 - (y - y0) / (y1 - y0)) * plot_h

    parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" '
                 'stroke="#999"/>')
    for value, y in ((y1, TOP + 4), (y0, TOP + plot_h)):
        parts.append(f'<text x="{LEFT - 4}" y="{y}" text-anchor="end" font-size="10">'
                     f'{_label(value)}</text>')
    for value, anchor in ((x0, "start"), (x1, "end")):
        parts.append(f'<text x="{px(value):.1f}" y="{TOP + plot_h + 13}" text-anchor="{anchor}" '
                     f'font-size="10">{_label(value)}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 4}" text-anchor="middle" '
                 'font-size="10">round</text>')
    for i, (name, points) in enumerate(clean.items()):
        colour = COLOURS[i % len(COLOURS)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        parts.append(f'<polyline class="series" data-name="{html.escape(name)}" '
                     f'data-points="{len(points)}" fill="none" stroke="{colour}" '
                     f'stroke-width="1.8" points="{coords}"/>')
        if len(points) == 1:
            first_x, first_y = points[0]
            parts.append(f'<circle cx="{px(first_x):.1f}" cy="{py(first_y):.1f}" r="3" '
                         f'fill="{colour}"/>')
        parts.append(f'<text x="{LEFT + 6}" y="{TOP + 14 + 12 * i}" font-size="10" '
                     f'fill="{colour}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _span(low: float, high: float) -> tuple[float, float]:
    if high - low > 1e-12:
        return low, high
    pad = abs(low) * 0.05 or 0.5
    return low - pad, high + pad


def _label(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"
