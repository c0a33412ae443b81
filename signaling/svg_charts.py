"""Small SVG charts for reports that must stand alone as one file (no script, no CDN).

A weekly report is mailed around and opened offline, so its charts are inline SVG strings
built here from plain numbers: grouped bars with an axis, and an hour-of-week heat map. Every
mark carries a <title> with its exact value, which is what a reader hovering a bar gets,
and every label is XML-escaped (store and staff names come from operators).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["PALETTE", "Series", "bar_chart", "heat_map", "nice_max"]

PALETTE = ("#2563eb", "#f97316", "#16a34a", "#9333ea", "#dc2626", "#0891b2")
_FONT = "font-family='system-ui, -apple-system, Segoe UI, sans-serif'"


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[float | None]  # None: no value that day (drawn as nothing)
    colour: str


def nice_max(value: float) -> float:
    """The axis top: the smallest 1, 2, 2.5 or 5 x 10^k at or above `value` (1 for 0)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value - 1e-12:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def _attr(text: str) -> str:
    return escape(text, quote=True)


def bar_chart(labels: Sequence[str], series: Sequence[Series], *, title: str,
              fmt: Callable[[float], str] = lambda v: f"{v:g}", width: int = 640,
              height: int = 220, top: float | None = None, ticks: int = 4) -> str:
    """Grouped vertical bars, one group per label, with four gridlines and a legend.

    `top`: a fixed axis top (100% for shares, 5 for a 1-5 score); default: a round number
    above the highest bar.
    """
    left, right, margin_top, bottom = 48, 12, 30, 40
    plot_w, plot_h = width - left - right, height - margin_top - bottom
    values = [v for s in series for v in s.values if v is not None]
    top_value = top if top is not None else nice_max(max(values, default=0.0))
    group_w = plot_w / max(1, len(labels))
    bar_w = max(2.0, group_w * 0.7 / max(1, len(series)))
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' "
             f"width='{width}' height='{height}' role='img' aria-label='{_attr(title)}' "
             f"{_FONT} font-size='11'>",
             f"<title>{escape(title)}</title>",
             f"<text x='{left}' y='16' font-size='13' font-weight='600' fill='#111827'>"
             f"{escape(title)}</text>"]
    for i in range(ticks + 1):
        y = margin_top + plot_h - plot_h * i / ticks
        parts.append(f"<line x1='{left}' x2='{width - right}' y1='{y:.1f}' y2='{y:.1f}' "
                     f"stroke='#e5e7eb'/>")
        parts.append(f"<text x='{left - 6}' y='{y + 4:.1f}' text-anchor='end' "
                     f"fill='#6b7280'>{escape(fmt(top_value * i / ticks))}</text>")
    for g, label in enumerate(labels):
        x0 = left + g * group_w + group_w * 0.15
        for k, s in enumerate(series):
            v = s.values[g] if g < len(s.values) else None
            if v is None:
                continue
            h = plot_h * max(0.0, v) / top_value
            x = x0 + k * bar_w
            parts.append(f"<rect x='{x:.1f}' y='{margin_top + plot_h - h:.1f}' "
                         f"width='{bar_w - 1:.1f}' height='{h:.1f}' fill='{s.colour}' rx='2'>"
                         "<title>"
                         f"{escape(label)} {escape(s.name)}: {escape(fmt(v))}</title></rect>")
        parts.append(f"<text x='{left + g * group_w + group_w / 2:.1f}' "
                     f"y='{margin_top + plot_h + 16}' text-anchor='middle' fill='#374151'>"
                     f"{escape(label)}</text>")
    x = left
    for s in series:
        parts.append(f"<rect x='{x}' y='{height - 14}' width='10' height='10' "
                     f"fill='{s.colour}' rx='2'/>")
        parts.append(f"<text x='{x + 14}' y='{height - 5}' fill='#374151'>"
                     f"{escape(s.name)}</text>")
        x += 24 + 7 * len(s.name)
    parts.append("</svg>")
    return "".join(parts)


def heat_map(rows: Sequence[Sequence[float | None]], row_labels: Sequence[str], *,
             title: str, fmt: Callable[[float], str] = lambda v: f"{v:g}",
             cell: int = 32) -> str:
    """Rows x 24 hours, darker for higher; None cells are hatched grey (no value)."""
    left, top = 44, 48
    cols = max((len(r) for r in rows), default=0)
    width, height = left + cols * cell + 8, top + len(rows) * cell + 8
    values = [v for r in rows for v in r if v is not None]
    high = max(values, default=0.0) or 1.0
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' "
             f"width='{width}' height='{height}' role='img' aria-label='{_attr(title)}' "
             f"{_FONT} font-size='11'>",
             f"<title>{escape(title)}</title>",
             f"<text x='{left}' y='16' font-size='13' font-weight='600' fill='#111827'>"
             f"{escape(title)}</text>"]
    for h in range(0, cols, 3):
        parts.append(f"<text x='{left + h * cell + cell / 2}' y='{top - 6}' "
                     f"text-anchor='middle' fill='#6b7280'>{h:02d}</text>")
    for r, row in enumerate(rows):
        y = top + r * cell
        label = row_labels[r] if r < len(row_labels) else ""
        parts.append(f"<text x='{left - 6}' y='{y + cell * 0.65:.1f}' text-anchor='end' "
                     f"fill='#374151'>{escape(label)}</text>")
        for c, v in enumerate(row):
            x = left + c * cell
            if v is None:
                fill, text = "#f3f4f6", "no value"
            else:
                fill, text = _heat_colour(v / high), fmt(v)
            parts.append(f"<rect class='cell' x='{x}' y='{y}' width='{cell - 2}' "
                         f"height='{cell - 2}' rx='3' fill='{fill}'><title>{escape(label)} "
                         f"{c:02d}:00: {escape(text)}</title></rect>")
            if v is not None and v > 0:
                ink = "#ffffff" if v / high > 0.55 else "#1f2937"
                parts.append(f"<text x='{x + (cell - 2) / 2}' y='{y + cell * 0.62:.1f}' "
                             f"text-anchor='middle' fill='{ink}'>{escape(fmt(v))}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _heat_colour(t: float) -> str:
    """From a pale to a deep blue, t in [0, 1]."""
    t = min(1.0, max(0.0, t))
    lo, hi = (239, 246, 255), (30, 64, 175)
    r, g, b = (round(a + (z - a) * t) for a, z in zip(lo, hi, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"
