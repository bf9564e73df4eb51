"""The classifier's answer: a root-cause category with its culprit, confidence and evidence."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from sentinel.knowledge.taxonomy import Category
from sentinel.triage.signals import Signal

# A job-wide hang can produce one symptom per rank; a verdict shows a sample and the count.
MAX_ITEMS = 50


class Evidence(BaseModel):
    """One signal as a verdict shows it: the line as the host printed it, where and when."""

    model_config = ConfigDict(frozen=True)

    text: str = Field(
        description="The raw line as the host printed it (a short multi-line record whole)."
    )
    pattern: str | None
    family: str
    role: str
    host: str | None
    event_id: str | None
    gpu: str | None = None
    rank: int | None = None
    xid: int | None = None
    # Optional, so that verdicts stored before they were kept still load.
    time: datetime | None = Field(None, description="When the line was observed.")
    source: str | None = Field(
        None,
        description="The file the line was read from, else the collector that saw it "
        "(kernel, nvml...).",
    )

    @classmethod
    def of(cls, signal: Signal) -> Evidence:
        return cls(
            text=signal.attrs.get("record") or signal.text,
            pattern=signal.pattern,
            family=signal.family,
            role=signal.role,
            host=signal.host,
            event_id=signal.event_id,
            gpu=signal.gpu,
            rank=signal.rank,
            xid=signal.xid,
            time=signal.time,
            source=signal.attrs.get("source"),
        )


class Verdict(BaseModel):
    """Why the job stopped: category, culprit, confidence, and the rule and evidence behind it."""

    category: Category
    confidence: float = Field(ge=0.0, le=1.0)
    culprit_host: str | None = None
    culprit_gpu: str | None = None
    culprit_rank: int | None = None
    reason: str
    rule: str
    evidence: list[Evidence] = Field(default_factory=list)
    symptoms: list[Evidence] = Field(default_factory=list)
    evidence_total: int = 0
    symptoms_total: int = 0
    rules_fired: list[str] = Field(default_factory=list)

    # The signals this verdict accounts for, so that classify_all can look past them.
    _explained: frozenset[int] = PrivateAttr(default_factory=frozenset)
    # Of those, the ones it names as the cause (the rest are symptoms).
    _causes: frozenset[int] = PrivateAttr(default_factory=frozenset)

    @classmethod
    def build(
        cls,
        *,
        category: Category,
        confidence: float,
        reason: str,
        rule: str,
        evidence: list[Signal],
        symptoms: list[Signal] | None = None,
        culprit_host: str | None = None,
        culprit_gpu: str | None = None,
        culprit_rank: int | None = None,
    ) -> Verdict:
        symptoms = symptoms or []
        verdict = cls(
            category=category,
            confidence=round(min(max(confidence, 0.0), 1.0), 2),
            culprit_host=culprit_host,
            culprit_gpu=culprit_gpu,
            culprit_rank=culprit_rank,
            reason=reason,
            rule=rule,
            evidence=[Evidence.of(s) for s in evidence[:MAX_ITEMS]],
            symptoms=[Evidence.of(s) for s in symptoms[:MAX_ITEMS]],
            evidence_total=len(evidence),
            symptoms_total=len(symptoms),
        )
        verdict._explained = frozenset(id(s) for s in [*evidence, *symptoms])
        verdict._causes = frozenset(id(s) for s in evidence)
        return verdict

    @property
    def explained(self) -> frozenset[int]:
        return self._explained

    @property
    def causes(self) -> frozenset[int]:
        return self._causes
