"""The report's charts as inline SVG strings. Pure.

Every chart is drawn here in Python so the report needs no script and no
charting library: a tooltip is an SVG ``<title>``, a link an SVG ``<a>``.
Each chart carries how many marks it drew in a ``data-`` attribute, and each
mark a class, so a test (or a reader) can count them. Every text that came
from a repository goes through `esc`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from html import escape

from casbak.reportmodel import Churn, GrowthPoint, Mark, human_bytes

WIDTH = 960
LEFT = 150
RIGHT = 40
LANE = 24
AXIS = 28
TICKS = 6


def esc(text: object) -> str:
    """Text made safe for HTML and SVG, in content and in quoted attributes alike."""
    return escape(str(text), quote=True)


def when(moment: datetime) -> str:
    """A time as every chart labels it (UTC, to the second)."""
    return f"{moment:%Y-%m-%d %H:%M:%S}"


def time_format(span: float) -> str:
    """Tick labels precise enough to tell ticks ``span`` seconds apart in all."""
    if span > 3 * 86400:
        return "%Y-%m-%d"
    return "%m-%d %H:%M" if span > 3600 else "%H:%M:%S"


class TimeScale:
    """Maps times to x between ``LEFT`` and the right edge."""

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start = start
        self.span = max((end - start).total_seconds(), 0.0)

    def x(self, moment: datetime) -> float:
        """The x of a moment; everything is centred when all moments are one."""
        plot = WIDTH - LEFT - RIGHT
        if self.span == 0:
            return LEFT + plot / 2
        return LEFT + plot * (moment - self.start).total_seconds() / self.span

    def axis(self, y: float) -> str:
        """Tick labels along the bottom of a chart at ``y``."""
        parts = [f'<line class="ax" x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}"/>']
        fmt = time_format(self.span)
        steps = TICKS if self.span else 1
        previous = ""
        for step in range(steps):
            moment = self.start + timedelta(seconds=self.span * step / max(steps - 1, 1))
            label = f"{moment:{fmt}}"
            if label != previous:  # a span of seconds would repeat one label
                parts.append(
                    f'<text class="tk" x="{self.x(moment):.1f}" y="{y + 16}" '
                    f'text-anchor="middle">{label}</text>'
                )
            previous = label
        return "".join(parts)


def operation_classes(operations: Sequence[str]) -> dict[str, str]:
    """A colour class per operation, in the given order (the palette repeats after ten)."""
    return {operation: f"o{index % 10}" for index, operation in enumerate(operations)}


def timeline(marks: Sequence[Mark], operations: Sequence[str]) -> str:
    """Every snapshot as a dot on a time axis, one lane per operation."""
    classes = operation_classes(operations)
    height = AXIS + LANE * max(len(operations), 1) + 8
    parts = [
        f'<svg class="chart" id="timeline-chart" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" data-marks="{len(marks)}" role="img" '
        f'aria-label="timeline of {len(marks)} snapshots">'
    ]
    if marks:
        scale = TimeScale(min(m.timestamp for m in marks), max(m.timestamp for m in marks))
        for lane, operation in enumerate(operations):
            y = 8 + LANE * lane + LANE / 2
            parts.append(
                f'<text class="lb" x="{LEFT - 8}" y="{y + 4}" text-anchor="end">{esc(operation)}'
                f'</text><line class="gl" x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}"/>'
                f'<g class="{classes[operation]}">'
            )
            parts += [
                f'<circle class="mk" cx="{scale.x(m.timestamp):.1f}" cy="{y}" r="4">'
                f"<title>{esc(_mark_title(m))}</title></circle>"
                for m in marks
                if m.operation == operation
            ]
            parts.append("</g>")
        parts.append(scale.axis(height - AXIS + 4))
    parts.append("</svg>")
    return "".join(parts)


def _mark_title(mark: Mark) -> str:
    title = f"{when(mark.timestamp)} · {mark.operation} · target {mark.target_id}"
    title += f" · {mark.tenants} tenant{'' if mark.tenants == 1 else 's'} · {mark.id[:12]}"
    if mark.description:
        title += f"\n{mark.description}"
    if mark.who:
        title += f"\nby {mark.who}"
    return title


GROWTH_HEIGHT = 260
_SERIES = (("logical", "every snapshot in full"), ("unique", "distinct documents"))


def growth(points: Sequence[GrowthPoint]) -> str:
    """Stored against logical bytes over time, on a log scale (they differ by orders)."""
    top, bottom = 12, GROWTH_HEIGHT - AXIS
    parts = [
        f'<svg class="chart" id="growth-chart" viewBox="0 0 {WIDTH} {GROWTH_HEIGHT}" '
        f'width="{WIDTH}" height="{GROWTH_HEIGHT}" data-points="{len(points)}" role="img" '
        f'aria-label="repository growth at {len(points)} points">'
    ]
    if points:
        scale = TimeScale(points[0].timestamp, points[-1].timestamp)
        high = max(*(p.logical for p in points), 1)
        low = max(min(p.stored for p in points), 1)
        ticks = [(v, t) for v, t in _BYTE_TICKS if v <= low][-1:]
        ticks += [(v, t) for v, t in _BYTE_TICKS if low < v < high]
        ticks += [(v, t) for v, t in _BYTE_TICKS if v >= high][:1]
        low_exp = math.log10(ticks[0][0])
        high_exp = max(math.log10(ticks[-1][0]), low_exp + 1)

        def y(value: int) -> float:
            share = (math.log10(max(value, 1)) - low_exp) / (high_exp - low_exp)
            return bottom - (bottom - top) * min(max(share, 0.0), 1.0)

        for value, label in ticks:
            ty = y(value)
            parts.append(
                f'<line class="gl" x1="{LEFT}" y1="{ty:.1f}" x2="{WIDTH - RIGHT}" y2="{ty:.1f}"/>'
                f'<text class="tk" x="{LEFT - 8}" y="{ty + 4:.1f}" text-anchor="end">'
                f"{label}</text>"
            )
        for name, _ in (*_SERIES, ("stored", "")):
            coords = " ".join(
                f"{scale.x(p.timestamp):.1f},{y(getattr(p, name)):.1f}" for p in points
            )
            parts.append(f'<polyline class="ln {name}" points="{coords}"/>')
        parts += [
            f'<circle class="pt" cx="{scale.x(p.timestamp):.1f}" cy="{y(p.stored):.1f}" r="2.5">'
            f"<title>{esc(_point_title(p))}</title></circle>"
            for p in points
        ]
        parts.append(scale.axis(bottom))
    parts.append("</svg>")
    return "".join(parts)


_BYTE_TICKS = [
    (factor * 1024**power, f"{factor} {unit}")
    for power, unit in enumerate(("B", "KiB", "MiB", "GiB", "TiB"))
    for factor in (1, 10, 100)
]
"""Round sizes for a log-scale axis: 1, 10 and 100 of each unit."""


def _point_title(point: GrowthPoint) -> str:
    return (
        f"{when(point.timestamp)}: {point.snapshots} snapshots\n"
        f"logical {human_bytes(point.logical)}, distinct {human_bytes(point.unique)}, "
        f"stored {human_bytes(point.stored)}"
    )


CELL_HEIGHT = 18


def churn(data: Churn) -> str:
    """A tenant x time heat map of new versions; a tenant's name links to its section."""
    columns = max(len(data.edges) - 1, 1)
    plot = WIDTH - LEFT - RIGHT - 50
    cell = plot / columns
    height = CELL_HEIGHT * len(data.rows) + AXIS + 4
    peak = max((count for row in data.rows for count in row.buckets), default=0) or 1
    parts = [
        f'<svg class="chart" id="churn-chart" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
        f'height="{height}" data-rows="{len(data.rows)}" role="img" '
        f'aria-label="versions per tenant over time">'
    ]
    for index, row in enumerate(data.rows):
        y = CELL_HEIGHT * index
        label = (
            f'<text class="lb" x="{LEFT - 8}" y="{y + 13}" text-anchor="end">'
            f"{esc(_cut(row.tenant_id))}<title>{esc(row.tenant_id)}</title></text>"
        )
        if row.anchor is not None:
            label = f'<a href="#{esc(row.anchor)}">{label}</a>'
        parts.append(f'<g class="row">{label}')
        for column, count in enumerate(row.buckets):
            if count:
                start, end = data.edges[column], data.edges[column + 1]
                parts.append(
                    f'<rect class="hc" x="{LEFT + cell * column:.1f}" y="{y + 1}" '
                    f'width="{max(cell - 1, 1):.1f}" height="{CELL_HEIGHT - 2}" '
                    f'fill-opacity="{0.2 + 0.8 * count / peak:.2f}"><title>'
                    f"{esc(row.tenant_id)}: {count} new version{'' if count == 1 else 's'} "
                    f"{when(start)} .. {when(end)}</title></rect>"
                )
        parts.append(
            f'<text class="tk" x="{WIDTH - RIGHT}" y="{y + 13}" text-anchor="end">'
            f"{row.versions}</text></g>"
        )
    if len(data.edges) > 1:
        parts.append(_bucket_axis(data.edges, cell, CELL_HEIGHT * len(data.rows) + 2))
    parts.append("</svg>")
    return "".join(parts)


def _bucket_axis(edges: Sequence[datetime], cell: float, y: float) -> str:
    fmt = time_format((edges[-1] - edges[0]).total_seconds())
    every = max((len(edges) - 1) // (TICKS - 1), 1)
    parts = [
        f'<line class="ax" x1="{LEFT}" y1="{y}" x2="{LEFT + cell * (len(edges) - 1):.1f}"'
        f' y2="{y}"/>'
    ]
    previous = ""
    for index in range(0, len(edges), every):
        label = f"{edges[index]:{fmt}}"
        if label != previous:
            parts.append(
                f'<text class="tk" x="{LEFT + cell * index:.1f}" y="{y + 16}" '
                f'text-anchor="middle">{label}</text>'
            )
        previous = label
    return "".join(parts)


def _cut(text: str, limit: int = 19) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
