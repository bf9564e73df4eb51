"""Small server-drawn SVG line charts: no chart library to vendor, nothing to run in the browser."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# Eight colours that stay apart from each other and from the health colours' meaning.
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#e15759")
WIDTH, HEIGHT, PAD = 640, 180, 34


@dataclass(frozen=True)
class Series:
    name: str
    points: list[tuple[datetime, float]]


@dataclass(frozen=True)
class Line:
    name: str
    color: str
    points: str
    last: float


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    pad: int
    lines: list[Line]
    y_min: float
    y_max: float
    t_min: datetime
    t_max: datetime
    unit: str


def line_chart(series: list[Series], unit: str) -> Chart | None:
    series = [s for s in series if s.points]
    if not series:
        return None
    values = [v for s in series for _, v in s.points]
    times = [t for s in series for t, _ in s.points]
    y_min, y_max = min(values), max(values)
    if y_max - y_min < 1:
        # A flat line gets a unit of room instead of a division by zero; counts stay >= 0.
        y_min, y_max = (y_min - 1 if y_min >= 1 or y_min < 0 else 0.0), y_max + 1
    t_min, t_max = min(times), max(times)
    span = max((t_max - t_min).total_seconds(), 1.0)
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD

    def xy(t: datetime, v: float) -> str:
        x = PAD + inner_w * (t - t_min).total_seconds() / span
        y = PAD + inner_h * (1 - (v - y_min) / (y_max - y_min))
        return f"{x:.1f},{y:.1f}"

    lines = [
        Line(
            s.name,
            PALETTE[i % len(PALETTE)],
            " ".join(xy(t, v) for t, v in s.points),
            s.points[-1][1],
        )
        for i, s in enumerate(series)
    ]
    return Chart(WIDTH, HEIGHT, PAD, lines, y_min, y_max, t_min, t_max, unit)
