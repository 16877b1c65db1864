"""The activity chart as inline SVG, drawn on the server: workflows started, succeeded and
failed per bucket, and failed step attempts, over the last hours. Only numbers and fixed
labels go into the SVG, so it needs no escaping."""

from __future__ import annotations

from ..types import ActivityBucket
from .present import when

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 760, 180, 44, 22, 10
SERIES = (  # field, label, colour
    ("started", "started", "#2f6fdf"),
    ("succeeded", "succeeded", "#2e9d4f"),
    ("failed", "failed", "#d33a2c"),
    ("retries", "failed step attempts", "#e39b1b"),
)


def activity_svg(buckets: list[ActivityBucket]) -> str:
    if not buckets:
        return ""
    peak = max(1, *(getattr(b, f) for b in buckets for f, _, _ in SERIES))
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    step = plot_w / max(1, len(buckets) - 1)

    def xy(i: int, value: int) -> str:
        return f"{LEFT + i * step:.1f},{TOP + plot_h - value / peak * plot_h:.1f}"

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT + 18}" role="img" '
        'aria-label="workflows per minute">',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 8}" y2="{TOP + plot_h}" '
        'stroke="#999"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 8}" text-anchor="end">{peak}</text>',
        f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end">0</text>',
    ]
    for i in (0, len(buckets) // 2, len(buckets) - 1):
        label = when(buckets[i].start_ms)[11:16]
        parts.append(
            f'<text x="{LEFT + i * step:.1f}" y="{HEIGHT - 4}" text-anchor="middle">{label}</text>'
        )
    for n, (name, label, colour) in enumerate(SERIES):
        points = " ".join(xy(i, getattr(b, name)) for i, b in enumerate(buckets))
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{points}"/>'
        )
        x = LEFT + n * 170
        parts.append(f'<rect x="{x}" y="{HEIGHT + 6}" width="10" height="10" fill="{colour}"/>')
        total = sum(getattr(b, name) for b in buckets)
        parts.append(f'<text x="{x + 14}" y="{HEIGHT + 15}">{label} ({total})</text>')
    parts.append("</svg>")
    return "".join(parts)
