"""What a remediation tick has to act on, asked in one query: every step of the tick is asked
about, and a kind is outstanding exactly while its step's select finds a row."""

from __future__ import annotations

from builders import obs
from sqlalchemy import update

from remediation.test_swap import remap_pending, use_swaps
from remediation.timeline import Timeline
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Host
from sentinel.remediation.outstanding import Outstanding, outstanding


async def _outstanding(tl: Timeline) -> frozenset[Outstanding]:
    async with unit_of_work(tl.ctx.sessions) as s:
        return await outstanding(s, tl.ctx.remediation.selects())


async def test_every_step_of_the_tick_is_asked_about(tl: Timeline) -> None:
    # A kind left out would never be outstanding: its step would never run.
    assert set(tl.ctx.remediation.selects()) == set(Outstanding)


async def test_a_kind_is_outstanding_while_its_step_has_rows(tl: Timeline) -> None:
    """A job training, nothing wrong: nothing. node6 (in no job) reports a pending row remap:
    its finding stays open with no swap, undecided at every tick; once node6 is being repaired,
    that is outstanding too, until it is back in service."""
    use_swaps(tl, spares=["node6"])
    await tl.loops()
    assert await _outstanding(tl) == frozenset()
    await tl.post("node6", [obs("agent_status", tl.clock.now(), version="test")])
    tl.clock.advance(10)
    await tl.post("node6", [remap_pending(tl)])
    await tl.loops()
    await tl.loops()
    assert await _outstanding(tl) == {Outstanding.undecided_findings}
    async with unit_of_work(tl.ctx.sessions) as s:
        await s.execute(update(Host).where(Host.id == "node6").values(drain_state="repairing"))
    assert await _outstanding(tl) == {Outstanding.undecided_findings, Outstanding.repairing_hosts}
    async with unit_of_work(tl.ctx.sessions) as s:
        await s.execute(update(Host).where(Host.id == "node6").values(drain_state="none"))
    assert await _outstanding(tl) == {Outstanding.undecided_findings}
