"""Server-side SVG charts from plain rows: horizontal bars and lines, no library.

Every label is escaped; each chart is ``role="img"`` with a ``<title>`` and a ``<desc>``
(referenced by ``aria-labelledby``) and each bar or point carries its own ``<title>`` so
screen readers and hovering show the exact value. Colours are presentation attributes
(allowed by the ``style-src 'self'`` policy, unlike ``style=""``). The page shows the
same rows as a table next to the chart and offers them as CSV.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from markupsafe import Markup, escape

PALETTE = ("#9e1b1b", "#1f5fa8", "#2f7d32", "#b26a00")
FONT = "system-ui, 'Noto Sans CJK SC', 'Microsoft YaHei', sans-serif"

Series = Sequence[tuple[str, str]]  # (row key, legend label)
Formatter = Callable[[Any], str]


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, Decimal | int | float):
        return float(value)
    return float(str(value))


def nice_ticks(value: float, count: int = 4, integer: bool = False) -> tuple[float, float]:
    """(axis end, step) for an axis from 0 to at least ``value`` in about ``count`` steps
    of 1, 2 or 5 × 10^k (whole steps only when ``integer``)."""
    if value <= 0:
        return (float(count), 1.0) if integer else (1.0, 0.25)
    raw = value / count
    exponent = math.floor(math.log10(raw))
    step = 10.0 ** (exponent + 1)
    for factor in (1, 2, 5, 10):
        if factor * 10**exponent >= raw:
            step = float(factor * 10**exponent)
            break
    if integer:
        step = max(step, 1.0)
    return step * math.ceil(value / step - 1e-9), step


def _is_integer(rows: Sequence[dict[str, Any]], series: Series) -> bool:
    return all(isinstance(r.get(k), int) for r in rows for k, _ in series)


def _text_width(text: str, size: float) -> float:
    """Rough rendered width: CJK characters are square, Latin ones about half."""
    return sum(size if ord(c) > 0x2E80 else size * 0.55 for c in text)


def _open(chart_id: str, width: float, height: float, title: str, desc: str) -> list[str]:
    t, d = f"{chart_id}-title", f"{chart_id}-desc"
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(chart_id)}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" width="100%" role="img" '
        f'aria-labelledby="{escape(t)} {escape(d)}" font-family="{FONT}" font-size="13">',
        f'<title id="{escape(t)}">{escape(title)}</title>',
        f'<desc id="{escape(d)}">{escape(desc)}</desc>',
    ]


def _legend(series: Series, x: float, y: float) -> list[str]:
    parts = []
    for index, (_key, label) in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        parts.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14:.1f}" y="{y:.1f}">{escape(label)}</text>')
        x += 14 + _text_width(label, 13) + 18
    return parts


def bar_chart(
    rows: Sequence[dict[str, Any]],
    *,
    chart_id: str,
    label_key: str,
    series: Series,
    title: str,
    desc: str,
    fmt: Formatter = str,
    empty_text: str = "",
    width: int = 540,
) -> Markup:
    """Horizontal grouped bars: one group per row, one bar per series."""
    bar, gap = 18, 12
    label_width = min(
        max((_text_width(str(r.get(label_key, "")), 13) for r in rows), default=60) + 12, 200
    )
    top = 34
    group = bar * len(series) + gap
    height = top + max(len(rows), 1) * group + 30
    plot_left, plot_right = label_width + 8, width - 70
    peak, step = nice_ticks(
        max((_number(r.get(k)) for r in rows for k, _ in series), default=0),
        integer=_is_integer(rows, series),
    )
    scale = (plot_right - plot_left) / peak
    out = _open(chart_id, width, height, title, desc)
    out += _legend(series, plot_left, 18)
    for tick in range(round(peak / step) + 1):
        value = step * tick
        x = plot_left + value * scale
        out.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 24}" '
            'stroke="#dee2e6" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle" fill="#6c757d">'
            f"{escape(fmt(value))}</text>"
        )
    if not rows and empty_text:
        out.append(f'<text x="{plot_left:.1f}" y="{top + 14}">{escape(empty_text)}</text>')
    for i, row in enumerate(rows):
        y0 = top + i * group
        label = str(row.get(label_key, ""))
        out.append(
            f'<text x="{label_width:.1f}" y="{y0 + group / 2:.1f}" text-anchor="end" '
            f'dominant-baseline="middle">{escape(label)}</text>'
        )
        for j, (key, legend) in enumerate(series):
            value = _number(row.get(key))
            w = max(value * scale, 0.0)
            y = y0 + j * bar
            colour = PALETTE[j % len(PALETTE)]
            shown = fmt(row.get(key))
            out.append(
                f'<rect x="{plot_left:.1f}" y="{y:.1f}" width="{w:.1f}" height="{bar - 2}" '
                f'fill="{colour}"><title>{escape(label)} · {escape(legend)}: '
                f"{escape(shown)}</title></rect>"
            )
            out.append(
                f'<text x="{plot_left + w + 4:.1f}" y="{y + bar / 2:.1f}" '
                f'dominant-baseline="middle" font-size="12">{escape(shown)}</text>'
            )
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 (every interpolated value is escaped above)


def line_chart(
    rows: Sequence[dict[str, Any]],
    *,
    chart_id: str,
    label_key: str,
    series: Series,
    title: str,
    desc: str,
    fmt: Formatter = str,
    empty_text: str = "",
    width: int = 540,
    height: int = 260,
) -> Markup:
    """One line per series over the rows in order (e.g. months), with marked points."""
    left, right, top, bottom = 80, width - 20, 38, height - 36
    peak, step = nice_ticks(
        max((_number(r.get(k)) for r in rows for k, _ in series), default=0),
        integer=_is_integer(rows, series),
    )
    out = _open(chart_id, width, height, title, desc)
    out += _legend(series, left, 18)
    ticks = round(peak / step)
    for tick in range(ticks + 1):
        value = step * tick
        y = bottom - (bottom - top) * tick / ticks
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#dee2e6"/>')
        out.append(
            f'<text x="{left - 6}" y="{y:.1f}" text-anchor="end" dominant-baseline="middle" '
            f'fill="#6c757d">{escape(fmt(value))}</text>'
        )
    if not rows:
        if empty_text:
            out.append(f'<text x="{left + 10}" y="{top + 20}">{escape(empty_text)}</text>')
        out.append("</svg>")
        return Markup("".join(out))  # noqa: S704 (escaped above)
    step = (right - left) / max(len(rows) - 1, 1)
    every = max(1, math.ceil(len(rows) / 12))  # at most about 12 axis labels
    for i, row in enumerate(rows):
        if i % every == 0:
            x = left + i * step if len(rows) > 1 else (left + right) / 2
            out.append(
                f'<text x="{x:.1f}" y="{bottom + 18}" text-anchor="middle" fill="#6c757d">'
                f"{escape(str(row.get(label_key, '')))}</text>"
            )
    for j, (key, legend) in enumerate(series):
        colour = PALETTE[j % len(PALETTE)]
        points = []
        for i, row in enumerate(rows):
            x = left + i * step if len(rows) > 1 else (left + right) / 2
            y = bottom - (bottom - top) * _number(row.get(key)) / peak
            points.append((x, y, row))
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
        for x, y, row in points:
            out.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}">'
                f"<title>{escape(str(row.get(label_key, '')))} · {escape(legend)}: "
                f"{escape(fmt(row.get(key)))}</title></circle>"
            )
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 (every interpolated value is escaped above)
