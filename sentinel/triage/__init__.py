"""Failure triage: signals from logs and events → rules → a root-cause verdict with evidence."""

from sentinel.knowledge import Knowledge, KnowledgeError, default_knowledge, load_knowledge
from sentinel.knowledge.taxonomy import Category
from sentinel.triage.classify import (
    classify_all,
    classify_signals,
    classify_signals_all,
    classify_text,
)
from sentinel.triage.context import TriageContext
from sentinel.triage.policy import DEFAULT_POLICY, Policy
from sentinel.triage.signals import (
    Signal,
    extract_signals,
    fr_verdict_signal,
    gpu_sample_signal,
    heartbeat_stall_signal,
    host_silent_signal,
    log_signals,
    maintenance_signal,
    xid_signal,
)
from sentinel.triage.verdict import Evidence, Verdict
from sentinel.wire.identity import normalize_pci

__all__ = [
    "DEFAULT_POLICY",
    "Category",
    "Evidence",
    "Knowledge",
    "KnowledgeError",
    "Policy",
    "Signal",
    "TriageContext",
    "Verdict",
    "classify_all",
    "classify_signals",
    "classify_signals_all",
    "classify_text",
    "default_knowledge",
    "extract_signals",
    "fr_verdict_signal",
    "gpu_sample_signal",
    "heartbeat_stall_signal",
    "host_silent_signal",
    "load_knowledge",
    "log_signals",
    "maintenance_signal",
    "normalize_pci",
    "xid_signal",
]
