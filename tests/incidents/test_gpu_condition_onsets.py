"""GPU conditions in samples become events at their onset only (the ingest listener)."""

from __future__ import annotations

from builders import gpu_sample
from incidents.timeline import Timeline
from sqlalchemy import select

from sentinel.db.engine import unit_of_work
from sentinel.db.models import Event
from sentinel.health import HW_POWER_BRAKE, HW_THERMAL


async def _onsets(timeline: Timeline) -> list[tuple[int | None, str]]:
    async with unit_of_work(timeline.ctx.sessions) as s:
        rows = await s.execute(
            select(Event.gpu_index, Event.payload, Event.observed_at)
            .where(Event.kind == "gpu_condition", Event.host_id == "h001")
            .order_by(Event.observed_at, Event.gpu_index)
        )
        return [(gpu, payload["condition"]) for gpu, payload, _ in rows.all()]


async def test_a_condition_is_an_event_when_it_starts_and_again_after_it_ended(
    timeline: Timeline,
) -> None:
    async def sample(seconds: float, **gpus: int) -> None:
        await timeline.at(seconds)
        now = timeline.clock.now()
        await timeline.post(
            "h001",
            [
                gpu_sample(g, when=now, clock_event_reasons=gpus.get(f"g{g}", 0), lost=False)
                for g in range(3)
            ],
        )

    await sample(10, g0=HW_THERMAL)
    await sample(20, g0=HW_THERMAL, g1=HW_POWER_BRAKE)  # GPU 0 still hot: no second event
    await sample(30, g0=HW_POWER_BRAKE)  # GPU 0: thermal ended, power brake began
    await sample(40)  # all healthy
    await sample(50, g0=HW_THERMAL)  # a new onset
    assert await _onsets(timeline) == [
        (0, "thermal_slowdown"),
        (1, "power_brake"),
        (0, "power_brake"),
        (0, "thermal_slowdown"),
    ]
