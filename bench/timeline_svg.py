"""A build schedule drawn as SVG text: a row per worker, a bar per build, a line per edge."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# What a bar's colour says: a package of the app, a build backend built first for it, a build
# of a simulation, an exclusive build. The legend shows the kinds drawn.
COLOURS = {"app": "#4878a8", "requirement": "#e0a040", "build": "#4878a8", "exclusive": "#c04848"}
LEGEND = {
    "app": "a package of the app",
    "requirement": "a build requirement, built first",
    "build": "a build",
    "exclusive": "an exclusive build",
}
LEFT, RIGHT, TOP, ROW_HEIGHT, LINE = 130, 20, 56, 34, 16
CHAR_WIDTH = 6.5  # of an 11 px sans-serif label, about


@dataclass(frozen=True, slots=True)
class Bar:
    """One build on a timeline: its row (worker), its span in seconds, its label and kind."""

    key: str
    row: int
    start: float
    end: float
    label: str
    kind: str = "build"  # a key of COLOURS


def nice_step(span: float) -> float:
    """A tick interval of 1, 2 or 5 times a power of ten giving about ten ticks over ``span``."""
    raw = max(span, 1e-9) / 10
    power = 10.0 ** int(f"{raw:e}".split("e")[1])
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


class _Canvas:
    """The scale from seconds and rows to pixels, and the SVG elements drawn so far."""

    def __init__(self, rows: int, bars: Sequence[Bar], width: int, caption_lines: int) -> None:
        self.t0 = min(b.start for b in bars)
        self.span = (max(b.end for b in bars) - self.t0) or 1.0
        self.width = width
        self.bottom = TOP + ROW_HEIGHT * rows
        self.height = self.bottom + 40 + LINE * caption_lines + 10
        self.parts: list[str] = []

    def x(self, t: float) -> float:
        return LEFT + (t - self.t0) / self.span * (self.width - LEFT - RIGHT)

    @staticmethod
    def mid(row: int) -> float:
        return TOP + row * ROW_HEIGHT + ROW_HEIGHT / 2

    def add(self, element: str) -> None:
        self.parts.append(element)


def timeline_svg(
    rows: Sequence[str],
    bars: Sequence[Bar],
    edges: Iterable[tuple[str, str]],
    *,
    title: str,
    caption: Sequence[str],
    width: int = 1400,
) -> str:
    """The schedule as an SVG document: each bar labelled with its label's first word where
    that fits (a tooltip with all of it always), a line from the end of each needed build to
    the start of its dependant, a time axis."""
    if not bars:
        raise ValueError("a timeline needs at least one bar")
    c = _Canvas(len(rows), bars, width, len(caption))
    c.add(f'<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="22" '
          f'font-size="15" font-weight="bold">{html.escape(title)}</text>')  # fmt: skip
    drawn = [kind for kind in COLOURS if any(b.kind == kind for b in bars)]
    for i, kind in enumerate(drawn):
        c.add(f'<rect x="{LEFT + i * 220}" y="32" width="12" height="10" fill="{COLOURS[kind]}"/>'
              f'<text x="{LEFT + i * 220 + 16}" y="41">{LEGEND[kind]}</text>')  # fmt: skip
    _axis(c, rows)
    for b in bars:
        _bar(c, b)
    _edges(c, bars, edges)
    for i, text in enumerate(caption):
        c.add(f'<text x="{LEFT}" y="{c.bottom + 34 + LINE * i}">{html.escape(text)}</text>')
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{c.height}" '
        f'viewBox="0 0 {width} {c.height}" font-family="sans-serif" font-size="11">'
        '<defs><marker id="arrow" viewBox="0 0 6 6" refX="6" refY="3" markerWidth="5" '
        'markerHeight="5" orient="auto"><path d="M0,0 L6,3 L0,6 z" fill="#333"/></marker></defs>'
    )
    return "\n".join([head, *c.parts, "</svg>"]) + "\n"


def _axis(c: _Canvas, rows: Sequence[str]) -> None:
    step = nice_step(c.span)
    ticks = int(c.span / step + 1e-9) + 1
    for i in range(ticks):
        x = c.x(c.t0 + i * step)
        c.add(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{c.bottom}" stroke="#ddd"/>'
              f'<text x="{x:.1f}" y="{c.bottom + 14}" text-anchor="middle">'
              f"{i * step:g} s</text>")  # fmt: skip
    for row, name in enumerate(rows):
        c.add(f'<text x="{LEFT - 8}" y="{c.mid(row) + 4}" text-anchor="end">'
              f"{html.escape(name)}</text>")  # fmt: skip


def _bar(c: _Canvas, b: Bar) -> None:
    x, w = c.x(b.start), max(c.x(b.end) - c.x(b.start), 0.8)
    tip = html.escape(f"{b.label}: {b.end - b.start:.2f} s")
    c.add(f'<rect x="{x:.2f}" y="{c.mid(b.row) - ROW_HEIGHT / 2 + 4}" width="{w:.2f}" '
          f'height="{ROW_HEIGHT - 8}" fill="{COLOURS[b.kind]}" stroke="white" '
          f'stroke-width="0.5"><title>{tip}</title></rect>')  # fmt: skip
    name = b.label.split()[0]  # the package, without its version (the tooltip has both)
    if w > CHAR_WIDTH * len(name) + 4:
        c.add(f'<text x="{x + 3:.2f}" y="{c.mid(b.row) + 4}" fill="white">'
              f"{html.escape(name)}</text>")  # fmt: skip


def _edges(c: _Canvas, bars: Sequence[Bar], edges: Iterable[tuple[str, str]]) -> None:
    by_key = {b.key: b for b in bars}
    pairs = [(by_key[a], by_key[b]) for a, b in edges if a in by_key and b in by_key]
    many = len(pairs) >= 200  # a thousand edges are a texture, not lines: faint, no arrows
    style = 'stroke-opacity="0.1"' if many else 'stroke-opacity="0.6" marker-end="url(#arrow)"'
    for need, dep in pairs:
        c.add(f'<line x1="{c.x(need.end):.2f}" y1="{c.mid(need.row)}" x2="{c.x(dep.start):.2f}" '
              f'y2="{c.mid(dep.row)}" stroke="#333" {style}/>')  # fmt: skip


def write_svg(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` whole (a temporary name, then a rename); the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return path
