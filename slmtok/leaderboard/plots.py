"""Pareto plots as inline SVG: quality against bitrate or tokens/s, one colour per tokenizer family.

Hand-written SVG (no plotting library, no fonts or scripts from outside): points with their 95 %
intervals as error bars, a label per point, and the Pareto front (no other tokenizer is both cheaper
and better) drawn as a step line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

FAMILY_COLOURS = {
    "semantic": "#1b9e77",
    "acoustic": "#d95f02",
    "hybrid": "#7570b3",
    "baseline": "#e7298a",
    "reference": "#666666",
}
WIDTH, HEIGHT = 520, 340
LEFT, RIGHT, TOP, BOTTOM = 62, 16, 44, 48


@dataclass(frozen=True)
class Point:
    """One tokenizer: ``x`` (cost: lower is better), ``y`` (quality) and its interval ``[low, high]``."""

    label: str
    family: str
    x: float
    y: float
    low: float | None = None
    high: float | None = None


def pareto_front(points: list[Point], higher_is_better: bool = True) -> list[Point]:
    """Points that no other point dominates (x no larger and y no worse, one of them strictly), by x."""
    front = []
    for p in points:
        dominated = False
        for q in points:
            if q is p:
                continue
            better_y = q.y >= p.y if higher_is_better else q.y <= p.y
            strictly = q.x < p.x or (q.y > p.y if higher_is_better else q.y < p.y)
            if q.x <= p.x and better_y and strictly:
                dominated = True
                break
        if not dominated:
            front.append(p)
    return sorted(front, key=lambda p: p.x)


def _ticks(low: float, high: float, log: bool) -> list[float]:
    if log:
        return [10.0**e for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)]
    span = high - low or 1.0
    step = 10 ** math.floor(math.log10(span / 4))
    for factor in (1, 2, 5, 10):
        if span / (step * factor) <= 6:
            step *= factor
            break
    start = math.ceil(low / step) * step
    return [start + i * step for i in range(int((high - start) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def pareto_svg(
    points: list[Point],
    *,
    title: str,
    x_label: str,
    y_label: str,
    higher_is_better: bool = True,
    plot_id: str = "",
) -> str:
    """An SVG document fragment (``<svg>...</svg>``) of the points; an empty-state SVG if none."""
    pts = [p for p in points if math.isfinite(p.x) and math.isfinite(p.y) and p.x > 0]
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="pareto" id="{escape(plot_id)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'data-points="{len(pts)}"><title>{escape(title)}</title>'
        f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" class="t">{escape(title)}</text>'
    )
    if not pts:
        return head + f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data</text></svg>'
    xs = [p.x for p in pts]
    ys = [v for p in pts for v in (p.y, p.low, p.high) if v is not None and math.isfinite(v)]
    log = max(xs) / min(xs) > 20
    if log:
        x0, x1 = math.log10(min(xs)) - 0.15, math.log10(max(xs)) + 0.15
    else:
        pad = (max(xs) - min(xs)) * 0.08 or max(xs) * 0.1
        x0, x1 = min(xs) - pad, max(xs) + pad
    pad_y = (max(ys) - min(ys)) * 0.08 or abs(max(ys)) * 0.1 or 1.0
    y0, y1 = min(ys) - pad_y, max(ys) + pad_y
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        v = math.log10(x) if log else x
        return LEFT + (v - x0) / (x1 - x0) * w

    def sy(y: float) -> float:
        return TOP + (1 - (y - y0) / (y1 - y0)) * h

    parts = [head, f'<rect x="{LEFT}" y="{TOP}" width="{w}" height="{h}" class="frame"/>']
    x_ticks = _ticks(10**x0 if log else x0, 10**x1 if log else x1, log)
    for t in x_ticks:
        if (math.log10(t) if log else t) < x0 or (math.log10(t) if log else t) > x1:
            continue
        x = sx(t)
        parts.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + h}" class="grid"/>')
        parts.append(f'<text x="{x:.1f}" y="{TOP + h + 14}" text-anchor="middle">{_fmt(t)}</text>')
    for t in _ticks(y0, y1, False):
        y = sy(t)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + w}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{LEFT - 5}" y="{y + 4:.1f}" text-anchor="end">{_fmt(round(t, 6))}</text>')
    scale = " (log scale)" if log else ""
    parts.append(
        f'<text x="{LEFT + w / 2}" y="{HEIGHT - 10}" text-anchor="middle">{escape(x_label)}{scale}</text>'
    )
    parts.append(
        f'<text transform="translate(14 {TOP + h / 2}) rotate(-90)" text-anchor="middle">'
        f"{escape(y_label)} {'↑' if higher_is_better else '↓'} better</text>"
    )
    front = pareto_front(pts, higher_is_better)
    if len(front) > 1:
        path = [f"M{sx(front[0].x):.1f},{sy(front[0].y):.1f}"]
        for p in front[1:]:
            path.append(f"H{sx(p.x):.1f}V{sy(p.y):.1f}")
        parts.append(f'<path d="{"".join(path)}" class="front"/>')
    placed: list[tuple[float, float, float]] = []  # label boxes: left, right, baseline
    for p in pts:
        colour = FAMILY_COLOURS.get(p.family, "#333333")
        x, y = sx(p.x), sy(p.y)
        anchor = "end" if x > LEFT + w * 0.75 else "start"
        dx = -8 if anchor == "end" else 8
        width = 5.6 * len(p.label)  # about 10 px type
        left = x + dx - width if anchor == "end" else x + dx
        label_y = y - 7
        while any(a < left + width and left < b and abs(label_y - by) < 11 for a, b, by in placed):
            label_y += 12  # stack labels that would overlap (points that nearly coincide)
        placed.append((left, left + width, label_y))
        if p.low is not None and p.high is not None and p.high > p.low:
            parts.append(
                f'<line x1="{x:.1f}" y1="{sy(p.low):.1f}" x2="{x:.1f}" y2="{sy(p.high):.1f}" '
                f'stroke="{colour}" class="err"/>'
            )
        tip = f"{p.label} ({p.family}): {y_label} {p.y:.3g} at {x_label} {p.x:.4g}"
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}" class="pt" '
            f'data-family="{escape(p.family)}"><title>{escape(tip)}</title></circle>'
        )
        parts.append(
            f'<text x="{x + dx:.1f}" y="{label_y:.1f}" text-anchor="{anchor}" class="lbl">{escape(p.label)}</text>'
        )
    families = sorted({p.family for p in pts})
    for i, fam in enumerate(families):
        colour = FAMILY_COLOURS.get(fam, "#333333")
        lx = LEFT + 8 + i * 92
        parts.append(f'<circle cx="{lx}" cy="{TOP - 12}" r="4" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 7}" y="{TOP - 8}" class="leg">{escape(fam)}</text>')
    parts.append("</svg>")
    return "".join(parts)


#: one colour per factor of the SLM profile (A content, B length, C paralinguistics, LM fitness)
FACTOR_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")
PROFILE_WIDTH, PROFILE_LABEL, BAR, GAP = 640, 190, 9, 10


@dataclass(frozen=True)
class Profile:
    """One tokenizer's factor scores (0-1, 1 best; ``None`` where the factor was not measured)."""

    label: str
    family: str
    scores: tuple[float | None, ...]


def profile_svg(profiles: list[Profile], factors: tuple[str, ...], *, title: str, plot_id: str = "") -> str:
    """Grouped horizontal bars: per tokenizer one bar per factor on a shared 0-1 axis, the value written
    beside each bar ("–" when not measured). Each bar is ``<rect class="bar" data-tokenizer data-factor
    data-value>``; each tokenizer's group is ``<g class="tok" data-tokenizer>``."""
    rows = len(profiles)
    block = len(factors) * BAR + GAP
    top, bottom = 50, 34
    height = top + rows * block + bottom
    width = PROFILE_WIDTH - PROFILE_LABEL - 60
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="profile" id="{escape(plot_id)}" '
        f'viewBox="0 0 {PROFILE_WIDTH} {height}" width="{PROFILE_WIDTH}" height="{height}" role="img" '
        f'data-tokenizers="{rows}"><title>{escape(title)}</title>'
        f'<text x="{PROFILE_WIDTH / 2}" y="18" text-anchor="middle" class="t">{escape(title)}</text>'
    ]
    for i, (name, colour) in enumerate(zip(factors, FACTOR_COLOURS, strict=False)):
        lx = PROFILE_LABEL + i * 112
        parts.append(f'<rect x="{lx}" y="29" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 14}" y="38" class="leg">{escape(name)}</text>')
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        x = PROFILE_LABEL + tick * width
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{top + rows * block}" class="grid"/>'
        )
        parts.append(f'<text x="{x:.1f}" y="{top + rows * block + 14}" text-anchor="middle">{tick:g}</text>')
    parts.append(
        f'<text x="{PROFILE_LABEL + width / 2}" y="{height - 6}" text-anchor="middle">'
        "score, 0 (worst) to 1 (best) → better</text>"
    )
    for r, p in enumerate(profiles):
        y0 = top + r * block
        colour = FAMILY_COLOURS.get(p.family, "#333333")
        parts.append(f'<g class="tok" data-tokenizer="{escape(p.label)}">')
        parts.append(
            f'<circle cx="8" cy="{y0 + len(factors) * BAR / 2:.1f}" r="4" fill="{colour}"/>'
            f'<text x="16" y="{y0 + len(factors) * BAR / 2 + 4:.1f}" class="lbl">{escape(p.label)}</text>'
        )
        for f, (name, score) in enumerate(zip(factors, p.scores, strict=True)):
            y = y0 + f * BAR
            if score is None:
                parts.append(
                    f'<text x="{PROFILE_LABEL + 3}" y="{y + BAR - 1}" class="lbl na" '
                    f'data-factor="{escape(name)}">– not measured</text>'
                )
                continue
            w = max(0.0, min(1.0, score)) * width
            tip = f"{p.label}: {name} {score:.2f}"
            parts.append(
                f'<rect x="{PROFILE_LABEL}" y="{y}" width="{w:.1f}" height="{BAR - 1}" '
                f'fill="{FACTOR_COLOURS[f % len(FACTOR_COLOURS)]}" class="bar" '
                f'data-tokenizer="{escape(p.label)}" data-factor="{escape(name)}" data-value="{score:.4f}">'
                f"<title>{escape(tip)}</title></rect>"
            )
            parts.append(
                f'<text x="{PROFILE_LABEL + w + 4:.1f}" y="{y + BAR - 1}" class="val">{score:.2f}</text>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)
